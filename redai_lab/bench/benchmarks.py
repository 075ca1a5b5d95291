"""The lab's benchmarks: pipelining, SCAN vs KEYS, connection pooling (lessons 17 to 19).

Each benchmark writes only keys under its ``prefix`` (``bench:`` by default) and deletes them when
it is done (``delete_prefix``). ``run_benchmark(name, lesson, scale)`` is what ``redai-lab bench``
runs, under the lab's own prefix (``redai-lab:bench:``): on a server the lab did not start, a run
killed mid-way leaves keys that the next one may delete (``redai_lab.lab.lesson``). The notebooks call
the pieces (``pipeline_sweep``, ``scan_sweep``, ``concurrent_latency``, ``pool_sweep``, ...) to
show each one. The harness itself (warm-up, repeats, statistics, export) is ``redai_lab.bench.harness``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import selectors
import shutil
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from ..lab.connection import connect
from ..lab.lesson import LAB_KEY_PREFIX, CliOptions, Lesson, claim, database_count
from ..lab.server import RedisServer
from .harness import Bench, BenchError, Plan, latency_stats

PREFIX = "bench:"
# What ``redai-lab bench`` writes: under the lab's own prefix, so a later run may delete it.
CLI_PREFIX = f"{LAB_KEY_PREFIX}bench:"


class MissingToolError(BenchError):
    """A command-line tool a benchmark runs (redis-cli, redis-benchmark) is not installed."""


def tool(name: str) -> str:
    """The path of ``name`` on PATH, or MissingToolError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"{name} is not installed: `apt install redis-tools` (or redis) provides it.")
    return path


def delete_prefix(client: redis.Redis, prefix: str = PREFIX, *, chunk_size: int = 1000) -> int:
    """UNLINK every key starting with ``prefix`` (found with SCAN, never KEYS); how many were removed."""
    keys = client.scan_iter(match=f"{prefix}*", count=chunk_size)
    return sum(pipeline_in_chunks(client, (("UNLINK", key) for key in keys), chunk_size=chunk_size))


def bench_database(server: RedisServer) -> Lesson:
    """The benchmarks' own database, empty: the second to last (the tests use the last one).

    On a server the lab did not start it is held like a lesson's, and keys a killed run left
    under ``CLI_PREFIX`` are deleted first (see ``redai_lab.lab.lesson``).
    """
    client = connect(server.url)
    try:
        databases = database_count(client)
    finally:
        client.close()
    return claim("bench", databases - 2, server)


# --- pipelining -----------------------------------------------------------------------------

METHODS = ("one_at_a_time", "pipeline", "transaction", "lua")

SET_MANY = """
for _, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1])
end
return #KEYS
"""

GET_MANY = """
local values = {}
for i, key in ipairs(KEYS) do
    values[i] = redis.call('GET', key)
end
return values
"""


class Batch:
    """SET or GET many keys one of four ways (``METHODS``), for comparing them.

    Round trips: ``one_at_a_time`` makes one per key; ``pipeline`` (no MULTI), ``transaction``
    (MULTI/EXEC) and ``lua`` (one EVALSHA running every command inside the server) make one.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._set_many = client.register_script(SET_MANY)
        self._get_many = client.register_script(GET_MANY)

    def set(self, method: str, keys: Sequence[str], value: str) -> None:
        if _check_method(method) == "one_at_a_time":
            for key in keys:
                self.client.set(key, value)
        elif method == "lua":
            self._set_many(keys=keys, args=[value])
        else:
            pipe = self.client.pipeline(transaction=method == "transaction")
            for key in keys:
                pipe.set(key, value)
            pipe.execute()

    def get(self, method: str, keys: Sequence[str]) -> list[Any]:
        if _check_method(method) == "one_at_a_time":
            return [self.client.get(key) for key in keys]
        if method == "lua":
            return list(self._get_many(keys=keys))
        pipe = self.client.pipeline(transaction=method == "transaction")
        for key in keys:
            pipe.get(key)
        return list(pipe.execute())


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: use one of {', '.join(METHODS)}.")
    return method


def pipeline_in_chunks(
    client: redis.Redis, commands: Iterable[Sequence[Any]], *, chunk_size: int = 1000
) -> Iterator[Any]:
    """Run ``commands`` (``("SET", key, value)``, ...) through pipelines of ``chunk_size``; yield replies.

    One round trip per chunk. Commands are consumed lazily, so the client never holds more than
    one chunk of commands and replies: memory stays bounded however many commands there are.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    commands = iter(commands)
    while chunk := list(itertools.islice(commands, chunk_size)):
        pipe = client.pipeline(transaction=False)
        for command in chunk:
            pipe.execute_command(*command)
        yield from pipe.execute()


def load_keys(
    client: redis.Redis, stop: int, *, prefix: str, start: int = 0, value: str = "x", chunk_size: int = 10_000
) -> int:
    """SET ``{prefix}{i}`` for ``start <= i < stop`` through chunked pipelines; the keys written."""
    commands = (("SET", f"{prefix}{i}", value) for i in range(start, stop))
    return sum(1 for _ in pipeline_in_chunks(client, commands, chunk_size=chunk_size))


def resp(*args: str | bytes | float) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings, as servers read it."""
    parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def mass_insert(url: str, count: int, *, prefix: str, value: str = "x") -> dict[str, float]:
    """SET ``count`` keys with ``redis-cli --pipe``: the protocol written straight to the socket.

    Returns the replies and errors redis-cli reports, and the seconds and ops/s of its run (the
    protocol is generated before the clock starts).
    """
    binary, options = tool("redis-cli"), CliOptions.from_url(url)
    protocol = b"".join(resp("SET", f"{prefix}{i}", value) for i in range(count))
    began = time.perf_counter()
    result = subprocess.run(
        [binary, *options.args, "-n", str(options.db), "--pipe"], input=protocol, capture_output=True,
        timeout=600, check=False, env=options.env,
    )
    seconds = time.perf_counter() - began
    summary = re.search(rb"errors: (\d+), replies: (\d+)", result.stdout)
    if result.returncode != 0 or summary is None:
        raise BenchError(f"redis-cli --pipe failed: {(result.stdout + result.stderr).decode().strip()}")
    return {
        "replies": int(summary[2]),
        "errors": int(summary[1]),
        "seconds": seconds,
        "ops_per_s": count / seconds,
    }


def redis_benchmark(
    url: str, db: int, *command: str, requests: int, pipeline: int = 1, clients: int = 1, keyspace: int = 0
) -> dict[str, float]:
    """Run ``redis-benchmark`` (the C client) on ``command`` in database ``db``; its CSV row.

    ``__rand_int__`` in the command becomes a random number below ``keyspace`` (``-r``). The
    row has ``rps`` and the latency columns of redis-benchmark (``p50_latency_ms``, ...).
    redis-benchmark (unlike redis-cli) reads a password only from its arguments, where ``ps``
    shows it to every local user: on a shared machine, benchmark a server without a password.
    """
    options = CliOptions.from_url(url)
    password = ["-a", options.password] if options.password is not None else []
    args = [tool("redis-benchmark"), *options.args, *password, "--dbnum", str(db), "-c", str(clients),
            "-n", str(requests), "-P", str(pipeline), "-q", "--csv"]
    if keyspace:
        args += ["-r", str(keyspace)]
    result = subprocess.run([*args, *command], capture_output=True, text=True, timeout=600, check=False)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    if result.returncode != 0 or not rows:
        raise BenchError(f"redis-benchmark failed: {(result.stdout + result.stderr).strip()}")
    return {key: float(value) for key, value in rows[-1].items() if key != "test"}


@dataclass(frozen=True)
class PipelineScale:
    """How much the pipelining benchmark measures."""

    batches: tuple[int, ...]
    plan: Plan
    bulk: int  # keys for the bulk loads (chunked pipeline, redis-cli --pipe, redis-benchmark)


PIPELINE_SCALES = {
    "quick": PipelineScale(batches=(1, 10, 100, 1000, 10_000), plan=Plan(repeats=3, warmup=1, min_ops=1000),
                           bulk=100_000),
    "full": PipelineScale(batches=(1, 3, 10, 30, 100, 300, 1000, 3000, 10_000),
                          plan=Plan(repeats=5, warmup=2, min_ops=20_000), bulk=1_000_000),
}


def pipeline_sweep(
    bench: Bench,
    client: redis.Redis,
    *,
    batches: Sequence[int],
    plan: Plan,
    methods: Sequence[str] = METHODS,
    value_size: int = 32,
    prefix: str = PREFIX,
) -> pd.DataFrame:
    """SET then GET batches of ``{prefix}pipe:{i}`` keys each way; one row per (op, method, batch)."""
    batch, value = Batch(client), "x" * value_size
    cases = [(op, method, size) for op in ("SET", "GET") for method in methods for size in batches]
    rows = []
    for op, method, size in bench.progress(cases, desc="pipeline sweep"):
        keys = [f"{prefix}pipe:{i}" for i in range(size)]
        fn = partial(batch.set, method, keys, value) if op == "SET" else partial(batch.get, method, keys)
        rows.append(bench.measure({"op": op, "method": method, "batch": size}, fn, ops_per_call=size, plan=plan))
    return bench.table(rows)


# --- SCAN vs KEYS ---------------------------------------------------------------------------


def scan_keys(client: redis.Redis, *, match: str = "*", count: int = 10) -> tuple[list[Any], int]:
    """Every key matching ``match``, by a SCAN loop with ``COUNT count``, and the SCAN calls made.

    A key may come back twice if the keyspace is resized during the loop (SCAN's guarantee is
    every key present throughout, at least once); deduplicate with ``set()`` when it matters.
    """
    keys: list[Any] = []
    cursor, calls = 0, 0
    while True:
        cursor, page = client.scan(cursor, match=match, count=count)
        keys.extend(page)
        calls += 1
        if cursor == 0:
            return keys, calls


@dataclass(frozen=True)
class ScanScale:
    """How much the SCAN vs KEYS benchmark measures."""

    sizes: tuple[int, ...]
    counts: tuple[int, ...]
    plan: Plan
    probe_runs: int  # KEYS calls and full SCAN loops per phase while the bystander client measures


SCAN_SCALES = {
    "quick": ScanScale(sizes=(10_000, 100_000), counts=(10, 100, 1000), plan=Plan(repeats=3, warmup=0, min_ops=1),
                       probe_runs=3),
    "full": ScanScale(sizes=(10_000, 100_000, 1_000_000), counts=(10, 100, 1000, 10_000),
                      plan=Plan(repeats=5, warmup=1, min_ops=1), probe_runs=5),
}


def scan_sweep(
    bench: Bench,
    client: redis.Redis,
    url: str,
    *,
    sizes: Sequence[int],
    counts: Sequence[int],
    plan: Plan,
    probe_runs: int,
    probe_counts: Sequence[int] = (100, 1000),
    prefix: str = PREFIX,
) -> pd.DataFrame:
    """KEYS vs SCAN over keyspaces of ``sizes`` keys (``{prefix}scan:{i}``), grown with pipelines.

    Rows with ``measure == "enumerate"``: one whole enumeration per call, KEYS and a SCAN loop per
    COUNT (``p50_us`` its latency, ``ops_per_s`` keys per second, ``round_trips`` its calls).
    With ``probe_runs``, rows with ``measure == "concurrent GET"`` too: ``concurrent_latency`` at
    each size, the phase in ``method``.
    """
    pattern, loaded, rows = f"{prefix}scan:*", 0, []
    for size in sorted(sizes):
        loaded += load_keys(client, size, prefix=f"{prefix}scan:", start=loaded)
        enumerations: list[tuple[str, int | None, Callable[[], object], int]] = [
            ("KEYS", None, partial(client.keys, pattern), 1)
        ]
        for count in counts:
            scan = partial(scan_keys, client, match=pattern, count=count)
            enumerations.append(("SCAN", count, scan, scan()[1]))
        for method, scan_count, fn, round_trips in bench.progress(enumerations, desc=f"enumerate {size:,} keys"):
            case = {"measure": "enumerate", "keys": size, "method": method, "count": scan_count,
                    "round_trips": round_trips}
            rows.append(bench.measure(case, fn, ops_per_call=size, plan=plan))
        if probe_runs:
            concurrent = concurrent_latency(bench, client, url, match=pattern, runs=probe_runs,
                                            scan_counts=probe_counts, prefix=prefix)
            rows += [{"measure": "concurrent GET", "keys": size, "method": row.pop("phase"), **row}
                     for row in concurrent.to_dict("records")]
    return bench.table(rows)


def _probe(
    client: redis.Redis, key: str, stop: threading.Event, interval_ns: int, max_seconds: float
) -> tuple[array[int], array[int]]:
    """In the probe process: a GET of ``key`` due every ``interval_ns``, until told to stop.

    Returns each GET's start and latency. A GET that fell due while the previous one was still
    waiting starts at its due time (the queueing a stall causes counts); otherwise it starts when
    sent (this process waking up late is not the server's doing).
    """
    starts, latencies = array("q"), array("q")
    clock = time.monotonic_ns
    due = previous_end = clock()
    deadline = due + int(max_seconds * 1e9)
    while not stop.is_set():
        if (wait := due - clock()) > 0:
            time.sleep(wait / 1e9)
        sent = clock()
        client.get(key)
        ended = clock()
        start = due if due < previous_end else sent
        starts.append(start)
        latencies.append(ended - start)
        due, previous_end = due + interval_ns, ended
        if ended > deadline:  # bounded in time even if nobody says stop
            break
    return starts, latencies


def _probe_process() -> None:
    """The probe process's main: its settings on stdin's first line, ``ready`` on stdout, then GETs.

    Stdin is its lifeline: the parent closes it to say stop, and the kernel closes it when the
    parent dies, however it dies. Then the results go to stdout (the sample count, then the starts
    and the latencies as int64), or nowhere when no parent reads them any more.
    """
    settings = json.loads(sys.stdin.buffer.readline())
    try:
        # No retries, no pool tricks: see the stalls as they are. Timeouts keep it bounded.
        client = redis.Redis.from_url(settings["url"], socket_connect_timeout=10, socket_timeout=60)
        client.get(settings["key"])  # connected and warm before the first timed GET
    except redis.RedisError as exc:
        sys.stderr.write(" ".join(f"{type(exc).__name__}: {exc}".split()) + "\n")
        raise SystemExit(1) from None
    stop = threading.Event()

    def wait_for_end_of_stdin() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=wait_for_end_of_stdin, daemon=True).start()
    os.write(sys.stdout.fileno(), b"ready\n")
    starts, latencies = _probe(client, settings["key"], stop, settings["interval_ns"], settings["max_seconds"])
    client.close()
    results = struct.pack("<q", len(starts)) + starts.tobytes() + latencies.tobytes()
    with contextlib.suppress(BrokenPipeError), os.fdopen(sys.stdout.fileno(), "wb", closefd=False) as out:
        out.write(results)  # BrokenPipeError: the parent is gone, nobody wants them


class LatencyProbe:
    """A bystander client in another process: a GET due every ``interval_us`` (1 ms), each one timed.

    The schedule is open-loop: a GET that fell due while an earlier one was still waiting counts
    its latency from its due time. A closed loop (GET, wait, GET again) would send a single GET
    during a 250 ms stall and record one slow sample among thousands of fast ones, while a service
    whose requests keep arriving has every request of those 250 ms waiting. Counting from the due
    time records them all (what load generators such as wrk2 call correcting for coordinated
    omission). The probe's own late wake-ups are not counted: they are not the server's doing.

    ``window(name)`` marks when something ran in this process; after the ``with`` block,
    ``table()`` gives the latency percentiles of the GETs that overlapped each window. Times come
    from CLOCK_MONOTONIC, which both processes share.

        with LatencyProbe(lesson.url, "bench:probe") as probe:
            with probe.window("idle"):
                time.sleep(0.5)
            with probe.window("KEYS"):
                r.keys("bench:*")
        probe.table()

    The probe is a plain child process (``python -m redai_lab.bench.benchmarks``) reading its stdin: it
    stops when this process closes it, or dies, even by SIGKILL. No multiprocessing, so no
    resource tracker process to outlive anyone. The URL goes through the pipe, not the command
    line, where ``ps`` would show its password.
    """

    def __init__(self, url: str, key: str, *, interval_us: int = 1000, max_seconds: float = 300.0) -> None:
        self.url, self.key, self.max_seconds = url, key, max_seconds
        self.interval_ns = interval_us * 1000
        self.windows: list[tuple[str, int, int]] = []
        self.starts = self.latencies = np.zeros(0, dtype=np.int64)

    def __enter__(self) -> LatencyProbe:
        env = dict(os.environ)
        # The probe imports this very package: from a checkout, put it on the child's path (an
        # installed one is there already, and must not go before the standard library).
        package_parent = str(Path(__file__).resolve().parents[2])
        if package_parent not in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "redai_lab.bench.benchmarks"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=0, env=env,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        settings = {"url": self.url, "key": self.key, "interval_ns": self.interval_ns, "max_seconds": self.max_seconds}
        self._process.stdin.write(json.dumps(settings).encode() + b"\n")
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=60) and self._process.stdout.readline() == b"ready\n"
        if not ready:
            self._process.kill()
            _, errors = self._process.communicate(timeout=30)
            last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BenchError(
                f"The latency probe process did not start (exit code {self._process.returncode}): {last[0]}"
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Stop the probe and read its samples; an error of the ``with`` block wins over the probe's."""
        try:
            results, errors = self._process.communicate(timeout=60)  # closes stdin: the stop signal
        except subprocess.TimeoutExpired:
            self._process.kill()
            results, errors = self._process.communicate()
        (count,) = struct.unpack_from("<q", results) if len(results) >= 8 else (-1,)
        if self._process.returncode != 0 or len(results) != 8 + 16 * count:
            if exc_type is not None:
                return
            last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"The latency probe process died (exit code {self._process.returncode}): {last[0]}")
        self.starts = np.frombuffer(results, dtype=np.int64, count=count, offset=8)
        self.latencies = np.frombuffer(results, dtype=np.int64, count=count, offset=8 + 8 * count)

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[None]:
        began = time.monotonic_ns()
        try:
            yield
        finally:
            self.windows.append((name, began, time.monotonic_ns()))

    def table(self) -> pd.DataFrame:
        """Per window name: latency_stats of the probe's GETs that overlapped its windows.

        A GET spanning the edge of two windows counts in both. A window no GET overlapped (the
        probe was not scheduled then) has ``samples`` 0 and no percentiles.
        """
        rows = []
        for name in dict.fromkeys(name for name, _, _ in self.windows):
            overlap = np.zeros(self.starts.size, dtype=bool)
            for _, began, ended in (w for w in self.windows if w[0] == name):
                overlap |= (self.starts <= ended) & (self.starts + self.latencies >= began)
            stats = latency_stats(self.latencies[overlap]) if overlap.any() else {"samples": 0}
            rows.append({"phase": name, **stats})
        return pd.DataFrame(rows)


def command_time(client: redis.Redis, command: str) -> tuple[int, float]:
    """Calls and total milliseconds the server spent in ``command`` so far (INFO commandstats)."""
    stats = client.info("commandstats").get(f"cmdstat_{command.lower()}", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0)) / 1000


def concurrent_latency(
    bench: Bench,
    client: redis.Redis,
    url: str,
    *,
    match: str,
    runs: int,
    scan_counts: Sequence[int] = (100, 1000),
    idle_seconds: float = 0.5,
    prefix: str = PREFIX,
) -> pd.DataFrame:
    """A bystander's GET latency (from another process) when idle, during KEYS, during SCAN loops.

    ``runs`` KEYS calls, then ``runs`` full SCAN loops per COUNT, enumerate ``match``. Each row
    adds what the server says it spent per call of that command (INFO commandstats): KEYS holds
    the server for all of it at once, a SCAN call for a sliver. The bystander reads ``{prefix}probe``.
    """
    key = f"{prefix}probe"
    client.set(key, "x")
    phases: list[tuple[str, str, Callable[[], object]]] = [("KEYS", "keys", partial(client.keys, match))]
    phases += [
        (f"SCAN COUNT {count}", "scan", partial(scan_keys, client, match=match, count=count)) for count in scan_counts
    ]
    server: dict[str, float] = {}
    with LatencyProbe(url, key) as probe:
        with probe.window("idle"):
            time.sleep(idle_seconds)
        for phase, command, fn in bench.progress(phases, desc="concurrent client"):
            calls, ms = command_time(client, command)
            for _ in range(runs):
                with probe.window(phase):
                    fn()
            calls_after, ms_after = command_time(client, command)
            server[phase] = (ms_after - ms) / max(1, calls_after - calls)
    table = probe.table()
    table["server_ms_per_call"] = table["phase"].map(server)
    return bench.table(table.to_dict("records"))


# --- connection pooling ---------------------------------------------------------------------

POOL_STRATEGIES = ("new_connection", "shared_pool", "blocking_pool")
# A new connection per command leaves a socket in TIME_WAIT per command: measure few of them.
NEW_CONNECTION_MAX_OPS = 1000


def pooled_get(
    url: str, strategy: str, *, threads: int, key: str
) -> tuple[Callable[[], object], redis.ConnectionPool | None]:
    """A thread-safe ``GET key`` for ``threads`` threads, by ``strategy``; and its pool to close.

    * ``new_connection``: a new client (TCP connect and handshake) per command, closed after it.
    * ``shared_pool``: one ``ConnectionPool`` with a connection per thread, shared by all.
    * ``blocking_pool``: one ``BlockingConnectionPool`` with half as many connections as threads:
      a thread waits (up to 10 s) for a free connection instead of failing.
    """
    if strategy == "new_connection":

        def get_on_a_new_connection() -> object:
            client = redis.Redis.from_url(url)
            try:
                return client.get(key)
            finally:
                client.close()

        return get_on_a_new_connection, None
    if strategy == "shared_pool":
        pool: redis.ConnectionPool = redis.ConnectionPool.from_url(url, max_connections=threads)
    elif strategy == "blocking_pool":
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=max(1, threads // 2), timeout=10)
    else:
        raise ValueError(f"Unknown strategy {strategy!r}: use one of {', '.join(POOL_STRATEGIES)}.")
    return partial(redis.Redis(connection_pool=pool).get, key), pool


def connections_received(client: redis.Redis) -> int:
    """Connections the server has accepted since it started (INFO stats)."""
    return int(client.info("stats")["total_connections_received"])


@dataclass(frozen=True)
class PoolScale:
    """How much the connection-pooling benchmark measures."""

    threads: tuple[int, ...]
    plan: Plan


POOL_SCALES = {
    "quick": PoolScale(threads=(1, 4), plan=Plan(repeats=3, warmup=1, min_ops=400)),
    "full": PoolScale(threads=(1, 2, 4, 8, 16), plan=Plan(repeats=5, warmup=1, min_ops=5000)),
}


def pool_sweep(
    bench: Bench, client: redis.Redis, url: str, *, threads: Sequence[int], plan: Plan, prefix: str = PREFIX
) -> pd.DataFrame:
    """GET ``{prefix}pool`` from ``threads`` threads by each strategy; with the connections each opened."""
    key = f"{prefix}pool"
    client.set(key, "x")
    rows = []
    cases = [(strategy, n) for strategy in POOL_STRATEGIES for n in threads]
    for strategy, n in bench.progress(cases, desc="pool sweep"):
        fn, pool = pooled_get(url, strategy, threads=n, key=key)
        case_plan = plan if pool else Plan(plan.repeats, plan.warmup, min(plan.min_ops, NEW_CONNECTION_MAX_OPS))
        before = connections_received(client)
        try:
            row = bench.measure(
                {"strategy": strategy, "threads": n, "max_connections": pool.max_connections if pool else None},
                fn, plan=case_plan, threads=n,
            )
        finally:
            if pool is not None:
                pool.disconnect()
        rows.append({**row, "connections_opened": connections_received(client) - before})
    return bench.table(rows)


# --- the CLI's benchmarks -------------------------------------------------------------------


def run_benchmark(name: str, lesson: Lesson, scale: str) -> pd.DataFrame:
    """Benchmark ``name`` (``BENCHMARKS``) at ``scale`` in ``lesson``'s database, then clean up.

    Its keys are under ``CLI_PREFIX``. When the benchmark fails (the server killed, say), the
    clean-up may fail too: that failure is dropped so the benchmark's own error is the one
    reported, and the next run deletes what is left.
    """
    if name not in BENCHMARKS:
        raise BenchError(f"Unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}.")
    client = lesson.client
    bench = Bench(client, scale=scale)
    try:
        frame = BENCHMARKS[name](bench, lesson)
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            delete_prefix(client, CLI_PREFIX)
        raise
    delete_prefix(client, CLI_PREFIX)
    return frame


def _pipeline(bench: Bench, lesson: Lesson) -> pd.DataFrame:
    scale = PIPELINE_SCALES[bench.scale]
    return pipeline_sweep(bench, lesson.client, batches=scale.batches, plan=scale.plan, prefix=CLI_PREFIX)


def _scan(bench: Bench, lesson: Lesson) -> pd.DataFrame:
    scale = SCAN_SCALES[bench.scale]
    return scan_sweep(bench, lesson.client, lesson.url, sizes=scale.sizes, counts=scale.counts, plan=scale.plan,
                      probe_runs=scale.probe_runs, prefix=CLI_PREFIX)


def _pool(bench: Bench, lesson: Lesson) -> pd.DataFrame:
    scale = POOL_SCALES[bench.scale]
    return pool_sweep(bench, lesson.client, lesson.url, threads=scale.threads, plan=scale.plan, prefix=CLI_PREFIX)


def _patterns(bench: Bench, lesson: Lesson) -> pd.DataFrame:
    from .peers import patterns  # the pattern modules and the peers load only here

    return patterns(bench, lesson)


BENCHMARKS: dict[str, Callable[[Bench, Lesson], pd.DataFrame]] = {
    "pipeline": _pipeline,
    "scan": _scan,
    "pool": _pool,
    "patterns": _patterns,
}


if __name__ == "__main__":  # the latency probe's process (LatencyProbe)
    _probe_process()
