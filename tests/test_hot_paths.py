"""The hot paths ``redai-lab bench patterns`` measures, kept by counting (never by timing): the
``@cached`` key memo, the commands each rate-limit check and session read runs on the server,
a lock's wake-up on release, and ``connect()`` under a burst of threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from redai_lab.errors import LabError
from redai_lab.lab.connection import PoolTimeoutError, connect
from redai_lab.patterns import cache as cache_module
from redai_lab.patterns.cache import Cache
from redai_lab.patterns.locks import AsyncLock, Lock
from redai_lab.patterns.ratelimit import FixedWindow, SlidingWindowCounter
from redai_lab.patterns.sessions import SessionStore


def commands_run(r: redis.Redis, body: Any) -> dict[str, int]:
    """How many times the server ran each command while ``body()`` ran (INFO commandstats)."""
    before = r.info("commandstats")
    body()
    after = r.info("commandstats")
    counts = {name[len("cmdstat_"):]: int(stats["calls"]) - int(before.get(name, {}).get("calls", 0))
              for name, stats in after.items()}
    return {name: count for name, count in counts.items() if count and name != "info"}


# -- @cached: the key memo -------------------------------------------------------------------


def test_equal_hashing_arguments_keep_distinct_keys_in_either_order(r: redis.Redis) -> None:
    cache = Cache(r, "memo")
    for order in ([True, 1, 1.0, "1"], ["1", 1.0, 1, True]):
        f = cache.cached(name=f"f{order[0]!r}")(lambda x: x)
        keys = [f.key(value) for value in order]
        again = [f.key(value) for value in order]  # now from the memo
        assert len(set(keys)) == 4 and again == keys
        assert [f.key(x=value) for value in order] == keys  # keywords: the same canonical keys
    f = cache.cached(name="zero")(lambda x: x)
    assert f.key(0.0) != f.key(-0.0) and f.key(-0.0) != f.key(0.0) and f.key(0) != f.key(0.0)
    assert f.key([1]) != f.key([True]) != f.key([1.0])  # containers: never memoized, still distinct


def test_equal_hashing_arguments_load_separately(r: redis.Redis) -> None:
    cache = Cache(r, "memo")
    calls: list[Any] = []

    @cache.cached(name="echo")
    def echo(x: Any) -> str:
        calls.append(x)
        return repr(x)

    assert [echo(1), echo(True), echo(1.0), echo(1), echo(True), echo(1.0)] == ["1", "True", "1.0"] * 2
    assert calls == [1, True, 1.0]


def test_the_memo_is_bounded_and_skips_mutable_defaults(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MEMO_SIZE", 8)
    cache = Cache(r, "memo")
    f = cache.cached(name="bounded")(lambda x: x)
    keys = [f.key(i) for i in range(20)]
    assert len(f._memo) == 8 and [f.key(i) for i in range(20)] == keys
    g = cache.cached(name="mutable")(lambda x, tags=[]: x)  # a mutable default: the point
    assert g.key(1) and not g._memo


def test_a_memoized_hit_is_one_round_trip_and_one_get(round_trips, redis_url: str, r: redis.Redis) -> None:
    client = round_trips.client(redis_url)
    f = Cache(client, "memo").cached(name="hit")(lambda exam_id, lang="en": [exam_id, lang])
    f(7)
    f(7)  # the key is memoized now
    with round_trips.measure() as trips:
        ran = commands_run(r, lambda: f(7))
    assert trips.count == 1 and ran == {"get": 1}


# -- rate limits: commands per check ---------------------------------------------------------


@pytest.mark.parametrize("algorithm", [FixedWindow, SlidingWindowCounter])
def test_a_check_within_a_window_runs_no_pexpire(algorithm: type, round_trips, redis_url: str, r: redis.Redis) -> None:
    limiter = algorithm(round_trips.client(redis_url), "hot", limit=10, period=10)
    assert commands_run(r, lambda: limiter.hit("u", now=1000.0)).get("pexpire") == 1  # first in its window
    ttl = r.pttl(limiter.key("u"))
    with round_trips.measure() as trips:
        ran = commands_run(r, lambda: limiter.hit("u", now=1001.0))
    assert trips.count == 1 and "pexpire" not in ran and ran["hset"] == 1 and ran["evalsha"] == 1
    assert 0 < r.pttl(limiter.key("u")) <= ttl  # the expiry the window's first write set
    assert commands_run(r, lambda: limiter.hit("u", now=1010.0)).get("pexpire") == 1  # the next window


# -- sessions: the read ----------------------------------------------------------------------


def test_a_session_read_is_one_round_trip_of_three_commands(round_trips, redis_url: str, r: redis.Redis) -> None:
    store = SessionStore(round_trips.client(redis_url), idle_ttl=60)
    sid = store.create({"theme": "dark"})
    store.get(sid)
    r.pexpire(store.key(sid), 5000)
    with round_trips.measure() as trips:
        ran = commands_run(r, lambda: store.get(sid))
    assert trips.count == 1 and ran == {"evalsha": 1, "hgetall": 1, "time": 1, "pexpire": 1}
    assert r.pttl(store.key(sid)) > 50_000  # slid back to idle_ttl


# -- locks: waking on release ----------------------------------------------------------------


def test_a_release_wakes_a_waiter_only_when_one_waits(r: redis.Redis) -> None:
    holder = Lock(r, "wake", ttl=10)
    assert holder.acquire()
    holder.release()
    assert not r.exists(holder.wake_key)  # nobody waited: no wake-up left behind
    assert holder.acquire()
    assert not Lock(r, "wake").acquire(blocking=False)  # a caller that does not wait raises no flag
    assert not r.exists(holder.waiters_key)
    assert not Lock(r, "wake").acquire(timeout=0.01)  # one that waits does
    assert 0 < r.pttl(holder.waiters_key) <= 1000
    holder.release()
    assert r.lrange(holder.wake_key, 0, -1) == ["1"] and r.pttl(holder.wake_key) > 0


def test_a_blocked_waiter_is_woken_by_the_release(r: redis.Redis) -> None:
    holder, waiter = Lock(r, "woken", ttl=10), Lock(r, "woken", ttl=10, timeout=30)
    assert holder.acquire()
    got = threading.Event()
    thread = threading.Thread(target=lambda: waiter.acquire() and got.set(), daemon=True)
    thread.start()
    while not r.exists(holder.waiters_key):  # the waiter's first attempt failed and it now waits
        threading.Event().wait(0.005)
    holder.release()
    assert got.wait(10) and waiter.owned()
    thread.join()
    assert r.llen(holder.wake_key) == 0  # the wake-up was consumed by the waiter's BLPOP
    waiter.release()


async def _async_wake(url: str) -> list[Any]:
    import redis.asyncio

    ar = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        lock = AsyncLock(ar, "async-wake", ttl=10, timeout=0.01)
        sync = Lock(redis.Redis.from_url(url, decode_responses=True), "async-wake", ttl=10)
        assert sync.acquire()
        waited = await lock.acquire()
        sync.release()
        return [waited, await ar.lrange(lock.lock.wake_key, 0, -1)]
    finally:
        await ar.aclose()


def test_an_async_waiter_raises_the_same_flag(redis_url: str) -> None:
    import asyncio

    assert asyncio.run(_async_wake(redis_url)) == [False, ["1"]]


# -- connect(): bursts -----------------------------------------------------------------------


def test_a_burst_of_100_threads_on_the_default_client_never_exhausts_the_pool(redis_url: str) -> None:
    client = connect(redis_url)
    start = threading.Barrier(100)
    errors: list[BaseException] = []

    def work() -> None:
        start.wait()
        try:
            for _ in range(3):  # each call holds a connection for 50 ms: twice the pool's 50 at once
                client.blpop(["hot:nothing"], timeout=0.05)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(client.connection_pool._connections) <= 50
    client.close()


def test_an_exhausted_pool_is_a_one_line_error(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1, pool_timeout=0.05)
    held = client.connection_pool.get_connection()
    with pytest.raises(PoolTimeoutError) as caught:
        client.get("k")
    assert isinstance(caught.value, (LabError, redis.exceptions.MaxConnectionsError))
    assert str(caught.value) == (
        "All 1 connections of the pool stayed busy for 0.05 s: raise max_connections or pool_timeout "
        "in connect(), or hold connections for less time."
    )
    client.connection_pool.release(held)
    assert client.get("k") is None
    client.close()
