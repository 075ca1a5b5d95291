"""Lesson 29's exercises: the part of a key Redis Cluster hashes (its hash tag), and a batch of
keys grouped by hash slot, as a cluster client must group a multi-key command. Pure functions of
their arguments, graded on what they return (they run on the lesson's single server)."""

from __future__ import annotations

import redis

from redai_lab.lab.exercises import Case, Spec

# Exercise 1 ------------------------------------------------------------------------------------


def hashed_part(r: redis.Redis, key: str) -> str:
    """The part of `key` that Redis Cluster hashes to pick its slot: if `key` has a `{`, and a
    `}` somewhere after that first `{`, with at least one character between them, only those
    characters (the hash tag); otherwise the whole key."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1:end]


def hashed_part_last_brace(r, key):
    start, end = key.find("{"), key.rfind("}")
    return key[start + 1:end] if start != -1 and end > start + 1 else key


def hashed_part_empty_tag(r, key):
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start != -1 and end != -1 else key


def hashed_part_any_brace(r, key):
    start = key.find("{")
    end = key.find("}")
    return key[start + 1:end] if -1 < start < end - 1 else key


def _key(key: str):
    return lambda r, prefix: (key,)


# Exercise 2 ------------------------------------------------------------------------------------


def group_by_slot(r: redis.Redis, keys: list[str]) -> dict[int, list[str]]:
    """Group `keys` by their Redis Cluster hash slot (CRC16 of the hashed part, modulo 16384;
    `redis.crc.key_slot(key.encode())` computes it): a dict from each slot to its keys, in the
    order they come in `keys`, each key once. One MGET per group then works on a Cluster."""
    from redis.crc import key_slot

    groups: dict[int, list[str]] = {}
    for key in keys:
        group = groups.setdefault(key_slot(key.encode()), [])
        if key not in group:
            group.append(key)
    return groups


def group_by_slot_whole_key(r, keys):
    from binascii import crc_hqx

    groups = {}
    for key in keys:
        group = groups.setdefault(crc_hqx(key.encode(), 0) % 16384, [])
        if key not in group:
            group.append(key)
    return groups


def group_by_slot_keeps_duplicates(r, keys):
    from redis.crc import key_slot

    groups = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return groups


def group_by_slot_sorted(r, keys):
    from redis.crc import key_slot

    groups = {}
    for key in sorted(set(keys)):
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return groups


def _keys(*keys: str):
    return lambda r, prefix: (list(keys),)


EXERCISES = (
    Spec(
        number=1,
        title="The part of a key that Redis Cluster hashes",
        reference=hashed_part,
        cases=(
            Case("a key without braces", _key("user:42:profile")),
            Case("a key with a hash tag", _key("{user:42}:profile")),
            Case("a tag in the middle", _key("rl:{api:alice}:fixed")),
            Case("an empty tag '{}' first", _key("{}user:{42}")),
            Case("two tags (only the first counts)", _key("{a}{b}")),
            Case("a '{' without a '}' after it", _key("a{b")),
            Case("a '}' before the first '{'", _key("a}b{c}")),
            Case("braces inside the tag", _key("x{{y}}z")),
        ),
        hint="Find the first '{'; then the first '}' after it (not the last one in the key). An empty "
             "'{}' means no tag: the whole key is hashed.",
        wrong=(hashed_part_last_brace, hashed_part_empty_tag, hashed_part_any_brace),
    ),
    Spec(
        number=2,
        title="Group keys by hash slot",
        reference=group_by_slot,
        cases=(
            Case("three keys of one user, tagged", _keys("{user:42}:profile", "{user:42}:cart", "{user:42}:likes")),
            Case("tagged and untagged keys", _keys("b:{x}", "user:1", "a:{x}", "user:2")),
            Case("the same key twice", _keys("user:1", "user:1", "{user:1}")),
            Case("no keys", _keys()),
        ),
        hint="redis.crc.key_slot(key.encode()) applies the hash-tag rule for you; keep the keys' own order "
             "inside each group and skip a key already there.",
        wrong=(group_by_slot_whole_key, group_by_slot_keeps_duplicates, group_by_slot_sorted),
    ),
)
