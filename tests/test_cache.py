"""redai_lab.patterns.cache against a real server: keys, envelopes, leases, XFetch, warming, with real
threads and processes."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from topologies import connect_to

from redai_lab.errors import InvalidArgument
from redai_lab.patterns.cache import (
    Cache,
    CacheEntryError,
    CacheStats,
    CacheWaitTimeout,
    UncacheableArgument,
    should_recompute_early,
)
from redai_lab.patterns.serializers import JsonSerializer, SerializationError

pytestmark = pytest.mark.cluster_too


class Counter:
    """A thread-safe call counter for loaders."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, value: object = "loaded") -> object:
        with self._lock:
            self.calls += 1
        return value


@contextlib.contextmanager
def load_in_flight(cache: Cache, key: str, read: Callable[[], object], **options: object) -> Iterator[list[object]]:
    """A thread calls ``get_or_load(key)``; its loader calls ``read()`` and then stops until the
    block ends. Yields the list that receives the thread's result."""
    inside, release = threading.Event(), threading.Event()
    results: list[object] = []

    def loader() -> object:
        value = read()
        inside.set()
        release.wait(10)
        return value

    thread = threading.Thread(target=lambda: results.append(cache.get_or_load(key, loader, **options)))
    thread.start()
    assert inside.wait(10)
    try:
        yield results
    finally:
        release.set()
        thread.join()


# -- values and keys ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, 0.0, "", [], {}, False, "0", [None], {"a": [1, 2.5, "x"]}])
def test_falsy_and_plain_values_round_trip_and_hit(r: redis.Redis, value: object) -> None:
    cache = Cache(r, "t")
    load = Counter()
    first = cache.get_or_load("k", lambda: load(value))
    second = cache.get_or_load("k", lambda: load("other"))
    assert first == value and second == value and type(second) is type(value)
    assert load.calls == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_a_cached_none_is_told_from_a_miss(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    assert cache.get("k", default="miss") == "miss"
    cache.set("k", None)
    assert cache.get("k", default="miss") is None


def test_decorator_key_binds_arguments(r: redis.Redis) -> None:
    cache = Cache(r, "t")

    @cache.cached()
    def f(x: int, y: int = 2, **options: object) -> list[object]:
        return [x, y, options]

    assert f.key(1) == f.key(x=1) == f.key(1, y=2) == f.key(y=2, x=1)
    assert f.key(1, a=1, b=2) == f.key(1, b=2, a=1)
    assert len({f.key(1), f.key(2), f.key(1, y=3), f.key(1, a=1), f.key(True), f.key(1.0), f.key("1")}) == 7
    assert f.key(1).startswith(f"{__name__}.test_decorator_key_binds_arguments.<locals>.f:")
    load = Counter()
    cache.cached(name="g")(lambda x: load(x))(1)
    assert cache.cached(name="g")(lambda x: load(-1))(x=1) == 1  # same name, same key: a hit
    assert load.calls == 1


def test_decorator_keys_are_the_same_in_another_process(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    key = cache.cached(name="stats")(lambda exam, options: None).key(7, {"b": [1, 2], "a": "é"})
    code = (
        "import redis; from redai_lab.patterns.cache import Cache\n"
        "c = Cache(redis.Redis(), 't')\n"
        "print(c.cached(name='stats')(lambda exam, options: None).key(exam=7, options={'a': 'é', 'b': (1, 2)}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip() == key


class Thing:
    pass


@pytest.mark.parametrize(
    ("argument", "what"),
    [
        (Thing(), "argument x is a Thing,"),
        ({1, 2}, "argument x is a set,"),
        ({1: "a"}, "non-str keys"),
        (float("nan"), "argument x is the float nan,"),
        ([1, {"a": Thing()}], r"argument x\[1\]\[.a.\] is a Thing,"),
    ],
)
def test_arguments_without_a_canonical_form_are_refused(r: redis.Redis, argument: object, what: str) -> None:
    cache = Cache(r, "t")
    load = Counter()
    f = cache.cached(name="f")(lambda x: load(x))
    with pytest.raises(UncacheableArgument, match=what) as caught:
        f(argument)
    assert isinstance(caught.value, TypeError)
    assert "ignore=('x',)" in str(caught.value)
    assert load.calls == 0


def test_ignored_parameters_stay_out_of_the_key(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    f = cache.cached(name="f", ignore=("conn",))(lambda conn, exam: exam * 2)
    assert f(Thing(), 3) == 6 and f(Thing(), exam=3) == 6
    assert cache.stats.hits == 1
    with pytest.raises(ValueError, match="ignore names no parameter"):
        cache.cached(ignore=("nope",))(lambda x: x)


def test_results_json_would_change_are_refused_and_release_the_lease(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    with pytest.raises(SerializationError, match="tuples become lists"):
        cache.get_or_load("k", lambda: (1, 2))
    with pytest.raises(SerializationError, match="non-str dict keys"):
        cache.get_or_load("k", lambda: {1: "a"})
    with pytest.raises(SerializationError, match="not JSON"):
        cache.get_or_load("k", lambda: {1, 2})
    assert r.exists(cache.lease_key("k")) == 0
    assert cache.stats.load_errors == 3
    assert cache.get_or_load("k", lambda: [1, 2]) == [1, 2]


def test_a_pluggable_serializer_is_used_and_named_in_the_entry(r: redis.Redis) -> None:
    class Upper:
        name = "upper"

        def dumps(self, value: object) -> str:
            return str(value).upper()

        def loads(self, text: str) -> object:
            return text

    cache = Cache(r, "t", serializer=Upper())
    assert cache.get_or_load("k", lambda: "hello") == "hello"
    assert cache.get_or_load("k", lambda: "other") == "HELLO"
    assert r.get("t:k").startswith("rc1:upper:")
    with pytest.raises(CacheEntryError, match="serializer 'upper', this cache reads 'json'"):
        Cache(r, "t").get_or_load("k", lambda: "x")


# -- never unpickle -------------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs ``touch <path>``: what an attacker would plant."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("decode_responses", [True, False])
def test_a_planted_pickle_is_rejected_never_executed(
    r: redis.Redis, redis_url: str, tmp_path: Path, protocol: int, decode_responses: bool
) -> None:
    # The payload is live: unpickling it here does run the command.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(RunsCode(proof), protocol=protocol))
    assert proof.exists()

    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsCode(marker), protocol=protocol)
    client = connect_to(redis_url, decode_responses=decode_responses)
    cache = Cache(client, "t")
    f = cache.cached(name="f")(lambda x: "computed")
    load = Counter()
    for planted in (payload, b"rc1:json:99999999999999:0:" + payload, b"rc1:pickle:99999999999999:0:" + payload):
        r.set(cache.entry_key(f.key(1)), planted)
        with pytest.raises(CacheEntryError, match="never deserialised|corrupt|serializer 'pickle'"):
            f(1)
        with pytest.raises(CacheEntryError):
            cache.get(f.key(1))
        with pytest.raises(CacheEntryError):
            cache.get_or_load(f.key(1), load)
    assert not marker.exists()
    assert load.calls == 0
    assert client.ping()  # the connection survived the undecodable reply
    client.close()


# -- TTLs -----------------------------------------------------------------------------------


def test_negative_results_get_their_own_ttl(r: redis.Redis) -> None:
    cache = Cache(r, "t", ttl=60, negative_ttl=0.2)
    assert cache.get_or_load("missing", lambda: None) is None
    assert cache.get_or_load("found", lambda: {"id": 1}) == {"id": 1}
    assert 0 < r.pttl("t:missing") <= 200
    assert 59_000 < r.pttl("t:found") <= 60_000
    assert cache.get_or_load("missing", lambda: "loaded again") is None  # cached: a hit
    time.sleep(0.3)
    assert cache.get_or_load("missing", lambda: "loaded again") == "loaded again"
    per_call = Cache(r, "u", ttl=60)
    per_call.get_or_load("missing", lambda: None, negative_ttl=5)
    assert 0 < r.pttl("u:missing") <= 5000
    with pytest.raises(ValueError, match="negative_ttl must be finite seconds > 0"):
        per_call.get_or_load("zero", lambda: None, negative_ttl=0)
    assert r.exists(per_call.lease_key("zero")) == 0


def test_jitter_spreads_expiry_below_the_ttl(r: redis.Redis) -> None:
    cache = Cache(r, "t", ttl=100, jitter=0.2, random=random.Random(1).random)
    cache.warm((f"k{i}", i) for i in range(200))
    ttls = [r.pttl(f"t:k{i}") for i in range(200)]
    assert all(79_000 < ttl <= 100_000 for ttl in ttls)
    assert max(ttls) - min(ttls) > 15_000


def test_per_call_bypass_refresh_and_invalidate(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    source = {"value": 1}
    load = Counter()
    f = cache.cached(name="f")(lambda x: load(source["value"] * x))
    assert f(10) == 10
    source["value"] = 2
    assert f(10) == 10  # cached
    assert f.bypass(10) == 20 and f(10) == 10  # bypass neither reads nor writes
    assert f.refresh(10) == 20 and f(10) == 20
    source["value"] = 3
    assert f.invalidate(10) == 1 and f.invalidate(10) == 0
    assert f(10) == 30
    assert load.calls == 4


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.server_only  # counts one connection's round trips
def test_a_hit_is_one_round_trip(round_trips, redis_url: str) -> None:
    client = round_trips.client(redis_url)
    cache = Cache(client, "t")
    f = cache.cached(name="f")(lambda x: {"x": x})
    f(1)  # a miss loads the scripts once per server
    with round_trips.measure() as hit:
        assert f(1) == {"x": 1}
    with round_trips.measure() as plain_hit:
        assert cache.get_or_load(f.key(1), lambda: None) == {"x": 1}
    with round_trips.measure() as miss:
        assert f(2) == {"x": 2}
    assert (hit.count, plain_hit.count) == (1, 1)
    assert miss.count == 3  # GET, then read-or-lease, then the conditional write


# -- single flight --------------------------------------------------------------------------


def test_fifty_concurrent_misses_call_the_loader_once(redis_url: str) -> None:
    client = connect_to(redis_url, max_connections=64)
    cache = Cache(client, "t")
    load = Counter()

    @cache.cached(name="slow")
    def slow(x: int) -> dict[str, int]:
        time.sleep(0.3)  # every other thread arrives while this one loads
        return {"x": load(x)}  # type: ignore[dict-item]

    barrier = threading.Barrier(50)
    results: list[object] = []

    def call() -> None:
        barrier.wait()
        results.append(slow(7))

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert load.calls == 1
    assert results == [{"x": 7}] * 50
    assert cache.stats.loads == 1 and cache.stats.waits >= 1
    assert cache.stats.hits + cache.stats.misses == 50
    client.close()


def _process_caller(url: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    client = connect_to(url)
    cache = Cache(client, "t")

    def load() -> str:
        client.incr("loader-calls")
        time.sleep(0.5)
        return f"loaded by {os.getpid()}"

    barrier.wait()
    results.put(cache.get_or_load("shared", load))
    client.close()


def test_concurrent_misses_in_separate_processes_call_the_loader_once(r: redis.Redis, redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [context.Process(target=_process_caller, args=(redis_url, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    values = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert r.get("loader-calls") == "1"
    assert len(set(values)) == 1


def test_waiters_give_up_after_wait_timeout(r: redis.Redis) -> None:
    cache = Cache(r, "t", wait_timeout=0.2)
    with load_in_flight(cache, "k", lambda: "v"), pytest.raises(CacheWaitTimeout, match="Waited 0.2 s"):
        cache.get_or_load("k", lambda: "never")
    assert cache.stats.waits == 1  # one call that waited, however many times it polled
    assert cache.get_or_load("k", lambda: "never") == "v"


def test_stale_value_is_served_while_one_caller_reloads(r: redis.Redis) -> None:
    cache = Cache(r, "t", ttl=0.05, stale_ttl=30)
    cache.get_or_load("k", lambda: "v1")
    time.sleep(0.1)  # logically expired, still stored for stale_ttl
    assert cache.get("k", default="expired") == "expired"
    with load_in_flight(cache, "k", lambda: "v2", ttl=60) as reloaded:
        assert cache.get_or_load("k", lambda: "not me") == "v1"
        assert cache.stats.stale_served == 1
    assert reloaded == ["v2"] and cache.get_or_load("k", lambda: "not me") == "v2"
    assert cache.stats.early_refreshes == 0  # the reload came after expiry: not early


def test_a_failed_load_releases_the_lease_at_once(r: redis.Redis) -> None:
    cache = Cache(r, "t", lease_ttl=60)

    def fails() -> str:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        cache.get_or_load("k", fails)
    assert r.exists(cache.lease_key("k")) == 0
    assert cache.get_or_load("k", lambda: "v") == "v"
    assert cache.stats.load_errors == 1


def test_invalidation_rejects_a_load_that_read_before_the_update(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    database = {"user": "old"}
    with load_in_flight(cache, "user", lambda: database["user"]) as results:
        database["user"] = "new"  # the update and its invalidation land while the loader is paused
        cache.invalidate("user")
    assert results == ["old"]  # the reader got what it read...
    assert cache.stats.rejected_writes == 1  # ...but could not cache it
    assert cache.get_or_load("user", lambda: database["user"]) == "new"


def test_write_through_set_ends_a_load_in_flight(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    with load_in_flight(cache, "k", lambda: "old"):
        cache.set("k", "new")
    assert cache.get("k") == "new"


# -- XFetch ---------------------------------------------------------------------------------


def test_xfetch_probability_rises_as_expiry_approaches() -> None:
    rng = random.Random(2015)
    draws = 4000
    fractions = []
    for remaining in (4.0, 2.0, 1.0, 0.5, 0.25, 0.1):
        early = sum(should_recompute_early(1.0, remaining, 1.0, 1.0 - rng.random()) for _ in range(draws))
        fractions.append(early / draws)
        assert abs(early / draws - math.exp(-remaining)) < 0.03  # P = exp(-remaining / (delta * beta))
    assert fractions == sorted(fractions)
    assert fractions[0] < 0.05 and fractions[-1] > 0.85
    for remaining in (0.001, 0.0, -1.0):  # delta 0: never early, not even at or past expiry
        assert not should_recompute_early(0.0, remaining, 1.0, 1e-9)
    # The test itself, exactly: -delta * beta * ln(rand) >= remaining, equality included.
    assert should_recompute_early(1.0, -1.0 * 2.0 * math.log(0.5), 2.0, 0.5)
    assert not should_recompute_early(1.0, 1.5, 1.0, 0.5)  # ln 2 = 0.69 < 1.5...
    assert should_recompute_early(1.0, 1.5, 3.0, 0.5)  # ...but beta 3 makes it 2.08
    assert not should_recompute_early(5.0, 0.001, 1.0, 1.0)  # a draw of 1: ln 1 = 0, never early


def test_the_cache_recomputes_early_more_often_near_expiry(r: redis.Redis) -> None:
    cache = Cache(r, "t", ttl=300, beta=1.0, random=random.Random(7).random)
    early = []
    # Seconds, not tenths: an entry must not expire (a miss, not an early refresh) during a
    # pause of a busy machine between its write and its read.
    for ttl in (5, 10, 20, 80):
        for i in range(100):
            cache.set(f"{ttl}:{i}", "old", ttl=ttl, delta=10.0)  # as if each took 10 s to compute
        early.append(sum(cache.get_or_load(f"{ttl}:{i}", lambda: "new") == "new" for i in range(100)))
    # Expected about 100 * exp(-ttl / delta): 61, 37, 14, 0.
    assert early[0] > early[1] > early[2] > early[3]
    assert early[0] > 40 and early[3] <= 1
    assert cache.stats.early_refreshes == sum(early) and cache.stats.misses == sum(early)
    refreshed = next(i for i in range(100) if cache.get(f"5:{i}") == "new")
    assert r.pttl(f"t:5:{refreshed}") > 290_000  # stored again with the full TTL
    off = Cache(r, "t", beta=0, random=random.Random(7).random)
    off.set("near", "old", ttl=5, delta=10.0)
    assert off.get_or_load("near", lambda: "new") == "old"


class RefreshedMeanwhile(JsonSerializer):
    """JSON whose first ``loads`` (a reader decoding what its GET returned) first lets another
    caller refresh the entry: the interleaving of a refresh landing just after a read."""

    def __init__(self, refresh: Callable[[], object]) -> None:
        super().__init__()
        self.refresh: Callable[[], object] | None = refresh

    def loads(self, text: str) -> object:
        if self.refresh:
            self.refresh, refresh = None, self.refresh
            refresh()
        return super().loads(text)


@pytest.mark.parametrize("path", ["stale", "xfetch"])
def test_an_entry_refreshed_after_the_read_is_not_loaded_again(r: redis.Redis, path: str) -> None:
    other = Cache(r, "t", stale_ttl=30)  # another process's cache, same namespace
    serializer = RefreshedMeanwhile(lambda: other.refresh("k", lambda: "new", ttl=60))
    if path == "stale":
        cache = Cache(r, "t", ttl=0.05, stale_ttl=30, serializer=serializer)
        other.set("k", "old", ttl=0.05)
        time.sleep(0.1)  # logically expired, still stored for stale_ttl
    else:  # a draw that recomputes early: -10 s * ln(1e-12) > 60 s left
        cache = Cache(r, "t", serializer=serializer, random=lambda: 1 - 1e-12)
        other.set("k", "old", ttl=60, delta=10.0)
    load = Counter()
    assert cache.get_or_load("k", lambda: load("loaded a second time")) == "new"
    assert load.calls == 0
    assert (cache.stats.hits, cache.stats.stale_served, cache.stats.early_refreshes) == (1, 0, 0)
    assert r.exists(cache.lease_key("k")) == 0


# -- warming --------------------------------------------------------------------------------


@pytest.mark.server_only  # counts one connection's round trips
def test_warming_writes_in_chunks_from_a_lazy_iterable(round_trips, redis_url: str, r: redis.Redis) -> None:
    client = round_trips.client(redis_url)
    cache = Cache(client, "t", ttl=60)
    cache.warm([("first", 0)])  # loads the script
    start = round_trips.total
    writes_before: list[int] = []

    def rows():
        for i in range(2050):
            writes_before.append(round_trips.total - start)
            yield f"exam:{i}", {"id": i}

    assert cache.warm(rows(), chunk_size=500) == 2050
    assert r.get("t:exam:7").split(":")[3] == "0.000"  # no recompute time: never refreshed early
    assert round_trips.total - start == 5
    # Item i is produced only once the chunks before it are written: one chunk in memory.
    assert all(writes == i // 500 for i, writes in enumerate(writes_before))
    assert cache.get("exam:2049") == {"id": 2049}
    assert 59_000 < r.pttl("t:exam:0") <= 60_000
    with pytest.raises(ValueError, match="chunk_size"):
        cache.warm([], chunk_size=0)


# -- stats and errors -----------------------------------------------------------------------


def test_stats_count_hits_misses_loads_and_latency(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    assert dataclasses.astuple(cache.stats) == (0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0)
    assert (cache.stats.hit_ratio, cache.stats.mean_hit_ms, cache.stats.mean_miss_ms) == (0.0, 0.0, 0.0)
    started = time.perf_counter()
    for exam in (1, 1, 1, 2):
        cache.get_or_load(f"exam:{exam}", lambda exam=exam: exam)
    elapsed = time.perf_counter() - started
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.loads, stats.rejected_writes) == (2, 2, 2, 0)
    assert 0 < stats.hit_seconds + stats.miss_seconds <= elapsed  # the calls' own time, no more
    assert stats.hit_ratio == 0.5
    assert stats.mean_hit_ms > 0 and stats.mean_miss_ms > 0


def test_a_fresh_value_is_served_while_another_caller_refreshes_it_early(r: redis.Redis) -> None:
    # XFetch asks for an early refresh (a draw of 1e-12), but another caller holds the lease:
    # the fresh value is a hit, not a stale serve.
    cache = Cache(r, "t", random=lambda: 1 - 1e-12)
    cache.set("k", "v", ttl=60, delta=10.0)
    r.set(cache.lease_key("k"), "another caller", px=60_000)
    assert cache.get_or_load("k", lambda: "not me") == "v"
    assert (cache.stats.hits, cache.stats.stale_served, cache.stats.early_refreshes) == (1, 0, 0)


@pytest.mark.server_only  # MONITOR sees one server
def test_invalidate_deletes_each_lease_before_its_value(r: redis.Redis, redis_url: str) -> None:
    cache = Cache(r, "t")
    assert cache.invalidate() == 0
    watcher = connect_to(redis_url, socket_timeout=10)
    with watcher.monitor() as monitor:
        r.ping()
        while monitor.next_command()["command"] != "PING":
            pass
        cache.invalidate("a", "b")
        commands = [monitor.next_command()["command"] for _ in range(4)]
    watcher.close()
    assert commands == ["DEL {t:a}:lease", "DEL t:a", "DEL {t:b}:lease", "DEL t:b"]


def test_a_lease_shares_its_entrys_cluster_slot(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    for key in ["exam:7", "{user:42}:profile", "a{b", "ü"]:
        entry, lease = cache.entry_key(key), cache.lease_key(key)
        assert key_slot(entry.encode()) == key_slot(lease.encode()), key
        assert lease != entry
    assert cache.lease_key("{user:42}:profile") == "t:lease:{user:42}:profile"
    with pytest.raises(InvalidArgument, match="no hash tag"):
        cache.lease_key("{}x")
    with pytest.raises(InvalidArgument, match="namespace"):
        Cache(r, "{t}")
    cache.set("{user:42}:profile", 1)
    cache.warm([(f"k{i}", i) for i in range(20)], chunk_size=7)  # many slots: one call per slot on a Cluster
    assert [cache.get(f"k{i}") for i in range(20)] == list(range(20))
    assert cache.invalidate("{user:42}:profile", "k1", "k2", "missing") == 3


def test_the_recompute_time_comes_back_exactly(r: redis.Redis) -> None:
    # beta makes the draw of 0.5 ask for 100,050 s of head start on a value that took 1,000 s:
    # more than the 100,000 s it has left, so it refreshes now. A recompute time read back
    # 0.1% short would ask for 99,950 s, and wait.
    beta = 100_050 / (1000 * math.log(2))
    cache = Cache(r, "t", beta=beta, random=lambda: 0.5)
    cache.set("k", "old", ttl=100_000, delta=1000.0)
    assert cache.get_or_load("k", lambda: "new") == "new"
    assert cache.stats.early_refreshes == 1


def test_a_value_with_less_than_a_second_left_is_still_a_hit(r: redis.Redis) -> None:
    cache = Cache(r, "t")
    cache.set("k", "v", ttl=0.9)
    assert cache.get("k") == "v"


def test_stats_ratios_and_means_are_exact() -> None:
    stats = CacheStats(hits=3, misses=2, hit_seconds=0.006, miss_seconds=0.5)
    assert (stats.hit_ratio, stats.mean_hit_ms, stats.mean_miss_ms) == (0.6, 2.0, 250.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": "a:b"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"serializer": type("Named", (), {"name": "a:b"})()}, "serializer's name"),
        ({"ttl": 0}, "ttl must be finite seconds > 0"),
        ({"jitter": 1.0}, "jitter"),
        ({"beta": -1}, "beta"),
        ({"wait_timeout": 0}, "wait_timeout"),
    ],
)
def test_bad_settings_are_refused(r: redis.Redis, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cache(r, **options)  # type: ignore[arg-type]


def test_keys_that_would_collide_with_leases_are_refused(r: redis.Redis) -> None:
    with pytest.raises(ValueError, match="do not start with 'lease:'"):
        Cache(r, "t").get_or_load("lease:x", lambda: 1)
