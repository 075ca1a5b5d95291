"""Watching a Redis server from the outside: the INFO fields worth an alert, the server sampled
over time for a live dashboard, a MONITOR client that only counts, and redis-cli's live views
bounded in time (lesson 26).

    with InfoSampler(r, interval=0.1) as sampler:
        run_some_load()
    sampler.rates()   # [{"elapsed_s": 0.1, "ops_per_s": 12000.0, "used_memory_mb": 1.2, "clients": 3}, ...]

The sampler reads ``INFO`` on a connection of its own, and its own ``INFO`` calls and
connection are taken out of what it reports: on an otherwise idle server it reports 0 ops/s and
0 clients, and the commands it reports between two samples are exactly the others' commands.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis

from ..errors import check_seconds
from .lesson import CliOptions

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class WatchedField:
    """An INFO field worth watching: where it is, and what it tells you."""

    name: str
    section: str
    why: str


# The ten fields to graph and alert on (hit_ratio is computed from keyspace_hits and _misses).
WATCHED_FIELDS = (
    WatchedField("used_memory", "memory", "bytes Redis allocated; against maxmemory, how close eviction or OOM is"),
    WatchedField("mem_fragmentation_ratio", "memory",
                 "RSS / used_memory: well above 1.5 wastes RAM, below 1 means the OS swapped Redis out"),
    WatchedField("connected_clients", "clients", "open connections: a steady climb is a connection leak"),
    WatchedField("blocked_clients", "clients", "clients waiting in BLPOP, XREAD BLOCK, WAIT...: workers idle or stuck"),
    WatchedField("rejected_connections", "stats", "connections refused at maxclients: clients are failing now"),
    WatchedField("instantaneous_ops_per_sec", "stats", "commands per second, a moving average over ~1.6 s"),
    WatchedField("hit_ratio", "stats", "keyspace_hits / (hits + misses): a cache that stopped caching"),
    WatchedField("evicted_keys", "stats", "keys dropped by maxmemory-policy: data lost by design, or a cache too small"),
    WatchedField("latest_fork_usec", "stats", "how long the last fork (BGSAVE, AOF rewrite) froze the server"),
    WatchedField("rdb_last_bgsave_status", "persistence", "ok or err: snapshots silently failing (disk full)"),
)


def watched(info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``WATCHED_FIELDS`` read from an ``INFO`` reply (``r.info()``), in that order.

    ``hit_ratio`` is None before the first read of a key (no hits, no misses).
    """
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    values = {field.name: info.get(field.name) for field in WATCHED_FIELDS}
    values["hit_ratio"] = round(hits / (hits + misses), 4) if hits + misses else None
    return values


def _own_pool(r: redis.Redis, **overrides: Any) -> redis.ConnectionPool:
    """A new pool to the server of ``r``, with its options (TLS and credentials included)."""
    pool = r.connection_pool
    return redis.ConnectionPool(connection_class=pool.connection_class,
                                **{**pool.connection_kwargs, **overrides})


@dataclass(frozen=True)
class InfoSample:
    """One reading: seconds since the sampler started, and the server's counters then, less the
    sampler's own (its INFO calls, its connection)."""

    elapsed_s: float
    commands: int  # total_commands_processed, without the sampler's INFO calls
    used_memory: int
    clients: int  # connected_clients, without the sampler's connection


class InfoSampler:
    """Read ``INFO`` every ``interval`` seconds on a thread of its own, from ``with`` to its end.

    ``samples`` holds every reading (one at the start, one at the end, and one per interval in
    between); ``rates()`` turns consecutive readings into ops/s. An error on the sampling
    connection (the server went away) ends the sampling and is raised when the block ends.
    """

    def __init__(self, r: redis.Redis, *, interval: float = 0.1) -> None:
        self.interval = check_seconds("interval", interval)
        self.samples: list[InfoSample] = []
        # A connection of its own: the sampler must not wait behind the load it measures.
        self._client = redis.Redis(connection_pool=_own_pool(r, decode_responses=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redai-lab-sampler", daemon=True)
        self._error: BaseException | None = None
        self._started = 0.0

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._sample()  # the first reading is taken before the block's code runs
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        try:
            if self._error is None:
                self._sample()  # the last reading is taken after the block's code has run
        finally:
            self._client.close()
        if self._error is not None and kind is None:
            raise self._error

    def rates(self) -> list[dict[str, float]]:
        """One row per interval: its end (s), ops/s over it, memory (MB) and clients at its end."""
        return [
            {"elapsed_s": round(now.elapsed_s, 3),
             "ops_per_s": (now.commands - before.commands) / (now.elapsed_s - before.elapsed_s),
             "used_memory_mb": now.used_memory / 2**20,
             "clients": now.clients}
            for before, now in zip(self.samples, self.samples[1:])
        ]

    def _sample(self) -> None:
        info = self._client.info()
        own_info_calls = len(self.samples)  # INFO is counted once it has run: the earlier ones
        self.samples.append(InfoSample(
            elapsed_s=time.perf_counter() - self._started,
            commands=int(info["total_commands_processed"]) - own_info_calls,
            used_memory=int(info["used_memory"]),
            clients=int(info["connected_clients"]) - 1,
        ))

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._sample()
        except redis.RedisError as exc:  # raised in the caller's thread when the block ends
            self._error = exc


class MonitorDrain:
    """A MONITOR client on a thread of its own that reads every line and only counts them:
    what the server pays for a monitor, with as little client work as a consumer can do."""

    def __init__(self, r: redis.Redis) -> None:
        self._connection = _own_pool(r).make_connection()
        self.lines = 0
        self._thread = threading.Thread(target=self._run, name="redai-lab-monitor", daemon=True)

    def __enter__(self) -> Self:
        self._connection.connect()
        self._connection.send_command("MONITOR")
        if self._connection.read_response() not in (b"OK", "OK"):
            raise redis.ResponseError("MONITOR was not accepted")
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._connection.disconnect()  # shuts the socket down: the reading thread's read fails
        self._thread.join()

    def wait_for(self, lines: int, timeout: float = 10.0) -> bool:
        """Wait until ``lines`` lines have been read (True), or ``timeout`` seconds (False): lines
        still in the socket when the block ends are not counted."""
        deadline = time.monotonic() + check_seconds("timeout", timeout)
        while self.lines < lines and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.lines >= lines

    def _run(self) -> None:
        try:
            while True:
                self._connection.read_response(disconnect_on_error=False)
                self.lines += 1
        except (redis.ConnectionError, OSError, ValueError, AttributeError):
            return  # disconnected by __exit__ (redis-py raises one of these, depending on timing)


# A cursor movement or erase (ESC [ ... letter), as redis-cli --latency redraws its line with.
_CURSOR_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def redis_cli_for(url: str, args: Sequence[str], seconds: float) -> list[str] | None:
    """The lines ``redis-cli ARGS`` prints at ``url`` in ``seconds`` (then it is stopped), or None
    when redis-cli is not installed.

    For the views that run until Ctrl-C (``--stat``, ``--latency-history``). redis-cli writes
    through a pseudo-terminal, as on a screen: into a pipe it would buffer its output and lose
    it when stopped.
    """
    binary = shutil.which("redis-cli")
    if binary is None:
        return None
    seconds = check_seconds("seconds", seconds)
    options = CliOptions.from_url(url)
    reader, writer = pty.openpty()
    try:
        process = subprocess.Popen([binary, *options.args, *args], stdin=subprocess.DEVNULL, stdout=writer,
                                   stderr=writer, env=options.env)
    finally:
        os.close(writer)
    output = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([reader], [], [], left)[0] and not _read_into(output, reader):
                break  # redis-cli exited (a view that ends on its own, or an error)
    finally:
        process.terminate()
        process.wait(timeout=10)
    # What it wrote before it stopped is still in the terminal.
    while select.select([reader], [], [], 0)[0] and _read_into(output, reader):
        pass
    os.close(reader)
    # On a terminal, redis-cli redraws a line with \r or cursor escapes: each redraw is a line here.
    text = _CURSOR_ESCAPE.sub("\n", output.decode(errors="replace"))
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _read_into(output: bytearray, reader: int) -> bool:
    """Append what the terminal holds to ``output``; False once the writer has gone."""
    try:
        chunk = os.read(reader, 65536)
    except OSError:  # EIO: every writer closed the terminal
        return False
    output += chunk
    return bool(chunk)
