"""Lesson 13b's exercises: single flight with a lease, XFetch's decision, warming in chunks with
TTL jitter."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec
from redai_lab.lab.exercises.lesson13 import race, settle, ttl_bucket

# Exercise 1 ------------------------------------------------------------------------------------


def load_once(r: redis.Redis, key: str, lease: str, token: str, loader: Callable[[], Any],
              ttl: int, lease_ms: int) -> Any:
    """Cache-aside with single flight. The entry `key` holds a value as JSON (never null). On a hit,
    return it. On a miss, only the caller holding the lease may call `loader()`: the lease is the
    key `lease`, holding the holder's `token` and expiring after `lease_ms` ms whatever happens.
    A caller that finds the lease taken calls nothing and returns None (the holder is loading).
    The holder caches the loaded value for `ttl` seconds, but only if the lease is still its own
    when it writes (invalidating an entry deletes its lease, so a value read before the update
    is not cached after it), then ends its lease and returns the value. Never load a value that
    another caller has cached since this caller's miss: return that one."""
    cached = r.get(key)  # a hit is one GET
    if cached is not None:
        return json.loads(cached)
    # Read again and take the lease in one atomic step: the entry, or 1 (lease taken), or 0.
    take = r.register_script('''
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
''')
    taken = take(keys=[key, lease], args=[token, lease_ms])
    if isinstance(taken, str):  # cached by another caller since our GET
        return json.loads(taken)
    if not taken:  # another caller holds the lease and is loading
        return None
    value = loader()
    # Compare-and-set: write only while the lease is still ours, and end it in the same step.
    store = r.register_script('''
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return redis.call('DEL', KEYS[2])
''')
    store(keys=[key, lease], args=[token, json.dumps(value), ttl])
    return value


def load_once_stores_blindly(r, key, lease, token, loader, ttl, lease_ms):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    if not r.set(lease, token, nx=True, px=lease_ms):
        return None
    if (cached := r.get(key)) is not None:
        r.delete(lease)
        return json.loads(cached)
    value = loader()
    r.set(key, json.dumps(value), ex=ttl)  # even when the lease was taken from us
    r.delete(lease)
    return value


def load_once_lease_for_ever(r, key, lease, token, loader, ttl, lease_ms):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    if not r.set(lease, token, nx=True):  # no expiry: a holder that dies blocks the key for ever
        return None
    if (cached := r.get(key)) is not None:
        r.delete(lease)
        return json.loads(cached)
    value = loader()
    if r.get(lease) == token:
        r.set(key, json.dumps(value), ex=ttl)
        r.delete(lease)
    return value


def load_once_ignores_the_lease(r, key, lease, token, loader, ttl, lease_ms):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    r.set(lease, token, nx=True, px=lease_ms)
    value = loader()
    if r.get(lease) == token:
        r.set(key, json.dumps(value), ex=ttl)
        r.delete(lease)
    return value


def load_once_without_a_second_look(r, key, lease, token, loader, ttl, lease_ms):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    if not r.set(lease, token, nx=True, px=lease_ms):
        return None
    value = loader()  # the value another caller cached since our GET is loaded again
    if r.get(lease) == token:
        r.set(key, json.dumps(value), ex=ttl)
        r.delete(lease)
    return value


def load_once_keeps_the_lease(r, key, lease, token, loader, ttl, lease_ms):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    if not r.set(lease, token, nx=True, px=lease_ms):
        return None
    if (cached := r.get(key)) is not None:
        return json.loads(cached)
    value = loader()
    if r.get(lease) == token:
        r.set(key, json.dumps(value), ex=ttl)
    return value


LOADED = {"exam": 7, "average": 70.18}  # what the loader computes
CACHED = {"exam": 7, "average": 69.9}  # what the cache held before
OTHERS = {"exam": 7, "average": 70.31}  # what another caller cached


def _flight(*, cached: bool = False, lease_held: bool = False, invalidated: bool = False,
            other_stores: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str, Callable[[], Any], int, int]:
        key, lease, token = f"{prefix}exam:7", f"{prefix}lease:exam:7", "caller-1"
        if cached:
            r.set(key, json.dumps(CACHED), ex=100)
        if lease_held:
            r.set(lease, "caller-2", px=5000)  # another caller is loading

        def loader() -> Any:
            r.incr(f"{prefix}loads")
            r.set(f"{prefix}during", json.dumps([r.get(lease) == token, ttl_bucket(r, lease)]))
            if invalidated:  # the database changes now, and the entry is invalidated
                r.delete(key, lease)
            return LOADED

        if other_stores:
            race(r, prefix, key, lambda r: r.set(key, json.dumps(OTHERS), ex=300))
        return key, lease, token, loader, 300, 5000

    return setup


def _flight_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    key, lease = f"{prefix}exam:7", f"{prefix}lease:exam:7"
    entry = r.get(key)
    during = r.get(f"{prefix}during")
    return {
        "returned": result,
        "loads": int(r.get(f"{prefix}loads") or 0),
        "during the load, the lease [is ours, expiry]": None if during is None else json.loads(during),
        "cached": "nothing" if entry is None else (json.loads(entry), ttl_bucket(r, key)),
        "lease afterwards": r.get(lease),
    }


# Exercise 2 ------------------------------------------------------------------------------------


def should_recompute(r: redis.Redis, key: str, beta: float, rand: float) -> bool:
    """XFetch. Hash `key` is a cache entry: field `value` (JSON) and field `delta`, the ms the value
    took to compute; the key's TTL is the entry's expiry. Decide whether this read recomputes the
    value now, before it expires: True when -delta * beta * ln(rand) >= the time left before the
    entry expires (in ms, as precise as Redis tells it), and True when there is no entry at all;
    False for an entry that never expires. `rand` is a uniform random draw in (0, 1]."""
    pipe = r.pipeline(transaction=True)  # the TTL and the delta of the same entry
    pipe.pttl(key)  # milliseconds: TTL would round to whole seconds
    pipe.hget(key, "delta")
    left_ms, delta_ms = pipe.execute()
    if left_ms == -2:  # no entry: a miss, load it
        return True
    if left_ms == -1:  # never expires: nothing to refresh early
        return False
    return -float(delta_ms) * beta * math.log(rand) >= left_ms


def should_recompute_in_seconds(r, key, beta, rand):
    left = r.ttl(key)  # whole seconds, rounded
    if left == -2:
        return True
    if left == -1:
        return False
    return -float(r.hget(key, "delta")) / 1000 * beta * math.log(rand) >= left


def should_recompute_sign_lost(r, key, beta, rand):
    left_ms = r.pttl(key)
    if left_ms == -2:
        return True
    if left_ms == -1:
        return False
    return float(r.hget(key, "delta")) * beta * math.log(rand) >= left_ms


def should_recompute_divides_by_beta(r, key, beta, rand):
    left_ms = r.pttl(key)
    if left_ms == -2:
        return True
    if left_ms == -1:
        return False
    return -float(r.hget(key, "delta")) / beta * math.log(rand) >= left_ms if beta else False


def should_recompute_not_on_a_miss(r, key, beta, rand):
    left_ms = r.pttl(key)
    if left_ms < 0:
        return False
    return -float(r.hget(key, "delta")) * beta * math.log(rand) >= left_ms


def should_recompute_never_expiring(r, key, beta, rand):
    left_ms = r.pttl(key)
    if left_ms == -2:
        return True
    return -float(r.hget(key, "delta")) * beta * math.log(rand) >= left_ms


def _entry(delta_ms: float | None, left_ms: int | None, beta: float, rand: float):
    """An entry that took `delta_ms` to compute and expires in `left_ms` (None: no entry / no TTL)."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, float, float]:
        key = f"{prefix}dashboard"
        if delta_ms is not None:
            r.hset(key, mapping={"value": json.dumps([70.18, 69.9]), "delta": delta_ms})
            if left_ms is not None:
                r.pexpire(key, left_ms)
        return key, beta, rand

    return setup


# Exercise 3 ------------------------------------------------------------------------------------


def warm(r: redis.Redis, items: Iterable[tuple[str, Any]], ttl: float, jitter: float, chunk_size: int,
         rand: Callable[[], float]) -> int:
    """Warm a cache: store every `(key, value)` pair of `items` (the value as JSON) and return how
    many were stored. `items` may be a database cursor over millions of rows: hold at most
    `chunk_size` pairs in memory at a time, and send each chunk's writes in one round trip.
    Each key expires after ttl * (1 - jitter * rand()) seconds, with a fresh `rand()` for each key
    in the order of `items`, so that keys written together do not all expire together."""
    iterator = iter(items)
    stored = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):  # one chunk in memory at a time
        pipe = r.pipeline(transaction=False)  # one round trip per chunk
        for key, value in chunk:
            seconds = ttl * (1 - jitter * rand())  # within [ttl * (1 - jitter), ttl]
            pipe.set(key, json.dumps(value), px=max(1, round(seconds * 1000)))
        pipe.execute()
        stored += len(chunk)
    return stored


def warm_without_jitter(r, items, ttl, jitter, chunk_size, rand):
    iterator = iter(items)
    stored = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        pipe = r.pipeline(transaction=False)
        for key, value in chunk:
            pipe.set(key, json.dumps(value), px=round(ttl * 1000))
        pipe.execute()
        stored += len(chunk)
    return stored


def warm_jitter_beyond_the_ttl(r, items, ttl, jitter, chunk_size, rand):
    iterator = iter(items)
    stored = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        pipe = r.pipeline(transaction=False)
        for key, value in chunk:
            pipe.set(key, json.dumps(value), px=round(ttl * (1 + jitter * rand()) * 1000))
        pipe.execute()
        stored += len(chunk)
    return stored


def warm_everything_in_memory(r, items, ttl, jitter, chunk_size, rand):
    rows = list(items)  # the whole cursor in memory
    for start in range(0, len(rows), chunk_size):
        pipe = r.pipeline(transaction=False)
        for key, value in rows[start:start + chunk_size]:
            pipe.set(key, json.dumps(value), px=round(ttl * (1 - jitter * rand()) * 1000))
        pipe.execute()
    return len(rows)


def warm_with_mset(r, items, ttl, jitter, chunk_size, rand):
    iterator = iter(items)
    stored = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        r.mset({key: json.dumps(value) for key, value in chunk})  # one round trip, but no TTL
        stored += len(chunk)
    return stored


_warming: dict[str, tuple[int, float, float]] = {}  # prefix -> (rows, ttl, jitter)


def _cursor(rows: int, ttl: float, jitter: float, chunk_size: int, seed: int = 13):
    def setup(r: redis.Redis, prefix: str) -> tuple[Iterator[tuple[str, Any]], float, float, int, Callable[[], float]]:
        _warming[prefix] = (rows, ttl, jitter)

        def cursor() -> Iterator[tuple[str, Any]]:
            for exam in range(rows):
                # Audit: when row i is fetched, row i - chunk_size must already be stored, or more
                # than chunk_size rows are held in memory.
                if exam >= chunk_size and exam % chunk_size == 0 and not r.exists(f"{prefix}exam:{exam - chunk_size}"):
                    r.set(f"{prefix}audit", "more than chunk_size rows held in memory")
                yield f"{prefix}exam:{exam}", round(60 + (exam * 7919 % 4000) / 100, 2)

        return cursor(), ttl, jitter, chunk_size, random.Random(seed).random

    return setup


def _warm_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    rows, ttl, jitter = _warming[prefix]
    keys = [f"{prefix}exam:{exam}" for exam in range(rows)]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    values, ttls = replies[0::2], replies[1::2]
    low, high = ttl * (1 - jitter) * 1000, ttl * 1000
    return {
        "returned": result,
        "stored": sum(value is not None for value in values),
        "values right": all(value is not None and json.loads(value) == round(60 + (exam * 7919 % 4000) / 100, 2)
                            for exam, value in enumerate(values)),
        # 10 s of slack: time passes between the writes and these reads on a busy machine.
        "every TTL within [ttl * (1 - jitter), ttl]": all(low - 10_000 <= t <= high for t in ttls),
        "TTLs spread over at least half of ttl * jitter": bool(ttls) and max(ttls) - min(ttls) >= (high - low) / 2,
        "audit": r.get(f"{prefix}audit") or "at most chunk_size rows held",
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="single flight with a lease",
        reference=load_once,
        cases=(
            Case("a hit", _flight(cached=True)),
            Case("a miss, the lease free", _flight()),
            Case("a miss, another caller holds the lease", _flight(lease_held=True)),
            Case("a miss; the entry is invalidated (its lease deleted) during the load",
                 _flight(invalidated=True)),
            Case("a miss; another caller caches the value right after this caller's GET",
                 _flight(other_stores=True)),
        ),
        outcome=_flight_outcome,
        hint="SET has options to create a key only if it is missing and with an expiry; 'if the "
             "lease is still mine, write' and 'if the entry is still missing, take the lease' must "
             "each be one atomic step.",
        wrong=(load_once_stores_blindly, load_once_lease_for_ever, load_once_ignores_the_lease,
               load_once_without_a_second_look, load_once_keeps_the_lease),
    ),
    Spec(
        number=2,
        title="XFetch: recompute before expiry?",
        reference=should_recompute,
        cases=(
            Case("no entry", _entry(None, None, 1.0, 0.5)),
            Case("an entry that never expires", _entry(1000, None, 1.0, 0.01)),
            Case("delta 100 ms, 60 s left, beta 1, rand 0.5", _entry(100, 60_000, 1.0, 0.5)),
            Case("delta 1 s, 2 s left, beta 1, rand 0.1", _entry(1000, 2000, 1.0, 0.1)),
            Case("delta 1 s, 2 s left, beta 0.5, rand 0.1", _entry(1000, 2000, 0.5, 0.1)),
            Case("delta 1 s, 1.45 s left, beta 1, rand 0.35", _entry(1000, 1450, 1.0, 0.35)),
            Case("delta 1 s, 0.5 s left, beta 0 (XFetch off), rand 0.01", _entry(1000, 500, 0.0, 0.01)),
        ),
        hint="The time left must be as precise as the threshold (one of the two TTL commands rounds "
             "to seconds), and ln of a number below 1 is negative.",
        wrong=(should_recompute_in_seconds, should_recompute_sign_lost, should_recompute_divides_by_beta,
               should_recompute_not_on_a_miss, should_recompute_never_expiring),
    ),
    Spec(
        number=3,
        title="warming in chunks, with TTL jitter",
        reference=warm,
        cases=(
            Case("2,345 exams, chunks of 500, TTL 3600 s, jitter 0.1", _cursor(2345, 3600, 0.1, 500)),
            Case("7 exams, chunks of 3, TTL 60 s, jitter 0.5", _cursor(7, 60, 0.5, 3)),
            Case("10 exams, chunks of 4, TTL 600 s, no jitter", _cursor(10, 600, 0.0, 4)),
            Case("an empty cursor", _cursor(0, 60, 0.1, 100)),
        ),
        outcome=_warm_outcome,
        hint="itertools.islice takes the next chunk from an iterator; MSET has no expiry, a "
             "pipeline of SETs does.",
        wrong=(warm_without_jitter, warm_jitter_beyond_the_ttl, warm_everything_in_memory, warm_with_mset),
    ),
)
