"""redai_lab.patterns.locks: mutual exclusion across real processes, owner-only release, deadlines,
renewal, fencing, and a semaphore that never over-admits."""

from __future__ import annotations

import itertools
import multiprocessing
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from topologies import connect_to, node_url

from redai_lab.patterns.locks import (
    FencedStorage,
    Lock,
    LockError,
    LockNotOwnedError,
    LockTimeoutError,
    Semaphore,
    StaleTokenError,
    contend,
)

pytestmark = pytest.mark.cluster_too


def wait_until_gone(r, key: str) -> None:
    """Let a short TTL run out for real (bounded, so a bug fails instead of hanging)."""
    for _ in range(200):
        if not r.exists(key):
            return
        time.sleep(0.01)
    raise AssertionError(f"{key} did not expire")


def test_100_processes_critical_sections_never_overlap(r, redis_url) -> None:
    # forkserver: children fork from a clean server process (no threads copied), and
    # redai_lab.patterns.locks is imported once there rather than in each of the 100 children.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["redai_lab.patterns.locks"])
    url, cluster = node_url(redis_url)
    processes = [context.Process(target=contend, args=(url, "proc"), kwargs={"cluster": cluster}) for _ in range(100)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 100

    sections = sorted(tuple(map(int, entry.split())) for entry in r.lrange("proc:sections", 0, -1))
    assert len(sections) == 100
    # Sorted by start, each section ends before the next one starts: no two ever overlap.
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(sections))
    # Each holder got a larger fencing token than the one before it.
    assert [fence for _, _, fence in sections] == list(range(1, 101))
    assert r.get("proc:counter") == "100"  # no lost increment
    assert not r.exists("{lock:proc}")


def test_a_holder_whose_lock_expired_and_was_taken_can_neither_release_nor_extend(r) -> None:
    first = Lock(r, "job", ttl=0.05)
    assert first.acquire()
    wait_until_gone(r, first.key)
    second = Lock(r, "job", ttl=10)
    assert second.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError, match="ran out"):
        first.extend()
    with pytest.raises(LockNotOwnedError, match="ran out"):
        first.release()
    assert second.owned() and r.pttl(second.key) > 5000  # untouched
    second.release()


def test_an_expired_lock_nobody_took_is_not_owned_either(r) -> None:
    lock = Lock(r, "job", ttl=0.05)
    lock.acquire()
    wait_until_gone(r, lock.key)
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_blocking_acquire_gives_up_only_after_its_timeout(r) -> None:
    holder = Lock(r, "busy", ttl=10)
    holder.acquire()
    waiter = Lock(r, "busy", timeout=0.3)
    started = time.monotonic()
    assert waiter.acquire() is False
    assert 0.3 <= time.monotonic() - started < 10
    started = time.monotonic()
    with pytest.raises(LockTimeoutError, match="within 0.2s"), Lock(r, "busy", timeout=0.2):
        pass
    assert time.monotonic() - started >= 0.2
    holder.release()


def test_blocking_acquire_gets_the_lock_once_released(r) -> None:
    holder = Lock(r, "handoff", ttl=10)
    holder.acquire()
    threading.Timer(0.1, holder.release).start()
    with Lock(r, "handoff", timeout=5) as waiter:
        assert waiter.owned()


@pytest.mark.server_only  # counts one connection's round trips
def test_one_round_trip_per_attempt_release_and_extend(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    warm = Lock(client, "warm-up")  # the first call of each script may load it (NOSCRIPT)
    warm.acquire()
    warm.extend()
    warm.release()
    lock, other = Lock(client, "trips"), Lock(client, "trips")
    with round_trips.measure() as acquire:
        assert lock.acquire()
    with round_trips.measure() as attempt:
        assert not other.acquire(blocking=False)
    with round_trips.measure() as extend:
        lock.extend()
    with round_trips.measure() as release:
        lock.release()
    assert (acquire.count, attempt.count, extend.count, release.count) == (1, 1, 1, 1)


def test_each_acquisition_takes_a_new_128_bit_token(r) -> None:
    lock = Lock(r, "tokens")
    seen = set()
    for _ in range(20):
        lock.acquire()
        assert lock.token is not None and len(bytes.fromhex(lock.token)) == 16 and r.get(lock.key) == lock.token
        seen.add(lock.token)
        lock.release()
    assert len(seen) == 20


def test_the_lock_expires_and_the_fencing_counter_does_not(r) -> None:
    lock = Lock(r, "ttl", ttl=30)
    lock.acquire()
    assert 20_000 < r.pttl(lock.key) <= 30_000
    assert r.ttl(lock.fence_key) == -1  # a counter that expired would hand out old tokens again
    lock.release()


def test_auto_renewal_keeps_the_lock_past_its_ttl_and_stops_on_release(r) -> None:
    # ttl 0.6 s, renewed every 0.2 s: a renewal may be 0.4 s late on a starved machine.
    lock = Lock(r, "renewed", ttl=0.6, auto_renew=True)
    lock.acquire()
    time.sleep(2.0)  # over 3 ttls
    assert lock.owned()
    assert not Lock(r, "renewed").acquire(blocking=False)
    renewer = lock._renewer
    lock.release()
    assert renewer is not None and not renewer.is_alive()
    assert not r.exists(lock.key)


@pytest.mark.server_only  # a plain client in a subprocess
def test_a_process_holding_an_auto_renewed_lock_can_still_exit(redis_url) -> None:
    # The renewer is a daemon thread: a holder that forgets to release does not hang at exit
    # (its lock then expires after ttl).
    code = (
        "import sys, redis; from redai_lab.patterns.locks import Lock\n"
        "lock = Lock(redis.Redis.from_url(sys.argv[1]), 'forgotten', ttl=5, auto_renew=True)\n"
        "assert lock.acquire()\n"
    )
    finished = subprocess.run([sys.executable, "-c", code, redis_url], timeout=60, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


@pytest.mark.server_only  # a plain client with a tiny socket timeout
def test_auto_renewal_survives_a_failed_renewal(r, redis_url) -> None:
    # Writes paused longer than the client waits: one renewal times out (a RedisError), and the
    # next one, a third of the ttl later, must still come.
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))
    lock = Lock(client, "blip", ttl=1.5, auto_renew=True)
    lock.acquire()
    time.sleep(0.6)  # just after the first renewal (at 0.5 s)
    r.client_pause(600, all=False)  # the next renewal, at 1.0 s, times out
    time.sleep(3.0)  # had renewing stopped, the lock would be gone by 2.7 s at the latest
    assert lock.owned()
    lock.release()
    client.close()


def test_a_timeout_of_zero_tries_once(r) -> None:
    holder = Lock(r, "busy", ttl=10)
    holder.acquire()
    assert Lock(r, "busy", timeout=0).acquire() is False
    holder.release()
    assert Lock(r, "busy", timeout=0).acquire() is True


def test_a_ttl_of_one_millisecond_is_the_shortest(r) -> None:
    assert Lock(r, "short", ttl=0.001).ttl == 0.001
    with pytest.raises(ValueError, match="ttl"):
        Lock(r, "short", ttl=0.0009)


def test_fencing_storage_rejects_the_writer_whose_lock_expired(r) -> None:
    storage = FencedStorage(r, "report")
    paused = Lock(r, "report", ttl=0.05)
    paused.acquire()
    wait_until_gone(r, paused.key)  # the holder "pauses" (GC, swap, a stopped VM) past its TTL
    with Lock(r, "report") as current:
        assert current.fencing_token > paused.fencing_token
        storage.write("new", current.fencing_token)
    with pytest.raises(StaleTokenError, match=f"token {paused.fencing_token} refused"):
        storage.write("stale", paused.fencing_token)
    assert storage.read() == "new"


def test_fencing_storage_accepts_equal_and_newer_tokens(r) -> None:
    storage = FencedStorage(r, "s")
    for token in (3, 3, 5):
        storage.write(f"v{token}", token)
    with pytest.raises(StaleTokenError):
        storage.write("v4", 4)
    assert storage.read() == "v5"


def test_works_with_bytes_replies(redis_url) -> None:
    client = connect_to(redis_url, decode_responses=False)
    lock = Lock(client, "bytes")
    assert lock.acquire() and lock.owned() and lock.locked()
    lock.release()
    storage = FencedStorage(client, "bytes")
    storage.write("v", 1)
    assert storage.read() == "v"
    client.close()


def test_misuse_gets_one_clear_error(r) -> None:
    lock = Lock(r, "misuse")
    with pytest.raises(LockNotOwnedError, match="not acquired"):
        lock.release()
    lock.acquire()
    with pytest.raises(LockError, match="not reentrant"):
        lock.acquire()
    with pytest.raises(ValueError, match="ttl"):
        lock.extend(0)  # not a 1 ms lease that silently frees the lock
    assert r.pttl(lock.key) > 1000
    lock.release()
    for ttl in (0, float("inf")):
        with pytest.raises(ValueError, match="ttl"):
            Lock(r, "x", ttl=ttl)
    with pytest.raises(ValueError, match="timeout"):
        Lock(r, "x", timeout=-1)
    with pytest.raises(ValueError, match="limit"):
        Semaphore(r, "x", 0)


def test_a_semaphore_admits_exactly_its_limit_under_a_simultaneous_rush(redis_url) -> None:
    client = connect_to(redis_url, max_connections=60)
    start = threading.Barrier(50)

    def try_once(_: int) -> bool:
        semaphore = Semaphore(client, "rush", 3)
        start.wait()
        return semaphore.acquire(blocking=False)

    with ThreadPoolExecutor(max_workers=50) as pool:
        assert sum(pool.map(try_once, range(50))) == 3
    client.close()


def test_a_semaphore_never_has_more_holders_than_its_limit(redis_url) -> None:
    client = connect_to(redis_url, max_connections=60)
    inside, most, guard = 0, 0, threading.Lock()

    def work(_: int) -> None:
        nonlocal inside, most
        with Semaphore(client, "pool", 3, timeout=60):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.005)
            with guard:
                inside -= 1

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(work, range(120)))
    client.close()
    assert most <= 3


def test_an_expired_semaphore_holder_frees_its_slot_and_cannot_release(r) -> None:
    crashed = Semaphore(r, "slots", 1, ttl=0.05)
    crashed.acquire()
    time.sleep(0.1)  # holders expire by score; the key itself may linger until pruned
    taker = Semaphore(r, "slots", 1)
    assert taker.acquire(blocking=False)  # the expired holder was pruned in the same script
    with pytest.raises(LockNotOwnedError):
        crashed.release()
    with pytest.raises(LockNotOwnedError):
        crashed.extend()
    assert r.zrange(taker.key, 0, -1) == [taker.token]
    taker.release()


def test_an_expired_holder_is_pruned_while_another_keeps_the_set_alive(r) -> None:
    crashed, alive = Semaphore(r, "mixed", 2, ttl=0.05), Semaphore(r, "mixed", 2, ttl=60)
    crashed.acquire()
    alive.acquire()
    time.sleep(0.1)  # crashed's score is past; the set lives on with alive's expiry
    assert Semaphore(r, "mixed", 2).acquire(blocking=False)  # crashed's slot was pruned first
    assert alive.token in r.zrange(alive.key, 0, -1) and crashed.token not in r.zrange(alive.key, 0, -1)


def test_a_holders_expiry_is_the_servers_clock_plus_its_ttl(r) -> None:
    def server_ms() -> int:
        seconds, micros = r.time()
        return seconds * 1000 + micros // 1000

    holder = Semaphore(r, "clock", 1, ttl=30)
    before = server_ms()
    holder.acquire()
    after = server_ms()
    assert before + 30_000 <= r.zscore(holder.key, holder.token) <= after + 30_000


def test_semaphore_holders_all_have_a_ttl(r) -> None:
    holders = [Semaphore(r, "ttl", 3, ttl=ttl) for ttl in (5, 20, 10)]
    for holder in holders:
        holder.acquire()
    assert 10_000 < r.pttl(holders[0].key) <= 20_000  # the key lives as long as its last holder
    holders[1].extend(30)
    assert 20_000 < r.pttl(holders[0].key) <= 30_000
    for holder in holders:
        holder.release()
    assert not r.exists(holders[0].key)


@pytest.mark.server_only  # counts one connection's round trips
def test_semaphore_one_round_trip_per_attempt_and_release(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    warm = Semaphore(client, "warm", 1)
    warm.acquire()
    warm.release()
    semaphore = Semaphore(client, "trips", 1)
    with round_trips.measure() as acquire:
        semaphore.acquire()
    with round_trips.measure() as attempt:
        Semaphore(client, "trips", 1).acquire(blocking=False)
    with round_trips.measure() as release:
        semaphore.release()
    assert (acquire.count, attempt.count, release.count) == (1, 1, 1)


def test_release_and_extend_leave_another_owners_lock_untouched(r) -> None:
    # Deterministic, no expiry needed: the key now holds another owner's token.
    lock = Lock(r, "owned", ttl=60)
    lock.acquire()
    r.set(lock.key, "another owner's token", px=5000)
    assert lock.locked() and not lock.owned()
    with pytest.raises(LockNotOwnedError):
        lock.extend(600)
    assert r.get(lock.key) == "another owner's token" and r.pttl(lock.key) <= 5000
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert r.get(lock.key) == "another owner's token" and r.pttl(lock.key) <= 5000


def test_two_threads_cannot_release_or_extend_each_others_lock(redis_url) -> None:
    client = connect_to(redis_url)
    holder, intruder = Lock(client, "shared", ttl=60), Lock(client, "shared", ttl=60)
    assert holder.acquire()
    intruder.token = "guessed"  # an object that believes it holds the lock, in another thread
    errors: list[BaseException] = []

    def meddle() -> None:
        for call in (lambda: intruder.extend(0.5), intruder.release):
            try:
                call()
            except LockNotOwnedError as exc:
                errors.append(exc)

    thread = threading.Thread(target=meddle)
    thread.start()
    thread.join(30)
    assert len(errors) == 2 and holder.owned() and client.pttl(holder.key) > 50_000
    holder.release()
    client.close()


def test_a_semaphore_holder_cannot_release_or_extend_another_holders_slot(r) -> None:
    first, second = Semaphore(r, "slots", 2, ttl=60), Semaphore(r, "slots", 2, ttl=60)
    first.acquire()
    second.acquire()
    score = r.zscore(first.key, first.token)
    r.zrem(second.key, second.token)  # second's slot is gone (as if expired and pruned)
    with pytest.raises(LockNotOwnedError):
        second.extend(600)
    with pytest.raises(LockNotOwnedError):
        second.release()
    assert r.zrange(first.key, 0, -1, withscores=True) == [(first.token, score)]
    first.release()
