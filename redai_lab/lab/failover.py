"""A Sentinel failover under a steady write load, measured: downtime and acknowledged writes lost.

``start_partitionable_topology()`` starts a primary, its replicas and Sentinels where every link
between them passes through a ``PartitionProxy`` (the nodes announce the proxies' addresses),
while a client reaches every node directly: so the primary can be cut off from its replicas and
the Sentinels while a client on its side keeps writing, the classic partition.

``measure_failover(topology, fault=...)`` writes ``RPUSH`` of unique, numbered ids in a loop to
the primary the Sentinels name (asked before every write, like a client that follows
``+switch-master``), injects the fault (``"kill"``: SIGKILL of the primary; ``"partition"``:
its proxy goes silent), keeps writing until the new primary acknowledges writes, then makes the
old primary a replica of the new one (restarted, or healed and ``REPLICAOF``), so the topology
is whole again for the next run. The new primary's list says exactly which acknowledged ids
survived. ``guard`` is what the client or the primary does to limit the loss: ``"WAIT 1"``
(a write counts as acknowledged only when a replica confirmed it) or
``"min-replicas-to-write 1"`` (the primary refuses writes once no replica has acknowledged the
stream for ``min-replicas-max-lag`` = 1 s).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Literal

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .faults import PartitionProxy
from .server import RedisServer
from .topology import (
    SentinelTopology,
    _replicas_in_sync,
    _sentinel_sees,
    _wait_for,
    address,
    client_for,
)

LOG = "failover:log"  # the list the measured writes go to
Fault = Literal["kill", "partition"]
Guard = Literal["none", "WAIT 1", "min-replicas-to-write 1"]
GUARDS: tuple[Guard, ...] = ("none", "WAIT 1", "min-replicas-to-write 1")


@dataclass
class PartitionableTopology(SentinelTopology):
    """A Sentinel topology whose nodes and Sentinels talk through one ``PartitionProxy`` per data node."""

    proxies: dict[tuple[str, int], PartitionProxy] = field(default_factory=dict)  # node address -> proxy

    def proxy_of(self, node: RedisServer) -> PartitionProxy:
        """The proxy in front of a data node."""
        return self.proxies[address(node)]

    def node_behind(self, announced: tuple[str, int]) -> RedisServer:
        """The data node whose proxy is at ``announced`` (what Sentinels and replicas know it by)."""
        return next(n for n in self.data_nodes() if self.proxy_of(n).port == announced[1])

    def stop(self) -> None:
        super().stop()
        for proxy in self.proxies.values():
            proxy.close()

    def __enter__(self) -> PartitionableTopology:
        return self


def start_partitionable_topology(
    replicas: int = 2,
    sentinels: int = 3,
    *,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 1000,
    timeout: float = 30,
) -> PartitionableTopology:
    """Start ``1 + replicas`` data nodes, each behind a proxy, and ``sentinels`` Sentinels that
    watch the primary through its proxy; return once they all agree (as ``start_sentinel_topology``).

    ``failover_timeout_ms`` is short because a Sentinel that took part in a failover of a primary
    starts no other one for twice that long, and the measurements fail over every few seconds.
    """
    if replicas < 1 or sentinels < 1:
        raise ValueError("A partitionable topology needs at least 1 replica and 1 Sentinel.")
    topology = PartitionableTopology(down_after_ms=down_after_ms)
    try:
        nodes = [topology._start() for _ in range(1 + replicas)]
        for node in nodes:
            proxy = topology.proxies[address(node)] = PartitionProxy(address(node))
            with client_for(node) as client:  # a replica tells its primary (and Sentinels) its proxy
                client.config_set("replica-announce-ip", "127.0.0.1")
                client.config_set("replica-announce-port", proxy.port)
                client.config_set("repl-diskless-sync-delay", 0)  # a rejoining replica syncs at once
        topology.primary, topology.replicas = nodes[0], nodes[1:]
        primary_port = topology.proxy_of(topology.primary).port
        for replica in topology.replicas:
            with client_for(replica) as client:
                client.replicaof("127.0.0.1", primary_port)
        _wait_for(lambda: _replicas_in_sync(topology.primary, topology.replicas), timeout,
                  "the replicas did not finish their first sync")
        name = topology.service_name
        config = (f"sentinel monitor {name} 127.0.0.1 {primary_port} {sentinels // 2 + 1}\n"
                  f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                  f"sentinel failover-timeout {name} {failover_timeout_ms}\n")
        for _ in range(sentinels):
            topology.sentinels.append(topology._start(config_file=config, config=["--sentinel"]))
        _wait_for(lambda: all(_sentinel_sees(s, topology, replicas, sentinels) for s in topology.sentinels),
                  timeout, "the Sentinels did not discover each other and the replicas")
    except BaseException:
        topology.stop()
        raise
    return topology


@dataclass
class FailoverRun:
    """One fault under load: what the client saw, and what the new primary kept."""

    fault: Fault
    guard: Guard
    acknowledged: int  # writes the client saw acknowledged (with WAIT 1: confirmed by a replica)
    unconfirmed: int  # writes that WAIT 1 did not confirm in time (never reported as done)
    refused: int  # writes the primary refused (NOREPLICAS: min-replicas-to-write)
    lost: int  # acknowledged writes the new primary does not have
    downtime: float  # seconds from the fault until the new primary acknowledged a write
    dropped_by_old_primary: int  # writes the old primary held but the new one did not, discarded on rejoin
    # (seconds since the fault, outcome): "kept", "lost" (acknowledged, then lost), "unconfirmed",
    # "refused" or "failed" (no reply)
    timeline: list[tuple[float, str]] = field(default_factory=list)


def measure_failover(
    topology: PartitionableTopology,
    *,
    fault: Fault = "kill",
    guard: Guard = "none",
    before: float = 0.3,
    after: float = 0.2,
    wait_timeout_ms: int = 50,
    timeout: float = 30,
) -> FailoverRun:
    """Write for ``before`` s, inject ``fault``, and stop ``after`` s after the new primary acknowledged a write."""
    if fault not in ("kill", "partition") or guard not in GUARDS:
        raise ValueError(f"fault is 'kill' or 'partition' and guard one of {GUARDS}, got {fault!r}, {guard!r}.")
    assert topology.primary is not None
    sentinel = redis.Sentinel(topology.sentinel_addresses(), socket_timeout=0.5)
    old_primary = topology.primary
    min_replicas = 1 if guard == "min-replicas-to-write 1" else 0
    for node in topology.data_nodes():
        with client_for(node) as admin:
            admin.config_set("min-replicas-to-write", min_replicas)
            admin.config_set("min-replicas-max-lag", 1)
    with client_for(old_primary) as admin:
        admin.delete(LOG)
        victim = int(admin.info("server")["process_id"])
    attempts: list[tuple[float, str, int]] = []  # (monotonic time, outcome, id)
    current, client = old_primary, _writer(old_primary)
    start, faulted_at, resumed_at = time.monotonic(), 0.0, 0.0
    while not resumed_at or time.monotonic() - resumed_at < after:
        now = time.monotonic()
        if not faulted_at and now - start >= before:
            if fault == "kill":
                os.kill(victim, signal.SIGKILL)  # between two writes: none is in flight
            else:
                topology.proxy_of(old_primary).partition()
            faulted_at = now
        if faulted_at and now - faulted_at > timeout:
            raise TimeoutError(f"No new primary acknowledged a write within {timeout:.0f}s of the {fault}: ask a "
                               f"Sentinel (SENTINEL MASTERS) why, or give the machine fewer other jobs.")
        named = _primary_named_by(topology, sentinel)
        if named is not None and named is not current:  # the Sentinels switched the primary: follow them
            client.close()
            current, client = named, _writer(named)
        write_id = len(attempts)
        outcome = _write(client, write_id, guard, wait_timeout_ms)
        attempts.append((time.monotonic(), outcome, write_id))
        if outcome == "failed":
            time.sleep(0.01)  # the failover takes a second or more: do not spin
        elif outcome == "acknowledged" and current is not old_primary and not resumed_at:
            resumed_at = attempts[-1][0]
    client.close()
    for connection in sentinel.sentinels:
        connection.close()
    new_primary = current
    with client_for(new_primary) as admin:
        kept = {int(i) for i in admin.lrange(LOG, 0, -1)}
    dropped = 0
    if fault == "partition":
        with client_for(old_primary) as admin:
            dropped = len({int(i) for i in admin.lrange(LOG, 0, -1)} - kept)
        topology.proxy_of(old_primary).heal()
    _rejoin_as_replica(topology, old_primary, new_primary, restart=fault == "kill")
    timeline = [(at - faulted_at, "kept" if i in kept else "lost") if outcome == "acknowledged"
                else (at - faulted_at, outcome) for at, outcome, i in attempts]
    return FailoverRun(
        fault=fault,
        guard=guard,
        acknowledged=sum(1 for _, outcome, _ in attempts if outcome == "acknowledged"),
        unconfirmed=sum(1 for _, outcome, _ in attempts if outcome == "unconfirmed"),
        refused=sum(1 for _, outcome, _ in attempts if outcome == "refused"),
        lost=sum(1 for _, outcome in timeline if outcome == "lost"),
        downtime=resumed_at - faulted_at,
        dropped_by_old_primary=dropped,
        timeline=timeline,
    )


def _writer(node: RedisServer) -> redis.Redis:
    # No retries: each attempt is one RPUSH, so the count of acknowledged writes stays exact.
    return client_for(node, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def _primary_named_by(topology: PartitionableTopology, sentinel: redis.Sentinel) -> RedisServer | None:
    """The data node a Sentinel that sees it up names as the primary; None while none does."""
    try:  # redis-py skips a Sentinel that thinks the primary is down, or knows too few others
        return topology.node_behind(sentinel.discover_master(topology.service_name))
    except redis.sentinel.MasterNotFoundError:
        return None


def _write(client: redis.Redis, write_id: int, guard: Guard, wait_timeout_ms: int) -> str:
    """One write; its outcome as the client sees it."""
    try:
        client.rpush(LOG, write_id)
        if guard == "WAIT 1" and client.wait(1, wait_timeout_ms) < 1:
            return "unconfirmed"
    except redis.ResponseError as error:
        if str(error).startswith("NOREPLICAS"):
            return "refused"
        if isinstance(error, redis.ReadOnlyError):  # a primary turned replica: no write
            return "failed"
        raise
    except (redis.ConnectionError, redis.TimeoutError):
        return "failed"
    return "acknowledged"


def _rejoin_as_replica(topology: PartitionableTopology, node: RedisServer, primary: RedisServer, *,
                       restart: bool) -> None:
    """Make the old primary a replica of the new one, through the new one's proxy.

    What an operator (or, a few seconds later, the Sentinels) does once it is back: its own data
    is replaced by a full copy of the new primary's, so whatever it accepted alone is gone.
    """
    primary_port = topology.proxy_of(primary).port
    if restart:  # killed: start it again on its port, behind the same proxy
        node.stop()
        restarted = topology._start(port=address(node)[1], config=[
            "--replicaof", "127.0.0.1", str(primary_port),
            "--replica-announce-ip", "127.0.0.1", "--replica-announce-port", str(topology.proxy_of(node).port),
            "--repl-diskless-sync-delay", "0"])
        topology.started.remove(node)
        node = restarted
    else:
        with client_for(node) as client:
            client.replicaof("127.0.0.1", primary_port)
    nodes = [n for n in topology.data_nodes() if address(n) != address(node)] + [node]
    _wait_for(lambda: _settle(topology, nodes), 30, "the old primary did not finish its sync as a replica")


def _settle(topology: PartitionableTopology, nodes: list[RedisServer]) -> bool:
    """True once every Sentinel names one primary and the other nodes are its replicas, in sync;
    the topology then says so. On a loaded machine a primary can miss a second of pings and the
    Sentinels fail over again: the next run must start from the primary they chose."""
    named = set()
    for sentinel in topology.sentinels:
        with client_for(sentinel) as client:
            named.add(tuple(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", topology.service_name)))
    if len(named) != 1:
        return False
    host, port = named.pop()
    primary = topology.node_behind((host, int(port)))
    replicas = [n for n in nodes if n is not primary]
    if not _replicas_in_sync(primary, replicas):
        return False
    topology.primary, topology.replicas = primary, replicas
    return True
