"""Memory and eviction, measured (lesson 22): a Zipf cache workload under each eviction policy,
active vs lazy expiry, and the settings a production instance should start with.

Everything here that changes a server (``CONFIG SET``, ``FLUSHALL``, ``DEBUG``) runs on a
throwaway server the function starts itself (``redai_lab.lab.server.start_local``, loopback only,
without modules) and stops before it returns: never on the lab's server, never on the user's.
``fill`` and ``memory_report`` work on any client they are given; ``fill`` only writes keys
under the prefix it is told.
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import redis

from ..errors import InvalidArgument, check_count
from .lesson import CliOptions
from .server import RedisServer, ServerBinary, start_local

# Every value of maxmemory-policy, in the order the lesson shows them.
EVICTION_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-ttl",
    "volatile-random",
)

# An instance that is only a cache: every key can be rebuilt from the database behind it.
CACHE_CONFIG = {
    "maxmemory": "2gb",  # the seed's figure: well below the machine's RAM (see the lesson)
    "maxmemory-policy": "allkeys-lfu",  # a hot key stays hot; allkeys-lru when popularity shifts fast
    "maxmemory-samples": "10",  # closer to true LRU/LFU than 5, for a little CPU
    "lazyfree-lazy-eviction": "yes",  # free big evicted values in a background thread
    "lazyfree-lazy-expire": "yes",
    "active-expire-effort": "3",  # fewer expired keys left holding memory (1 leaves up to 10%)
}
# An instance that holds data nothing can rebuild: a Celery broker, sessions, queues.
BROKER_CONFIG = {
    "maxmemory": "2gb",
    "maxmemory-policy": "noeviction",  # a full broker refuses new tasks; it never drops queued ones
}


def as_arguments(config: Mapping[str, str]) -> list[str]:
    """``config`` as ``redis-server`` arguments (``["--maxmemory", "2gb", ...]``), for
    ``start_local(config=...)``; the same lines, without the dashes, go in ``redis.conf``."""
    return [part for name, value in config.items() for part in (f"--{name}", value)]


def memory_report(r: redis.Redis) -> dict[str, object]:
    """What ``INFO memory`` and ``INFO stats`` say about memory, the figures to watch in production."""
    memory, stats = r.info("memory"), r.info("stats")
    return {
        "used_memory": memory["used_memory"],  # what maxmemory is compared with
        "used_memory_rss": memory["used_memory_rss"],  # what the OS gave the process
        "mem_fragmentation_ratio": memory["mem_fragmentation_ratio"],  # RSS / used
        "used_memory_peak": memory["used_memory_peak"],
        "used_memory_dataset": memory["used_memory_dataset"],
        "maxmemory": memory["maxmemory"],
        "maxmemory_policy": memory["maxmemory_policy"],
        "mem_allocator": memory["mem_allocator"],
        "evicted_keys": stats["evicted_keys"],
        "expired_keys": stats["expired_keys"],
    }


@dataclass(frozen=True)
class Filled:
    """What ``fill`` did: the writes the server accepted, those it refused for lack of memory
    (``OOM command not allowed...``), and the first refusal's text."""

    written: int
    refused: int
    first_refusal: str = ""


def fill(
    r: redis.Redis, prefix: str, count: int, *, value_bytes: int = 100, ttl_seconds: int | None = None,
    batch: int = 100,
) -> Filled:
    """``SET prefix<i> <value_bytes bytes> [EX ttl_seconds]`` for i in 0..count-1, pipelined by
    ``batch``; writes refused with an out-of-memory error are counted, not raised."""
    check_count("count", count, minimum=0)
    check_count("value_bytes", value_bytes, minimum=0)
    check_count("batch", batch)
    value = "x" * value_bytes
    written = refused = 0
    first_refusal = ""
    for start in range(0, count, batch):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, count)):
            pipe.set(f"{prefix}{i}", value, ex=ttl_seconds)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.exceptions.OutOfMemoryError):
                refused += 1
                first_refusal = first_refusal or str(reply)
            elif isinstance(reply, Exception):
                raise reply
            else:
                written += 1
    return Filled(written, refused, first_refusal)


@contextmanager
def throwaway_server(
    config: Sequence[str] = (), binary: ServerBinary | None = None
) -> Iterator[tuple[RedisServer, redis.Redis]]:
    """A server of the lab's kind started for one experiment (no modules, loopback, nothing
    persisted) and a client of it; both closed and the server stopped on exit."""
    with start_local(binary, modules=[], config=config) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=30)
        try:
            yield server, client
        finally:
            client.close()


# --- Eviction: one cache workload under each policy ----------------------------------------------


@dataclass(frozen=True)
class CacheWorkload:
    """A cache-aside workload: ``requests`` reads of ``keys`` keys, drawn from a Zipf
    distribution (the k-th most popular key is asked for in proportion to 1/k^``exponent``). A
    miss writes the key (``value_bytes`` bytes); odd-numbered keys are written with a TTL (an hour
    or two, never reached in a run), even ones without, so that ``volatile-*`` policies have
    candidates and keys they may not touch. With ``shift``, the popular keys change halfway
    through (what was cold becomes hot). ``maxmemory`` leaves room for ``capacity`` of the whole
    data set (above 1: all of it, nothing is evicted). Same ``seed``, same requests."""

    keys: int = 3_000
    requests: int = 12_000
    exponent: float = 1.0
    value_bytes: int = 100
    capacity: float = 0.1
    shift: bool = True
    seed: int = 22
    batch: int = 100  # requests per pipelined round: the GETs, then the SETs of their misses

    def __post_init__(self) -> None:
        check_count("keys", self.keys, minimum=2)
        check_count("requests", self.requests, minimum=4)
        check_count("value_bytes", self.value_bytes, minimum=1)
        check_count("batch", self.batch)
        if not (isinstance(self.capacity, (int, float)) and 0 < self.capacity < float("inf")):
            raise InvalidArgument(f"capacity is the share of the data set that fits in maxmemory (0.1 = a tenth; "
                                  f"above 1, all of it), not {self.capacity!r}.")

    def key_ids(self) -> list[int]:
        """The key asked for by each request, in order (deterministic for a given seed)."""
        weights = itertools.accumulate(1 / rank**self.exponent for rank in range(1, self.keys + 1))
        ranks = random.Random(self.seed).choices(range(self.keys), cum_weights=list(weights), k=self.requests)
        half = self.requests // 2
        # After the shift, rank k is key k + keys/2: the hot keys are ones that were cold.
        return [(rank + self.keys // 2) % self.keys if self.shift and i >= half else rank
                for i, rank in enumerate(ranks)]

    def ttl_seconds(self, key_id: int) -> int | None:
        """The TTL a miss writes key ``key_id`` with: none for even ids, 1 to 2 hours for odd ones
        (unrelated to popularity, as TTLs chosen per kind of data are)."""
        return None if key_id % 2 == 0 else 3600 + (key_id * 7919) % 3600

    def key(self, key_id: int) -> str:
        return f"cache:{key_id}"


@dataclass(frozen=True)
class EvictionResult:
    """One policy's run of a ``CacheWorkload``. Hit rates: of the requests from a quarter to half
    way (warm, before the shift) and of the second half (after the shift, if any). Writes
    refused: misses whose SET the server refused with an out-of-memory error."""

    policy: str
    maxmemory: int
    hit_rate_before_shift: float
    hit_rate_after_shift: float
    evicted_keys: int
    refused_writes: int
    keys_kept: int
    kept_without_ttl: int

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def eviction_experiment(
    workload: CacheWorkload = CacheWorkload(),
    policies: Sequence[str] = EVICTION_POLICIES,
    *,
    binary: ServerBinary | None = None,
) -> list[EvictionResult]:
    """Run ``workload`` once per policy, on one throwaway server started for it (emptied and its
    statistics reset between policies), and return each policy's result.

    ``maxmemory`` is set from measurements on that server: its memory when empty, plus
    ``workload.capacity`` of what the whole data set (every key written once) adds to it.
    """
    for policy in policies:
        if policy not in EVICTION_POLICIES:
            raise InvalidArgument(f"{policy!r} is no eviction policy: use one of {', '.join(EVICTION_POLICIES)}.")
    with throwaway_server(binary=binary) as (_, r):
        empty = r.info("memory")["used_memory"]
        _write(r, workload, range(workload.keys))
        full = r.info("memory")["used_memory"]
        maxmemory = empty + int(workload.capacity * (full - empty))
        key_ids = workload.key_ids()
        return [_run_policy(r, workload, key_ids, policy, maxmemory) for policy in policies]


def _write(r: redis.Redis, workload: CacheWorkload, key_ids: Sequence[int] | range) -> int:
    """SET each key (with its TTL, if any) in one pipeline; the number of refused writes."""
    value = "v" * workload.value_bytes
    pipe = r.pipeline(transaction=False)
    for key_id in key_ids:
        pipe.set(workload.key(key_id), value, ex=workload.ttl_seconds(key_id))
    replies = pipe.execute(raise_on_error=False)
    refused = sum(isinstance(reply, redis.exceptions.OutOfMemoryError) for reply in replies)
    if errors := [reply for reply in replies if isinstance(reply, Exception)][refused:]:
        raise errors[0]
    return refused


def _run_policy(
    r: redis.Redis, workload: CacheWorkload, key_ids: list[int], policy: str, maxmemory: int
) -> EvictionResult:
    # SYNC: Valkey 8+ flushes in a background thread by default (lazyfree-lazy-user-flush), so
    # the memory would still be held, with no key left to evict, when the next policy writes.
    r.execute_command("FLUSHALL", "SYNC")
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", maxmemory)
    r.config_resetstat()
    half, warm = len(key_ids) // 2, len(key_ids) // 4
    hits = {"before": 0, "after": 0}
    refused = 0
    for start in range(0, len(key_ids), workload.batch):
        chunk = key_ids[start:start + workload.batch]
        pipe = r.pipeline(transaction=False)
        for key_id in chunk:
            pipe.get(workload.key(key_id))
        values = pipe.execute()
        for offset, value in enumerate(values):
            position = start + offset
            if value is not None and position >= warm:
                hits["before" if position < half else "after"] += 1
        # A key asked for twice in one batch and missing is written once.
        refused += _write(r, workload, sorted({key_id for key_id, value in zip(chunk, values) if value is None}))
    kept = list(r.scan_iter(count=1000))
    pipe = r.pipeline(transaction=False)
    for key in kept:
        pipe.ttl(key)
    without_ttl = sum(ttl == -1 for ttl in pipe.execute())
    return EvictionResult(
        policy=policy,
        maxmemory=maxmemory,
        hit_rate_before_shift=hits["before"] / (half - warm),
        hit_rate_after_shift=hits["after"] / (len(key_ids) - half),
        evicted_keys=int(r.info("stats")["evicted_keys"]),
        refused_writes=refused,
        keys_kept=len(kept),
        kept_without_ttl=without_ttl,
    )


# --- Expiry: what active expiry reclaims, and when -----------------------------------------------


@dataclass(frozen=True)
class ExpirySetting:
    """How a server reclaims expired keys: ``hz`` (background tasks per second, 1 to 500),
    ``active_expire_effort`` (1 to 10) and whether active expiry runs at all (``active``: off
    only through ``DEBUG SET-ACTIVE-EXPIRE 0``, a test switch, never for production)."""

    hz: int = 10
    active_expire_effort: int = 1
    active: bool = True

    @property
    def label(self) -> str:
        if not self.active:
            return "active expiry off (lazy only)"
        return f"hz {self.hz}, active-expire-effort {self.active_expire_effort}"


@dataclass(frozen=True)
class ExpirySample:
    """About ``seconds`` after the short-lived keys' TTL ran out (sampled every interval: a
    busy machine samples a little later), ``left`` of them were still held
    (counted in ``INFO keyspace``: an expired key holds its memory until Redis deletes it)."""

    setting: str
    seconds: float
    left: int


def expiry_experiment(
    settings: Sequence[ExpirySetting],
    *,
    live: int = 5_000,
    expiring: int = 500,
    ttl_ms: int = 200,
    watch_seconds: float = 1.0,
    interval: float = 0.1,
    binary: ServerBinary | None = None,
) -> list[ExpirySample]:
    """For each setting, on a server of its own (all at once, one thread each): ``live`` keys with an
    hour's TTL and ``expiring`` keys with ``ttl_ms``, nobody reading them; then, every ``interval``
    seconds for ``watch_seconds`` after the short TTL ran out, how many expired keys Redis still
    holds. Nothing reads the keys, so only active expiry can reclaim them."""
    check_count("live", live, minimum=0)
    check_count("expiring", expiring)
    check_count("ttl_ms", ttl_ms)
    if not settings:
        return []
    with ThreadPoolExecutor(len(settings)) as pool:  # mostly waiting: one thread per server
        runs = pool.map(lambda setting: _watch_expiry(setting, live, expiring, ttl_ms, watch_seconds, interval,
                                                      binary), settings)
        return [sample for samples in runs for sample in samples]


def _watch_expiry(
    setting: ExpirySetting, live: int, expiring: int, ttl_ms: int, watch_seconds: float, interval: float,
    binary: ServerBinary | None,
) -> list[ExpirySample]:
    config = ["--hz", str(setting.hz), "--active-expire-effort", str(setting.active_expire_effort),
              "--enable-debug-command", "local"]
    with throwaway_server(config, binary) as (_, r):
        if not setting.active:
            r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        pipe = r.pipeline(transaction=False)
        for i in range(live):
            pipe.set(f"live:{i}", "v", ex=3600)
        for i in range(expiring):
            pipe.set(f"expiring:{i}", "v", px=ttl_ms)
        pipe.execute()
        time.sleep(ttl_ms / 1000)  # from the last write: every short TTL has run out
        samples = []
        for step in range(int(watch_seconds / interval) + 1):
            held = int(r.info("keyspace").get("db0", {}).get("keys", 0))
            samples.append(ExpirySample(setting.label, round(step * interval, 3), held - live))
            time.sleep(interval)
        return samples


# --- redis-cli's key scans ---------------------------------------------------------------------------


# redis-cli's --memkeys-samples: 0 means its default (5 elements, an estimate), so a large number
# stands for "count them all" (exact for aggregates of up to this many elements).
MEMKEYS_SAMPLES = 10_000


def redis_cli_key_report(url: str, option: str) -> str | None:
    """The summary of ``redis-cli --bigkeys`` (largest key of each type by length) or
    ``--memkeys`` (by ``MEMORY USAGE``, up to ``MEMKEYS_SAMPLES`` elements of a key counted) over
    the database of ``url``; None without redis-cli.

    Both walk the whole database with SCAN (never KEYS), so they are safe on a live server;
    the progress lines before the summary depend on SCAN's order and are left out.
    """
    if option not in ("--bigkeys", "--memkeys"):
        raise InvalidArgument(f"option is --bigkeys or --memkeys, not {option!r}.")
    binary = shutil.which("redis-cli")
    if binary is None:
        return None
    options = CliOptions.from_url(url)
    result = subprocess.run(
        [binary, *options.args, "-n", str(options.db), option,
         *(["--memkeys-samples", str(MEMKEYS_SAMPLES)] if option == "--memkeys" else [])],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=True, env=options.env,
    )
    return result.stdout.partition("-------- summary -------")[2].strip()
