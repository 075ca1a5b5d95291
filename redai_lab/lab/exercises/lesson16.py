"""Lesson 16's exercises: distributed locks (a release that checks the owner, an acquire that hands
out fencing tokens in order, a resource that refuses stale tokens, a counting semaphore)."""

from __future__ import annotations

import time
from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec
from redai_lab.lab.exercises.lesson13 import race, settle, ttl_bucket

READS = ("GET", "HGET", "HMGET", "HGETALL", "ZCARD", "ZCOUNT", "ZRANGE", "ZRANGEBYSCORE", "ZSCORE",
         "EXISTS", "EVAL", "EVALSHA")


def _lock_state(r: redis.Redis, lock: str) -> Any:
    holder = r.get(lock)
    return "free" if holder is None else (holder, ttl_bucket(r, lock))


# Exercise 1 ------------------------------------------------------------------------------------


def release_lock(r: redis.Redis, lock: str, token: str) -> bool:
    """The string `lock` holds the token of the lock's holder, and expires on its own (a holder
    that dies loses it). Release the lock held with `token`: delete it only if it still holds
    `token`; it may have expired and been taken by another holder, whose lock must stay. Return
    True if it was released, False if `token` no longer held it."""
    release = r.register_script('''
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
''')
    return release(keys=[lock], args=[token]) == 1  # compare and delete: one atomic step


def release_lock_by_del(r, lock, token):
    return r.delete(lock) == 1  # whoever's lock it is now


def release_lock_get_then_del(r, lock, token):
    if r.get(lock) != token:
        return False
    return r.delete(lock) == 1  # the lock may have changed hands since GET


def release_lock_getdel(r, lock, token):
    return r.getdel(lock) == token  # deletes it first, even when it is another holder's


def _held(holder: str | None, taken_meanwhile: bool = False):
    """The lock held by `holder` (None: free); `taken_meanwhile`: it expires and B takes it right
    after the release's first command."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        lock = f"{prefix}lock:nightly-report"
        if holder is not None:
            r.set(lock, holder, px=8000)
        if taken_meanwhile:
            race(r, prefix, lock, lambda r: r.set(lock, "token-of-B", px=9000))
        return lock, "token-of-A"

    return setup


def _release_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    settle(r)
    return result, _lock_state(r, f"{prefix}lock:nightly-report")


# Exercise 2 ------------------------------------------------------------------------------------


def acquire_lock(r: redis.Redis, lock: str, fence: str, token: str, ttl_ms: int) -> int:
    """Take the lock `lock` with `token` if it is free (the string `lock` then holds `token` and
    expires after `ttl_ms` ms, so that a holder that dies frees it). Every successful acquisition
    also gets a fencing token: the next number of the counter `fence` (1 for the first holder
    ever), so that holders get increasing numbers in the order they acquired the lock. Return the
    fencing token, or 0 when the lock is taken (then the counter does not move)."""
    acquire = r.register_script('''
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
''')
    return acquire(keys=[lock, fence], args=[token, ttl_ms])  # take and number in one atomic step


def acquire_lock_then_number(r, lock, fence, token, ttl_ms):
    if not r.set(lock, token, nx=True, px=ttl_ms):
        return 0
    return r.incr(fence)  # another holder may have come and gone in between


def acquire_lock_numbers_every_attempt(r, lock, fence, token, ttl_ms):
    number = r.incr(fence)
    return number if r.set(lock, token, nx=True, px=ttl_ms) else 0


def acquire_lock_for_ever(r, lock, fence, token, ttl_ms):
    acquire = r.register_script('''
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return redis.call('INCR', KEYS[2]) end
return 0
''')
    return acquire(keys=[lock, fence], args=[token, ttl_ms])


def acquire_lock_check_then_set(r, lock, fence, token, ttl_ms):
    if r.get(lock) is not None:
        return 0
    r.set(lock, token, px=ttl_ms)  # no NX: another holder may have taken it since GET
    return r.incr(fence)


def _lock(holder: str | None, holders_before: int, taken_meanwhile: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str, int]:
        lock, fence = f"{prefix}lock:invoice:42", f"{prefix}lock:invoice:42:fence"
        if holder is not None:
            r.set(lock, holder, px=8000)
        if holders_before:
            r.set(fence, holders_before)
        if taken_meanwhile:  # A's lock expires at once, and B acquires it properly
            def b_acquires(r: redis.Redis) -> None:
                r.delete(lock)
                r.set(f"{prefix}B's fencing token", acquire_lock(r, lock, fence, "token-of-B", 9000))
            race(r, prefix, lock, b_acquires)
        return lock, fence, "token-of-A", 5000

    return setup


def _acquire_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    outcome = {
        "returned": result,
        "lock": _lock_state(r, f"{prefix}lock:invoice:42"),
        "fence": r.get(f"{prefix}lock:invoice:42:fence"),
    }
    if b := r.get(f"{prefix}B's fencing token"):
        outcome["B's fencing token"] = int(b)
    return outcome


# Exercise 3 ------------------------------------------------------------------------------------


def fenced_write(r: redis.Redis, resource: str, token: int, value: str) -> bool:
    """The hash `resource` is the data a lock protects: field `value`, and field `token`, the fencing
    token of its last accepted write. Write `value` with fencing token `token` unless a write with
    a newer (larger) token has been accepted: a holder whose lock expired during a pause must be
    refused once a newer holder has written. A holder may write several times with its token.
    Return True if written, False if refused. Holders write at any moment."""
    write = r.register_script('''
local newest = tonumber(redis.call('HGET', KEYS[1], 'token'))
if newest and tonumber(ARGV[1]) < newest then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return 1
''')
    return write(keys=[resource], args=[token, value]) == 1  # compare numbers and write atomically


def fenced_write_check_then_write(r, resource, token, value):
    newest = r.hget(resource, "token")
    if newest is not None and token < int(newest):
        return False
    r.hset(resource, mapping={"token": token, "value": value})  # a newer write may have landed
    return True


def fenced_write_only_newer(r, resource, token, value):
    write = r.register_script('''
local newest = tonumber(redis.call('HGET', KEYS[1], 'token'))
if newest and tonumber(ARGV[1]) <= newest then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return 1
''')
    return write(keys=[resource], args=[token, value]) == 1


def fenced_write_compares_text(r, resource, token, value):
    write = r.register_script('''
local newest = redis.call('HGET', KEYS[1], 'token')
if newest and ARGV[1] < newest then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return 1
''')
    return write(keys=[resource], args=[token, value]) == 1


def fenced_write_unconditional(r, resource, token, value):
    r.hset(resource, mapping={"token": token, "value": value})
    return True


def _resource(newest: int | None, token: int, newer_meanwhile: bool = False):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, str]:
        resource = f"{prefix}invoice:42"
        if newest is not None:
            r.hset(resource, mapping={"token": newest, "value": f"total by holder {newest}"})
        if newer_meanwhile:
            race(r, prefix, resource, lambda r: fenced_write(r, resource, token + 1, f"total by holder {token + 1}"))
        return resource, token, f"total by holder {token}"

    return setup


def _fenced_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    settle(r)
    return result, r.hgetall(f"{prefix}invoice:42") or "nothing"


# Exercise 4 ------------------------------------------------------------------------------------


def acquire_slot(r: redis.Redis, holders: str, token: str, limit: int, ttl_ms: int) -> bool:
    """A counting semaphore: at most `limit` holders at once. Sorted set `holders`: member a holder's
    token, score the time (Unix ms, the server's clock) its slot expires; a holder that crashed
    keeps its entry until then. Take a slot for `token` for `ttl_ms` ms if fewer than `limit`
    slots are held by holders whose slots have not expired, and remove the expired ones. The set
    itself must expire when its last slot does. Return True if a slot was taken. Many clients
    ask at the same moment: never more than `limit` holders."""
    take = r.register_script('''
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
''')
    return take(keys=[holders], args=[token, limit, ttl_ms]) == 1  # prune, count, add: one atomic step


def acquire_slot_check_then_add(r, holders, token, limit, ttl_ms):
    now = int(time.time() * 1000)
    r.zremrangebyscore(holders, "-inf", now)
    if r.zcard(holders) >= limit:
        return False
    r.zadd(holders, {token: now + ttl_ms})  # another client may have taken the last slot since ZCARD
    r.pexpireat(holders, int(r.zrange(holders, -1, -1, withscores=True)[0][1]))
    return True


def acquire_slot_never_prunes(r, holders, token, limit, ttl_ms):
    take = r.register_script('''
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
''')
    return take(keys=[holders], args=[token, limit, ttl_ms]) == 1


def acquire_slot_set_never_expires(r, holders, token, limit, ttl_ms):
    take = r.register_script('''
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
''')
    return take(keys=[holders], args=[token, limit, ttl_ms]) == 1


def acquire_slot_expires_with_this_slot(r, holders, token, limit, ttl_ms):
    take = r.register_script('''
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
''')
    return take(keys=[holders], args=[token, limit, ttl_ms]) == 1


def _slots(left_s: list[float], taken_meanwhile: bool = False, limit: int = 3):
    """Holders whose slots expire in `left_s` seconds (negative: expired, the holder crashed)."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int, int]:
        holders = f"{prefix}semaphore:exports"
        if left_s:
            now = int(time.time() * 1000)
            r.zadd(holders, {f"holder-{i}": now + round(left * 1000) for i, left in enumerate(left_s)})
            r.pexpireat(holders, now + round(max(left_s) * 1000) if max(left_s) > 0 else now + 1000)
        if taken_meanwhile:
            def other(r: redis.Redis) -> None:
                taken = acquire_slot(r, holders, "holder-other", limit, 25_000)
                r.set(f"{prefix}other", "got a slot" if taken else "refused")
            race(r, prefix, holders, other, after=READS)
        return holders, "holder-new", limit, 15_000

    return setup


def _slots_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    holders = f"{prefix}semaphore:exports"
    now = int(time.time() * 1000)
    outcome = {
        "returned": result,
        "holders (slot expires within)": [
            (member, "expired" if score <= now else f"{-(-(int(score) - now) // 10_000) * 10} s")
            for member, score in r.zrange(holders, 0, -1, withscores=True)],
        "the set": ttl_bucket(r, holders),
    }
    if other := r.get(f"{prefix}other"):
        outcome["the other client"] = other
    return outcome


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a release that checks the owner",
        reference=release_lock,
        cases=(
            Case("A holds the lock", _held("token-of-A")),
            Case("A's lock expired and B holds it now", _held("token-of-B")),
            Case("A's lock expired and nobody took it", _held(None)),
            Case("A holds it, but it expires and B takes it right after the release's first command",
                 _held("token-of-A", taken_meanwhile=True)),
        ),
        outcome=_release_outcome,
        hint="'Is it still mine?' and 'delete it' must be one atomic step: no single command "
             "compares and deletes on Redis 8.2, a Lua script does.",
        wrong=(release_lock_by_del, release_lock_get_then_del, release_lock_getdel),
    ),
    Spec(
        number=2,
        title="an acquire with a fencing token",
        reference=acquire_lock,
        cases=(
            Case("a free lock, never held before", _lock(None, 0)),
            Case("a free lock, 41 holders before", _lock(None, 41)),
            Case("the lock held by B", _lock("token-of-B", 7)),
            Case("a free lock; right after the acquire's first command, A's lock expires and B acquires it",
                 _lock(None, 0, taken_meanwhile=True)),
        ),
        outcome=_acquire_outcome,
        hint="SET has options to create a key only if it is missing, with an expiry; the counter must "
             "move only for the acquisition that succeeded, in the same atomic step.",
        wrong=(acquire_lock_then_number, acquire_lock_numbers_every_attempt, acquire_lock_for_ever,
               acquire_lock_check_then_set),
    ),
    Spec(
        number=3,
        title="a resource that refuses stale tokens",
        reference=fenced_write,
        cases=(
            Case("the first write (token 3)", _resource(None, 3)),
            Case("token 5 after token 3", _resource(3, 5)),
            Case("token 4 after token 5 (a holder that paused)", _resource(5, 4)),
            Case("token 5 writes again", _resource(5, 5)),
            Case("token 10 after token 9", _resource(9, 10)),
            Case("token 5 after 3; token 6 writes right after this write's first command",
                 _resource(3, 5, newer_meanwhile=True)),
        ),
        outcome=_fenced_outcome,
        hint="Compare the tokens as numbers, and compare and write in one atomic step.",
        wrong=(fenced_write_check_then_write, fenced_write_only_newer, fenced_write_compares_text,
               fenced_write_unconditional),
    ),
    Spec(
        number=4,
        title="a counting semaphore",
        reference=acquire_slot,
        cases=(
            Case("no holders, 3 slots", _slots([])),
            Case("2 of 3 slots held", _slots([20, 40])),
            Case("3 of 3 slots held", _slots([20, 40, 8])),
            Case("3 of 3 held, one by a holder that crashed (its slot expired)", _slots([20, -1, 40])),
            Case("2 of 3 held; another client takes a slot right after this one counts",
                 _slots([20, 40], taken_meanwhile=True)),
        ),
        outcome=_slots_outcome,
        hint="Prune with ZREMRANGEBYSCORE, count with ZCARD, add with ZADD: in one script, on the "
             "server's clock (TIME); the set's own expiry is its latest score.",
        wrong=(acquire_slot_check_then_add, acquire_slot_never_prunes, acquire_slot_set_never_expires,
               acquire_slot_expires_with_this_slot),
    ),
)
