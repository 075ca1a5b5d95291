"""``connect_to``: the tests' one way to connect, to the server or to the session's Cluster.

A Cluster's URL in the tests is the first node's, with the scheme ``cluster+redis://`` (the tests'
own marker, understood only here), so that a URL handed to a subprocess says which client to make.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from redai_lab.lab.connection import connect, connect_cluster

CLUSTER_SCHEME = "cluster+redis://"  # tests' own marker: connect_to() connects with connect_cluster()


def connect_to(url: str, **kwargs: Any) -> redis.Redis | redis.RedisCluster:
    """``connect(url)``, or ``connect_cluster`` for the session's Cluster (also in a subprocess)."""
    if url.startswith(CLUSTER_SCHEME):
        return connect_cluster("redis://" + url.removeprefix(CLUSTER_SCHEME), **kwargs)
    return connect(url, **kwargs)


def node_url(url: str) -> tuple[str, bool]:
    """``(a redis:// URL, whether it is a node of the session's Cluster)``, for code outside the tests."""
    if url.startswith(CLUSTER_SCHEME):
        return "redis://" + url.removeprefix(CLUSTER_SCHEME), True
    return url, False


def connect_async(url: str, **kwargs: Any) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """A ``redis.asyncio`` client of the server, or of the session's Cluster."""
    url, cluster = node_url(url)
    return (redis.asyncio.RedisCluster if cluster else redis.asyncio.Redis).from_url(url, **kwargs)
