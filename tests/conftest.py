"""Fixtures for the unit and concurrency tests: a clean database on the session's server
(``lab_server`` itself comes from the repository's root conftest).

A test module marked ``pytest.mark.cluster_too`` runs each of its tests twice: on the server
(``[server]``) and on one local 6-node Cluster started for the whole session (``[cluster]``).
Its tests get their clients from ``r`` and ``connect_to(redis_url, ...)``, which give a
``redis.RedisCluster`` on the Cluster; ``pytest.mark.server_only`` keeps one test on the server
(it counts round trips of a single connection, or puts a proxy in front of one server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from topologies import CLUSTER_SCHEME, connect_to

from redai_lab.lab.lesson import Lesson, start_lesson
from redai_lab.lab.roundtrips import RoundTripCounter
from redai_lab.lab.server import RedisServer
from redai_lab.lab.topology import ClusterTopology, start_cluster

_cluster: ClusterTopology | None = None
_client: redis.RedisCluster | None = None


@pytest.fixture
def redis_docs(lab_server: RedisServer) -> None:
    """Skip on Valkey: the handbook's version table holds Redis's versions, and Valkey's COMMAND
    DOCS give Valkey's own (HEXPIRE "since 9.0.0") and mark fewer commands deprecated."""
    if lab_server.product.startswith("Valkey"):
        pytest.skip("Valkey's COMMAND DOCS give Valkey versions, not Redis's")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster_too: run the module's tests on the server and on a local Cluster")
    config.addinivalue_line("markers", "server_only: keep this test of a cluster_too module on the server")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if ("topology" in metafunc.fixturenames and definition.get_closest_marker("cluster_too")
            and not definition.get_closest_marker("server_only")):
        metafunc.parametrize("topology", ["server", "cluster"], indirect=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _cluster is not None:  # test_cluster_fixture checks that these ports are free afterwards
        ports = " ".join(url.rsplit(":", 1)[1].split("/")[0] for url in (n.url for n in _cluster.nodes))
        terminalreporter.write_line(f"local Cluster ports: {ports}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _client is not None:
        _client.close()
    if _cluster is not None:
        _cluster.stop()


def lab_cluster() -> ClusterTopology:
    """The session's Cluster (3 primaries, 3 replicas), started by the first test that needs it."""
    global _cluster
    if _cluster is None:
        _cluster = start_cluster()
    return _cluster


def cluster_url() -> str:
    """The URL a test hands to ``connect_to`` (or a subprocess) for the session's Cluster."""
    return CLUSTER_SCHEME + lab_cluster().nodes[0].url.removeprefix("redis://")


def _cluster_client() -> redis.RedisCluster:
    """One client of the session's Cluster for every test (its slot map found once)."""
    global _client
    if _client is None:
        _client = connect_to(cluster_url())
    return _client


def _empty_cluster() -> None:
    _cluster_client().flushall(target_nodes=redis.RedisCluster.PRIMARIES)  # the tests' own Cluster


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``"server"``, or ``"cluster"`` in a ``cluster_too`` module's second run of a test."""
    return getattr(request, "param", "server")


@pytest.fixture
def lesson(lab_server: RedisServer) -> Iterator[Lesson]:
    """The tests' database (the server's last one), empty before and after each test."""
    lesson = start_lesson("tests", server=lab_server)
    yield lesson
    lesson.finish()
    lesson.client.close()


@pytest.fixture
def r(topology: str, request: pytest.FixtureRequest) -> Iterator[redis.Redis | redis.RedisCluster]:
    """A client (decode_responses=True) on the tests' empty database, or on the empty Cluster."""
    if topology == "server":
        yield request.getfixturevalue("lesson").client
        return
    _empty_cluster()
    yield _cluster_client()
    _empty_cluster()


@pytest.fixture
def redis_url(topology: str, r: redis.Redis | redis.RedisCluster, request: pytest.FixtureRequest) -> str:
    """The URL of the tests' empty database (or Cluster), for ``connect_to``, threads and subprocesses."""
    return request.getfixturevalue("lesson").url if topology == "server" else cluster_url()


@pytest.fixture
def round_trips() -> RoundTripCounter:
    """A counter of round trips; ``round_trips.client(redis_url)`` makes a counted client."""
    return RoundTripCounter()
