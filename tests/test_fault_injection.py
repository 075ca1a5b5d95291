"""The lab's fault-injection test: a killer runs CLIENT KILL on the workers' connections every
50-100 ms while real threads write through ``connect()`` and consume a ``ReliableQueue``.

What the lab promises, checked against the server's own count:
- INCRs, pipelines and MULTI/EXEC transactions: every acknowledged write applied, none applied
  twice (``acknowledged <= server <= acknowledged + outcome unknown``; a transaction all or nothing);
- the queue: every task done at least once, a task done twice only after an ack that was lost or
  late (counted), every consumer's ``work()`` returns, nothing left pending or held.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import redis

from redai_lab.lab.connection import OutcomeUnknownError, connect
from redai_lab.lab.faults import ConnectionKiller
from redai_lab.patterns.queues import ReliableQueue

VICTIM = "fault-victim"  # the client name of every connection the killer cuts
THREADS = 4
BOUND = 120  # seconds: a worker still running after this is stuck, and the test fails
KILL_ROUNDS = 20  # writers go on past their quota until the killer has cut this many times


def more_writes(done: int, quota: int, killer: ConnectionKiller) -> bool:
    return done < quota or killer.rounds < KILL_ROUNDS


@dataclass
class Tally:
    """One worker's writes: answered, raised OutcomeUnknownError, or failed before being sent."""

    acknowledged: int = 0
    unknown: int = 0
    not_sent: int = 0

    @property
    def attempted(self) -> int:
        return self.acknowledged + self.unknown + self.not_sent


def run_under_kills(url: str, work: Callable[[redis.Redis, ConnectionKiller], None]) -> ConnectionKiller:
    """``work(client, killer)`` in THREADS threads, each with a client of its own, under the killer."""
    clients = [connect(url, client_name=VICTIM) for _ in range(THREADS)]  # connected before the kills
    killer = ConnectionKiller(url, VICTIM, interval=(0.05, 0.1))
    errors: list[BaseException] = []

    def run(client: redis.Redis) -> None:
        try:
            work(client, killer)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    with killer:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + BOUND
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    for client in clients:
        client.close()
    assert not stuck, f"{stuck} workers still running after {BOUND} s"
    assert not errors, "".join(traceback.format_exception(errors[0]))
    print(f"\nkiller: {killer.rounds} rounds, {killer.kills} connections killed")
    assert killer.kills > 0
    return killer


def write(tally: Tally, count: int, send: Callable[[], object]) -> None:
    """``send`` a write; tally its ``count`` operations by what is known about them."""
    try:
        send()
        tally.acknowledged += count
    except OutcomeUnknownError:
        tally.unknown += count
    except (redis.ConnectionError, redis.TimeoutError):  # never sent: retries exhausted on connecting
        tally.not_sent += count


def test_20000_incrs_under_kills_none_lost_none_applied_twice(r: redis.Redis, redis_url: str) -> None:
    tallies: list[Tally] = []

    def incrs(client: redis.Redis, killer: ConnectionKiller) -> None:
        tallies.append(tally := Tally())
        while more_writes(tally.attempted, 20_000 // THREADS, killer):
            write(tally, 1, lambda: client.incr("incrs"))

    run_under_kills(redis_url, incrs)
    print(tallies)
    acknowledged, unknown = sum(t.acknowledged for t in tallies), sum(t.unknown for t in tallies)
    assert sum(t.attempted for t in tallies) >= 20_000
    assert acknowledged <= int(r.get("incrs")) <= acknowledged + unknown


def batches(
    key: str, total: int, tallies: list[Tally], *, transaction: bool
) -> Callable[[redis.Redis, ConnectionKiller], None]:
    """Work for ``run_under_kills``: ``total`` INCRs of ``key`` in pipelines of 10, tallied."""

    def run(client: redis.Redis, killer: ConnectionKiller) -> None:
        tallies.append(tally := Tally())
        while more_writes(tally.attempted, total // THREADS, killer):
            pipe = client.pipeline(transaction=transaction)
            for _ in range(10):
                pipe.incr(key)
            write(tally, 10, pipe.execute)

    return run


def test_pipelines_under_kills_none_lost_none_applied_twice(r: redis.Redis, redis_url: str) -> None:
    tallies: list[Tally] = []
    run_under_kills(redis_url, batches("pipelined", 20_000, tallies, transaction=False))
    print(tallies)
    acknowledged, unknown = sum(t.acknowledged for t in tallies), sum(t.unknown for t in tallies)
    assert sum(t.attempted for t in tallies) >= 20_000
    assert acknowledged <= int(r.get("pipelined")) <= acknowledged + unknown


def test_transactions_under_kills_all_or_nothing_never_twice(r: redis.Redis, redis_url: str) -> None:
    tallies: list[Tally] = []
    run_under_kills(redis_url, batches("transacted", 10_000, tallies, transaction=True))
    print(tallies)
    acknowledged, unknown = sum(t.acknowledged for t in tallies), sum(t.unknown for t in tallies)
    applied = int(r.get("transacted") or 0)
    assert acknowledged <= applied <= acknowledged + unknown
    assert (applied - acknowledged) % 10 == 0  # a transaction is applied whole or not at all


def test_a_queue_consumed_under_kills_loses_nothing_and_counts_its_duplicates(r: redis.Redis, redis_url: str) -> None:
    tasks = [f"task-{i:04d}" for i in range(5_000)]
    ReliableQueue(r, "chaos", consumer="producer").push(*tasks)
    done: Counter[str] = Counter()
    lock = threading.Lock()
    consumers: list[ReliableQueue] = []

    def consume(client: redis.Redis, killer: ConnectionKiller) -> None:
        q = ReliableQueue(client, "chaos", heartbeat_ttl=5)
        with lock:
            consumers.append(q)

        def handle(task: str) -> None:
            with lock:
                done[task] += 1

        # Past the last task, idle consumers wait (their blocking claims cut) for the killer's rounds.
        q.work(handle, block=0.2, until=lambda: killer.rounds >= KILL_ROUNDS and not any(q.depth().values()))

    run_under_kills(redis_url, consume)
    lost_acks = sum(q.stats.lost_acks for q in consumers)
    late_acks = sum(q.stats.late_acks for q in consumers)
    duplicates = sum(done.values()) - len(done)
    print(f"duplicates: {duplicates}; stats: {[q.stats for q in consumers]}")
    assert set(done) == set(tasks)  # every task done at least once
    assert duplicates <= lost_acks + late_acks
    assert sum(q.stats.connection_errors for q in consumers) > 0  # the consumers did lose connections
    assert r.keys("chaos:p*") == []  # nothing pending, nothing held

