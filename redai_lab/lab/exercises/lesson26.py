"""Lesson 26's exercises: the biggest keys found without KEYS (what `redis-cli --memkeys` does),
and sessions forgotten from their user's index when their expired events arrive, in one round
trip and safely when an event comes twice. Graded on the result, the round trips counted
exactly and the commands the answer ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from . import Case
from ._observed import Observed, ObservedSpec

# --- 1. The biggest keys, without KEYS -------------------------------------------------------------


def biggest_keys(r: redis.Redis, pattern: str, n: int) -> list[tuple[str, int]]:
    """The `n` keys matching `pattern` that take the most memory, as (key, bytes) tuples, biggest
    first, keys of equal size in name order; bytes as MEMORY USAGE reports them (any type). Find
    the keys with SCAN, never KEYS (it blocks the server for the whole keyspace); fewer than `n`
    keys match: all of them; none: []."""
    sizes = [(key, int(r.memory_usage(key) or 0)) for key in r.scan_iter(match=pattern, count=1000)]
    return sorted(sizes, key=lambda pair: (-pair[1], pair[0]))[:n]


def biggest_keys_with_keys(r, pattern, n):
    sizes = [(key, int(r.memory_usage(key))) for key in r.keys(pattern)]
    return sorted(sizes, key=lambda pair: (-pair[1], pair[0]))[:n]


def biggest_keys_by_length(r, pattern, n):
    sizes = [(key, len(r.dump(key) or b"")) for key in r.scan_iter(match=pattern, count=1000)]
    return sorted(sizes, key=lambda pair: (-pair[1], pair[0]))[:n]


def biggest_keys_ties_unordered(r, pattern, n):
    sizes = [(key, int(r.memory_usage(key))) for key in r.scan_iter(match=pattern, count=1000)]
    return sorted(sizes, key=lambda pair: pair[1], reverse=True)[:n]


def biggest_keys_smallest_first(r, pattern, n):
    sizes = [(key, int(r.memory_usage(key))) for key in r.scan_iter(match=pattern, count=1000)]
    return sorted(sizes, key=lambda pair: (pair[1], pair[0]))[:n]


def _keyspace(strings: dict[str, int], hashes: dict[str, int], lists: dict[str, int], n: int):
    """Strings of given lengths, hashes and lists of given sizes; `n`; the pattern `cache:*`."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        for name, length in strings.items():
            r.set(f"{prefix}{name}", "x" * length)
        for name, fields in hashes.items():
            r.hset(f"{prefix}{name}", mapping={f"f{i}": "v" * 10 for i in range(fields)})
        for name, items in lists.items():
            r.rpush(f"{prefix}{name}", *[f"item-{i}" for i in range(items)])
        r.set(f"{prefix}n", n)  # for the outcome; outside the pattern
        return f"{prefix}cache:*", n

    return setup


def _biggest_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, str]:
    """Whether the answer is the right list for the keys as they are now (checked against the
    state, not against the reference's run: Valkey's MEMORY USAGE of one value can differ between
    two writes of it), and whether KEYS ran."""
    n = int(r.get(f"{prefix}n"))
    sizes = [(key, int(r.memory_usage(key) or 0)) for key in r.scan_iter(match=f"{prefix}cache:*", count=1000)]
    right = sorted(sizes, key=lambda pair: (-pair[1], pair[0]))[:n]
    answer = [tuple(pair) for pair in seen.result] if isinstance(seen.result, list) else seen.result
    verdict = f"the {n} biggest keys by MEMORY USAGE, ties by name" if answer == right else seen.result
    return verdict, "KEYS ran" if seen.calls.get("keys", 0) else "no KEYS"


# --- 2. Forget expired sessions --------------------------------------------------------------------


def forget_expired_sessions(r: redis.Redis, expired: list[str], app: str) -> int:
    """`expired` holds key names as `__keyevent@<db>__:expired` delivers them. A session of app
    `app` is the key `<app>session:<user id>:<session id>` (user ids have no colon), and each
    user's live session ids are in the set `<app>user:<user id>:sessions`. Remove every expired
    session's id from its user's set, ignore the other names, and return how many ids were
    removed: an event delivered twice removes nothing the second time. One round trip for all
    of `expired`, none when there is nothing to remove."""
    marker = f"{app}session:"
    pipe = r.pipeline(transaction=False)
    for key in expired:
        if key.startswith(marker):
            user, _, session = key[len(marker):].partition(":")
            pipe.srem(f"{app}user:{user}:sessions", session)
    return sum(pipe.execute()) if len(pipe) else 0


def forget_expired_sessions_counts_events(r, expired, app):
    marker = f"{app}session:"
    pipe = r.pipeline(transaction=False)
    for key in expired:
        if key.startswith(marker):
            user, _, session = key[len(marker):].partition(":")
            pipe.srem(f"{app}user:{user}:sessions", session)
    return len(pipe.execute()) if len(pipe) else 0


def forget_expired_sessions_one_at_a_time(r, expired, app):
    marker = f"{app}session:"
    removed = 0
    for key in expired:
        if key.startswith(marker):
            user, _, session = key[len(marker):].partition(":")
            removed += r.srem(f"{app}user:{user}:sessions", session)
    return removed


def forget_expired_sessions_split_on_colons(r, expired, app):
    pipe = r.pipeline(transaction=False)
    for key in expired:
        if key.startswith(f"{app}session:"):
            parts = key.split(":")
            pipe.srem(f"{app}user:{parts[1]}:sessions", parts[-1])
    return sum(pipe.execute()) if len(pipe) else 0


def forget_expired_sessions_whole_user(r, expired, app):
    marker = f"{app}session:"
    pipe = r.pipeline(transaction=False)
    for key in expired:
        if key.startswith(marker):
            user = key[len(marker):].partition(":")[0]
            pipe.delete(f"{app}user:{user}:sessions")
    return sum(pipe.execute()) if len(pipe) else 0


def forget_expired_sessions_any_session_key(r, expired, app):
    pipe = r.pipeline(transaction=False)
    for key in expired:
        if "session:" in key:
            user, _, session = key.split("session:", 1)[1].partition(":")
            pipe.srem(f"{app}user:{user}:sessions", session)
    return sum(pipe.execute()) if len(pipe) else 0


def _sessions(users: dict[str, tuple[str, ...]], events: Callable[[str], list[str]]):
    """Users' session sets under the app `<prefix>shop:`, and the expired names delivered."""

    def setup(r: redis.Redis, prefix: str) -> tuple[list[str], str]:
        app = f"{prefix}shop:"
        for user, sessions in users.items():
            r.sadd(f"{app}user:{user}:sessions", *sessions)
        return events(app), app

    return setup


def _sessions_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    """Return value, round trips, and every user's session set afterwards."""
    sets = {key: sorted(r.smembers(key)) for key in sorted(r.scan_iter(match=f"{prefix}*:sessions"))}
    return seen.result, seen.trips, sets


EXERCISES = (
    ObservedSpec(
        number=1,
        title="the biggest keys, found without KEYS",
        reference=biggest_keys,
        cases=(
            Case("strings, a hash and a list; top 3",
                 _keyspace({"cache:a": 10, "cache:b": 2_000, "cache:c": 300}, {"cache:h": 20},
                           {"cache:l": 50}, 3)),
            Case("bigger keys outside the pattern",
                 _keyspace({"cache:small": 5, "other:huge": 50_000, "cache:mid": 500}, {}, {}, 2)),
            # Eight keys of one size, twice: SCAN's order (hash order, seeded per server process)
            # is the name order by chance once in thousands, and in both cases almost never.
            Case("keys of equal size (name order)",
                 _keyspace({f"cache:{name}": 100 for name in "hdbfaegc"} | {"cache:z": 1_000}, {}, {}, 5)),
            Case("more keys of equal size",
                 _keyspace({f"cache:k{i:02}": 300 for i in (7, 2, 5, 8, 1, 4, 6, 3)}, {}, {}, 6)),
            Case("n larger than the matching keys",
                 _keyspace({"cache:only": 64}, {"cache:profile": 3}, {}, 10)),
            Case("no key matches", _keyspace({"other:x": 10}, {}, {}, 5)),
        ),
        outcome=_biggest_outcome,
        hint="scan_iter(match=pattern) finds the keys without blocking; r.memory_usage(key) gives "
             "the bytes; sort by (-bytes, name) and keep the first n.",
        wrong=(biggest_keys_with_keys, biggest_keys_by_length, biggest_keys_ties_unordered,
               biggest_keys_smallest_first),
    ),
    ObservedSpec(
        number=2,
        title="expired sessions forgotten from their user's index",
        reference=forget_expired_sessions,
        cases=(
            Case("two expired sessions of two users",
                 _sessions({"42": ("s1", "s2"), "7": ("t1",)},
                           lambda app: [f"{app}session:42:s1", f"{app}session:7:t1"])),
            Case("an event delivered twice",
                 _sessions({"42": ("s1", "s2")}, lambda app: [f"{app}session:42:s1", f"{app}session:42:s1"])),
            Case("other keys expiring too",
                 _sessions({"42": ("s1", "s9")}, lambda app: [f"{app}cache:page:1", f"{app}session:42:s1",
                                                               "other-app:session:42:s9"])),
            Case("a session id with a colon",
                 _sessions({"42": ("web:abc", "abc")}, lambda app: [f"{app}session:42:web:abc"])),
            Case("a session already gone from its set",
                 _sessions({"42": ("s2",)}, lambda app: [f"{app}session:42:s1"])),
            Case("no events", _sessions({"42": ("s1",)}, lambda app: [])),
        ),
        outcome=_sessions_outcome,
        hint="Take the user id and session id from the name after `<app>session:` (the session id "
             "is everything after the user's colon); SREM them on one pipeline and add up its replies.",
        wrong=(forget_expired_sessions_counts_events, forget_expired_sessions_one_at_a_time,
               forget_expired_sessions_split_on_colons, forget_expired_sessions_whole_user,
               forget_expired_sessions_any_session_key),
    ),
)
