"""The benchmark harness: warm-up, repeats, latency percentiles, throughput, and where it ran.

A number is only as good as its method, so the method is fixed here, once:

* ``measure(fn)`` calls ``fn`` ``plan.warmup`` times untimed (connections opened, Lua scripts
  loaded, caches warm), then makes ``plan.repeats`` timed repeats. A repeat is enough calls to
  do at least ``plan.min_ops`` operations (from ``threads`` threads at once, if asked); each call
  is timed on its own, so a repeat gives the latency percentiles of one call (p50, p95, p99,
  max) and its throughput (operations per second of wall-clock time).
* The reported row is the **median of the repeats**, statistic by statistic, plus the slowest and
  fastest repeat's throughput so the spread stays visible.
* ``Bench`` records the environment with the results (server version, redis-py and hiredis
  versions, the reply parser actually in use, CPU count, transport): ``frame.attrs["environment"]``
  and in every exported file (``save`` to ``.csv`` or ``.json``; ``load`` reads either back).

Scale: ``quick`` runs in seconds (CI, nbval, ``redai-lab bench --quick``) and ``full`` in minutes
with tqdm progress bars. Notebooks read it from ``REDAI_LAB_BENCH_SCALE`` (default ``quick``).
Progress bars are off when ``TQDM_DISABLE=1`` (as in the tests), so outputs stay clean.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import redis
from matplotlib.axes import Axes
from tqdm import tqdm

from ..errors import LabError

SCALE_ENV = "REDAI_LAB_BENCH_SCALE"
SCALES = ("quick", "full")
FORMATS = (".csv", ".json")
LATENCY_COLUMNS = ("p50_us", "p95_us", "p99_us", "max_us")

T = TypeVar("T")


class BenchError(LabError):
    """A benchmark was asked for something it cannot do (unknown scale, file format, ...)."""


def scale_from_env(default: str = "quick") -> str:
    """The scale in ``REDAI_LAB_BENCH_SCALE`` (``quick`` or ``full``), else ``default``."""
    value = os.environ.get(SCALE_ENV, "").strip().lower() or default
    if value not in SCALES:
        raise BenchError(
            f"{SCALE_ENV}={value!r} is not a scale: use quick (seconds, as in CI) or full (minutes)."
        )
    return value


# --- statistics: pure functions of timings --------------------------------------------------


def latency_stats(latencies_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """p50, p95, p99 and max of latencies given in nanoseconds, in microseconds, and their count.

    Percentiles are linearly interpolated between samples (numpy's default method).
    """
    samples = np.asarray(latencies_ns, dtype=float)
    if samples.size == 0:
        raise ValueError("latency_stats() got no samples: time at least one call.")
    p50, p95, p99 = np.percentile(samples, [50, 95, 99]) / 1000
    return {
        "p50_us": float(p50),
        "p95_us": float(p95),
        "p99_us": float(p99),
        "max_us": float(samples.max() / 1000),
        "samples": int(samples.size),
    }


def summarize(latencies_ns: Sequence[int] | np.ndarray, *, ops: int, elapsed_ns: int) -> dict[str, float]:
    """One repeat: the latency percentiles of its calls and its throughput in ``ops`` per second."""
    if elapsed_ns <= 0:
        raise ValueError(f"elapsed_ns must be positive, got {elapsed_ns}.")
    return {**latency_stats(latencies_ns), "ops_per_s": ops * 1e9 / elapsed_ns}


def median_of_repeats(repeats: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of every statistic over the repeats, plus the min and max repeat's ops/s.

    With an even number of repeats the median is the mean of the middle two.
    """
    if not repeats:
        raise ValueError("median_of_repeats() got no repeats: measure at least one.")
    row = {key: float(statistics.median(r[key] for r in repeats)) for key in repeats[0]}
    if "ops_per_s" in row:
        row["ops_per_s_min"] = float(min(r["ops_per_s"] for r in repeats))
        row["ops_per_s_max"] = float(max(r["ops_per_s"] for r in repeats))
    row["repeats"] = len(repeats)
    return row


def ratio_table(
    frame: pd.DataFrame, *, value: str, column: str, baseline: str, index: str | Sequence[str]
) -> pd.DataFrame:
    """``value`` for every level of ``column`` divided by the ``baseline`` level's, per ``index`` row.

    ``ratio_table(df, value="ops_per_s", column="method", baseline="one_at_a_time",
    index=["op", "batch"])`` gives each method's speed-up over one command at a time.
    """
    table = frame.pivot_table(index=index, columns=column, values=value, aggfunc="median")
    if baseline not in table.columns:
        raise ValueError(f"No rows with {column}={baseline!r} to divide by; have {list(table.columns)}.")
    ratios = table.div(table[baseline], axis=0)
    ratios.columns.name = f"{value} / {baseline}"
    return ratios


# --- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much to measure: untimed warm-up calls, timed repeats, operations per repeat."""

    repeats: int = 3
    warmup: int = 1
    min_ops: int = 1000

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0 or self.min_ops < 1:
            raise ValueError(f"{self}: need repeats >= 1, warmup >= 0 and min_ops >= 1.")


def measure(
    fn: Callable[[], object], *, ops_per_call: int = 1, plan: Plan = Plan(), threads: int = 1
) -> dict[str, float]:
    """Time ``fn`` by ``plan`` (see the module's docstring) and return the median-of-repeats row.

    ``ops_per_call`` is how many operations one call does (a pipeline of 100 SETs: 100), so
    ``ops_per_s`` counts operations while the percentiles are those of whole calls. With
    ``threads`` > 1 every thread makes the calls at once (``fn`` must be thread-safe).
    """
    if ops_per_call < 1 or threads < 1:
        raise ValueError(f"ops_per_call and threads must be >= 1, got {ops_per_call} and {threads}.")
    calls = max(1, math.ceil(plan.min_ops / (ops_per_call * threads)))
    for _ in range(plan.warmup):
        fn()
    repeats = []
    for _ in range(plan.repeats):
        latencies, elapsed = _timed_calls(fn, calls, threads)
        repeats.append(summarize(latencies, ops=calls * threads * ops_per_call, elapsed_ns=elapsed))
    return {**median_of_repeats(repeats), "calls": calls * threads, "ops_per_call": ops_per_call}


def _timed_calls(fn: Callable[[], object], calls: int, threads: int) -> tuple[list[int], int]:
    """Every call's latency and the wall-clock time of the whole repeat, in nanoseconds."""
    per_thread: list[list[int]] = [[] for _ in range(threads)]
    errors: list[Exception] = []
    start_line = threading.Barrier(threads + 1) if threads > 1 else None

    def worker(latencies: list[int]) -> None:
        try:
            if start_line is not None:
                start_line.wait()
            clock = time.perf_counter_ns
            for _ in range(calls):
                began = clock()
                fn()
                latencies.append(clock() - began)
        except Exception as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            errors.append(exc)

    if start_line is None:
        began = time.perf_counter_ns()
        worker(per_thread[0])
    else:
        workers = [threading.Thread(target=worker, args=(lat,), daemon=True) for lat in per_thread]
        for thread in workers:
            thread.start()
        start_line.wait()  # every thread is ready: start the clock and let them run
        began = time.perf_counter_ns()
        for thread in workers:
            thread.join()
    elapsed = time.perf_counter_ns() - began
    if errors:
        raise errors[0]
    return [latency for latencies in per_thread for latency in latencies], elapsed


class Bench:
    """Measurements of one run and the environment they were taken in.

    ``bench.measure(case, fn, ...)`` returns ``{**case, **measure(fn, ...)}``; ``bench.table(rows)``
    makes those rows a DataFrame carrying ``attrs["environment"]``.
    """

    def __init__(self, client: redis.Redis, *, scale: str | None = None) -> None:
        self.scale = scale or scale_from_env()
        if self.scale not in SCALES:
            raise BenchError(f"Unknown scale {self.scale!r}: use one of {', '.join(SCALES)}.")
        self.environment = environment(client, scale=self.scale)

    def measure(
        self,
        case: Mapping[str, Any],
        fn: Callable[[], object],
        *,
        ops_per_call: int = 1,
        plan: Plan = Plan(),
        threads: int = 1,
    ) -> dict[str, Any]:
        return {**case, **measure(fn, ops_per_call=ops_per_call, plan=plan, threads=threads)}

    def table(self, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame(list(rows))
        frame.attrs["environment"] = dict(self.environment)
        return frame

    def progress(self, items: Sequence[T], desc: str) -> Iterator[T]:
        """``items`` with a tqdm progress bar (none when ``TQDM_DISABLE`` is set)."""
        disabled = os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        yield from tqdm(items, desc=desc, leave=False, disable=disabled)


def environment(client: redis.Redis, *, scale: str) -> dict[str, Any]:
    """Where a benchmark ran: versions, reply parser and protocol, transport, CPUs, scale, time (UTC)."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        parser = type(connection._parser).__name__  # what redis-py really chose, not what we hope
        protocol = connection.protocol  # RESP3 by default since redis-py 8
        transport = (
            "unix" if isinstance(connection, redis.UnixDomainSocketConnection)
            else "tls" if isinstance(connection, redis.SSLConnection)
            else "tcp"
        )
    finally:
        pool.release(connection)
    try:
        hiredis_version: str | None = metadata.version("hiredis")
    except metadata.PackageNotFoundError:
        hiredis_version = None
    return {
        "redis_server": str(client.info("server")["redis_version"]),
        "redis_py": redis.__version__,
        "hiredis": hiredis_version,
        "parser": parser,
        "protocol": protocol,
        "transport": transport,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "scale": scale,
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- export ---------------------------------------------------------------------------------


def check_format(path: str | Path) -> Path:
    """``path`` as a Path when it ends in ``.csv`` or ``.json``; otherwise a BenchError."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise BenchError(f"Cannot write {path.name!r}: name the file *.csv or *.json.")
    return path


def save(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` and its environment to ``path``, as CSV or JSON by its extension.

    CSV starts with ``# key: value`` lines for the environment (``pd.read_csv(path,
    skiprows=len(environment))`` skips them); JSON is ``{"environment": {...}, "results": [rows]}``.
    """
    path = check_format(path)
    env = frame.attrs.get("environment", {})
    if path.suffix.lower() == ".csv":
        header = "".join(f"# {key}: {value}\n" for key, value in env.items())
        path.write_text(header + frame.to_csv(index=False))
    else:
        rows = json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> plain numbers
        path.write_text(json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    return path


def load(path: str | Path) -> pd.DataFrame:
    """Read a file written by ``save`` back, with ``attrs["environment"]``."""
    path = check_format(path)
    if path.suffix.lower() == ".json":
        document = json.loads(path.read_text())
        frame = pd.DataFrame(document["results"])
        env = document["environment"]
    else:
        lines = path.read_text().splitlines()
        header = list(itertools.takewhile(lambda line: line.startswith("# "), lines))
        env = dict(line[2:].split(": ", 1) for line in header)
        frame = pd.read_csv(path, skiprows=len(header))  # not comment="#": a value may hold a "#"
    frame.attrs["environment"] = env
    return frame


# --- plots ----------------------------------------------------------------------------------


def plot_lines(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    by: str | Sequence[str],
    ax: Axes | None = None,
    logx: bool = True,
    logy: bool = True,
    title: str = "",
    ylabel: str | None = None,
) -> Axes:
    """One line of ``y`` against ``x`` per group of ``by``, on log axes by default."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4))
    for name, group in frame.groupby(by, sort=False):
        label = " ".join(map(str, name)) if isinstance(name, tuple) else str(name)
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", label=label)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_bars(
    frame: pd.DataFrame,
    *,
    x: str,
    y: Sequence[str],
    ax: Axes | None = None,
    logy: bool = True,
    title: str = "",
    ylabel: str | None = None,
) -> Axes:
    """Grouped bars of the columns ``y`` for each value of ``x``, on a log axis by default."""
    size = None if ax is not None else (7, 4)
    ax = frame.set_index(x)[list(y)].plot.bar(ax=ax, logy=logy, rot=0, figsize=size)
    ax.set_ylabel(ylabel or ", ".join(y))
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return ax
