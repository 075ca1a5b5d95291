"""Several throwaway servers on loopback: a primary with replicas watched by Sentinels, and a Cluster.

Each node is a ``start_local`` server of the lab's chosen binary (free port on 127.0.0.1, its own
temporary directory, stopped on exit and when the process dies). Both topologies are context
managers; ``stop()`` stops every node, in the reverse order of starting::

    with start_sentinel_topology() as topology:
        sentinel = redis.Sentinel(topology.sentinel_addresses())
        primary = sentinel.master_for(topology.service_name)

    with start_cluster() as cluster:
        client = cluster.client()            # redis.RedisCluster

Waits are bounded: a topology that does not form within ``timeout`` seconds is stopped and
reported as a one-line ``ServerStartError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..errors import ServerStartError
from .server import RedisServer, ServerBinary, free_port, start_local

CLUSTER_SLOTS = 16384
SERVICE_NAME = "redai-lab"  # the name Sentinels monitor the primary under


def address(server: RedisServer) -> tuple[str, int]:
    """``(host, port)`` of a server started by the lab."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def client_for(server: RedisServer, **kwargs: Any) -> redis.Redis:
    """A plain client of one node (``decode_responses=True`` unless given)."""
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("socket_timeout", 5)
    return redis.Redis.from_url(server.url, **kwargs)


@dataclass
class _Nodes:
    """Servers started together, stopped together."""

    started: list[RedisServer] = field(default_factory=list)
    binary: ServerBinary | None = None  # None: the lab's chosen server

    def stop(self) -> None:
        """Stop every node this topology started (idempotent)."""
        for server in reversed(self.started):
            server.stop()

    def _start(self, **kwargs: Any) -> RedisServer:
        server = start_local(self.binary, modules=[], **kwargs)
        self.started.append(server)
        return server


@dataclass
class SentinelTopology(_Nodes):
    """A primary, its replicas and the Sentinels that watch them (``service_name``)."""

    service_name: str = SERVICE_NAME
    primary: RedisServer | None = None  # the primary at start; after a failover ask a Sentinel
    replicas: list[RedisServer] = field(default_factory=list)
    sentinels: list[RedisServer] = field(default_factory=list)
    down_after_ms: int = 1000  # how long the primary must stay silent before a Sentinel calls it down

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [address(s) for s in self.sentinels]

    @contextmanager
    def down_after(self, ms: int) -> Iterator[None]:
        """Inside the block, every Sentinel waits ``ms`` ms of silence before it calls the primary
        down (``SENTINEL SET ... down-after-milliseconds``); after it, ``down_after_ms`` again."""
        self._set_down_after(ms)
        try:
            yield
        finally:
            self._set_down_after(self.down_after_ms)

    def _set_down_after(self, ms: int) -> None:
        for sentinel in self.sentinels:
            with client_for(sentinel) as client:
                client.execute_command("SENTINEL", "SET", self.service_name, "down-after-milliseconds", ms)

    def data_nodes(self) -> list[RedisServer]:
        """The primary and replicas (their roles change with a failover)."""
        return ([self.primary] if self.primary else []) + self.replicas

    def __enter__(self) -> SentinelTopology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ClusterTopology(_Nodes):
    """A Redis Cluster: ``primaries`` primaries (slots split evenly), each with its replicas."""

    primaries: int = 3

    @property
    def nodes(self) -> list[RedisServer]:
        return list(self.started)

    def startup_nodes(self) -> list[ClusterNode]:
        return [ClusterNode(*address(node)) for node in self.started]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.RedisCluster`` that knows every node (``decode_responses=True`` unless given)."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 5)
        return RedisCluster(startup_nodes=self.startup_nodes(), **kwargs)

    def __enter__(self) -> ClusterTopology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sentinel_topology(
    replicas: int = 2,
    sentinels: int = 3,
    *,
    quorum: int | None = None,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 10_000,
    binary: ServerBinary | None = None,
    timeout: float = 30,
) -> SentinelTopology:
    """Start a primary, ``replicas`` replicas and ``sentinels`` Sentinels, and wait until they agree.

    ``quorum`` (default: a majority of the Sentinels) must agree the primary is down before a
    failover; ``down_after_ms`` is how long it must stay silent first. Returns once every replica
    is in sync and every Sentinel knows every replica and every other Sentinel.
    """
    if replicas < 0 or sentinels < 1:
        raise ValueError("A Sentinel topology needs at least 1 Sentinel and 0 or more replicas.")
    quorum = quorum or sentinels // 2 + 1
    topology = SentinelTopology(binary=binary, down_after_ms=down_after_ms)
    try:
        topology.primary = topology._start()
        host, port = address(topology.primary)
        for _ in range(replicas):
            topology.replicas.append(topology._start(config=["--replicaof", host, str(port)]))
        _wait_for(lambda: _replicas_in_sync(topology.primary, topology.replicas), timeout,
                  "the replicas did not finish their first sync")
        config = (
            f"sentinel monitor {topology.service_name} {host} {port} {quorum}\n"
            f"sentinel down-after-milliseconds {topology.service_name} {down_after_ms}\n"
            f"sentinel failover-timeout {topology.service_name} {failover_timeout_ms}\n"
        )
        for _ in range(sentinels):
            topology.sentinels.append(topology._start(config_file=config, config=["--sentinel"]))
        _wait_for(lambda: all(_sentinel_sees(s, topology, replicas, sentinels) for s in topology.sentinels),
                  timeout, "the Sentinels did not discover each other and the replicas")
    except BaseException:
        topology.stop()
        raise
    return topology


def start_cluster(
    primaries: int = 3,
    replicas_per_primary: int = 1,
    *,
    node_timeout_ms: int = 2000,
    binary: ServerBinary | None = None,
    timeout: float = 30,
) -> ClusterTopology:
    """Start ``primaries × (1 + replicas_per_primary)`` nodes and join them into one Cluster.

    Slots are split evenly with ``CLUSTER ADDSLOTSRANGE``, nodes meet with ``CLUSTER MEET``, and
    replicas follow their primary with ``CLUSTER REPLICATE``. Returns once every node reports
    ``cluster_state:ok`` and every replica is in sync.
    """
    if primaries < 1 or replicas_per_primary < 0:
        raise ValueError("A Cluster needs at least 1 primary and 0 or more replicas per primary.")
    cluster = ClusterTopology(binary=binary, primaries=primaries)
    config = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
              "--databases", "1"]
    try:
        bus_ports = []
        for _ in range(primaries * (1 + replicas_per_primary)):
            # The bus port defaults to port + 10000, beyond 65535 for high free ports: choose one.
            bus_ports.append(free_port())
            cluster._start(config=[*config, "--cluster-port", str(bus_ports[-1])])
        clients = [client_for(node) for node in cluster.started]
        ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
        for index, client in enumerate(clients[:primaries]):
            first = index * CLUSTER_SLOTS // primaries
            last = (index + 1) * CLUSTER_SLOTS // primaries - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node, bus_port in zip(cluster.started[1:], bus_ports[1:]):
            clients[0].execute_command("CLUSTER", "MEET", *address(node), bus_port)
        _wait_for(lambda: all(_known_nodes(c) == len(clients) for c in clients), timeout,
                  "the Cluster nodes did not all meet")
        for index, client in enumerate(clients[primaries:]):
            client.execute_command("CLUSTER", "REPLICATE", ids[index % primaries])
        _wait_for(lambda: all(_cluster_ready(c) for c in clients), timeout,
                  "the Cluster did not reach cluster_state:ok with its replicas in sync")
        for client in clients:
            client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except redis.RedisError:  # a node still starting or reconfiguring: ask again
            pass
        time.sleep(0.05)
    raise ServerStartError(f"{what} within {timeout:.0f}s; retry, or give the machine fewer other jobs.")


def _replicas_in_sync(primary: RedisServer | None, replicas: list[RedisServer]) -> bool:
    assert primary is not None
    if not all(_in_sync(replica) for replica in replicas):
        return False
    with client_for(primary) as client:
        return int(client.info("replication")["connected_slaves"]) == len(replicas)


def _sentinel_sees(sentinel: RedisServer, topology: SentinelTopology, replicas: int, sentinels: int) -> bool:
    with client_for(sentinel) as client:
        name = topology.service_name
        return (len(client.execute_command("SENTINEL", "REPLICAS", name)) == replicas
                and len(client.execute_command("SENTINEL", "SENTINELS", name)) == sentinels - 1)


def _known_nodes(client: redis.Redis) -> int:
    return int(cluster_info(client)["cluster_known_nodes"])


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO of one node as a dict (redis-py returns text from a plain client)."""
    text = client.execute_command("CLUSTER", "INFO")
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


def _cluster_ready(client: redis.Redis) -> bool:
    if cluster_info(client)["cluster_state"] != "ok":
        return False
    info = client.info("replication")
    return info["role"] == "master" or (info.get("master_link_status") == "up"
                                        and not info.get("master_sync_in_progress"))



def _in_sync(replica: RedisServer) -> bool:
    with client_for(replica) as client:
        info = client.info("replication")
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
