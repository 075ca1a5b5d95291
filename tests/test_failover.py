"""The partition proxy and the failover measurement, on real processes: a real kill -9, a real
(black-hole) partition, exact counts of acknowledged writes lost, nothing left behind."""

from __future__ import annotations

import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from test_topology import _child_servers

from redai_lab.lab.failover import LOG, _settle, measure_failover, start_partitionable_topology
from redai_lab.lab.faults import PartitionProxy
from redai_lab.lab.server import start_local
from redai_lab.lab.topology import _wait_for, address, client_for


def _connect(proxy: PartitionProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)


def test_a_partition_drops_traffic_silently_and_heal_makes_peers_reconnect() -> None:
    with start_local(modules=[]) as server, PartitionProxy(address(server)) as proxy:
        direct, peer = client_for(server), _connect(proxy)
        peer.sendall(b"INCR exam:views\r\n")
        assert peer.recv(100) == b":1\r\n"
        proxy.partition()
        peer.sendall(b"INCR exam:views\r\n")
        with pytest.raises(socket.timeout):  # no reset, no reply: a black hole
            peer.recv(100)
        assert direct.get("exam:views") == "1"  # the command was lost in the partition, not run
        late = _connect(proxy)  # a new connection is accepted, then hangs
        late.sendall(b"PING\r\n")
        with pytest.raises(socket.timeout):
            late.recv(100)
        assert direct.incr("exam:views") == 2  # clients that reach the server directly go on
        proxy.heal()
        assert peer.recv(100) == b"" and late.recv(100) == b""  # both closed: they must reconnect
        again = _connect(proxy)
        again.sendall(b"INCR exam:views\r\n")
        assert again.recv(100) == b":3\r\n"  # a new connection forwards again
        for sock in (peer, late, again):
            sock.close()


@pytest.fixture(scope="module")
def topology():
    before = _child_servers()
    with start_partitionable_topology(replicas=2, sentinels=3) as topology:
        assert len(_child_servers() - before) == 6
        yield topology
    assert _child_servers() - before == set()  # every node stopped, killed ones reaped


def _whole_again(topology, old_primary_port: int) -> None:
    """The old primary is a replica of the new one, holding exactly the new primary's list."""
    primary = client_for(topology.primary)
    assert primary.info("replication")["role"] == "master"
    assert int(primary.info("replication")["connected_slaves"]) == 2
    assert primary.wait(2, 5000) == 2
    old = next(n for n in topology.replicas if address(n)[1] == old_primary_port)
    assert client_for(old).info("replication")["role"] == "slave"
    assert client_for(old).lrange(LOG, 0, -1) == primary.lrange(LOG, 0, -1)


def _accounted_exactly(topology, run) -> set[int]:
    """Each write's outcome agrees with the new primary's list (write ids are timeline positions)."""
    kept = {int(i) for i in client_for(topology.primary).lrange(LOG, 0, -1)}
    outcomes = {write_id: outcome for write_id, (_, outcome) in enumerate(run.timeline)}
    assert {i for i, o in outcomes.items() if o == "kept"} <= kept
    assert not {i for i, o in outcomes.items() if o == "lost"} & kept
    assert all(outcomes[i] in ("kept", "failed", "unconfirmed") for i in kept)  # nothing refused is there
    assert run.acknowledged == sum(o in ("kept", "lost") for o in outcomes.values())
    assert run.lost == sum(o == "lost" for o in outcomes.values())
    return kept


def test_a_killed_primary_loses_no_acknowledged_write(topology) -> None:
    old_port = address(topology.primary)[1]
    run = measure_failover(topology, fault="kill")
    assert address(topology.primary)[1] != old_port
    assert run.acknowledged > 0 and run.lost == 0 and run.dropped_by_old_primary == 0
    assert run.unconfirmed == run.refused == 0 and run.downtime > 0
    _accounted_exactly(topology, run)
    _whole_again(topology, old_port)


def test_a_partitioned_primary_loses_what_it_accepted_alone(topology) -> None:
    old_port = address(topology.primary)[1]
    run = measure_failover(topology, fault="partition")
    # What the isolated primary acknowledged and its rejoin dropped is lost (and possibly more:
    # a write acknowledged by a node that lost it in a second failover).
    assert run.dropped_by_old_primary > 0 and run.lost >= run.dropped_by_old_primary
    assert any(at > 0 for at, outcome in run.timeline if outcome == "lost")
    _accounted_exactly(topology, run)
    _whole_again(topology, old_port)


def test_wait_1_confirms_no_write_the_partition_loses(topology) -> None:
    old_port = address(topology.primary)[1]
    run = measure_failover(topology, fault="partition", guard="WAIT 1")
    assert run.lost == 0 and run.unconfirmed > 0 and run.dropped_by_old_primary > 0
    _accounted_exactly(topology, run)
    _whole_again(topology, old_port)


def test_min_replicas_to_write_makes_the_isolated_primary_refuse(topology) -> None:
    old_port = address(topology.primary)[1]
    with topology.down_after(5000):  # the refusals start within ~3 s: fail over after they did
        run = measure_failover(topology, fault="partition", guard="min-replicas-to-write 1")
    assert run.refused > 0 and run.lost >= run.dropped_by_old_primary
    first_refusal = min(t for t, outcome in run.timeline if outcome == "refused")
    assert all(t < first_refusal for t, outcome in run.timeline if outcome == "lost")  # the window closed
    assert run.downtime > 5
    _accounted_exactly(topology, run)
    _whole_again(topology, old_port)


def test_a_second_failover_leaves_the_topology_following_the_sentinels(topology) -> None:
    # What a loaded machine can do after a run: the Sentinels fail over again on their own.
    before, nodes = topology.primary, topology.data_nodes()
    with client_for(topology.sentinels[0]) as sentinel:  # INPROG while the last run's failover ends: ask again
        _wait_for(lambda: bool(sentinel.execute_command("SENTINEL", "FAILOVER", topology.service_name)), 30,
                  "no Sentinel failover could start")
        _wait_for(lambda: int(sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", topology.service_name)[1])
                  != topology.proxy_of(before).port, 30, "no failover")
    _wait_for(lambda: _settle(topology, nodes), 30, "the nodes did not settle")
    assert topology.primary is not before and before in topology.replicas and len(topology.replicas) == 2
    assert client_for(topology.primary).info("replication")["role"] == "master"
    run = measure_failover(topology, fault="kill")  # the next run starts from the new primary
    assert run.lost == 0 and run.acknowledged > 0


def test_down_after_holds_inside_the_block_only(topology) -> None:
    def down_after_ms() -> set[int]:
        seen = set()
        for sentinel in topology.sentinels:
            with client_for(sentinel) as client:
                seen.add(client.sentinel_master(topology.service_name)["down-after-milliseconds"])
        return seen

    with topology.down_after(5000):
        assert down_after_ms() == {5000}
    assert down_after_ms() == {topology.down_after_ms} == {1000}


def test_bad_arguments_are_one_line_errors(topology) -> None:
    with pytest.raises(ValueError, match="fault is 'kill' or 'partition'"):
        measure_failover(topology, fault="flood")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 replica"):
        start_partitionable_topology(replicas=0)


def test_stop_closes_the_proxies() -> None:
    with start_partitionable_topology(replicas=1, sentinels=1) as topology:
        ports = [proxy.port for proxy in topology.proxies.values()]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=ports[0], socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
