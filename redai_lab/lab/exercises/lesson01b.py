"""Lesson 01b, keys (advanced): RENAMENX, COPY ... REPLACE, deleting by pattern with SCAN."""

from __future__ import annotations

from typing import Any

import redis

from . import Case, Spec, ttl_seconds


def _snapshot(r: redis.Redis, key: str) -> Any:
    """What `key` holds, whatever its type, and its TTL (None when it does not exist)."""
    kind = r.type(key)
    read = {
        "string": r.get,
        "hash": r.hgetall,
        "list": lambda k: r.lrange(k, 0, -1),
        "set": lambda k: sorted(r.smembers(k)),
        "zset": lambda k: r.zrange(k, 0, -1, withscores=True),
    }
    if kind not in read:
        return None if kind == "none" else kind
    return (kind, read[kind](key), ttl_seconds(r, key))


def _write(r: redis.Redis, key: str, kind: str, ttl: int | None) -> None:
    if kind == "string":
        r.set(key, f"value of {key.split(':', 1)[1]}")
    elif kind == "hash":
        r.hset(key, mapping={"q1": "0.41", "q2": "0.87"})
    elif kind == "list":
        r.rpush(key, "job:1", "job:2")
    if ttl:
        r.expire(key, ttl)


def _keys_calls(r: redis.Redis) -> int:
    """How many KEYS commands the server has run (INFO commandstats)."""
    return int(r.info("commandstats").get("cmdstat_keys", {}).get("calls", 0))


_keys_before: dict[str, int] = {}  # prefix -> KEYS calls when the case was set up


# 1. Publish a draft without overwriting ----------------------------------------------------------


def publish(r: redis.Redis, draft: str, final: str) -> bool:
    """Move the key `draft` (any type) to the name `final`, unless `final` already exists.

    The move is one atomic step: `final` gets the draft's value and TTL, and `draft` no longer
    exists. An existing `final` is never overwritten. Return True if the draft was moved; False
    when `final` exists or there is no draft (then nothing changes, and nothing raises)."""
    try:
        return bool(r.renamenx(draft, final))
    except redis.ResponseError:  # "no such key": there is no draft to publish
        return False


def _publish_case(draft: tuple[str, int | None] | None, final: tuple[str, int | None] | None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if draft is not None:
            _write(r, f"{prefix}report:draft", *draft)
        if final is not None:
            _write(r, f"{prefix}report:final", *final)
        return f"{prefix}report:draft", f"{prefix}report:final"

    return setup


def _publish_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    return {"returned": result, "draft": _snapshot(r, f"{prefix}report:draft"),
            "final": _snapshot(r, f"{prefix}report:final")}


def publish_overwrites(r, draft, final):
    try:
        return bool(r.rename(draft, final))  # RENAME replaces an existing final
    except redis.ResponseError:
        return False


def publish_lets_it_raise(r, draft, final):
    return bool(r.renamenx(draft, final))  # raises "no such key" when there is no draft


def publish_by_copying_the_value(r, draft, final):
    if r.exists(final):
        return False
    value = r.get(draft)  # strings only, and the TTL is lost
    if value is None:
        return False
    r.set(final, value)
    r.delete(draft)
    return True


def publish_copies(r, draft, final):
    return bool(r.copy(draft, final))  # the draft stays


# 2. Clone a key, replacing the destination ------------------------------------------------------


def clone(r: redis.Redis, src: str, dst: str) -> bool:
    """Make `dst` an exact copy of `src`: same type, same content, same expiry.

    Whatever `dst` held before is replaced; `src` is left as it is. When `src` does not exist,
    nothing changes at all (an existing `dst` stays). One command. Return True if `dst` was
    written, else False."""
    return bool(r.copy(src, dst, replace=True))


def _clone_case(src: tuple[str, int | None] | None, dst: tuple[str, int | None] | None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if src is not None:
            _write(r, f"{prefix}template", *src)
        if dst is not None:
            _write(r, f"{prefix}copy", *dst)
        return f"{prefix}template", f"{prefix}copy"

    return setup


def _clone_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    return {"returned": result, "src": _snapshot(r, f"{prefix}template"), "dst": _snapshot(r, f"{prefix}copy")}


def clone_without_replace(r, src, dst):
    return bool(r.copy(src, dst))  # refuses when dst exists


def clone_by_renaming(r, src, dst):
    try:
        return bool(r.rename(src, dst))  # moves: src is gone
    except redis.ResponseError:
        return False


def clone_delete_then_copy(r, src, dst):
    r.delete(dst)  # deleted even when there is nothing to copy
    return bool(r.copy(src, dst))


def clone_get_set(r, src, dst):
    value = r.get(src)  # WRONGTYPE on a hash; loses the TTL
    if value is None:
        return False
    return bool(r.set(dst, value))


# 3. Delete by pattern, walking with SCAN ---------------------------------------------------------


def delete_matching(r: redis.Redis, pattern: str) -> int:
    """Delete every key whose name matches the glob `pattern`, and return how many were deleted.

    There may be millions of keys: walk the keyspace with SCAN (never KEYS) until the walk is over,
    and delete in batches with UNLINK as you go. No match at all is fine (return 0)."""
    removed, cursor = 0, 0
    while True:
        cursor, keys = r.scan(cursor, match=pattern, count=1000)
        if keys:  # a page may be empty while the walk goes on
            removed += r.unlink(*keys)
        if cursor == 0:
            return removed


def _delete_case(matching: int, others: int, *, kinds: tuple[str, ...] = ("string",)):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        pipe = r.pipeline(transaction=False)
        for start in range(0, others, 5000):
            pipe.mset({f"{prefix}user:{i}": 1 for i in range(start, min(start + 5000, others))})
        for i in range(matching):
            kind = kinds[i % len(kinds)]
            key = f"{prefix}tmp:{i}"
            if kind == "string":
                pipe.set(key, 1)
            elif kind == "hash":
                pipe.hset(key, "f", 1)
            else:
                pipe.rpush(key, 1)
        pipe.execute()
        _keys_before[prefix] = _keys_calls(r)
        return (f"{prefix}tmp:*",)

    return setup


def _delete_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    used_keys = _keys_calls(r) > _keys_before.get(prefix, 0)
    left = sum(1 for _ in r.scan_iter(match=f"{prefix}tmp:*", count=1000))
    others = sum(1 for _ in r.scan_iter(match=f"{prefix}user:*", count=1000))
    return {"returned": result, "matching keys left": left, "other keys left": others, "ran KEYS": used_keys}


def delete_matching_with_keys(r, pattern):
    keys = r.keys(pattern)  # one O(N) command that blocks every client
    return r.unlink(*keys) if keys else 0


def delete_matching_first_page(r, pattern):
    _, keys = r.scan(0, match=pattern, count=1000)  # only the first page
    return r.unlink(*keys) if keys else 0


def delete_matching_stops_at_empty_page(r, pattern):
    removed, cursor = 0, 0
    while True:
        cursor, keys = r.scan(cursor, match=pattern, count=100)
        if not keys:  # an empty page is not the end of the walk
            return removed
        removed += r.unlink(*keys)


def delete_matching_unguarded(r, pattern):
    removed, cursor = 0, 0
    while True:
        cursor, keys = r.scan(cursor, match=pattern, count=1000)
        removed += r.unlink(*keys)  # UNLINK with no key is an error
        if cursor == 0:
            return removed


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="publish a draft without overwriting",
        reference=publish,
        cases=(
            Case("a draft with 100 s left, no final yet", _publish_case(("string", 100), None)),
            Case("a final already approved", _publish_case(("string", None), ("string", None))),
            Case("no draft, a final", _publish_case(None, ("string", 3600))),
            Case("neither draft nor final", _publish_case(None, None)),
            Case("a draft hash, no final yet", _publish_case(("hash", None), None)),
        ),
        hint="RENAME has a sibling that refuses to overwrite; it still raises when the source is missing.",
        outcome=_publish_outcome,
        wrong=(publish_overwrites, publish_lets_it_raise, publish_by_copying_the_value, publish_copies),
    ),
    Spec(
        number=2,
        title="clone a key, replacing the destination",
        reference=clone,
        cases=(
            Case("a hash with 300 s left, no copy yet", _clone_case(("hash", 300), None)),
            Case("a list over an existing string", _clone_case(("list", None), ("string", None))),
            Case("no source, an existing copy", _clone_case(None, ("string", 600))),
            Case("a string without expiry over a copy with 600 s left", _clone_case(("string", None), ("string", 600))),
        ),
        hint="Redis 6.2 added a command that duplicates a key of any type, TTL included; look at its options.",
        outcome=_clone_outcome,
        wrong=(clone_without_replace, clone_by_renaming, clone_delete_then_copy, clone_get_set),
    ),
    Spec(
        number=3,
        title="delete by pattern, walking with SCAN",
        reference=delete_matching,
        cases=(
            Case("500 temporary keys among 20,000 others", _delete_case(500, 20_000)),
            Case("no key matches", _delete_case(0, 5_000)),
            Case("5 matches among 20,000 others", _delete_case(5, 20_000)),
            Case("matches of three types", _delete_case(30, 1_000, kinds=("string", "hash", "list"))),
        ),
        hint="Loop on SCAN with MATCH until the cursor comes back as 0, and UNLINK each non-empty page.",
        outcome=_delete_outcome,
        wrong=(delete_matching_with_keys, delete_matching_first_page, delete_matching_stops_at_empty_page,
               delete_matching_unguarded),
    ),
)
