"""The async API (``AsyncCache``, ``AsyncRateLimiter``, ``AsyncLock``) passes the same exactness
tests as the sync classes: each test runs once with real threads on ``redis.Redis`` and once with
real tasks on one ``redis.asyncio`` client, against a real server. Then what only async code can
do to a pattern: a task cancelled mid-load or mid-lock."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from topologies import connect_async, node_url

from redai_lab.patterns.cache import AsyncCache, Cache, CacheEntryError
from redai_lab.patterns.locks import AsyncLock, Lock, LockDataError, LockNotOwnedError
from redai_lab.patterns.ratelimit import (
    GCRA,
    AsyncRateLimiter,
    FixedWindow,
    RateLimitDataError,
    RateLimiter,
    SlidingLog,
    SlidingWindowCounter,
    TokenBucket,
)

pytestmark = pytest.mark.cluster_too

ALGORITHMS = [FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket, GCRA]


class Threads:
    """The sync classes, ``n`` callers as threads released together by a barrier."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, n: int, work: Callable[[redis.Redis, int], Any]) -> list[Any]:
        url, cluster = node_url(self.url)
        client = (redis.RedisCluster if cluster else redis.Redis).from_url(url, decode_responses=True,
                                                                          max_connections=n)
        barrier = threading.Barrier(n)
        results: list[Any] = [None] * n

        def call(i: int) -> None:
            barrier.wait()
            results[i] = work(client, i)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        client.close()
        return results

    def hits(self, algorithm: type[RateLimiter], limit: int, n: int) -> list[bool]:
        return self.run(n, lambda r, i: algorithm(r, "rush", limit=limit, period=60).hit("user:1").allowed)

    def loads(self, n: int, seconds: float) -> tuple[list[Any], int]:
        loads = []

        def load() -> str:
            loads.append(1)
            time.sleep(seconds)
            return "exam 7"

        return self.run(n, lambda r, i: Cache(r, "t").get_or_load("exam:7", load)), len(loads)

    def sections(self, n: int, hold: float) -> list[tuple[int, int, int]]:
        def section(r: redis.Redis, i: int) -> tuple[int, int, int]:
            with Lock(r, "job", ttl=30, timeout=60) as lock:
                start = time.monotonic_ns()
                count = int(r.get("counter") or 0)
                time.sleep(hold)
                r.set("counter", count + 1)
                return start, time.monotonic_ns(), lock.fencing_token or 0

        return self.run(n, section)


class Tasks:
    """The async classes, ``n`` callers as tasks of one event loop sharing one client."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, n: int, work: Callable[[redis.asyncio.Redis, int], Any]) -> list[Any]:
        async def main() -> list[Any]:
            client = connect_async(self.url, decode_responses=True)
            await client.initialize()  # the slot map first: not once per task at the same moment
            try:
                return list(await asyncio.gather(*(work(client, i) for i in range(n))))
            finally:
                await client.aclose()

        return asyncio.run(main())

    def hits(self, algorithm: type[RateLimiter], limit: int, n: int) -> list[bool]:
        async def hit(r: redis.asyncio.Redis, i: int) -> bool:
            return (await AsyncRateLimiter(algorithm, r, "rush", limit=limit, period=60).hit("user:1")).allowed

        return self.run(n, hit)

    def loads(self, n: int, seconds: float) -> tuple[list[Any], int]:
        loads = []

        async def load() -> str:
            loads.append(1)
            await asyncio.sleep(seconds)
            return "exam 7"

        async def get(r: redis.asyncio.Redis, i: int) -> Any:
            return await AsyncCache(r, "t").get_or_load("exam:7", load)

        return self.run(n, get), len(loads)

    def sections(self, n: int, hold: float) -> list[tuple[int, int, int]]:
        async def section(r: redis.asyncio.Redis, i: int) -> tuple[int, int, int]:
            async with AsyncLock(r, "job", ttl=30, timeout=60) as lock:
                start = time.monotonic_ns()
                count = int(await r.get("counter") or 0)
                await asyncio.sleep(hold)  # other tasks run meanwhile: only the lock keeps them out
                await r.set("counter", count + 1)
                return start, time.monotonic_ns(), lock.fencing_token or 0

        return self.run(n, section)


@pytest.fixture(params=["threads", "tasks"])
def callers(request: pytest.FixtureRequest, redis_url: str) -> Threads | Tasks:
    return Threads(redis_url) if request.param == "threads" else Tasks(redis_url)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.__name__)
def test_exactly_the_limit_is_admitted_under_a_simultaneous_rush(callers, algorithm) -> None:
    assert sum(callers.hits(algorithm, limit=5, n=40)) == 5


def test_concurrent_misses_run_the_loader_once_and_all_get_its_value(callers, r) -> None:
    values, loads = callers.loads(n=30, seconds=0.2)
    assert loads == 1
    assert values == ["exam 7"] * 30
    assert r.exists("{t:exam:7}:lease") == 0  # the loader's write ended its lease


def test_critical_sections_never_overlap_and_no_increment_is_lost(callers, r) -> None:
    sections = sorted(callers.sections(n=12, hold=0.01))
    assert int(r.get("counter")) == 12
    for (_, end, _), (start, _, _) in itertools.pairwise(sections):
        assert end <= start
    assert [fence for _, _, fence in sections] == list(range(1, 13))  # in the order they held it


# -- the same keys, the same answers --------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.__name__)
def test_sync_and_async_limiters_share_one_budget_and_answer_alike(r, redis_url, algorithm) -> None:
    sync = algorithm(r, "api", limit=3, period=60)

    async def main() -> list[Any]:
        ar = connect_async(redis_url, decode_responses=True)
        limiter = AsyncRateLimiter(algorithm, ar, "api", limit=3, period=60)
        assert limiter.key(7) == sync.key(7)
        answers = [await limiter.hit(7, now=1000.0), sync.hit(7, now=1000.0), await limiter.hit(7, now=1000.0),
                   await limiter.hit(7, now=1000.0)]
        await limiter.reset(7)
        answers.append(await limiter.hit(7, now=1000.0))
        await ar.aclose()
        return answers

    answers = asyncio.run(main())
    assert [a.allowed for a in answers] == [True, True, True, False, True]
    assert [a.remaining for a in answers] == [2, 1, 0, 0, 2]
    r.delete(sync.key(7))
    replay = [sync.hit(7, now=1000.0) for _ in range(4)]
    assert replay == answers[:4]  # the same script: identical results, retry_after included


def test_a_value_cached_by_one_kind_is_a_hit_for_the_other(r, redis_url) -> None:
    Cache(r, "t").set("exam:7", {"title": "Redis"})

    async def main() -> tuple[Any, Any, Any]:
        ar = connect_async(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "t")
        hit = await cache.get_or_load("exam:7", _never)
        await cache.set("exam:8", [1, 2])
        gone = await cache.invalidate("exam:7", "exam:9")
        missing = await cache.get("exam:7", "default")
        await ar.aclose()
        return hit, gone, missing

    assert asyncio.run(main()) == ({"title": "Redis"}, 1, "default")
    assert Cache(r, "t").get("exam:8") == [1, 2]


async def _never() -> Any:
    raise AssertionError("a hit must not load")


def test_a_lock_held_by_one_kind_is_taken_for_the_other(r, redis_url) -> None:
    sync = Lock(r, "report", ttl=10, timeout=0)
    assert sync.acquire()

    async def main() -> tuple[bool, bool, int | None]:
        ar = connect_async(redis_url, decode_responses=True)
        lock = AsyncLock(ar, "report", ttl=10, timeout=0)
        taken = await lock.acquire()
        sync.release()
        got = await lock.acquire()
        await lock.extend(20)
        fence = lock.fencing_token
        await lock.release()
        with pytest.raises(LockNotOwnedError, match="not acquired by this object"):
            await lock.release()
        await ar.aclose()
        return taken, got, fence

    assert asyncio.run(main()) == (False, True, 2)
    assert r.exists("{lock:report}") == 0


def test_foreign_data_gets_each_modules_own_error(r, redis_url) -> None:
    r.rpush("t:exam:7", "a list")
    r.rpush("{rl:api:7}:gcra", "a list")
    r.rpush("{lock:job}", "a list")

    async def main() -> None:
        ar = connect_async(redis_url, decode_responses=True)
        with pytest.raises(CacheEntryError, match="t:exam:7"):
            await AsyncCache(ar, "t").get_or_load("exam:7", _never)
        with pytest.raises(RateLimitDataError, match="reset it"):
            await AsyncRateLimiter(GCRA, ar, "api", limit=3, period=60).hit(7)
        with pytest.raises(LockDataError, match="another Redis type"):
            await AsyncLock(ar, "job", timeout=0).acquire()
        await ar.aclose()

    asyncio.run(main())
    assert r.lrange("t:exam:7", 0, -1) == ["a list"]  # nothing foreign is changed


def test_an_invalidation_during_a_load_rejects_the_loaders_stale_write(r, redis_url) -> None:
    async def main() -> tuple[Any, Any, int, int]:
        ar = connect_async(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "t")
        started, proceed = asyncio.Event(), asyncio.Event()

        async def old() -> str:  # read from the database before it changed
            started.set()
            await proceed.wait()
            return "old title"

        loading = asyncio.create_task(cache.get_or_load("exam:7", old))
        await started.wait()
        deleted = await cache.invalidate("exam:7")  # the database changed meanwhile
        proceed.set()
        value = await loading
        cached = await cache.get("exam:7")
        await ar.aclose()
        return value, cached, deleted, cache.stats.rejected_writes

    # The loader's caller gets what it read; Redis does not keep it: its lease ended with the invalidation.
    assert asyncio.run(main()) == ("old title", None, 0, 1)
    assert r.keys("*") == []


def test_a_loads_ttl_and_negative_ttl_are_the_ones_given(r, redis_url) -> None:
    async def main() -> None:
        ar = connect_async(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "t", ttl=300, negative_ttl=200)
        await cache.get_or_load("exam:7", _loaded, ttl=7)
        await cache.get_or_load("exam:8", _nothing, negative_ttl=3)
        await cache.get_or_load("exam:9", _nothing)
        await ar.aclose()

    asyncio.run(main())
    assert 6_000 < r.pttl("t:exam:7") <= 7_000
    assert 2_000 < r.pttl("t:exam:8") <= 3_000
    assert 199_000 < r.pttl("t:exam:9") <= 200_000


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.__name__)
def test_an_async_hit_counts_its_cost(redis_url, algorithm) -> None:
    async def main() -> list[bool]:
        ar = connect_async(redis_url, decode_responses=True)
        limiter = AsyncRateLimiter(algorithm, ar, "cost", limit=5, period=60)
        answers = [(await limiter.hit("user:1", cost)).allowed for cost in (3, 3, 2, 1)]
        await ar.aclose()
        return answers

    assert asyncio.run(main()) == [True, False, True, False]


def test_an_async_lock_that_expired_is_not_released_and_extend_sets_the_ttl_given(r, redis_url) -> None:
    async def main() -> None:
        ar = connect_async(redis_url, decode_responses=True)
        lock = AsyncLock(ar, "job", ttl=0.05, timeout=0)
        assert await lock.acquire()
        await asyncio.sleep(0.1)  # expired: another task takes it
        other = AsyncLock(ar, "job", ttl=30, timeout=0)
        assert await other.acquire()
        with pytest.raises(LockNotOwnedError):
            await lock.release()
        assert await ar.exists("{lock:job}") == 1  # the other holder's lock is untouched
        await other.extend(60)
        assert 59_000 < await ar.pttl("{lock:job}") <= 60_000
        await other.release()
        await ar.aclose()

    asyncio.run(main())


# -- cancellation ---------------------------------------------------------------------------


def test_a_loader_cancelled_mid_load_hands_the_lease_to_a_waiter_at_once(r, redis_url) -> None:
    async def main() -> tuple[Any, float, int]:
        ar = connect_async(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "t", lease_ttl=30, wait_timeout=40)
        started = asyncio.Event()

        async def slow() -> str:
            started.set()
            await asyncio.sleep(30)
            return "never"

        first = asyncio.create_task(cache.get_or_load("exam:7", slow))
        await started.wait()
        waiter = asyncio.create_task(cache.get_or_load("exam:7", _loaded))
        await asyncio.sleep(0.05)  # the waiter polls: the lease is held
        began = time.monotonic()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        value = await waiter
        waited = time.monotonic() - began
        await ar.aclose()
        return value, waited, cache.stats.load_errors

    value, waited, errors = asyncio.run(main())
    assert value == "loaded by the waiter"
    assert waited < 10  # not the 30 s lease: the cancelled loader released it
    assert errors == 1


def test_an_expired_value_is_served_stale_while_one_task_reloads_it(r, redis_url) -> None:
    async def main() -> tuple[list[Any], int, Any]:
        ar = connect_async(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "t", ttl=0.1, stale_ttl=30)
        await cache.set("exam:7", "old")
        await asyncio.sleep(0.2)  # expired, kept for stale_ttl
        loads = []

        async def reload() -> str:
            loads.append(1)
            await asyncio.sleep(0.2)
            return "new"

        values = await asyncio.gather(*(cache.get_or_load("exam:7", reload, ttl=60) for _ in range(10)))
        stats = cache.stats
        after = await cache.get("exam:7")
        await ar.aclose()
        return sorted(values), len(loads), (stats.stale_served, stats.loads, after)

    values, loads, (stale, stored, after) = asyncio.run(main())
    assert loads == 1 and stored == 1
    assert values == ["new"] + ["old"] * 9 and stale == 9  # nobody waited for the reload
    assert after == "new"


async def _loaded() -> str:
    return "loaded by the waiter"


def test_a_task_cancelled_inside_async_with_releases_the_lock(r, redis_url) -> None:
    async def main() -> None:
        ar = connect_async(redis_url, decode_responses=True)
        inside = asyncio.Event()

        async def hold() -> None:
            async with AsyncLock(ar, "job", ttl=30):
                inside.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(hold())
        await inside.wait()
        assert await ar.exists("{lock:job}") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await ar.exists("{lock:job}") == 0
        await ar.aclose()

    asyncio.run(main())


def test_misuse_of_the_async_classes_is_one_clear_error(redis_url) -> None:
    ar = connect_async(redis_url)
    with pytest.raises(TypeError, match="one of the five limiter classes"):
        AsyncRateLimiter(RateLimiter, ar, "api", limit=3, period=60)
    with pytest.raises(ValueError, match="non-empty"):
        AsyncLock(ar, "")



async def _nothing() -> None:
    return None  # "not found": a negative result
