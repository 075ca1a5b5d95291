"""Sentinel and Cluster topologies on loopback: real processes, a real kill -9, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from redis.cluster import RedisCluster

from redai_lab.errors import ServerStartError
from redai_lab.lab.topology import (
    CLUSTER_SLOTS,
    address,
    client_for,
    cluster_info,
    start_cluster,
    start_sentinel_topology,
)

CLI = [sys.executable, "-m", "redai_lab.cli"]


def _child_servers() -> set[int]:
    """Live server processes whose parent is this test process (the lab starts every node itself)."""
    children = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                state, parent = stat.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv0 = cmdline.read().split(b"\0")[0]
        except OSError:  # gone meanwhile
            continue
        if int(parent) == os.getpid() and state != "Z" and b"server" in argv0:
            children.add(int(entry))
    return children


def _pid(client: redis.Redis) -> int:
    return int(client.info("server")["process_id"])


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


def test_sentinels_promote_a_replica_when_the_primary_is_killed() -> None:
    before = _child_servers()
    with start_sentinel_topology(replicas=2, sentinels=3) as topology:
        assert topology.primary is not None
        nodes = topology.data_nodes() + topology.sentinels
        assert len(_child_servers() - before) == 6
        sentinel = redis.Sentinel(topology.sentinel_addresses(), socket_timeout=1)
        assert sentinel.discover_master(topology.service_name) == address(topology.primary)
        assert sorted(sentinel.discover_slaves(topology.service_name)) == sorted(map(address, topology.replicas))

        primary = sentinel.master_for(topology.service_name, decode_responses=True, socket_timeout=1)
        primary.set("exam:1", "algebra")
        assert primary.wait(2, 5000) == 2  # both replicas acknowledged the write
        for replica in topology.replicas:
            assert client_for(replica).get("exam:1") == "algebra"

        os.kill(_pid(client_for(topology.primary)), signal.SIGKILL)
        new = _wait(lambda: (found := sentinel.discover_master(topology.service_name)) != address(topology.primary)
                    and found, 30, "no Sentinel promoted a replica")
        assert new in map(address, topology.replicas)
        promoted = next(r for r in topology.replicas if address(r) == new)
        assert client_for(promoted).info("replication")["role"] == "master"
        assert client_for(promoted).get("exam:1") == "algebra"  # the acknowledged write survived
        primary.set("exam:2", "geometry")  # the Sentinel-aware client found the new primary
        other = next(r for r in topology.replicas if r is not promoted)
        _wait(lambda: client_for(other).info("replication").get("master_port") == new[1], 30,
              "the other replica did not follow the new primary")
    assert _child_servers() - before == set()  # every node stopped, the killed one reaped
    assert all(server._stop is None for server in nodes)


def test_a_cluster_splits_every_slot_over_its_primaries_and_each_has_a_replica() -> None:
    before = _child_servers()
    with start_cluster(primaries=3, replicas_per_primary=1) as cluster:
        assert len(_child_servers() - before) == 6
        node = client_for(cluster.nodes[0])
        info = cluster_info(node)
        assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == CLUSTER_SLOTS
        # CLUSTER NODES: "<id> <ip:port@bus> <flags> <primary id or -> ...", one line per node
        lines = [line.split() for line in node.execute_command("CLUSTER", "NODES").splitlines()]
        primaries = {fields[0] for fields in lines if fields[2].endswith("master")}
        replicas_of = sorted(fields[3] for fields in lines if fields[2].endswith("slave"))
        assert len(primaries) == 3 and sorted(primaries) == replicas_of  # one replica per primary

        client: RedisCluster = cluster.client()
        for number in range(300):
            client.set(f"question:{number}", number)
        counts = [client_for(n).dbsize() for n in cluster.nodes[:3]]
        assert sum(counts) == 300 and all(counts)  # keys spread over all three primaries
        with pytest.raises(redis.ResponseError, match="same slot"):  # the CROSSSLOT error
            node.execute_command("MSET", "{exam:1}:a", 1, "{exam:2}:a", 2)
        client.mset_nonatomic({"{exam:1}:a": 1, "{exam:1}:b": 2})  # one hash tag, one slot
        assert client.keyslot("{exam:1}:a") == client.keyslot("{exam:1}:b")
        client.close()
    assert _child_servers() - before == set()


def test_a_topology_that_does_not_form_in_time_is_stopped_whole() -> None:
    before = _child_servers()
    with pytest.raises(ServerStartError, match="did not"):
        start_cluster(primaries=2, replicas_per_primary=0, timeout=0)
    with pytest.raises(ServerStartError, match="did not"):
        start_sentinel_topology(replicas=1, sentinels=1, timeout=0)
    assert _child_servers() - before == set()


@pytest.mark.parametrize("command", [["sentinel", "--replicas", "1", "--sentinels", "1"],
                                     ["cluster", "--primaries", "2", "--replicas", "0"]])
def test_cli_runs_a_topology_until_stopped(command) -> None:
    process = subprocess.Popen(CLI + command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    urls, deadline = [], time.monotonic() + 60
    for line in process.stdout:
        if line.startswith(("primary ", "replica ", "sentinel ")):
            urls.append(line.split()[1])
        if line.startswith("Ctrl-C") or time.monotonic() > deadline:
            break
    pids = [_pid(redis.Redis.from_url(url)) for url in urls]
    assert len(pids) == {"sentinel": 3, "cluster": 2}[command[0]]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_sizes_are_one_line_errors() -> None:
    result = subprocess.run(CLI + ["cluster", "--primaries", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "from 1 to 9" in result.stderr
    with pytest.raises(ValueError, match="at least 1 primary"):
        start_cluster(primaries=0)
