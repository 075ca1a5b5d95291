"""The benchmark harness and the benchmarks: statistics on synthetic timings, structure, files,
round trips and cleanup. Nothing here asserts how fast anything is."""

from __future__ import annotations

import json
import shutil
import threading
import time

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import redis
from redis._parsers import _HiredisParser, _RESP2Parser

from redai_lab import connect
from redai_lab.bench import benchmarks as bm
from redai_lab.bench import harness as hb
from redai_lab.bench.harness import Bench, BenchError, Plan
from redai_lab.lab.lesson import database_count

# --- statistics on synthetic timings --------------------------------------------------------


def test_latency_stats_interpolates_percentiles_in_microseconds() -> None:
    stats = hb.latency_stats([i * 1000 for i in range(1, 101)])  # 1..100 µs, shuffled order irrelevant
    assert stats == pytest.approx({"p50_us": 50.5, "p95_us": 95.05, "p99_us": 99.01, "max_us": 100.0, "samples": 100})
    assert hb.latency_stats([7000]) == {"p50_us": 7.0, "p95_us": 7.0, "p99_us": 7.0, "max_us": 7.0, "samples": 1}
    assert hb.latency_stats([3000, 1000, 2000])["p50_us"] == 2.0


def test_summarize_adds_throughput_from_wall_clock() -> None:
    row = hb.summarize([1000, 1000], ops=200, elapsed_ns=2_000_000)  # 200 ops in 2 ms
    assert row["ops_per_s"] == pytest.approx(100_000)
    assert row["p99_us"] == 1.0


def test_median_of_repeats_is_per_statistic_with_the_spread() -> None:
    repeats = [{"p50_us": 10.0, "ops_per_s": 300.0}, {"p50_us": 30.0, "ops_per_s": 100.0},
               {"p50_us": 20.0, "ops_per_s": 200.0}]
    assert hb.median_of_repeats(repeats) == {
        "p50_us": 20.0, "ops_per_s": 200.0, "ops_per_s_min": 100.0, "ops_per_s_max": 300.0, "repeats": 3,
    }
    assert hb.median_of_repeats(repeats[:2])["p50_us"] == 20.0  # even count: mean of the middle two


def test_ratio_table_divides_by_the_baseline() -> None:
    frame = pd.DataFrame({
        "batch": [1, 1, 100, 100],
        "method": ["one", "pipe", "one", "pipe"],
        "ops_per_s": [10.0, 12.0, 10.0, 150.0],
    })
    ratios = hb.ratio_table(frame, value="ops_per_s", column="method", baseline="one", index="batch")
    assert ratios.loc[1, "pipe"] == pytest.approx(1.2)
    assert ratios.loc[100, "pipe"] == pytest.approx(15.0)
    assert (ratios["one"] == 1.0).all()
    with pytest.raises(ValueError, match="method='lua'"):
        hb.ratio_table(frame, value="ops_per_s", column="method", baseline="lua", index="batch")


@pytest.mark.parametrize(
    "call",
    [
        lambda: hb.latency_stats([]),
        lambda: hb.summarize([1], ops=1, elapsed_ns=0),
        lambda: hb.median_of_repeats([]),
        lambda: Plan(repeats=0),
        lambda: hb.measure(lambda: None, ops_per_call=0),
    ],
)
def test_bad_input_is_a_clear_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_scale_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(hb.SCALE_ENV, raising=False)
    assert hb.scale_from_env() == "quick"
    assert hb.scale_from_env(default="full") == "full"
    monkeypatch.setenv(hb.SCALE_ENV, "FULL")
    assert hb.scale_from_env() == "full"
    monkeypatch.setenv(hb.SCALE_ENV, "huge")
    with pytest.raises(BenchError, match="REDAI_LAB_BENCH_SCALE='huge' is not a scale"):
        hb.scale_from_env()


# --- measure: structure, not speed ----------------------------------------------------------


def test_measure_warms_up_then_repeats_enough_calls() -> None:
    calls = []
    row = hb.measure(lambda: calls.append(1), ops_per_call=10, plan=Plan(repeats=3, warmup=2, min_ops=95))
    assert len(calls) == 2 + 3 * 10  # 10 calls of 10 ops reach 95 ops
    assert (row["calls"], row["ops_per_call"], row["repeats"], row["samples"]) == (10, 10, 3, 10)
    assert row["ops_per_s_min"] <= row["ops_per_s"] <= row["ops_per_s_max"]
    assert row["p50_us"] <= row["p95_us"] <= row["p99_us"] <= row["max_us"]


def test_measure_with_threads_runs_them_at_once_and_reraises_their_errors() -> None:
    seen, lock = set(), threading.Lock()

    def call() -> None:
        with lock:
            seen.add(threading.get_ident())

    row = hb.measure(call, plan=Plan(repeats=1, warmup=0, min_ops=40), threads=4)
    assert row["calls"] == 40 and row["samples"] == 40
    assert len(seen) == 4

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        hb.measure(fail, plan=Plan(repeats=1, warmup=0, min_ops=4), threads=2)


def test_bench_records_the_environment_and_the_parser_really_in_use(r, redis_url) -> None:
    bench = Bench(r, scale="quick")
    env = bench.environment
    assert env["redis_server"] == r.info("server")["redis_version"]
    assert env["redis_py"] == redis.__version__
    assert env["parser"] == "_HiredisParser" and env["hiredis"]
    assert (env["transport"], env["scale"]) == ("tcp", "quick")
    assert env["cpu_count"] >= 1
    assert env["protocol"] == 3  # redis-py 8's default; with RESP3 the Python parser is _RESP3Parser
    python_parser = connect(redis_url, parser_class=_RESP2Parser, protocol=2)
    assert hb.environment(python_parser, scale="quick")["parser"] == "_RESP2Parser"
    assert hb.environment(connect(redis_url, parser_class=_HiredisParser), scale="quick")["parser"] == "_HiredisParser"
    frame = bench.table([bench.measure({"case": "ping"}, r.ping, plan=Plan(1, 0, 3))])
    assert frame.loc[0, "case"] == "ping" and frame.attrs["environment"] == env
    with pytest.raises(BenchError, match="Unknown scale"):
        Bench(r, scale="medium")


@pytest.mark.parametrize("name", ["results.csv", "results.json"])
def test_save_and_load_round_trip_with_the_environment(tmp_path, name) -> None:
    frame = pd.DataFrame({"method": ["KEYS", "SCAN #2"], "count": [None, 100], "ops_per_s": [1.5, 2.5]})
    frame.attrs["environment"] = {"redis_server": "7.0.15", "scale": "quick"}
    path = hb.save(frame, tmp_path / name)
    back = hb.load(path)
    assert back.attrs["environment"] == frame.attrs["environment"]
    assert list(back["method"]) == ["KEYS", "SCAN #2"] and list(back["ops_per_s"]) == [1.5, 2.5]
    if name.endswith(".json"):
        assert json.loads(path.read_text())["results"][0]["count"] is None  # NaN is written as null
    else:
        assert path.read_text().startswith("# redis_server: 7.0.15\n")
        assert len(pd.read_csv(path, skiprows=len(frame.attrs["environment"]))) == 2


def test_unknown_file_format_is_refused(tmp_path) -> None:
    with pytest.raises(BenchError, match=r"name the file \*.csv or \*.json"):
        hb.save(pd.DataFrame(), tmp_path / "results.xlsx")


def test_plots_use_log_axes() -> None:
    frame = pd.DataFrame({"batch": [1, 10, 1, 10], "method": ["a", "a", "b", "b"], "ops_per_s": [1, 10, 2, 20]})
    ax = hb.plot_lines(frame, x="batch", y="ops_per_s", by="method", title="t")
    assert (ax.get_xscale(), ax.get_yscale(), len(ax.lines)) == ("log", "log", 2)
    bars = hb.plot_bars(frame[frame.batch == 1], x="method", y=["ops_per_s"])
    assert bars.get_yscale() == "log" and len(bars.patches) == 2


# --- pipelining: round trips are what the benchmark claims ----------------------------------


@pytest.mark.parametrize(("method", "trips"), [("one_at_a_time", 50), ("pipeline", 1), ("transaction", 1), ("lua", 1)])
def test_batch_round_trips(round_trips, redis_url, method, trips) -> None:
    client = round_trips.client(redis_url)
    batch = bm.Batch(client)
    keys = [f"bench:k{i}" for i in range(50)]
    batch.set(method, keys[:1], "warm")  # Lua: a script's first call loads it (NOSCRIPT, LOAD)
    batch.get(method, keys[:1])
    with round_trips.measure() as set_trips:
        batch.set(method, keys, "v")
    with round_trips.measure() as get_trips:
        values = batch.get(method, [*keys, "bench:missing"])
    assert (set_trips.count, get_trips.count) == (trips, trips + (method == "one_at_a_time"))
    assert values == ["v"] * 50 + [None]
    with pytest.raises(ValueError, match="Unknown method 'multi'"):
        batch.set("multi", keys, "v")


def test_pipeline_in_chunks_is_one_round_trip_per_chunk_and_lazy(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    produced = []

    def commands():
        for i in range(2500):
            produced.append(i)
            yield ("SET", f"bench:c{i}", i)

    replies = bm.pipeline_in_chunks(client, commands(), chunk_size=1000)
    with round_trips.measure() as trips:
        next(replies)
    assert (trips.count, len(produced)) == (1, 1000)  # one chunk built and sent, no more
    with round_trips.measure() as trips:
        rest = list(replies)
    assert (trips.count, len(rest), client.dbsize()) == (2, 2499, 2500)
    with pytest.raises(ValueError, match="chunk_size"):
        next(bm.pipeline_in_chunks(client, [], chunk_size=0))


def test_load_keys_and_delete_prefix(r) -> None:
    r.set("other", "kept")
    assert bm.load_keys(r, 1500, prefix="bench:l:", chunk_size=400) == 1500
    assert bm.load_keys(r, 2000, prefix="bench:l:", start=1500) == 500
    assert r.get("bench:l:1999") == "x" and r.dbsize() == 2001
    assert bm.delete_prefix(r) == 2000
    assert r.keys("*") == ["other"]


def test_resp_encodes_bulk_strings() -> None:
    assert bm.resp("SET", "k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert bm.resp("SET", "é", b"\x00") == b"*3\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n$1\r\n\x00\r\n"


needs_tools = pytest.mark.skipif(
    not (shutil.which("redis-cli") and shutil.which("redis-benchmark")), reason="redis-tools not installed"
)


@needs_tools
def test_mass_insert_loads_every_key_through_redis_cli_pipe(r, redis_url) -> None:
    result = bm.mass_insert(redis_url, 2000, prefix="bench:m:", value="v")
    assert (result["replies"], result["errors"], r.dbsize(), r.get("bench:m:1999")) == (2000, 0, 2000, "v")


@needs_tools
def test_redis_benchmark_writes_only_prefixed_keys_in_the_given_database(r, lesson, lab_server) -> None:
    other = connect(lab_server.url, db=0)
    before = other.dbsize()
    row = bm.redis_benchmark(lesson.url, lesson.db, "SET", "bench:rb:__rand_int__", "v",
                             requests=2000, pipeline=10, keyspace=50)
    assert row["rps"] > 0 and "p99_latency_ms" in row
    assert all(key.startswith("bench:rb:") for key in r.keys("*")) and 0 < r.dbsize() <= 50
    assert other.dbsize() == before


def test_missing_tool_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(bm.MissingToolError, match="redis-benchmark is not installed: `apt install redis-tools`"):
        bm.tool("redis-benchmark")


# --- SCAN vs KEYS ---------------------------------------------------------------------------


def test_scan_keys_counts_its_round_trips(round_trips, redis_url, r) -> None:
    bm.load_keys(r, 1000, prefix="bench:s:")
    r.set("unrelated", 1)
    client = round_trips.client(redis_url)
    with round_trips.measure() as trips:
        keys, calls = bm.scan_keys(client, match="bench:s:*", count=100)
    assert set(keys) == {f"bench:s:{i}" for i in range(1000)}
    assert calls == trips.count and calls > 1
    with round_trips.measure() as trips:
        assert len(client.keys("bench:s:*")) == 1000
    assert trips.count == 1


def test_scan_sweep_rows(r, redis_url) -> None:
    frame = bm.scan_sweep(Bench(r, scale="quick"), r, redis_url, sizes=(300, 100), counts=(10, 1000),
                          plan=Plan(1, 0, 1), probe_runs=1, probe_counts=(100,))
    enumerated = frame[frame.measure == "enumerate"]
    assert list(zip(enumerated["keys"], enumerated["method"])) == [
        (100, "KEYS"), (100, "SCAN"), (100, "SCAN"), (300, "KEYS"), (300, "SCAN"), (300, "SCAN")]
    keys_rows = enumerated[enumerated.method == "KEYS"]
    assert (keys_rows["round_trips"] == 1).all() and keys_rows["count"].isna().all()
    assert (enumerated[enumerated["count"] == 10]["round_trips"] > 1).all()
    concurrent = frame[frame.measure == "concurrent GET"]
    assert list(zip(concurrent["keys"], concurrent["method"])) == [
        (100, "idle"), (100, "KEYS"), (100, "SCAN COUNT 100"), (300, "idle"), (300, "KEYS"), (300, "SCAN COUNT 100")]
    assert r.dbsize() == 301  # the keyspace and the bystander's key


def test_latency_probe_measures_from_another_process(r, redis_url) -> None:
    r.set("bench:probe", "x")
    with bm.LatencyProbe(redis_url, "bench:probe") as probe:
        for name in ("idle", "busy", "idle"):
            with probe.window(name):
                time.sleep(0.1)
    table = probe.table()
    assert list(table["phase"]) == ["idle", "busy"]
    assert table["samples"].max() <= probe.latencies.size > 0
    assert r.info("stats")["total_commands_processed"] > probe.latencies.size  # the GETs reached Redis


def test_a_probe_that_cannot_connect_fails_with_one_line() -> None:
    with pytest.raises(BenchError, match=r"latency probe process did not start \(exit code 1\)"):
        with bm.LatencyProbe("redis://127.0.0.1:1/0", "bench:probe"):
            pass


def test_concurrent_latency_has_a_row_per_phase_with_server_time(r, redis_url) -> None:
    bm.load_keys(r, 2000, prefix="bench:scan:")
    frame = bm.concurrent_latency(Bench(r, scale="quick"), r, redis_url, match="bench:scan:*", runs=2,
                                  scan_counts=(100,), idle_seconds=0.1)
    assert list(frame["phase"]) == ["idle", "KEYS", "SCAN COUNT 100"]  # even a phase no GET overlapped
    assert frame["server_ms_per_call"].isna().tolist() == [True, False, False]


# --- connection pooling ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", bm.POOL_STRATEGIES)
def test_pooled_get_is_thread_safe_and_opens_the_connections_it_says(r, redis_url, strategy) -> None:
    r.set("bench:pool", "x")
    fn, pool = bm.pooled_get(redis_url, strategy, threads=4, key="bench:pool")
    before = bm.connections_received(r)
    row = hb.measure(fn, plan=Plan(repeats=1, warmup=0, min_ops=40), threads=4)
    opened = bm.connections_received(r) - before
    assert fn() == b"x" and row["calls"] == 40
    if pool is None:
        assert opened >= 40  # a TCP connection per command
    else:
        assert opened <= pool.max_connections == (4 if strategy == "shared_pool" else 2)
        pool.disconnect()


def test_pool_sweep_reports_connections_opened(r, redis_url) -> None:
    frame = bm.pool_sweep(Bench(r, scale="quick"), r, redis_url, threads=(2,), plan=Plan(1, 0, 20))
    assert list(frame["strategy"]) == list(bm.POOL_STRATEGIES)
    assert frame.set_index("strategy").loc["new_connection", "connections_opened"] >= 20
    assert frame.set_index("strategy").loc["blocking_pool", "max_connections"] == 1


def test_exhausted_connection_pool_raises_at_once(redis_url) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=2)
    held = [pool.get_connection() for _ in range(2)]
    with pytest.raises(redis.exceptions.MaxConnectionsError, match="Too many connections"):
        redis.Redis(connection_pool=pool).ping()
    for connection in held:
        pool.release(connection)
    pool.disconnect()


def test_blocking_pool_waits_for_a_connection_another_thread_releases(redis_url) -> None:
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=30)
    held = pool.get_connection()
    releaser = threading.Timer(0.2, pool.release, args=(held,))
    releaser.start()
    assert redis.Redis(connection_pool=pool).ping() is True  # waited, then got the released one
    releaser.join()
    empty = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.1)
    empty.get_connection()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        redis.Redis(connection_pool=empty).ping()
    pool.disconnect()
    empty.disconnect()


def test_health_check_costs_a_ping_round_trip_after_idle(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url, health_check_interval=1)
    with round_trips.measure() as busy:
        client.get("k")
    time.sleep(1.1)  # idle for longer than the interval
    with round_trips.measure() as after_idle:
        client.get("k")
    assert (busy.count, after_idle.count) == (1, 2)  # PING + GET


# --- the CLI's runner -----------------------------------------------------------------------


def test_bench_database_is_its_own_and_empty(lab_server) -> None:
    lesson = bm.bench_database(lab_server)
    try:
        assert lesson.db == database_count(lesson.client) - 2 and lesson.client.dbsize() == 0
        with pytest.raises(BenchError, match="Unknown benchmark 'disk'"):
            bm.run_benchmark("disk", lesson, "quick")
    finally:
        lesson.client.close()
