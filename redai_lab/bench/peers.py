"""The pattern helpers against the libraries a user would otherwise pick (``redai-lab bench patterns``).

Each group of rows measures one operation on one server in one run: raw redis-py doing the same
work (the floor every ratio is taken against), the lab's helper, and its peers: dogpile.cache
(redis backend), ``limits`` (redis storage), redis-py's ``Lock`` and python-redis-lock. A peer
that is not installed (``pip install 'redai-lab[bench]'``) is skipped with one line.

Method, because the machine is shared and absolute times mean little:

* **Interleaved rounds.** Every round times each implementation of a group once, in an order
  that is reversed every other round (ABBA...), so a slow moment hits all of them alike.
* **Ratios per round.** Each implementation's speed is divided by the floor's *of the same
  round*; the row gives the median of those ratios and their range (the noise, stated).
  ``vs_peer`` is the median of the per-round ratios of the lab's helper to the named peer.
* **Counted, not timed**: round trips per operation (``RoundTripCounter``) and server commands
  per operation (``INFO commandstats``, commands run inside scripts included), in a separate
  pass. The same pass reads what the server spent: in scripts (``EVALSHA``'s ``usec``) and in
  all (``INFO cpu``: reading, running and answering every request of the operation), per
  operation; noisy at the microsecond, so compare rows, never a row with a goal.
* **The C ceiling.** When ``redis-benchmark`` is installed, each group has a row for the C
  client sending the floor's commands one request at a time on one connection: what any Python
  client's ratio could reach on this machine.

The contended-lock group runs 8 threads on one lock: throughput ratio to redis-py's ``Lock``,
and fairness (the longest wait for the lock, over the mean hold time x waiters).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis

from ..lab.lesson import Lesson
from ..lab.roundtrips import CountingConnection, RoundTripCounter
from ..patterns.cache import Cache
from ..patterns.locks import Lock
from ..patterns.ratelimit import GCRA, FixedWindow, RateLimiter, SlidingLog, SlidingWindowCounter, TokenBucket
from ..patterns.sessions import SessionStore
from .harness import Bench

# Keys this benchmark writes (its database is its own and emptied after; these are deleted too).
NAMESPACE = "labbench"
KEY_PATTERNS = (f"{NAMESPACE}*", f"{{rl:{NAMESPACE}:*", f"{{lock:{NAMESPACE}*", f"dogpile:{NAMESPACE}*",
                f"LIMITS{NAMESPACE}*", f"lock:{NAMESPACE}*", f"lock-signal:{NAMESPACE}*")
PEERS = {"dogpile.cache": "dogpile", "limits": "limits", "python-redis-lock": "redis_lock"}
# Scripts' server time: what EVALSHA (and EVAL) report, their inner commands included.
SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval")


@dataclass(frozen=True)
class PatternScale:
    """Rounds of each group, operations per implementation per round, contended-lock work."""

    rounds: int
    ops: int
    lock_threads: int
    lock_acquisitions: int  # per thread
    lock_hold: float  # seconds


# What lesson 19 runs: seconds, enough to show the shape (its ratios are noisier than quick's).
LESSON_SCALE = PatternScale(rounds=4, ops=60, lock_threads=8, lock_acquisitions=10, lock_hold=0.001)
PATTERN_SCALES = {
    "quick": PatternScale(rounds=6, ops=200, lock_threads=8, lock_acquisitions=25, lock_hold=0.001),
    "full": PatternScale(rounds=15, ops=1000, lock_threads=8, lock_acquisitions=100, lock_hold=0.001),
}


@dataclass
class Candidate:
    """One implementation of a group's operation: ``op()`` does one operation.

    ``speed(ops)`` runs ``ops`` of them and answers operations per second; a candidate that is
    not Python code (the C ceiling) gives its own ``speed`` and no ``op``: it is timed, never
    counted.
    """

    name: str
    op: Callable[[], object] | None
    kind: str  # "floor", "lab", "peer", "ceiling"
    peer: str | None = None  # for "lab": the peer it is compared with
    note: str = ""
    timed: Callable[[int], float] | None = None

    def speed(self, ops: int) -> float:
        if self.timed is not None:
            return self.timed(ops)
        op = self.op
        assert op is not None
        began = time.perf_counter()
        for _ in range(ops):
            op()
        return ops / (time.perf_counter() - began)


def missing_peers() -> list[str]:
    """The peers (distribution names) that are not installed."""
    return [dist for dist, module in PEERS.items() if importlib.util.find_spec(module) is None]


def server_counts(client: redis.Redis) -> tuple[int, int]:
    """(commands run, µs spent in scripts) so far, from ``INFO commandstats`` (INFO excluded)."""
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    script_us = sum(int(stats[k]["usec"]) for k in SCRIPT_COMMANDS if k in stats)
    return calls, script_us


def server_cpu_us(client: redis.Redis) -> float:
    """The server's CPU time so far (user + system, all threads), in µs, from ``INFO cpu``."""
    cpu = client.info("cpu")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1_000_000


def rounds_of(candidates: list[Candidate], scale: PatternScale) -> dict[str, list[float]]:
    """Operations per second of every candidate in every round, the order flipped each round."""
    speeds: dict[str, list[float]] = {c.name: [] for c in candidates}
    for c in candidates:  # warm-up: connections, scripts loaded, entries written (not the C client's)
        if c.op is not None:
            c.speed(10)
    for number in range(scale.rounds):
        for c in candidates if number % 2 == 0 else candidates[::-1]:
            speeds[c.name].append(c.speed(scale.ops))
    return speeds


def counted(candidate: Candidate, counter: RoundTripCounter, stats_client: redis.Redis, ops: int = 200) -> dict[str, float]:
    """Round trips, server commands, script µs and server CPU µs per operation, in an untimed pass
    (nothing for the C ceiling, which this process cannot count)."""
    op = candidate.op
    if op is None:
        return {}
    calls_before, script_before = server_counts(stats_client)
    cpu_before = server_cpu_us(stats_client)  # read last before and first after: INFO commandstats stays outside
    with counter.measure() as trips:
        for _ in range(ops):
            op()
    cpu_after = server_cpu_us(stats_client)
    calls_after, script_after = server_counts(stats_client)
    return {
        "round_trips": trips.count / ops,
        "server_commands": (calls_after - calls_before) / ops,
        "script_us": (script_after - script_before) / ops,
        "server_cpu_us": (cpu_after - cpu_before) / ops,
    }


def group_rows(group: str, candidates: list[Candidate], scale: PatternScale, counter: RoundTripCounter,
               stats_client: redis.Redis) -> list[dict[str, Any]]:
    """One row per candidate: its per-round ratios to the floor, and what it costs."""
    floor = next(c for c in candidates if c.kind == "floor")
    speeds = rounds_of(candidates, scale)
    rows = []
    for c in candidates:
        ratios = [mine / base for mine, base in zip(speeds[c.name], speeds[floor.name])]
        vs_peer = None
        if c.peer is not None and c.peer in speeds:
            vs_peer = statistics.median(m / p for m, p in zip(speeds[c.name], speeds[c.peer]))
        rows.append({
            "group": group, "implementation": c.name, "kind": c.kind,
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "vs_peer": vs_peer, "peer": c.peer, **counted(c, counter, stats_client), "note": c.note,
        })
    return rows


# --- the groups -----------------------------------------------------------------------------


def ceiling(url: str, *commands: tuple[str, ...], note: str = "") -> list[Candidate]:
    """The C ceiling: ``redis-benchmark`` sending ``commands`` in turn, one request at a time on
    one connection; none when redis-benchmark is not installed."""
    if shutil.which("redis-benchmark") is None:
        return []
    from .benchmarks import redis_benchmark  # the benchmarks module loads only when a ceiling runs

    db = int(redis.connection.parse_url(url).get("db", 0))

    def timed(ops: int) -> float:
        # redis-benchmark times a run in whole milliseconds: 2,000 requests or more keep that
        # within a few per cent. One command after another: their times per request add up.
        requests = max(10 * ops, 2000)
        return 1 / sum(1 / redis_benchmark(url, db, *command, requests=requests)["rps"] for command in commands)

    return [Candidate("redis-benchmark (C)", None, "ceiling", timed=timed, note=note)]




def cache_hits(url: str, text: redis.Redis, raw: redis.Redis) -> list[Candidate]:
    """A cache hit: raw GET of an encoded value, ``get_or_load``, ``@cached``, and dogpile's."""
    cache = Cache(text, NAMESPACE, ttl=300)
    value = {"exam": 7, "questions": 40}
    cache.set("exam:7", value)
    text.set(f"{NAMESPACE}:raw", json.dumps(value))

    @cache.cached(name="exam_stats")
    def exam_stats(exam_id: int) -> dict[str, int]:
        return value

    exam_stats(7)
    candidates = [
        Candidate("redis-py GET + json.loads", lambda: json.loads(text.get(f"{NAMESPACE}:raw")), "floor"),
        *ceiling(url, ("GET", f"{NAMESPACE}:raw")),
        Candidate("Cache.get_or_load", lambda: cache.get_or_load("exam:7", lambda: value), "lab",
                  peer="dogpile get_or_create"),
        Candidate("@cache.cached", lambda: exam_stats(7), "lab", peer="dogpile cache_on_arguments"),
    ]
    if importlib.util.find_spec("dogpile") is not None:
        from dogpile.cache import make_region

        region = make_region(key_mangler=lambda key: f"dogpile:{NAMESPACE}:{key}").configure(
            "dogpile.cache.redis", expiration_time=300,
            arguments={"connection_pool": raw.connection_pool, "redis_expiration_time": 300},
        )

        @region.cache_on_arguments()
        def dogpile_stats(exam_id: int) -> dict[str, int]:
            return value

        region.get_or_create("exam:7", lambda: value)
        dogpile_stats(7)
        candidates += [
            Candidate("dogpile get_or_create", lambda: region.get_or_create("exam:7", lambda: value), "peer"),
            Candidate("dogpile cache_on_arguments", lambda: dogpile_stats(7), "peer"),
        ]
    return candidates


def rate_limits(url: str, text: redis.Redis, raw: redis.Redis) -> list[Candidate]:
    """One check that is always admitted: the floor is EVALSHA of ``return 1``."""
    # A limit no benchmark reaches, so every check takes the same (admitting) path.
    limit, period = 10**6, 3600
    floor_script = text.register_script("return 1")
    floor_script(keys=[f"{NAMESPACE}:floor"])  # loaded before the C ceiling runs it
    candidates = [Candidate("EVALSHA return 1", lambda: floor_script(keys=[f"{NAMESPACE}:floor"]), "floor"),
                  *ceiling(url, ("EVALSHA", floor_script.sha, "1", f"{NAMESPACE}:floor"))]
    peers = {FixedWindow: "FixedWindowRateLimiter", SlidingLog: "MovingWindowRateLimiter",
             SlidingWindowCounter: "SlidingWindowCounterRateLimiter"}
    have_limits = importlib.util.find_spec("limits") is not None
    algorithms: tuple[type[RateLimiter], ...] = (FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket, GCRA)
    for algorithm in algorithms:
        limiter = algorithm(text, NAMESPACE, limit=limit if algorithm is not SlidingLog else 10**5, period=period)
        peer = peers.get(algorithm)
        candidates.append(Candidate(
            f"{algorithm.__name__}.hit", (lambda lim=limiter: lim.hit("user")), "lab",
            peer=f"limits {peer} + stats" if peer and have_limits else None,
            note="returns remaining, retry-after and reset in the one round trip",
        ))
    if have_limits:
        import limits
        import limits.storage
        import limits.strategies

        storage = limits.storage.RedisStorage(url, connection_pool=raw.connection_pool, key_prefix=f"LIMITS{NAMESPACE}")
        item = limits.RateLimitItemPerHour(limit)
        moving_item = limits.RateLimitItemPerHour(10**5)
        for algorithm, peer in peers.items():
            strategy = getattr(limits.strategies, peer)(storage)
            chosen = moving_item if algorithm is SlidingLog else item
            candidates += [
                Candidate(f"limits {peer}", (lambda s=strategy, i=chosen: s.hit(i, "user")), "peer",
                          note="hit() answers a bool only"),
                Candidate(f"limits {peer} + stats",
                          (lambda s=strategy, i=chosen: (s.hit(i, "user"), s.get_window_stats(i, "user"))), "peer",
                          note="the lab's answer: hit(), then get_window_stats() for remaining and reset"),
            ]
    return candidates


def locks(url: str, text: redis.Redis, raw: redis.Redis) -> list[Candidate]:
    """An uncontended acquire + release: the floor is SET NX PX then DEL."""
    ours = Lock(text, f"{NAMESPACE}:uncontended", ttl=10)

    def floor() -> None:
        raw.set(f"{NAMESPACE}:floorlock", "token", nx=True, px=10000)
        raw.delete(f"{NAMESPACE}:floorlock")

    def lab() -> None:
        ours.acquire()
        ours.release()

    redis_py = raw.lock(f"{NAMESPACE}:redispy", timeout=10)

    def redis_py_lock() -> None:
        redis_py.acquire()
        redis_py.release()

    candidates = [
        Candidate("redis-py SET NX PX + DEL", floor, "floor"),
        *ceiling(url, ("SET", f"{NAMESPACE}:floorlock", "token", "NX", "PX", "10000"), ("DEL", f"{NAMESPACE}:floorlock"),
                 note="SET NX PX, then DEL: two runs, their times per request added"),
        Candidate("Lock acquire+release", lab, "lab", peer="redis-py Lock"),
        Candidate("redis-py Lock", redis_py_lock, "peer"),
    ]
    if importlib.util.find_spec("redis_lock") is not None:
        import redis_lock

        def python_redis_lock() -> None:
            lock = redis_lock.Lock(raw, f"{NAMESPACE}:prl", expire=10)
            lock.acquire()
            lock.release()

        candidates.append(Candidate("python-redis-lock", python_redis_lock, "peer"))
    return candidates


def sessions(url: str, text: redis.Redis, raw: redis.Redis) -> list[Candidate]:
    """A session read that slides its idle TTL: the floor is a HGETALL + PEXPIRE pipeline, decoded."""
    store = SessionStore(text, prefix=NAMESPACE, idle_ttl=1800)
    sid = store.create({"theme": "dark", "cart": [7, 9], "visits": 3}, user_id=42)
    key = store.key(sid)

    def floor() -> dict[str, Any]:
        pipe = text.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.pexpire(key, 1_800_000)
        fields, _ = pipe.execute()
        return {name: json.loads(value) for name, value in fields.items() if not name.startswith("@")}

    return [
        Candidate("redis-py pipeline HGETALL+PEXPIRE, decoded", floor, "floor"),
        *ceiling(url, ("HGETALL", key), note="HGETALL alone: the PEXPIRE rides in the same round trip"),
        Candidate("SessionStore.get", lambda: store.get(sid), "lab",
                  note="also checks the absolute deadline on the server's clock"),
    ]


def contended_locks(url: str, scale: PatternScale) -> list[dict[str, Any]]:
    """``threads`` threads taking one lock in turn, each holding it ``hold`` seconds: throughput
    (acquisitions per second) and the longest wait, for the lab's Lock and the peers."""
    implementations: dict[str, Callable[[redis.Redis, str], tuple[Callable[[], None], Callable[[], None]]]] = {}

    def lab(client: redis.Redis, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        lock = Lock(client, name, ttl=10, timeout=60)
        return (lambda: lock.acquire() and None), lock.release

    def redis_py(client: redis.Redis, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        lock = client.lock(name, timeout=10, blocking_timeout=60)
        return (lambda: lock.acquire() and None), lock.release

    implementations["Lock"] = lab
    implementations["redis-py Lock"] = redis_py
    if importlib.util.find_spec("redis_lock") is not None:
        import redis_lock

        def python_redis_lock(client: redis.Redis, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
            lock = redis_lock.Lock(client, name, expire=10)
            return (lambda: lock.acquire() and None), lock.release

        implementations["python-redis-lock"] = python_redis_lock
    results: dict[str, list[dict[str, float]]] = {name: [] for name in implementations}
    order = list(implementations)
    for number in range(max(2, scale.rounds // 2)):
        for name in order if number % 2 == 0 else order[::-1]:
            results[name].append(_contend(url, implementations[name], f"{NAMESPACE}:contended:{number}", scale))
    base = results["redis-py Lock"]
    rows = []
    for name, runs in results.items():
        ratios = [run["per_s"] / b["per_s"] for run, b in zip(runs, base)]
        fairness = [run["max_wait"] / (run["mean_hold"] * (scale.lock_threads - 1)) for run in runs]
        rows.append({
            "group": f"lock, {scale.lock_threads} threads", "implementation": name,
            "kind": "lab" if name == "Lock" else "peer" if name != "redis-py Lock" else "floor",
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "vs_peer": statistics.median(ratios) if name == "Lock" else None,
            "peer": "redis-py Lock" if name == "Lock" else None,
            "max_wait_ms": statistics.median(run["max_wait"] for run in runs) * 1000,
            "wait_over_hold_x_waiters": statistics.median(fairness),
            "note": "ratio: acquisitions/s over redis-py Lock's; wait: the longest, median over rounds",
        })
    return rows


def _contend(url: str, make: Callable[[redis.Redis, str], tuple[Callable[[], None], Callable[[], None]]],
             name: str, scale: PatternScale) -> dict[str, float]:
    waits: list[float] = []
    holds: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(scale.lock_threads)
    client = redis.Redis.from_url(url, max_connections=4 * scale.lock_threads)

    def worker() -> None:
        try:
            acquire, release = make(client, name)
            start.wait()
            for _ in range(scale.lock_acquisitions):
                asked = time.perf_counter()
                acquire()
                got = time.perf_counter()
                time.sleep(scale.lock_hold)
                holds.append(time.perf_counter() - got)
                release()
                waits.append(got - asked)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(scale.lock_threads)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    client.close()
    if errors:
        raise errors[0]
    return {"per_s": len(waits) / elapsed, "max_wait": max(waits), "mean_hold": statistics.mean(holds)}


GROUPS: dict[str, Callable[[str, redis.Redis, redis.Redis], list[Candidate]]] = {
    "cache hit": cache_hits,
    "rate-limit check": rate_limits,
    "lock, uncontended": locks,
    "session read + refresh": sessions,
}


@contextlib.contextmanager
def clients(url: str, counter: RoundTripCounter) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """A decoding client (the lab's helpers) and a bytes one (the peers), both counted."""
    options = {"connection_class": CountingConnection, "round_trip_counter": counter}
    text = redis.Redis.from_url(url, decode_responses=True, **options)
    raw = redis.Redis.from_url(url, **options)
    try:
        yield text, raw
    finally:
        text.close()
        raw.close()


def patterns(bench: Bench, lesson: Lesson, scale: PatternScale | None = None) -> pd.DataFrame:
    """Every group, then the contended locks; one line per missing peer. ``scale`` defaults to
    the bench's (``PATTERN_SCALES``); a lesson passes a smaller one."""
    scale = scale or PATTERN_SCALES[bench.scale]
    for dist in missing_peers():
        print(f"skipped: {dist} is not installed (pip install 'redai-lab[bench]')")
    counter = RoundTripCounter()
    rows: list[dict[str, Any]] = []
    try:
        with clients(lesson.url, counter) as (text, raw), warnings.catch_warnings():
            # dogpile.cache 1.5 calls redis-py's deprecated SETEX: not this benchmark's to report
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"dogpile\.")
            for group, make in GROUPS.items():
                rows += group_rows(group, make(lesson.url, text, raw), scale, counter, lesson.client)
        rows += contended_locks(lesson.url, scale)
    finally:
        delete_keys(lesson.client)
    return bench.table(rows)


def delete_keys(client: redis.Redis) -> None:
    """Delete what the benchmark wrote (SCAN, never KEYS)."""
    for pattern in KEY_PATTERNS:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start:start + 500])
