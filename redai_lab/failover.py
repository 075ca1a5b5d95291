"""A Sentinel failover under a steady write load, measured: downtime and acknowledged writes lost.

``measure_failover(topology)`` writes ``INCR`` in a loop through a Sentinel-aware client, kills
the primary with SIGKILL, keeps writing until a replica has been promoted and writes succeed
again, then restarts the old primary as a replica of the new one (the topology is whole again
for the next run). Every ``INCR`` reply is the counter's new value, so the writes a client saw
acknowledged are exact; the first value the new primary returns says how many of them it has.
With ``wait_replicas=1`` every write is followed by ``WAIT 1``, and counts as acknowledged only
when a replica confirmed it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import redis
from redis.retry import Retry
from redis.backoff import NoBackoff

from .topology import SentinelTopology, address, client_for, restart_as_replica

COUNTER = "failover:counter"


@dataclass
class FailoverRun:
    """One kill of the primary under load."""

    wait_replicas: int  # replicas each write waited for (WAIT n); 0: plain writes
    acknowledged: int  # writes acknowledged before the kill took effect (with WAIT: confirmed)
    lost: int  # acknowledged writes the new primary does not have
    downtime: float  # seconds from the kill until a write succeeded on the new primary
    timeline: list[tuple[float, bool]] = field(default_factory=list)  # (s since the kill, write ok)


def measure_failover(
    topology: SentinelTopology,
    *,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 100,
    before: float = 0.5,
    after: float = 0.3,
    timeout: float = 30,
) -> FailoverRun:
    """Kill the primary after ``before`` s of writes; stop ``after`` s after writes resume."""
    assert topology.primary is not None
    sentinel = redis.Sentinel(topology.sentinel_addresses(), socket_timeout=0.5)
    # No retries: each attempt is one INCR, so the count of acknowledged writes stays exact.
    client = sentinel.master_for(topology.service_name, socket_timeout=0.5, socket_connect_timeout=0.5,
                                 retry=Retry(NoBackoff(), 0))
    client.delete(COUNTER)
    old_primary = topology.primary
    with client_for(old_primary) as admin:
        victim = int(admin.info("server")["process_id"])
    acknowledged: list[int] = []
    attempts: list[tuple[float, bool]] = []  # (monotonic time, succeeded)
    start, killed_at, resumed_at, first_after = time.monotonic(), 0.0, 0.0, 0
    while not resumed_at or time.monotonic() - resumed_at < after:
        now = time.monotonic()
        if not killed_at and now - start >= before:
            os.kill(victim, signal.SIGKILL)  # between two writes: none is in flight
            killed_at = now
        if killed_at and now - killed_at > timeout:
            raise TimeoutError(f"no write succeeded within {timeout:.0f}s of killing the primary")
        try:
            value = int(client.incr(COUNTER))
            confirmed = not wait_replicas or client.wait(wait_replicas, wait_timeout_ms) >= wait_replicas
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            attempts.append((time.monotonic(), False))
            time.sleep(0.01)  # the failover takes a second or more: do not spin
            continue
        attempts.append((time.monotonic(), True))
        if not killed_at:  # the old primary's process is alive: this write reached it
            if confirmed:
                acknowledged.append(value)
        elif not resumed_at:  # the first write after the kill: the new primary answers
            resumed_at, first_after = attempts[-1][0], value
    client.close()
    new_primary = sentinel.discover_master(topology.service_name)
    restart_as_replica(topology, old_primary, new_primary)
    kept = first_after - 1  # the new primary's counter before its first write
    return FailoverRun(
        wait_replicas=wait_replicas,
        acknowledged=len(acknowledged),
        lost=sum(1 for value in acknowledged if value > kept),
        downtime=resumed_at - killed_at,
        timeline=[(at - killed_at, ok) for at, ok in attempts],
    )
