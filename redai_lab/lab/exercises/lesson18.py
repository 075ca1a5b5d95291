"""Lesson 18's exercises: enumerate with SCAN in few round trips (never KEYS), delete by pattern
in UNLINK batches, and choose SCAN's TYPE filter over a TYPE per key. Graded on the keys found
or left and on round trips and commands counted exactly, never on time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from . import Case
from ._observed import Observed, ObservedSpec

# --- 1. Every key matching a pattern ------------------------------------------------------------


def matching_keys(r: redis.Redis, pattern: str) -> list[str]:
    """The names of every key matching glob `pattern`, sorted, each once, found with SCAN (never
    KEYS, which blocks the server for the whole walk) in at most DBSIZE // 1000 + 2 round trips:
    SCAN walks every key of the database, whatever the pattern."""
    return sorted(set(r.scan_iter(match=pattern, count=1_000)))


def matching_keys_with_keys(r, pattern):
    return sorted(r.keys(pattern))


def matching_keys_default_count(r, pattern):
    return sorted(set(r.scan_iter(match=pattern)))


def matching_keys_first_page(r, pattern):
    _, names = r.scan(0, match=pattern, count=1_000)
    return sorted(set(names))


def matching_keys_with_duplicates(r, pattern):
    names = []
    cursor = None
    while cursor != 0:
        cursor, page = r.scan(cursor or 0, match=pattern, count=1_000)
        names.extend(page)
    return sorted(names + names[:1])  # a key SCAN returned twice, kept twice


def _fill(r: redis.Redis, prefix: str, groups: dict[str, int], kind: str = "string") -> None:
    pipe = r.pipeline(transaction=False)
    for group, count in groups.items():
        for i in range(count):
            name = f"{prefix}{group}:{i}"
            if kind == "string" or (kind == "mixed" and i % 3 == 0):
                pipe.set(name, i)
            elif kind == "mixed" and i % 3 == 1:
                pipe.hset(name, "n", i)
            else:
                pipe.rpush(name, i)
            if len(pipe) == 1_000:
                pipe.execute()
    pipe.execute()


def _keys(groups: dict[str, int], pattern: str, *args: Any, kind: str = "string") -> Callable[..., tuple]:
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        _fill(r, prefix, groups, kind)
        return (f"{prefix}{pattern}", *args)

    return setup


def _within_bound(r: redis.Redis, trips: int, removed: int = 0) -> bool:
    return trips <= (r.dbsize() + removed) // 1_000 + 2


def _matching_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    return seen.result, _within_bound(r, seen.trips), seen.calls.get("keys", 0)


# --- 2. Delete by pattern ----------------------------------------------------------------------


def delete_matching(r: redis.Redis, pattern: str, batch: int) -> int:
    """Delete every key matching glob `pattern` and no other, without KEYS and without DEL
    (UNLINK frees big values in the background): walk with SCAN (COUNT 1000) and delete in UNLINK
    commands of exactly `batch` keys each, the last one with what is left, so that n keys take
    ceil(n / batch) UNLINKs. Return how many keys were deleted."""
    deleted = 0
    names: list[str] = []
    for name in r.scan_iter(match=pattern, count=1_000):
        names.append(name)
        if len(names) == batch:
            deleted += r.unlink(*names)
            names = []
    if names:
        deleted += r.unlink(*names)
    return deleted


def delete_matching_with_del(r, pattern, batch):
    deleted = 0
    names = []
    for name in r.scan_iter(match=pattern, count=1_000):
        names.append(name)
        if len(names) == batch:
            deleted += r.delete(*names)
            names = []
    if names:
        deleted += r.delete(*names)
    return deleted


def delete_matching_one_by_one(r, pattern, batch):
    return sum(r.unlink(name) for name in r.scan_iter(match=pattern, count=1_000))


def delete_matching_per_page(r, pattern, batch):
    deleted, cursor = 0, None
    while cursor != 0:
        cursor, page = r.scan(cursor or 0, match=pattern, count=1_000)
        if page:
            deleted += r.unlink(*page)
    return deleted


def delete_matching_with_keys(r, pattern, batch):
    names = r.keys(pattern)
    return sum(r.unlink(*names[i:i + batch]) for i in range(0, len(names), batch))


def delete_matching_no_empty_check(r, pattern, batch):
    names = list(r.scan_iter(match=pattern, count=1_000))
    return sum(r.unlink(*names[i:i + batch]) for i in range(0, max(len(names), 1), batch))


def _delete_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    left = sorted(r.scan_iter(match=f"{prefix}*", count=1_000))
    return (seen.result, len(left), left[:3], seen.calls.get("unlink", 0), seen.calls.get("del", 0),
            seen.calls.get("keys", 0))


# --- 3. Keys of one type ------------------------------------------------------------------------


def keys_of_type(r: redis.Redis, pattern: str, type_name: str) -> list[str]:
    """The names of the keys matching glob `pattern` whose type is `type_name` ("string",
    "hash", "list"...), sorted, each once, in at most DBSIZE // 1000 + 2 round trips and without
    KEYS, however many keys there are of each type."""
    return sorted(set(r.scan_iter(match=pattern, count=1_000, _type=type_name)))


def keys_of_type_one_type_per_key(r, pattern, type_name):
    return sorted({name for name in r.scan_iter(match=pattern, count=1_000) if r.type(name) == type_name})


def keys_of_type_no_filter(r, pattern, type_name):
    return sorted(set(r.scan_iter(match=pattern, count=1_000)))


def keys_of_type_with_keys(r, pattern, type_name):
    names = r.keys(pattern)
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
    return sorted(name for name, kind in zip(names, pipe.execute()) if kind == type_name)


def keys_of_type_default_count(r, pattern, type_name):
    return sorted(set(r.scan_iter(match=pattern, _type=type_name)))


EXERCISES = (
    ObservedSpec(
        number=1,
        title="every key matching a pattern, with SCAN",
        reference=matching_keys,
        cases=(
            Case("40 users among 3,000 orders", _keys({"user": 40, "order": 3_000}, "user:*")),
            Case("2,500 users, all of them", _keys({"user": 2_500}, "user:*")),
            Case("a pattern nothing matches", _keys({"user": 30}, "session:*")),
            Case("a pattern with ? and []", _keys({"user": 30}, "user:[12]?")),
        ),
        outcome=_matching_outcome,
        hint="scan_iter() follows the cursor for you; its COUNT (10 unless you say) sets how much "
             "of the keyspace each round trip walks.",
        wrong=(matching_keys_with_keys, matching_keys_default_count, matching_keys_first_page,
               matching_keys_with_duplicates),
    ),
    ObservedSpec(
        number=2,
        title="delete by pattern, in UNLINK batches",
        reference=delete_matching,
        cases=(
            Case("2,500 sessions among 300 users, batches of 100",
                 _keys({"session": 2_500, "user": 300}, "session:*", 100)),
            Case("250 sessions, batches of 1,000 (one UNLINK)", _keys({"session": 250, "user": 5}, "session:*", 1_000)),
            Case("exactly 200 sessions, batches of 100", _keys({"session": 200}, "session:*", 100)),
            Case("nothing to delete", _keys({"user": 20}, "session:*", 100)),
        ),
        outcome=_delete_outcome,
        hint="Collect names from scan_iter() into a list, UNLINK it whenever it is full, and once "
             "more at the end if anything is left.",
        wrong=(delete_matching_with_del, delete_matching_one_by_one, delete_matching_per_page,
               delete_matching_with_keys, delete_matching_no_empty_check),
    ),
    ObservedSpec(
        number=3,
        title="the keys of one type",
        reference=keys_of_type,
        cases=(
            Case("hashes among 3,000 strings, hashes and lists",
                 _keys({"obj": 3_000}, "obj:*", "hash", kind="mixed")),
            Case("lists only, under one pattern", _keys({"obj": 300, "other": 300}, "obj:*", "list", kind="mixed")),
            Case("a type no key has", _keys({"obj": 60}, "obj:*", "set", kind="mixed")),
        ),
        outcome=_matching_outcome,
        hint="SCAN can filter by type on the server (since Redis 6.0), as it filters by MATCH.",
        wrong=(keys_of_type_one_type_per_key, keys_of_type_no_filter, keys_of_type_with_keys,
               keys_of_type_default_count),
    ),
)
