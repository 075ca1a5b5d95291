"""Memory and eviction (redai_lab.lab.memory, lesson 22), on throwaway servers of the tests' own:
which keys each policy may evict, what noeviction refuses and still serves, a broker's queue
evicted from another database, the eviction experiment's bookkeeping, and active expiry."""

from __future__ import annotations

import shutil
import time

import pytest
import redis

from redai_lab.errors import InvalidArgument
from redai_lab.lab import memory
from redai_lab.lab.memory import CacheWorkload, ExpirySetting, fill, throwaway_server

VOLATILE = [policy for policy in memory.EVICTION_POLICIES if policy.startswith("volatile-")]
ALLKEYS = [policy for policy in memory.EVICTION_POLICIES if policy.startswith("allkeys-")]


def _cap(r: redis.Redis, policy: str, above_empty: int = 200_000) -> None:
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", r.info("memory")["used_memory"] + above_empty)


@pytest.mark.parametrize("policy", VOLATILE)
def test_volatile_policies_never_evict_a_key_without_ttl_and_then_refuse_writes(policy) -> None:
    with throwaway_server() as (_, r):
        _cap(r, policy)
        kept = fill(r, "kept:", 300)  # no TTL: never a candidate
        assert kept == memory.Filled(300, 0)
        cache = fill(r, "cache:", 5_000, ttl_seconds=3600)  # far more than fits
        assert cache.refused == 0 and r.info("stats")["evicted_keys"] > 0  # cache keys make room for each other
        more = fill(r, "kept-more:", 5_000)  # no TTL: evicts cache keys, until none is left
        assert more.written > 0 and more.refused > 0 and "maxmemory" in more.first_refusal
        assert r.mget([f"kept:{i}" for i in range(300)]) == ["x" * 100] * 300
        # Every cache key evicted, none of the others: (a write refused near the limit may be
        # followed by one accepted, so the kept-more keys written are counted, not listed.)
        assert r.dbsize() == 300 + more.written
        assert len(list(r.scan_iter(match="kept-more:*", count=1000))) == more.written


def test_noeviction_refuses_writes_but_serves_reads_and_deletes() -> None:
    with throwaway_server() as (_, r):
        _cap(r, "noeviction")
        filled = fill(r, "item:", 5_000)
        assert filled.written > 0 and filled.refused > 0 and filled.written + filled.refused == 5_000
        assert filled.first_refusal == "command not allowed when used memory > 'maxmemory'."
        assert r.dbsize() == filled.written  # nothing evicted
        assert r.info("stats")["evicted_keys"] == 0
        assert r.get("item:0") == "x" * 100  # reads work
        half = filled.written // 2
        assert r.delete(*[f"item:{i}" for i in range(half)]) == half  # deletes work, and free room
        assert r.set("one-more", "x")


@pytest.mark.parametrize("policy", ALLKEYS)
def test_an_evicting_cache_drops_a_broker_queue_in_another_database(policy) -> None:
    """maxmemory is per instance: a Celery-like queue in database 1 is evicted to make room for
    cache keys in database 0. LFU and random need no idle time, LRU takes the idle queue first;
    each eviction samples 5 keys, so after 20 times as many evictions as there are keys the
    chance the queue was never picked is below e^-100."""
    with throwaway_server() as (server, cache):
        broker = redis.Redis.from_url(server.url.replace("/0", "/1"), decode_responses=True)
        broker.lpush("celery", *[f'{{"task": "send_invoice", "id": {i}}}' for i in range(100)])
        _cap(cache, policy, above_empty=100_000)
        filled = fill(cache, "page:", 20_000)
        assert filled.refused == 0  # the cache never notices
        assert cache.info("stats")["evicted_keys"] > 20 * cache.dbsize()
        assert broker.exists("celery") == 0  # 100 queued tasks gone, no error anywhere
        broker.close()


def test_fill_counts_exactly_and_writes_only_its_prefix() -> None:
    with throwaway_server() as (_, r):
        r.set("other", "untouched")
        assert fill(r, "f:", 250, value_bytes=3, ttl_seconds=60, batch=100) == memory.Filled(250, 0)
        assert r.dbsize() == 251 and r.get("f:249") == "xxx" and 0 < r.ttl("f:0") <= 60
        assert r.ttl("other") == -1
        assert fill(r, "none:", 0) == memory.Filled(0, 0)


def test_the_workload_is_zipf_deterministic_and_shifts_halfway() -> None:
    workload = CacheWorkload(keys=100, requests=4_000, seed=5)
    ids = workload.key_ids()
    assert ids == CacheWorkload(keys=100, requests=4_000, seed=5).key_ids()
    assert ids != CacheWorkload(keys=100, requests=4_000, seed=6).key_ids()
    first, second = ids[:2_000], ids[2_000:]
    assert first.count(0) > first.count(1) > first.count(10) > first.count(99)  # 1/k: ~19%, ~10%, ~2%, ~0.2%
    assert second.count(50) > second.count(51) > second.count(60)  # rank k is key k + 50 now
    assert workload.ttl_seconds(2) is None and 3600 <= workload.ttl_seconds(3) < 7200
    assert CacheWorkload(keys=100, requests=10, shift=False, seed=5).key_ids() == ids[:10]


def _expected_hit_rates(workload: CacheWorkload) -> tuple[float, float]:
    """With room for everything: a request hits when its key was asked for in an earlier batch
    (a batch's GETs all run before its misses are written)."""
    ids, seen = workload.key_ids(), set()
    half, warm = len(ids) // 2, len(ids) // 4
    hits = [0, 0]
    for start in range(0, len(ids), workload.batch):
        chunk = ids[start:start + workload.batch]
        for offset, key_id in enumerate(chunk):
            if key_id in seen and start + offset >= warm:
                hits[start + offset >= half] += 1
        seen.update(chunk)
    return hits[0] / (half - warm), hits[1] / (len(ids) - half)


def test_with_room_for_everything_hit_rates_are_exact_and_nothing_is_evicted() -> None:
    workload = CacheWorkload(keys=500, requests=2_000, capacity=3, batch=50)
    results = memory.eviction_experiment(workload, ["allkeys-lru", "noeviction"])
    before, after = _expected_hit_rates(workload)
    for result in results:
        assert (result.hit_rate_before_shift, result.hit_rate_after_shift) == (before, after)
        assert (result.evicted_keys, result.refused_writes) == (0, 0)
        assert result.keys_kept == len(set(workload.key_ids()))
        assert result.kept_without_ttl == len({key_id for key_id in workload.key_ids() if key_id % 2 == 0})


def test_each_policy_family_under_a_small_cap() -> None:
    workload = CacheWorkload(keys=1_500, requests=6_000, capacity=0.1)
    results = {result.policy: result for result in memory.eviction_experiment(workload)}
    assert list(results) == list(memory.EVICTION_POLICIES)
    noeviction = results["noeviction"]
    assert noeviction.evicted_keys == 0 and noeviction.refused_writes > 0
    for policy in ALLKEYS:
        assert results[policy].refused_writes == 0 and results[policy].evicted_keys > 0
        # The keys popular before the shift stay in a noeviction cache: after it, it misses most.
        assert results[policy].hit_rate_after_shift > noeviction.hit_rate_after_shift
    for policy in VOLATILE:
        assert results[policy].evicted_keys > 0 and results[policy].refused_writes > 0
    for result in results.values():
        assert 0 <= result.hit_rate_before_shift <= 1 and 0 <= result.hit_rate_after_shift <= 1
        assert result.maxmemory == noeviction.maxmemory


def test_wrong_arguments_are_one_line_errors() -> None:
    with pytest.raises(InvalidArgument, match="no eviction policy: use one of noeviction"):
        memory.eviction_experiment(CacheWorkload(keys=10, requests=10), ["allkeys-lru", "lru"])
    for capacity in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="capacity is the share"):
            CacheWorkload(capacity=capacity)
    with pytest.raises(InvalidArgument, match="keys must be a whole number >= 2"):
        CacheWorkload(keys=1)


def test_expired_keys_stay_until_active_expiry_or_a_read_reclaims_them() -> None:
    settings = [ExpirySetting(active=False), ExpirySetting(hz=10, active_expire_effort=1),
                ExpirySetting(hz=10, active_expire_effort=10)]
    samples = memory.expiry_experiment(settings, live=5_000, expiring=500, ttl_ms=100, watch_seconds=1.0)
    left = {setting.label: [s.left for s in samples if s.setting == setting.label] for setting in settings}
    assert [s.seconds for s in samples[:3]] == [0.0, 0.1, 0.2]
    assert left["active expiry off (lazy only)"] == [500] * 11  # nothing reads them: all held
    low, high = left["hz 10, active-expire-effort 1"], left["hz 10, active-expire-effort 10"]
    assert low == sorted(low, reverse=True) and high == sorted(high, reverse=True)
    # Effort 1 stops each pass once under 10% of what it samples has expired (here 500 of
    # 5,500 keys with a TTL): most stay. Effort 10 goes on down to 1% (Redis 8.2 and Valkey 9
    # reclaim all 500 within 0.3 s, Redis 7.0 about 200 in the second).
    assert low[-1] > 400 and high[-1] + 100 < low[-1]


def test_lazy_expiry_reclaims_what_is_read() -> None:
    with throwaway_server(["--enable-debug-command", "local"]) as (_, r):
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        fill(r, "s:", 100, ttl_seconds=None)
        for i in range(100):
            r.pexpire(f"s:{i}", 1)
        r.set("live", "v")
        time.sleep(0.05)
        assert r.dbsize() == 101 and r.info("stats")["expired_keys"] == 0
        assert r.mget([f"s:{i}" for i in range(10)]) == [None] * 10  # a read deletes what it finds expired
        assert r.info("stats")["expired_keys"] == 10 and r.dbsize() == 91


def test_the_production_configs_are_accepted_by_a_real_server() -> None:
    for config in (memory.CACHE_CONFIG, memory.BROKER_CONFIG):
        with throwaway_server(memory.as_arguments(config)) as (_, r):
            got = {name: r.config_get(name)[name] for name in config}
            assert got == {name: str(2 * 1024**3) if value == "2gb" else value for name, value in config.items()}
            report = memory.memory_report(r)
            assert report["maxmemory"] == 2 * 1024**3 and report["maxmemory_policy"] == config["maxmemory-policy"]
            assert report["used_memory"] > 0 and report["evicted_keys"] == 0
    assert memory.as_arguments({"maxmemory": "1mb", "hz": "20"}) == ["--maxmemory", "1mb", "--hz", "20"]


def test_redis_cli_reports_the_biggest_key_by_length_and_by_memory() -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (apt install redis-tools)")
    with throwaway_server() as (server, r):
        r.hset("many-small", mapping={f"f{i}": "x" for i in range(1_000)})  # most fields
        r.hset("few-big", mapping={f"f{i}": "x" * (200_000 if i == 7 else 1) for i in range(200)})  # most bytes
        by_length = memory.redis_cli_key_report(server.url, "--bigkeys")
        by_memory = memory.redis_cli_key_report(server.url, "--memkeys")
    assert by_length.startswith("Sampled 2 keys") and by_memory.startswith("Sampled 2 keys")
    assert "Biggest   hash found '\"many-small\"' has 1000 fields" in by_length
    # Every element counted: a sample of 5 fields would almost surely miss the one big value.
    assert "Biggest   hash found '\"few-big\"'" in by_memory
    with pytest.raises(InvalidArgument, match="--bigkeys or --memkeys"):
        memory.redis_cli_key_report(server.url, "--hotkeys")
