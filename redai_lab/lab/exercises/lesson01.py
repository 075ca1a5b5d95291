"""Lesson 01, keys and expiry: SET's options, expiry that never shortens, walking with SCAN."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from . import Case, Spec, ttl_seconds


def _keys_calls(r: redis.Redis) -> int:
    """How many KEYS commands the server has run (INFO commandstats)."""
    return int(r.info("commandstats").get("cmdstat_keys", {}).get("calls", 0))


_keys_before: dict[str, int] = {}  # prefix -> KEYS calls when the case was set up


# 1. Claim a name, once, for a while -------------------------------------------------------------


def claim(r: redis.Redis, key: str, owner: str, ms: int) -> bool:
    """Claim `key` for `owner` for `ms` milliseconds, if nobody holds it.

    Write `owner` under `key` only if the key does not exist, with an expiry of `ms` milliseconds,
    in one command (a crash must never leave a claim without expiry). Leave an existing key,
    its value and its TTL untouched. Return True if this call claimed the key, else False."""
    return bool(r.set(key, owner, nx=True, px=ms))


def _claim_case(holder: str | None, holder_ms: int | None, ms: int, *, expired: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        if holder is not None:
            r.set(f"{prefix}username:ada", holder, px=holder_ms)
            if expired:
                time.sleep((holder_ms or 0) / 1000 + 0.01)  # the old claim has run out
        return f"{prefix}username:ada", "ada-account-1", ms

    return setup


def _claim_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    key = f"{prefix}username:ada"
    return {"returned": result, "value": r.get(key), "ttl": ttl_seconds(r, key)}


def claim_overwrites(r, key, owner, ms):
    return bool(r.set(key, owner, px=ms))  # no NX: takes the name from its holder


def claim_setnx_then_pexpire(r, key, owner, ms):
    claimed = r.setnx(key, owner)
    r.pexpire(key, ms)  # two commands, and it resets the holder's TTL too
    return bool(claimed)


def claim_seconds(r, key, owner, ms):
    return bool(r.set(key, owner, nx=True, ex=ms))  # EX takes seconds: 1000 times too long


def claim_raw_reply(r, key, owner, ms):
    return r.set(key, owner, nx=True, px=ms)  # None, not False, when the name is taken


# 2. Replace a value, keep its TTL -------------------------------------------------------------


def replace_value(r: redis.Redis, key: str, value: str) -> str | None:
    """Replace the string at `key` with `value` and return the value it held (None if none).

    Whatever expiry `key` has must stay exactly as it is: a key with a TTL keeps it, a key without
    one gets none, and a missing key is created without expiry. Do it in one command."""
    return r.set(key, value, keepttl=True, get=True)


def _replace_case(old: str | None, px: int | None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if old is not None:
            r.set(f"{prefix}cache:page", old, px=px)
        return f"{prefix}cache:page", "<html>v2</html>"

    return setup


def _replace_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    key = f"{prefix}cache:page"
    return {"returned": result, "value": r.get(key), "ttl": ttl_seconds(r, key)}


def replace_value_drops_ttl(r, key, value):
    return r.set(key, value, get=True)  # a plain SET clears the TTL


def replace_value_getset(r, key, value):
    return r.getset(key, value)  # deprecated, and clears the TTL as well


def replace_value_only_existing(r, key, value):
    return r.set(key, value, xx=True, keepttl=True, get=True)  # XX: a missing key is not created


def replace_value_reads_ttl_first(r, key, value):
    old, ttl = r.get(key), r.ttl(key)
    r.set(key, value, ex=ttl if ttl > 0 else None)  # TTL is rounded to seconds, and it races
    return old


# 3. Extend a session, never shorten it ----------------------------------------------------------


def extend_session(r: redis.Redis, key: str, seconds: int) -> bool:
    """Extend session `key` so that it lives `seconds` from now, but never shorten its life.

    A session with less time left gets a TTL of `seconds`; one with more time left, or with no
    expiry at all (it never expires), keeps what it has; a missing session is not created.
    One command, without reading the TTL first. Return True if the TTL was changed, else False."""
    return bool(r.expire(key, seconds, gt=True))


def _session_case(ttl: int | None, seconds: int, *, exists: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        if exists:
            r.set(f"{prefix}session:42", "user:42", ex=ttl)
        return f"{prefix}session:42", seconds

    return setup


def _session_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    return {"returned": result, "ttl": ttl_seconds(r, f"{prefix}session:42")}


def extend_session_always(r, key, seconds):
    return bool(r.expire(key, seconds))  # shortens the admin's longer session


def extend_session_xx(r, key, seconds):
    return bool(r.expire(key, seconds, xx=True))  # XX: "has a TTL", not "a shorter one"


def extend_session_nx(r, key, seconds):
    return bool(r.expire(key, seconds, nx=True))  # NX: only keys without a TTL


def extend_session_compares_in_python(r, key, seconds):
    if r.ttl(key) < seconds:  # -1 (no expiry) is less than any number: gives it one
        return bool(r.expire(key, seconds))
    return False


# 4. The hashes of a namespace, with SCAN --------------------------------------------------------


def hashes_in(r: redis.Redis, namespace: str) -> list[str]:
    """The names of the hashes whose name starts with `namespace` followed by ':', sorted.

    Walk the keyspace with SCAN (never KEYS), let the server filter by name and type, and keep
    going until the walk is over. Keys of other types, the key named `namespace` itself and keys of
    other namespaces that merely start with the same letters are left out."""
    return sorted(set(r.scan_iter(match=f"{namespace}:*", count=1000, _type="hash")))


def _hashes_case(hashes: Sequence[str], others: dict[str, str], filler: int = 0):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        for name in hashes:
            r.hset(f"{prefix}{name}", mapping={"title": name})
        for name, kind in others.items():
            if kind == "string":
                r.set(f"{prefix}{name}", "...")
            elif kind == "list":
                r.rpush(f"{prefix}{name}", "q1")
            else:
                r.sadd(f"{prefix}{name}", "x")
        pipe = r.pipeline(transaction=False)
        for start in range(0, filler, 1000):  # many other keys (a fifth in the namespace): many pages
            pipe.mset({f"{prefix}event:{i}": 1 for i in range(start, start + 1000)})
            pipe.mset({f"{prefix}exam:log:{i}": 1 for i in range(start // 5, (start + 1000) // 5)})
        pipe.execute()
        _keys_before[prefix] = _keys_calls(r)
        return (f"{prefix}exam",)

    return setup


def _hashes_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    used_keys = _keys_calls(r) > _keys_before.get(prefix, 0)
    stripped = sorted(name.removeprefix(prefix) for name in result) if isinstance(result, list) else result
    return {"returned": stripped, "ran KEYS": used_keys}


def hashes_in_with_keys(r, namespace):
    return sorted(k for k in r.keys(f"{namespace}:*") if r.type(k) == "hash")  # KEYS blocks the server


def hashes_in_one_page(r, namespace):
    _, keys = r.scan(0, match=f"{namespace}:*", count=1000, _type="hash")  # only the first page
    return sorted(keys)


def hashes_in_no_colon(r, namespace):
    return sorted(set(r.scan_iter(match=f"{namespace}*", count=1000, _type="hash")))  # exams:9 too


def hashes_in_any_type(r, namespace):
    return sorted(set(r.scan_iter(match=f"{namespace}:*", count=1000)))  # strings and lists too


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="claim a name once, for a while",
        reference=claim,
        cases=(
            Case("a free name, 30 s", _claim_case(None, None, 30_000)),
            Case("a name someone holds for 60 s", _claim_case("bob-account-7", 60_000, 30_000)),
            Case("a name someone holds without expiry", _claim_case("bob-account-7", None, 30_000)),
            Case("a name whose last claim has expired", _claim_case("bob-account-7", 50, 30_000, expired=True)),
            Case("a free name, 2.5 s", _claim_case(None, None, 2_500)),
        ),
        hint="One SET does it: look at its options for 'only if missing' and 'expire in milliseconds'.",
        outcome=_claim_outcome,
        wrong=(claim_overwrites, claim_setnx_then_pexpire, claim_seconds, claim_raw_reply),
    ),
    Spec(
        number=2,
        title="replace a value, keep its TTL",
        reference=replace_value,
        cases=(
            Case("a cached page with 100 s left", _replace_case("<html>v1</html>", 100_000)),
            Case("a page without expiry", _replace_case("<html>v1</html>", None)),
            Case("a missing page", _replace_case(None, None)),
            Case("a page with 1.4 s left (not whole seconds)", _replace_case("<html>v1</html>", 1_400)),
        ),
        hint="A plain SET clears the TTL; SET has an option that keeps it, and one that returns the old value.",
        outcome=_replace_outcome,
        wrong=(replace_value_drops_ttl, replace_value_getset, replace_value_only_existing,
               replace_value_reads_ttl_first),
    ),
    Spec(
        number=3,
        title="extend a session, never shorten it",
        reference=extend_session,
        cases=(
            Case("a session with 600 s left, extended to 1800 s", _session_case(600, 1800)),
            Case("an admin session with 7200 s left", _session_case(7200, 1800)),
            Case("a session without expiry", _session_case(None, 1800)),
            Case("no session", _session_case(None, 1800, exists=False)),
            Case("a session with 60 s left, extended to 120 s", _session_case(60, 120)),
        ),
        hint="EXPIRE has four options since Redis 7.0; think of a key without TTL as one with an infinite TTL.",
        outcome=_session_outcome,
        wrong=(extend_session_always, extend_session_xx, extend_session_nx, extend_session_compares_in_python),
    ),
    Spec(
        number=4,
        title="the hashes of a namespace, with SCAN",
        reference=hashes_in,
        cases=(
            Case("the lesson's keys", _hashes_case(
                ["exam:1", "exam:2", "course:1"], {"exam:2:cache": "string", "exam:3:queue": "list"})),
            Case("a sibling namespace and the bare name", _hashes_case(
                ["exam:7", "exams:9", "exam", "examiner:1"], {"exam:7:tags": "set"})),
            Case("nothing in the namespace", _hashes_case(["course:1", "user:1"], {"exam": "string"})),
            Case("20 hashes among 6,000 other keys", _hashes_case(
                [f"exam:{i}" for i in range(100, 120)], {"exams:1": "string"}, filler=5_000)),
        ),
        hint="scan_iter (or a SCAN loop until the cursor is 0) takes MATCH and a type filter, _type.",
        outcome=_hashes_outcome,
        wrong=(hashes_in_with_keys, hashes_in_one_page, hashes_in_no_colon, hashes_in_any_type),
    ),
)
