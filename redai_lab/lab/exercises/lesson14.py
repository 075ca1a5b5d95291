"""Lesson 14's exercises: sessions (sliding expiry capped by a deadline, field-level updates that
never revive a session, rotation with RENAME, logout everywhere)."""

from __future__ import annotations

import time
from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec
from redai_lab.lab.exercises.lesson13 import race, settle, ttl_bucket


def _now_ms() -> int:
    return int(time.time() * 1000)


def _state(r: redis.Redis, key: str) -> Any:
    """A session as a check compares it: its fields and TTL, or "gone"."""
    fields = r.hgetall(key)
    return (dict(sorted(fields.items())), ttl_bucket(r, key)) if fields else "gone"


# Exercise 1 ------------------------------------------------------------------------------------


def touch(r: redis.Redis, session: str, idle_ms: int) -> dict[str, str] | None:
    """Hash `session` is a session: its data fields, plus `@deadline`, the time (Unix ms) at which
    it ends whatever happens. Read it and slide its expiry, in one atomic step: from now on it
    expires after `idle_ms` ms without a request, but never later than its deadline. Return its
    data fields as a dict (without `@deadline`), or None when there is no such session. A
    session whose deadline has passed is over: delete it and return None."""
    read_and_slide = r.register_script('''
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local deadline = tonumber(redis.call('HGET', KEYS[1], '@deadline'))
if not deadline then return false end
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(tonumber(ARGV[1]), deadline - now)))
return redis.call('HGETALL', KEYS[1])
''')
    reply = read_and_slide(keys=[session], args=[idle_ms])  # the server's clock, one round trip
    if reply is None:
        return None
    fields = dict(zip(reply[::2], reply[1::2]))
    fields.pop("@deadline")
    return fields


def touch_ignores_the_deadline(r, session, idle_ms):
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(session)
    pipe.pexpire(session, idle_ms)
    fields, _ = pipe.execute()
    if not fields:
        return None
    fields.pop("@deadline")
    return fields


def touch_returns_the_deadline(r, session, idle_ms):
    fields = r.hgetall(session)
    if not fields:
        return None
    left = int(fields["@deadline"]) - int(time.time() * 1000)
    if left <= 0:
        r.delete(session)
        return None
    r.pexpire(session, min(idle_ms, left))
    return fields


def touch_past_the_deadline(r, session, idle_ms):
    fields = r.hgetall(session)
    if not fields:
        return None
    deadline = int(fields.pop("@deadline"))
    r.pexpire(session, max(1, min(idle_ms, deadline - int(time.time() * 1000))))
    return fields


def touch_empty_when_missing(r, session, idle_ms):
    fields = r.hgetall(session)
    if fields:
        left = int(fields.pop("@deadline")) - int(time.time() * 1000)
        if left <= 0:
            r.delete(session)
            return None
        r.pexpire(session, min(idle_ms, left))
    return fields


def _session(deadline_in: float | None, ttl_left: float = 120, idle: float = 1800):
    """A session ending `deadline_in` s from now (None: no session), its key expiring in `ttl_left`."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        key = f"{prefix}session:k3Yd"
        if deadline_in is not None:
            r.hset(key, mapping={"user": "42", "theme": "dark", "@deadline": _now_ms() + round(deadline_in * 1000)})
            r.pexpire(key, round(ttl_left * 1000))
        return key, round(idle * 1000)

    return setup


def _touch_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    key = f"{prefix}session:k3Yd"
    return result, "gone" if not r.exists(key) else ttl_bucket(r, key)


# Exercise 2 ------------------------------------------------------------------------------------


def update_session(r: redis.Redis, session: str, changes: dict[str, str]) -> bool:
    """Hash `session` is a live session, or nothing when it has ended (expired, logged out). Set the
    fields of `changes` in it, leaving its other fields and its TTL as they are, and return True.
    When the session has ended, write nothing and return False: never bring a session back.
    Other requests of the same session write other fields, or log it out, at any moment."""
    update = r.register_script('''
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
''')
    flat = [item for field, value in changes.items() for item in (field, value)]
    return update(keys=[session], args=flat) == 1  # the check and the write: one atomic step


def update_session_blindly(r, session, changes):
    r.hset(session, mapping=changes)  # creates the hash when the session has ended
    return True


def update_session_check_then_write(r, session, changes):
    if not r.exists(session):
        return False
    r.hset(session, mapping=changes)  # the session may have ended since EXISTS
    return True


def update_session_whole_hash(r, session, changes):
    fields = r.hgetall(session)
    if not fields:
        return False
    fields.update(changes)
    r.hset(session, mapping=fields)  # writes back what other requests changed meanwhile
    return True


def update_session_in_multi(r, session, changes):
    pipe = r.pipeline(transaction=True)
    pipe.exists(session)
    pipe.hset(session, mapping=changes)  # MULTI runs it whatever EXISTS answered
    exists, _ = pipe.execute()
    return bool(exists)


def _update(alive: bool = True, meanwhile: str | None = None):
    """`meanwhile`: what another request does right after this update's first command."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, dict[str, str]]:
        key = f"{prefix}session:k3Yd"
        if alive:
            r.hset(key, mapping={"user": "42", "theme": "light", "cart": "[]"})
            r.expire(key, 600)
        if meanwhile == "theme":
            race(r, prefix, key, lambda r: r.hset(key, "theme", "dark"))
        elif meanwhile == "logout":
            race(r, prefix, key, lambda r: r.delete(key))
        return key, {"cart": "[7, 9]", "step": "payment"}

    return setup


def _update_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    settle(r)
    return result, _state(r, f"{prefix}session:k3Yd")


# Exercise 3 ------------------------------------------------------------------------------------


def rotate(r: redis.Redis, old: str, new: str, index: str) -> bool:
    """Session fixation: give a session a new id at login. Hash `old` is a session (or nothing, once
    it has ended); sorted set `index` lists its user's session keys, scored by their deadlines.
    Move the session to the key `new` with its fields and TTL, so that `old` stops existing at
    that very moment, and if `old` is listed in `index`, list `new` there instead, with the same
    score. Return True; when `old` has ended, change nothing and return False. The session may
    expire at any moment."""
    move = r.register_script('''
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
local score = redis.call('ZSCORE', KEYS[3], KEYS[1])
if score then
  redis.call('ZREM', KEYS[3], KEYS[1])
  redis.call('ZADD', KEYS[3], score, KEYS[2])
end
return 1
''')
    return move(keys=[old, new, index]) == 1  # RENAME keeps the TTL; the script keeps it atomic


def rotate_by_copying(r, old, new, index):
    fields = r.hgetall(old)
    if not fields:
        return False
    r.hset(new, mapping=fields)  # a new hash: the old TTL is lost
    r.delete(old)
    score = r.zscore(index, old)
    if score is not None:
        r.zrem(index, old)
        r.zadd(index, {new: score})
    return True


def rotate_check_then_rename(r, old, new, index):
    if not r.exists(old):
        return False
    r.rename(old, new)  # "no such key" when the session expired since EXISTS
    score = r.zscore(index, old)
    if score is not None:
        r.zrem(index, old)
        r.zadd(index, {new: score})
    return True


def rotate_forgets_the_index(r, old, new, index):
    try:
        r.rename(old, new)
    except redis.ResponseError:
        return False
    return True


def rotate_lists_every_session(r, old, new, index):
    try:
        r.rename(old, new)
    except redis.ResponseError:
        return False
    score = r.zscore(index, old) or 0
    r.zrem(index, old)
    r.zadd(index, {new: score})
    return True


DEADLINE = 1_767_225_600_000  # the user's sessions' deadlines (Unix ms), as the index scores them


def _rotation(alive: bool = True, listed: bool = True, expires_meanwhile: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str]:
        old, new, index = f"{prefix}session:oLd1", f"{prefix}session:nEw2", f"{prefix}session:user:42"
        if alive:
            r.hset(old, mapping={"user": "42", "cart": "[3]"})
            r.expire(old, 1200)
        others = {f"{prefix}session:phone": DEADLINE - 3_600_000, f"{prefix}session:tablet": DEADLINE + 60_000}
        r.zadd(index, {**others, **({old: DEADLINE} if listed else {})})
        if expires_meanwhile:
            race(r, prefix, old, lambda r: r.delete(old))
        return old, new, index

    return setup


def _rotation_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    old, new, index = f"{prefix}session:oLd1", f"{prefix}session:nEw2", f"{prefix}session:user:42"
    return {
        "returned": result,
        "old": _state(r, old),
        "new": _state(r, new),
        "index": [(key.removeprefix(prefix), int(score)) for key, score in r.zrange(index, 0, -1, withscores=True)],
    }


# Exercise 4 ------------------------------------------------------------------------------------


def logout_everywhere(r: redis.Redis, index: str) -> int:
    """Sorted set `index` lists the keys of one user's sessions (some may have ended: their keys are
    gone). End all of them, delete `index`, and return how many sessions were live. The user may
    log in on another device at any moment, adding a session to `index`: that session must be
    ended too, or stay listed in `index`; never left live and unlisted."""

    def end_all(pipe: redis.client.Pipeline) -> None:
        sessions = pipe.zrange(index, 0, -1)  # WATCHed: a login from now on makes EXEC fail
        pipe.multi()
        if sessions:
            pipe.delete(*sessions)  # DEL counts only the keys that existed: the live sessions
        pipe.delete(index)

    replies = r.transaction(end_all, index)  # run again until no login slipped in between
    return replies[0] if len(replies) == 2 else 0


def logout_everywhere_read_then_delete(r, index):
    sessions = r.zrange(index, 0, -1)
    ended = r.delete(*sessions) if sessions else 0
    r.delete(index)  # a login since ZRANGE is dropped from the index, and stays live
    return ended


def logout_everywhere_counts_the_index(r, index):
    def end_all(pipe):
        sessions = pipe.zrange(index, 0, -1)
        pipe.multi()
        pipe.zcard(index)  # ended sessions are still listed
        if sessions:
            pipe.delete(*sessions)
        pipe.delete(index)

    return r.transaction(end_all, index)[0]


def logout_everywhere_keeps_the_index(r, index):
    def end_all(pipe):
        sessions = pipe.zrange(index, 0, -1)
        pipe.multi()
        if sessions:
            pipe.delete(*sessions)

    replies = r.transaction(end_all, index)
    return replies[0] if replies else 0


def _devices(listed: list[str], live: list[str], login_meanwhile: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        index = f"{prefix}session:user:42"
        for device in live:
            r.hset(f"{prefix}session:{device}", mapping={"user": "42", "device": device})
            r.expire(f"{prefix}session:{device}", 1800)
        if listed:
            r.zadd(index, {f"{prefix}session:{device}": DEADLINE + i for i, device in enumerate(listed)})
        r.hset(f"{prefix}session:bobs", mapping={"user": "43", "device": "laptop"})  # another user's
        r.zadd(f"{prefix}session:user:43", {f"{prefix}session:bobs": DEADLINE})
        if login_meanwhile:
            def login(r: redis.Redis) -> None:
                r.hset(f"{prefix}session:watch", mapping={"user": "42", "device": "watch"})
                r.zadd(index, {f"{prefix}session:watch": DEADLINE + 99})
            race(r, prefix, index, login)
        return (index,)

    return setup


def _devices_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    index = f"{prefix}session:user:42"
    return {
        "returned": result,
        "live sessions": sorted(key.removeprefix(prefix) for key in r.scan_iter(match=f"{prefix}session:*")
                                if r.type(key) == "hash"),
        "index": [key.removeprefix(prefix) for key in r.zrange(index, 0, -1)] if r.exists(index) else "gone",
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="sliding expiry, capped by a deadline",
        reference=touch,
        cases=(
            Case("a session 1 h before its deadline, idle timeout 30 min", _session(3600)),
            Case("a session 20 s before its deadline", _session(20)),
            Case("a session 10 min before its deadline, idle timeout 60 s, 5 s left",
                 _session(600, ttl_left=5, idle=60)),
            Case("a session past its deadline (its key still there)", _session(-1)),
            Case("no session", _session(None)),
        ),
        outcome=_touch_outcome,
        hint="The new TTL is the smaller of two durations, and the clock to measure the deadline "
             "against is best the server's (TIME, inside a script).",
        wrong=(touch_ignores_the_deadline, touch_returns_the_deadline, touch_past_the_deadline,
               touch_empty_when_missing),
    ),
    Spec(
        number=2,
        title="an update that never revives a session",
        reference=update_session,
        cases=(
            Case("a live session, two fields changed", _update()),
            Case("a session that has ended", _update(alive=False)),
            Case("another tab sets `theme` between this update's first command and the next",
                 _update(meanwhile="theme")),
            Case("the user logs out elsewhere between this update's first command and the next",
                 _update(meanwhile="logout")),
        ),
        outcome=_update_outcome,
        hint="HSET writes only the fields it names, but creates a missing hash: the 'does it exist?' "
             "and the write must be one atomic step (a transaction runs its commands whatever the "
             "answers were; a script can decide).",
        wrong=(update_session_blindly, update_session_check_then_write, update_session_whole_hash,
               update_session_in_multi),
    ),
    Spec(
        number=3,
        title="rotate a session id",
        reference=rotate,
        cases=(
            Case("a session with 20 min left, listed with 2 others", _rotation()),
            Case("a session that has ended (still listed)", _rotation(alive=False)),
            Case("an anonymous session (not listed)", _rotation(listed=False)),
            Case("the session expires right after this rotation's first command",
                 _rotation(expires_meanwhile=True)),
        ),
        outcome=_rotation_outcome,
        hint="One command renames a key, TTL and all, and fails when there is nothing to rename; "
             "check and move in one atomic step.",
        wrong=(rotate_by_copying, rotate_check_then_rename, rotate_forgets_the_index, rotate_lists_every_session),
    ),
    Spec(
        number=4,
        title="logout everywhere",
        reference=logout_everywhere,
        cases=(
            Case("3 sessions listed, 1 of them already ended", _devices(["phone", "laptop", "tablet"],
                                                                        ["phone", "tablet"])),
            Case("no sessions (no index)", _devices([], [])),
            Case("a login on a watch between this logout's first command and the next",
                 _devices(["phone", "laptop"], ["phone", "laptop"], login_meanwhile=True)),
        ),
        outcome=_devices_outcome,
        hint="Reading the index and deleting must not let a login slip in between: WATCH the "
             "index (redis-py's `r.transaction`), or do both in a script.",
        wrong=(logout_everywhere_read_then_delete, logout_everywhere_counts_the_index,
               logout_everywhere_keeps_the_index),
    ),
)
