"""Lesson 22's exercises: memory by key prefix measured exactly, which keys an eviction policy may
take, and a profile laid out so that its hash keeps Redis's compact encoding."""

from __future__ import annotations

import json
from typing import Any

import redis

from . import Case, Spec, unless_none

# --- 1. Memory by prefix ---------------------------------------------------------------------------


def memory_by_prefix(r: redis.Redis, prefix: str) -> dict[str, int]:
    """Add up the memory of every key whose name starts with `prefix`, grouped by the part of the
    name between `prefix` and the next ':' (`prefix + "user:42"` counts under "user"; a name with
    no ':' after the prefix counts under its whole rest). Memory is MEMORY USAGE with every
    element counted, not estimated from a sample. Enumerate with SCAN, never KEYS. Return
    {group: bytes}; {} when no key matches."""
    totals: dict[str, int] = {}
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        group = key[len(prefix):].split(":", 1)[0]
        totals[group] = totals.get(group, 0) + (r.memory_usage(key, samples=0) or 0)
    return totals


def memory_by_prefix_sampled(r, prefix):
    totals = {}
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        group = key[len(prefix):].split(":", 1)[0]
        totals[group] = totals.get(group, 0) + r.memory_usage(key)  # estimated from 5 elements
    return totals


def memory_by_prefix_value_bytes(r, prefix):
    totals = {}
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        group = key[len(prefix):].split(":", 1)[0]
        # A string's bytes are not its memory: the key, its header and the allocator's rounding count too.
        size = r.strlen(key) if r.type(key) == "string" else r.memory_usage(key, samples=0)
        totals[group] = totals.get(group, 0) + size
    return totals


def memory_by_prefix_first_segment(r, prefix):
    totals = {}
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        group = key.split(":", 1)[0]  # the first segment of the whole name
        totals[group] = totals.get(group, 0) + r.memory_usage(key, samples=0)
    return totals


def _app_keys(big_hash: bool = True, others: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        app = f"{prefix}app:"
        r.set(f"{app}user:1", "Ada Lovelace")
        r.set(f"{app}user:2", "x" * 500)
        r.rpush(f"{app}queue:emails", *[f"email-{i}" for i in range(50)])
        r.sadd(f"{app}tags", *[f"tag-{i}" for i in range(20)])
        if big_hash:  # hashtable-encoded; 295 tiny fields and 5 huge ones: a sample of 5 misleads
            r.hset(f"{app}cache:pages", mapping={f"page-{i}": "p" * (10_000 if i % 60 == 7 else 1) for i in range(300)})
        if others:
            r.set(f"{prefix}other:1", "not under the prefix asked for")
        return (app,)

    return setup


def _as_measured(r: redis.Redis, prefix: str, result: Any) -> Any:
    """Each group's bytes, or "= MEMORY USAGE SAMPLES 0" when within 2% of what it says now: two
    keys built alike may differ by a few bytes (Valkey's allocator), a sample of 5 is far off."""
    exact = memory_by_prefix(r, f"{prefix}app:")
    if not isinstance(result, dict) or result.keys() != exact.keys():
        return result
    return {group: "= MEMORY USAGE SAMPLES 0" if abs(size - exact[group]) <= 0.02 * exact[group]
            else f"{size} (MEMORY USAGE SAMPLES 0 says {exact[group]})" for group, size in result.items()}


def _no_keys(r: redis.Redis, prefix: str) -> tuple[str]:
    r.set(f"{prefix}elsewhere", "1")
    return (f"{prefix}app:",)


# --- 2. Which keys a policy may evict --------------------------------------------------------------


def evictable(r: redis.Redis, keys: list[str], policy: str) -> list[str]:
    """Which of `keys` could the eviction policy `policy` (a maxmemory-policy value) evict?
    allkeys-*: every key that exists; volatile-*: only keys that exist and have a time to live,
    however little of it is left; noeviction: none. A key that does not exist is never
    evictable. Return them sorted."""
    if policy == "noeviction":
        return []
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)  # -2: no key; -1: no TTL; else milliseconds left
    ttls = pipe.execute()
    wanted = (lambda ttl: ttl != -2) if policy.startswith("allkeys-") else (lambda ttl: ttl >= 0)
    return sorted(key for key, ttl in zip(keys, ttls) if wanted(ttl))


def evictable_ttl_in_seconds(r, keys, policy):
    if policy == "noeviction":
        return []
    if policy.startswith("allkeys-"):
        return sorted(key for key in keys if r.exists(key))
    return sorted(key for key in keys if r.ttl(key) > 0)  # TTL rounds 300 ms down to 0


def evictable_volatile_means_all(r, keys, policy):
    if policy == "noeviction":
        return []
    return sorted(key for key in keys if r.exists(key))


def evictable_missing_keys_too(r, keys, policy):
    if policy == "noeviction":
        return []
    if policy.startswith("allkeys-"):
        return sorted(keys)
    return sorted(key for key in keys if r.pttl(key) >= 0)


def evictable_noeviction_is_lru(r, keys, policy):
    if policy.startswith("volatile-"):
        return sorted(key for key in keys if r.pttl(key) >= 0)
    return sorted(key for key in keys if r.exists(key))


def _mixed(policy: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str], str]:
        r.set(f"{prefix}cache:page:1", "<html>", ex=600)
        r.set(f"{prefix}cache:page:2", "<html>", px=300)  # TTL (in seconds) already says 0
        r.lpush(f"{prefix}celery", "task")
        r.hset(f"{prefix}session:abc", "user", "42")
        r.expire(f"{prefix}session:abc", 1800)
        r.set(f"{prefix}config", "{}")
        names = ["cache:page:1", "cache:page:2", "celery", "session:abc", "config", "gone"]
        return [f"{prefix}{name}" for name in names], policy

    return setup


# --- 3. A profile that keeps its hash compact ------------------------------------------------------

def save_profile(r: redis.Redis, key: str, profile: dict[str, str]) -> int:
    """Save `profile` (at most 100 fields, field -> text) so that any field can be read alone
    with one command and the whole takes as little memory as Redis allows: the hash `key` holds
    every field whose value is at most 64 bytes long (as UTF-8: Redis's default
    hash-max-listpack-value, below which a hash keeps its compact listpack encoding), and every
    longer value goes to a string key of its own, named `key` + ":" + the field. Write it all at
    once, so that no reader sees half a profile. Return the number of keys written."""
    # 64: hash-max-listpack-value's default on Redis 7 and 8 and Valkey; UTF-8 bytes, not characters.
    short = {field: value for field, value in profile.items() if len(value.encode()) <= 64}
    pipe = r.pipeline()  # MULTI/EXEC: the hash and the long values appear together
    if short:
        pipe.hset(key, mapping=short)
    for field, value in profile.items():
        if field not in short:
            pipe.set(f"{key}:{field}", value)
    pipe.execute()
    return (1 if short else 0) + len(profile) - len(short)


def save_profile_one_hash(r, key, profile):
    r.hset(key, mapping=profile)
    return 1


def save_profile_counts_characters(r, key, profile):
    short = {field: value for field, value in profile.items() if len(value) <= 64}
    if short:
        r.hset(key, mapping=short)
    for field, value in profile.items():
        if field not in short:
            r.set(f"{key}:{field}", value)
    return (1 if short else 0) + len(profile) - len(short)


def save_profile_below_64(r, key, profile):
    short = {field: value for field, value in profile.items() if len(value.encode()) < 64}
    if short:
        r.hset(key, mapping=short)
    for field, value in profile.items():
        if field not in short:
            r.set(f"{key}:{field}", value)
    return (1 if short else 0) + len(profile) - len(short)


def save_profile_as_json(r, key, profile):
    r.set(key, json.dumps(profile))
    return 1


def _profile(profile: dict[str, str]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, dict[str, str]]:
        return f"{prefix}profile:42", profile

    return setup


def _profile_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    key = f"{prefix}profile:42"
    kind = r.type(key)
    others = sorted(name for name in r.scan_iter(match=f"{prefix}*", count=1000) if name != key)
    return {
        "returned": result,
        "hash": (kind, r.object("encoding", key), r.hgetall(key)) if kind == "hash" else kind,
        "other keys": {name: (r.type(name), r.get(name) if r.type(name) == "string" else None) for name in others},
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="memory by prefix, measured exactly",
        reference=memory_by_prefix,
        cases=(
            Case("strings, a list, a set and a 300-field hash under app:", _app_keys()),
            Case("small keys only, and one outside the prefix", _app_keys(big_hash=False)),
            Case("no key under the prefix", _no_keys),
        ),
        outcome=unless_none(_as_measured),
        hint="SCAN with MATCH walks the keys; MEMORY USAGE has an option that counts every element "
             "of an aggregate instead of a sample.",
        wrong=(memory_by_prefix_sampled, memory_by_prefix_value_bytes, memory_by_prefix_first_segment),
    ),
    Spec(
        number=2,
        title="which keys a policy may evict",
        reference=evictable,
        cases=(
            Case("volatile-lru, keys with and without TTL, one gone", _mixed("volatile-lru")),
            Case("allkeys-lfu, the same keys", _mixed("allkeys-lfu")),
            Case("noeviction, the same keys", _mixed("noeviction")),
            Case("volatile-ttl, the same keys", _mixed("volatile-ttl")),
        ),
        hint="PTTL tells apart a missing key, a key without TTL and one with any TTL left, "
             "to the millisecond; TTL rounds to seconds.",
        wrong=(evictable_ttl_in_seconds, evictable_volatile_means_all, evictable_missing_keys_too,
               evictable_noeviction_is_lru),
    ),
    Spec(
        number=3,
        title="a profile whose hash stays compact",
        reference=save_profile,
        cases=(
            Case("short fields and a long bio", _profile({
                "name": "Ada", "city": "London", "lang": "en",
                "bio": "Mathematician, wrote the first published program for the Analytical Engine (1843).",
            })),
            Case("a value of exactly 64 bytes", _profile({"name": "Grace", "motto": "m" * 64})),
            Case("40 accented letters: 40 characters, 80 bytes", _profile({"name": "Zoë", "city": "é" * 40})),
            Case("only long values", _profile({"bio": "b" * 200, "notes": "n" * 65})),
            Case("only short values", _profile({"name": "Alan", "city": "Wilmslow"})),
        ),
        outcome=unless_none(_profile_outcome),
        hint="Measure each value in bytes, not characters, against the listpack limit; one "
             "MULTI/EXEC writes the hash and the long values together.",
        wrong=(save_profile_one_hash, save_profile_counts_characters, save_profile_below_64,
               save_profile_as_json),
    ),
)
