"""Lesson 28's exercises: replication (a write that knows whether replicas confirmed it, and the
acknowledged writes a failover lost). The checks run on the lab's server, which has no replicas."""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec

# Exercise 1 ------------------------------------------------------------------------------------


def confirmed_set(r: redis.Redis, key: str, value: str, replicas: int, timeout_ms: int) -> bool:
    """Set the string `key` to `value`, then wait up to `timeout_ms` ms for `replicas` replicas to
    have it. Return True if at least `replicas` replicas confirmed it (0 replicas: always), False
    otherwise; in both cases the value stays written."""
    r.set(key, value)
    return r.wait(replicas, timeout_ms) >= replicas  # WAIT reports; it never undoes the write


def confirmed_set_truthy(r, key, value, replicas, timeout_ms):
    r.set(key, value)
    return bool(r.wait(replicas, timeout_ms))  # 0 replicas asked, 0 confirmed: still confirmed


def confirmed_set_undoes(r, key, value, replicas, timeout_ms):
    r.set(key, value)
    if r.wait(replicas, timeout_ms) < replicas:
        r.delete(key)  # WAIT is no transaction: the replicas may have it anyway
        return False
    return True


def confirmed_set_ignores_wait(r, key, value, replicas, timeout_ms):
    return bool(r.set(key, value))


def _write(replicas: int, before: str | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int, int]:
        key = f"{prefix}exam:status"
        if before is not None:
            r.set(key, before)
        return key, "published", replicas, 50

    return setup


def _confirmed_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    return result, r.get(f"{prefix}exam:status")


# Exercise 2 ------------------------------------------------------------------------------------


def lost_writes(r: redis.Redis, acknowledged: str, survived: str) -> list[int]:
    """The list `acknowledged` holds the ids (integers) of the writes a client saw acknowledged, in
    order; the list `survived` holds the ids the new primary has after a failover (it may also
    hold ids the client never saw acknowledged). Return the acknowledged ids that did not
    survive, as integers, in the order they were acknowledged."""
    kept = set(r.lrange(survived, 0, -1))
    return [int(write_id) for write_id in r.lrange(acknowledged, 0, -1) if write_id not in kept]


def lost_writes_by_count(r, acknowledged, survived):
    missing = r.llen(acknowledged) - r.llen(survived)  # extra unacknowledged ids hide losses
    return [int(i) for i in r.lrange(acknowledged, 0, -1)[len(r.lrange(acknowledged, 0, -1)) - missing:]] \
        if missing > 0 else []


def lost_writes_reversed(r, acknowledged, survived):
    kept = set(r.lrange(acknowledged, 0, -1))
    return [int(i) for i in r.lrange(survived, 0, -1) if i not in kept]


def lost_writes_as_text(r, acknowledged, survived):
    kept = set(r.lrange(survived, 0, -1))
    return [i for i in r.lrange(acknowledged, 0, -1) if i not in kept]


def lost_writes_tail(r, acknowledged, survived):
    last = r.lindex(survived, -1)  # assumes the survivors are a prefix of what was acknowledged
    ids = [int(i) for i in r.lrange(acknowledged, 0, -1)]
    return ids[ids.index(int(last)) + 1:] if last is not None and int(last) in ids else ids


def _logs(acknowledged: list[int], survived: list[int]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        keys = f"{prefix}failover:acknowledged", f"{prefix}failover:survived"
        for key, ids in zip(keys, (acknowledged, survived)):
            if ids:
                r.rpush(key, *ids)
        return keys

    return setup


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a write that knows whether it was copied",
        reference=confirmed_set,
        cases=(
            Case("no replica asked for", _write(0)),
            Case("1 replica asked for, none there (50 ms timeout)", _write(1, before="draft")),
            Case("2 replicas asked for, none there", _write(2)),
        ),
        outcome=_confirmed_outcome,
        hint="SET, then WAIT replicas timeout_ms: it returns how many replicas have your writes. "
             "Compare with what you asked for; WAIT never rolls anything back.",
        wrong=(confirmed_set_truthy, confirmed_set_undoes, confirmed_set_ignores_wait),
    ),
    Spec(
        number=2,
        title="which acknowledged writes were lost",
        reference=lost_writes,
        cases=(
            Case("everything survived", _logs([1, 2, 3], [1, 2, 3])),
            Case("the last two were lost", _logs([1, 2, 3, 4], [1, 2])),
            Case("nothing acknowledged", _logs([], [7])),
            Case("lost 3 and 5; the new primary also holds unacknowledged 4 and 6",
                 _logs([1, 2, 3, 5], [1, 2, 4, 6])),
            Case("lost 10; 11 and 12 written after the failover survived", _logs([9, 10, 11, 12], [9, 11, 12])),
        ),
        hint="Read both lists with LRANGE; keep the acknowledged ids, in order, that are not among "
             "the survivors (a set makes that fast), and turn them into integers.",
        wrong=(lost_writes_by_count, lost_writes_reversed, lost_writes_as_text, lost_writes_tail),
    ),
)
