"""Lesson 17's exercises: batches written in chunks of one round trip each, a pipeline whose
every reply is read (errors included), and a bulk load with a jittered TTL in the same command.
Graded on what is left in Redis and on the round trips counted exactly, never on time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

from . import Case
from ._observed import Observed, ObservedSpec, keys_under

# --- 1. Write a batch in chunks ----------------------------------------------------------------


def set_in_chunks(r: redis.Redis, items: dict[str, str], chunk_size: int) -> int:
    """Write every key -> value of `items` with SET, batched: non-transactional pipelines of at
    most `chunk_size` commands each, so that the whole batch takes exactly
    ceil(len(items) / chunk_size) round trips (none for no items) and never wraps a chunk in
    MULTI/EXEC. Return how many keys were written."""
    written = 0
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value)
        if len(pipe) == chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def set_in_chunks_one_pipeline(r, items, chunk_size):
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value)
    return len(pipe.execute())


def set_in_chunks_one_at_a_time(r, items, chunk_size):
    for key, value in items.items():
        r.set(key, value)
    return len(items)


def set_in_chunks_off_by_one(r, items, chunk_size):
    written = 0
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value)
        if len(pipe) > chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def set_in_chunks_in_transactions(r, items, chunk_size):
    written = 0
    pipe = r.pipeline()  # transaction=True: MULTI/EXEC around each chunk
    for key, value in items.items():
        pipe.set(key, value)
        if len(pipe) == chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def _items(count: int, *args: Any) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        return ({f"{prefix}k:{i}": f"v{i}" for i in range(count)}, *args)

    return setup


def _chunks_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    """The return value, the round trips, whether MULTI ran, and every key written."""
    written = keys_under(r, prefix)
    return seen.result, seen.trips, seen.calls.get("multi", 0) > 0, len(written), \
        all(value == f"v{key.rsplit(':', 1)[1]}" for key, value in written.items())


# --- 2. Read every reply of a pipeline ------------------------------------------------------------


def incr_each(r: redis.Redis, keys: list[str]) -> dict[str, int | None]:
    """INCR every key of `keys` in one round trip (a pipeline, no MULTI/EXEC needed), and return
    {key: its new value}, with None for a key INCR fails on (a list, a string that is not an
    integer): one failing key must not stop, hide or undo the others. No keys: {} and no round
    trip."""
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
    replies = pipe.execute(raise_on_error=False)
    return {key: None if isinstance(reply, Exception) else reply for key, reply in zip(keys, replies)}


def incr_each_raises(r, keys):
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
    return dict(zip(keys, pipe.execute()))


def incr_each_one_at_a_time(r, keys):
    values = {}
    for key in keys:
        try:
            values[key] = r.incr(key)
        except redis.ResponseError:
            values[key] = None
    return values


def incr_each_in_a_transaction(r, keys):
    pipe = r.pipeline()
    for key in keys:
        pipe.incr(key)
    replies = pipe.execute(raise_on_error=False)
    return {key: None if isinstance(reply, Exception) else reply for key, reply in zip(keys, replies)}


def incr_each_skips_failures(r, keys):
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
    replies = pipe.execute(raise_on_error=False)
    return {key: reply for key, reply in zip(keys, replies) if not isinstance(reply, Exception)}


def _counters(strings: Mapping[str, str], lists: tuple[str, ...], names: tuple[str, ...]):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str]]:
        for name, value in strings.items():
            r.set(f"{prefix}{name}", value)
        for name in lists:
            r.rpush(f"{prefix}{name}", "x")
        return ([f"{prefix}{name}" for name in names],)

    return setup


def _incr_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    return seen.result, seen.trips, seen.calls.get("multi", 0) > 0


# --- 3. A bulk load with TTLs ---------------------------------------------------------------------


def load_with_ttl(r: redis.Redis, items: dict[str, str], ttl: int, jitter: int, chunk_size: int) -> int:
    """Load every key -> value of `items` so that each key expires between `ttl` and
    `ttl + jitter` seconds from now (`jitter` >= 1), with different keys getting different
    expiries (so that a big load does not all expire in the same second), and no moment at which
    a written key has no TTL. Batch it: exactly ceil(len(items) / chunk_size) round trips.
    Return how many keys were written."""
    import random

    written = 0
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value, ex=ttl + random.randrange(jitter + 1))
        if len(pipe) == chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def load_with_ttl_no_jitter(r, items, ttl, jitter, chunk_size):
    written = 0
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value, ex=ttl)
        if len(pipe) == chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def load_with_ttl_then_expire(r, items, ttl, jitter, chunk_size):
    import random

    written = 0
    for start in range(0, len(items), chunk_size):
        chunk = list(items.items())[start:start + chunk_size]
        written += r.mset(dict(chunk)) and len(chunk)
        pipe = r.pipeline(transaction=False)
        for key, _ in chunk:
            pipe.expire(key, ttl + random.randrange(jitter + 1))
        pipe.execute()
    return written


def load_with_ttl_jitter_in_ms(r, items, ttl, jitter, chunk_size):
    import random

    written = 0
    pipe = r.pipeline(transaction=False)
    for key, value in items.items():
        pipe.set(key, value, px=ttl + random.randrange(jitter + 1))
        if len(pipe) == chunk_size:
            written += len(pipe.execute())
    if len(pipe):
        written += len(pipe.execute())
    return written


def load_with_ttl_no_ttl(r, items, ttl, jitter, chunk_size):
    return set_in_chunks(r, items, chunk_size)


def _ttl_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    """Return value, round trips, keys written, every TTL within [ttl - 1, ttl + jitter], and
    whether the TTLs differ (for loads of 20 keys or more)."""
    names = sorted(r.scan_iter(match=f"{prefix}k:*", count=1000))
    ttl, jitter = (int(part) for part in r.get(f"{prefix}params").split(":"))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.ttl(name)
    ttls = pipe.execute() if names else []
    return (seen.result, seen.trips, len(names),
            all(ttl - 1 <= left <= ttl + jitter for left in ttls),
            len(names) < 20 or len(set(ttls)) > 1)


def _load(count: int, ttl: int, jitter: int, chunk_size: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        r.set(f"{prefix}params", f"{ttl}:{jitter}")
        return ({f"{prefix}k:{i}": f"v{i}" for i in range(count)}, ttl, jitter, chunk_size)

    return setup


EXERCISES = (
    ObservedSpec(
        number=1,
        title="a batch in chunks, one round trip each",
        reference=set_in_chunks,
        cases=(
            Case("2,500 keys in chunks of 1,000 (3 round trips)", _items(2_500, 1_000)),
            Case("2,000 keys in chunks of 1,000 (exactly 2)", _items(2_000, 1_000)),
            Case("3 keys in chunks of 1", _items(3, 1)),
            Case("one key", _items(1, 1_000)),
            Case("no keys at all", _items(0, 1_000)),
        ),
        outcome=_chunks_outcome,
        hint="Queue SETs on pipeline(transaction=False) and execute() whenever it holds chunk_size "
             "commands, then once more for what is left, if anything.",
        wrong=(set_in_chunks_one_pipeline, set_in_chunks_one_at_a_time, set_in_chunks_off_by_one,
               set_in_chunks_in_transactions),
    ),
    ObservedSpec(
        number=2,
        title="every reply of a pipeline, errors included",
        reference=incr_each,
        cases=(
            Case("three counters, one missing", _counters({"a": "1", "b": "41"}, (), ("a", "b", "c"))),
            Case("a list and a word among the counters",
                 _counters({"a": "9", "word": "hello"}, ("queue",), ("a", "queue", "word", "new"))),
            Case("the same counter twice", _counters({"a": "1"}, (), ("a", "a"))),
            Case("only keys INCR fails on", _counters({"pi": "3.14"}, ("queue",), ("pi", "queue"))),
            Case("no keys", _counters({}, (), ())),
        ),
        outcome=_incr_outcome,
        hint="execute() raises the first error it reads; it can hand you every reply instead, and "
             "an error reply is an exception object in the list.",
        wrong=(incr_each_raises, incr_each_one_at_a_time, incr_each_in_a_transaction,
               incr_each_skips_failures),
    ),
    ObservedSpec(
        number=3,
        title="a bulk load whose keys expire, spread out",
        reference=load_with_ttl,
        cases=(
            Case("250 keys, TTL 300 s + up to 60 s, chunks of 100", _load(250, 300, 60, 100)),
            Case("40 keys, TTL 60 s + up to 10 s, in one chunk", _load(40, 60, 10, 1_000)),
            Case("5 keys, chunks of 2", _load(5, 3_600, 600, 2)),
            Case("no keys", _load(0, 300, 60, 100)),
        ),
        outcome=_ttl_outcome,
        hint="SET takes the expiry itself (EX), and each key's expiry can be its own: TTL plus a "
             "random part.",
        wrong=(load_with_ttl_no_jitter, load_with_ttl_then_expire, load_with_ttl_jitter_in_ms,
               load_with_ttl_no_ttl),
    ),
)

