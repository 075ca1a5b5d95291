"""Distributed locks on one Redis: a lock, fencing tokens, and a counting semaphore.

    with Lock(r, "report:daily", ttl=30, timeout=5) as lock:   # LockTimeoutError after 5 s
        storage.write(result, lock.fencing_token)                # stale holders are refused

* ``Lock``: ``SET key token NX PX ttl`` with a 128-bit random token; release and extend are
  compare-and-delete / compare-and-pexpire Lua scripts, so only the owner can do either, and
  ``LockNotOwnedError`` says when the caller is no longer the owner. Each acquire also returns a
  fencing token (``INCR``, in the same script and round trip).
* ``FencedStorage``: a value that refuses writes carrying an older fencing token than the newest
  it has seen. A lock alone cannot protect a resource from a holder that paused past its TTL;
  the resource checking the token can.
* ``Semaphore``: at most ``limit`` holders at once; a sorted set of holder tokens scored by their
  expiry, expired holders pruned in the same script that admits a new one.
* ``AsyncLock``: ``Lock`` for ``redis.asyncio`` (``async with``), the same key, scripts and
  fencing, so sync and async holders exclude each other.

Blocking acquires wait with exponential backoff and jitter until a deadline on
``time.monotonic()``; a ``Lock``'s waiters block on a wake-up list (BLPOP) for that pause, and
a release wakes the longest waiter at once (python-redis-lock's idea), so waits stay short
and bounded under contention. Every acquire attempt, release and extend is one round trip (``EVALSHA``).

A key holding what this module did not write (another type, a fencing counter or token that is
no number) answers ``LockDataError`` before anything is written; TTLs and timeouts must be
finite (``timeout=None`` waits for ever).

These give mutual exclusion on one Redis server while it stays up. Replication is asynchronous:
after a failover the new primary may not know a lock was taken. See the lesson
``16_distributed_locks`` for what that means and where Redlock and fencing fit.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from contextlib import AbstractContextManager
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from ..errors import (
    InvalidArgument,
    InvalidArgumentType,
    LabError,
    check_client,
    check_count,
    check_seconds,
    foreign_data,
)

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = [
    "AsyncLock",
    "FencedStorage",
    "Lock",
    "LockDataError",
    "LockError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "Semaphore",
    "StaleTokenError",
    "contend",
]


class LockError(LabError):
    """Base class of the errors of this module."""


class LockDataError(LockError):
    """A lock's, semaphore's or fenced value's key holds what this module did not write."""


class LockNotOwnedError(LockError):
    """Release or extend by a caller that does not hold the lock (any more)."""


class LockTimeoutError(LockError):
    """A ``with`` block could not acquire the lock before its timeout."""


class StaleTokenError(LockError):
    """``FencedStorage`` refused a write whose fencing token is older than one it has seen."""


# Waiters sleep between attempts: the sleep doubles from BACKOFF_FIRST up to BACKOFF_MAX, and
# each one is drawn from [d/2, d] ("equal jitter") so waiters spread out instead of retrying in
# step, and never spin.
BACKOFF_FIRST = 0.002
BACKOFF_MAX = 0.1
# A Lock's waiter blocks for at most WAKE_WAIT_MAX seconds between attempts; its flag stays up
# WAITER_FLAG_MS after its last attempt (longer), and while it is, a release pushes a wake-up.
WAKE_WAIT_MAX = 0.5
WAITER_FLAG_MS = 1000
_jitter = random.SystemRandom()  # from os.urandom: forked processes do not share a sequence


class _Waiting:
    """The pauses of one blocking acquire, up to a deadline on ``time.monotonic()``."""

    def __init__(
        self, blocking: bool, timeout: float | None, first: float = BACKOFF_FIRST, maximum: float = BACKOFF_MAX
    ) -> None:
        self.blocking = blocking
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.delay = first
        self.maximum = maximum

    def pause(self) -> float | None:
        """Seconds to wait before the next attempt; None: give up (not blocking, or the deadline)."""
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if not self.blocking or (left is not None and left <= 0):
            return None
        pause = _jitter.uniform(self.delay / 2, self.delay)
        self.delay = min(self.maximum, self.delay * 2)
        return pause if left is None else min(pause, left)


class _Lease:
    """What ``Lock`` and ``Semaphore`` share: a fresh token per acquisition, a blocking acquire
    with a deadline and backoff, owner-only release and extend, optional auto-renewal, and the
    context manager. Subclasses implement the three one-round-trip steps."""

    kind = "lease"
    # The pauses between attempts (``_Waiting``).
    backoff_first = BACKOFF_FIRST
    backoff_max = BACKOFF_MAX

    key: str

    def __init__(self, r: redis.Redis, name: str, *, ttl: float, timeout: float | None, auto_renew: bool) -> None:
        _check_name(self.kind, name)
        self.r = r
        self.name = name
        self.ttl = _check_ttl(ttl)
        self.timeout = _check_timeout(timeout)
        self.auto_renew = auto_renew
        self.token: str | None = None
        self._renewer: threading.Thread | None = None
        self._stop_renewing = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, ttl={self.ttl}, held={self.token is not None})"

    # One round trip each; True when it happened (owner, free slot).
    def _try_acquire(self, token: str) -> bool:
        raise NotImplementedError

    def _release(self, token: str) -> bool:
        raise NotImplementedError

    def _extend(self, token: str, ttl_ms: int) -> bool:
        raise NotImplementedError

    def _wait(self, pause: float) -> None:
        """Wait up to ``pause`` seconds before the next attempt (``Lock`` wakes on a release)."""
        time.sleep(pause)

    def acquire(self, *, blocking: bool = True, timeout: float | None | EllipsisType = ...) -> bool:
        """Take it: True once held, False when not free (``blocking=False``) or at the deadline.

        ``timeout`` (seconds; ``...``: the constructor's; None waits for ever) is measured on
        ``time.monotonic()``, and False comes only once it has fully passed.
        """
        check_client(type(self).__name__, self.r, asynchronous=False)  # AsyncLock awaits it instead
        self._check_not_held()
        waiting = _Waiting(blocking, self.timeout if timeout is ... else _check_timeout(timeout),
                           self.backoff_first, self.backoff_max)
        token = secrets.token_hex(16)  # 128 random bits: no other holder can guess or repeat it
        while not self._attempt(token):
            pause = waiting.pause()
            if pause is None:
                return False
            self._wait(pause)
        self.token = token
        if self.auto_renew:
            self._start_renewing(token)
        return True

    def release(self) -> None:
        """Give it back; ``LockNotOwnedError`` if it expired (and maybe went to another holder)."""
        token = self._held_token()
        self.token = None
        self._stop_renewer()
        with self._foreign():
            released = self._release(token)
        if not released:
            raise LockNotOwnedError(self._lost())

    def extend(self, ttl: float | None = None) -> None:
        """Reset the time left to ``ttl`` (default: the constructor's) if still the owner."""
        token = self._held_token()
        ttl_ms = _ms(self.ttl if ttl is None else _check_ttl(ttl))
        with self._foreign():
            extended = self._extend(token, ttl_ms)
        if not extended:
            raise LockNotOwnedError(self._lost())

    def _check_not_held(self) -> None:
        if self.token is not None:
            raise LockError(
                f"{self!r} is already held by this object and is not reentrant: release it first, "
                f"or use one {type(self).__name__} object per holder."
            )

    def _held_token(self) -> str:
        if self.token is None:
            raise LockNotOwnedError(f"{self!r} was not acquired by this object (or was already released).")
        return self.token

    def _timeout_error(self) -> LockTimeoutError:
        return LockTimeoutError(
            f"Could not acquire {type(self).__name__} {self.name!r} within {self.timeout}s: another "
            f"holder has it. Wait longer (timeout=...) or find the holder that does not release."
        )

    def _attempt(self, token: str) -> bool:
        with self._foreign():
            return self._try_acquire(token)

    def _foreign(self) -> AbstractContextManager[None]:
        """Errors caused by what this lease's keys hold become ``LockDataError``."""
        return foreign_data(lambda problem: LockDataError(
            f"{type(self).__name__} {self.name!r}: {self.key!r} holds {problem}, not this module's: "
            f"delete it if nothing else uses it, or choose another name."
        ))

    def _lost(self) -> str:
        return (
            f"{type(self).__name__} {self.name!r} is no longer held by this owner: its ttl of "
            f"{self.ttl}s ran out and another holder may have it. Use a ttl longer than the work, or "
            f"auto_renew=True, and fencing tokens to protect the resource."
        )

    def _start_renewing(self, token: str) -> None:
        self._stop_renewing.clear()
        self._renewer = threading.Thread(
            target=self._renew, args=(token,), name=f"renew-{self.name}", daemon=True
        )
        self._renewer.start()

    def _renew(self, token: str) -> None:
        # Renew at a third of the ttl: one failed attempt (a network blip) still leaves time.
        while not self._stop_renewing.wait(self.ttl / 3):
            try:
                if not self._extend(token, _ms(self.ttl)):
                    return  # lost it: release() will say so
            except redis.ResponseError:  # the key now holds another type: lost, as above
                return
            except redis.RedisError:  # a lost connection: try again at the next third
                continue

    def _stop_renewer(self) -> None:
        if self._renewer is not None:
            self._stop_renewing.set()
            self._renewer.join()
            self._renewer = None

    def __enter__(self) -> Self:
        if not self.acquire():
            raise self._timeout_error()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str):
        raise InvalidArgumentType(f"A {kind}'s name is a str, not {type(name).__name__} {name!r}.")
    if not name:
        raise InvalidArgument(f"A {kind} needs a non-empty name.")


def _check_ttl(ttl: object) -> float:
    seconds = check_seconds("ttl", ttl)
    if seconds < 0.001:
        raise InvalidArgument(
            f"ttl must be finite and >= 0.001 seconds, not {ttl!r}: every holder must expire."
        )
    return seconds


def _check_timeout(timeout: object) -> float | None:
    return None if timeout is None else check_seconds("timeout (None waits for ever)", timeout, zero=True)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)  # >= 1: _check_ttl keeps every ttl at 0.001 s or more


class Lock(_Lease):
    """A mutual-exclusion lock named ``name``, held for at most ``ttl`` seconds unless extended.

    ``timeout``: how long ``acquire()`` and ``with`` wait by default (None: for ever).
    ``auto_renew``: a daemon thread extends the lock every ``ttl / 3`` while held, so a holder
    that is alive keeps it and one that died loses it within ``ttl``. Use one object per holder.
    """

    kind = "lock"
    # A release wakes a waiter, so waiters block longer: each BLPOP that times out would send the
    # waiter to the back of the queue. Only a holder that dies without releasing makes waiters
    # wait out a pause (at most WAKE_WAIT_MAX seconds after its TTL ran out).
    backoff_first = 0.05
    backoff_max = WAKE_WAIT_MAX

    # KEYS: lock, fencing counter, waiters' flag. ARGV: token, ttl (ms), whether the caller will
    # wait, whether this is its first attempt. Returns the fencing token, 0 when taken (a caller
    # that will wait raises the waiters' flag, for WAITER_FLAG_MS, so the holder's release wakes
    # it). A newcomer that will wait queues behind the waiters while their flag is up, even for a
    # free lock: the woken waiter takes it, not the holder coming straight back (fairness). A
    # counter that is no number, or a lock key of another type or without a TTL (either would look
    # taken for ever), stops the script before anything is written.
    ACQUIRE = """
local fence = redis.call('GET', KEYS[2])
if fence and not string.match(fence, '^%d+$') then
  error({err = 'CORRUPT a fencing counter that is not a whole number'})
end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
  error({err = 'CORRUPT a lock key of another Redis type'})
end
if redis.call('PTTL', KEYS[1]) == -1 then
  error({err = 'CORRUPT a lock key without a TTL (every holder expires: nobody would ever free this one)'})
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], '1', 'PX', '""" + str(WAITER_FLAG_MS) + """')
end
return 0
"""
    # KEYS: lock, waiters' flag, wake-up list. ARGV: token. Compare-and-delete: only the owner's
    # token deletes. With waiters about, one wake-up is pushed: BLPOP serves its blocked clients
    # first come, first served, so the longest waiter tries first (at most one is pending).
    RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('PEXPIRE', KEYS[3], '""" + str(WAITER_FLAG_MS) + """')
end
return 1
"""
    # KEYS: lock. ARGV: token, ttl (ms). Compare-and-pexpire.
    EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

    def __init__(
        self, r: redis.Redis | redis.asyncio.Redis, name: str, *, ttl: float = 10.0, timeout: float | None = 10.0,
        auto_renew: bool = False,
    ) -> None:
        super().__init__(r, name, ttl=ttl, timeout=timeout, auto_renew=auto_renew)
        self.key = f"{{lock:{name}}}"
        # The fencing counter has no TTL on purpose: if it expired, tokens would start again at 1
        # and every new holder would look stale. Same hash tag: one Cluster slot, one script.
        self.fence_key = f"{{lock:{name}}}:fence"
        # Waiters raise a flag (with a TTL) and block on the wake-up list; a release pushes one
        # wake-up when the flag is up, so a waiter tries as soon as the lock is free.
        self.waiters_key = f"{{lock:{name}}}:waiters"
        self.wake_key = f"{{lock:{name}}}:wake"
        self.fencing_token: int | None = None
        self._will_wait = True
        self._first_attempt = True
        self._acquire_script = r.register_script(self.ACQUIRE)
        self._release_script = r.register_script(self.RELEASE)
        self._extend_script = r.register_script(self.EXTEND)

    def _try_acquire(self, token: str) -> bool:
        first, self._first_attempt = self._first_attempt, False
        return self._acquired(self._acquire_script(**self._acquire_call(token, self._will_wait, first)))

    def _acquire_call(self, token: str, will_wait: bool, first: bool) -> dict[str, list[Any]]:
        args = [token, _ms(self.ttl), int(will_wait), int(will_wait and first)]
        return {"keys": [self.key, self.fence_key, self.waiters_key], "args": args}

    def _release_call(self, token: str) -> dict[str, list[Any]]:
        return {"keys": [self.key, self.waiters_key, self.wake_key], "args": [token]}

    def _wait(self, pause: float) -> None:
        # Woken by a release (first come, first served) or after the pause, whichever is first.
        # (a timeout under 1 ms would be 0 to Redis: block for ever)
        self.r.blpop([self.wake_key], timeout=max(pause, 0.001))

    def acquire(self, *, blocking: bool = True, timeout: float | None | EllipsisType = ...) -> bool:
        """Take it: True once held, False when not free (``blocking=False``) or at the deadline.

        A waiting caller blocks on the lock's wake-up list (BLPOP, at most the backoff's pause):
        the holder's release wakes the longest waiter at once, instead of waiters sleeping blind.
        """
        self._will_wait = blocking and (self.timeout if timeout is ... else timeout) != 0
        self._first_attempt = True
        return super().acquire(blocking=blocking, timeout=timeout)

    def _acquired(self, reply: int) -> bool:
        """Whether the acquire script's reply means "held"; keeps its fencing token."""
        fence = int(reply)
        if fence:
            self.fencing_token = fence
        return bool(fence)

    def _release(self, token: str) -> bool:
        return bool(self._release_script(**self._release_call(token)))

    def _extend(self, token: str, ttl_ms: int) -> bool:
        return bool(self._extend_script(keys=[self.key], args=[token, ttl_ms]))

    def locked(self) -> bool:
        """True when anyone holds the lock."""
        return bool(self.r.exists(self.key))

    def owned(self) -> bool:
        """True when this object holds the lock (one GET)."""
        with self._foreign():
            value = self.r.get(self.key)
        return self.token is not None and value in (self.token, self.token.encode())


class FencedStorage:
    """A value in Redis that accepts a write only with a fencing token at least as new as the
    newest it has accepted: a holder whose lock expired while it paused is refused, because a
    newer holder has written since. (No TTL: it stands for the protected resource itself.)"""

    # KEYS: the storage hash. ARGV: token, value. Returns 0 when written, else the newest token.
    WRITE = """
local stored = redis.call('HGET', KEYS[1], 'token')
local newest = tonumber(stored)
if stored and not newest then error({err = 'CORRUPT a token field that is not a number'}) end
if newest and tonumber(ARGV[1]) < newest then return newest end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return 0
"""

    def __init__(self, r: redis.Redis, name: str) -> None:
        _check_name("fenced storage", name)
        self.r = r
        self.name = name
        self.key = f"{{fenced:{name}}}"
        self._write = r.register_script(self.WRITE)

    def write(self, value: str, token: int) -> None:
        """Store ``value`` written under fencing token ``token``; ``StaleTokenError`` if stale."""
        if not isinstance(value, str):
            raise InvalidArgumentType(f"A fenced value is a str, not {type(value).__name__}.")
        check_count("A fencing token", token)
        with self._foreign():
            newest = int(self._write(keys=[self.key], args=[token, value]))
        if newest:
            raise StaleTokenError(
                f"Write to {self.name!r} with fencing token {token} refused: token {newest} has "
                f"written already, so this writer's lock expired and another holder took it."
            )

    def read(self) -> str | None:
        """The value last written (None before any write)."""
        with self._foreign():
            value = self.r.hget(self.key, "value")
            return value.decode() if isinstance(value, bytes) else value

    def _foreign(self) -> AbstractContextManager[None]:
        return foreign_data(lambda problem: LockDataError(
            f"FencedStorage {self.name!r}: {self.key!r} holds {problem}, not this module's: delete it "
            f"if nothing else uses it, or choose another name."
        ))


class Semaphore(_Lease):
    """At most ``limit`` holders of ``name`` at once, each for ``ttl`` seconds unless extended.

    Holders are a sorted set: token -> expiry (server milliseconds). Each script first prunes the
    expired holders, so a crashed holder frees its slot after ``ttl``. Not fair: a waiter that
    retries at the right moment can pass one that has waited longer.
    """

    kind = "semaphore"

    # Shared prologue: the server's clock in ms (TIME then writes: fine, Redis replicates a
    # script's effects), and the expired holders pruned.
    _PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- the set itself expires with its longest-lived holder
local function expire_with_last_holder()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
end
"""
    # ARGV: token, ttl (ms), limit. Returns 1 when admitted.
    ACQUIRE = _PRUNE + """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
expire_with_last_holder()
return 1
"""
    # ARGV: token. An expired holder was pruned above, so it cannot release.
    RELEASE = _PRUNE + """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
    # ARGV: token, ttl (ms).
    EXTEND = _PRUNE + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
expire_with_last_holder()
return 1
"""

    def __init__(
        self, r: redis.Redis, name: str, limit: int, *, ttl: float = 10.0, timeout: float | None = 10.0,
        auto_renew: bool = False,
    ) -> None:
        check_count("A semaphore's limit (holders)", limit)
        super().__init__(r, name, ttl=ttl, timeout=timeout, auto_renew=auto_renew)
        self.limit = limit
        self.key = f"{{sem:{name}}}"
        self._acquire_script = r.register_script(self.ACQUIRE)
        self._release_script = r.register_script(self.RELEASE)
        self._extend_script = r.register_script(self.EXTEND)

    def _try_acquire(self, token: str) -> bool:
        return bool(self._acquire_script(keys=[self.key], args=[token, _ms(self.ttl), self.limit]))

    def _release(self, token: str) -> bool:
        return bool(self._release_script(keys=[self.key], args=[token]))

    def _extend(self, token: str, ttl_ms: int) -> bool:
        return bool(self._extend_script(keys=[self.key], args=[token, ttl_ms]))


class AsyncLock:
    """``Lock`` for ``redis.asyncio``: the same key, scripts, tokens and fencing, awaited.

        async with AsyncLock(ar, "report:daily", ttl=30, timeout=5) as lock:   # LockTimeoutError
            await write(result, lock.fencing_token)

    A waiting acquire awaits BLPOP on the lock's wake-up list, as ``Lock`` blocks on it: the event
    loop serves other tasks meanwhile.
    A task cancelled inside ``async with`` releases the lock on its way out. A task cancelled
    *during* an acquire may have taken the lock without learning its token: nobody can release
    it, and it frees itself after ``ttl``. No auto-renewal: ``await lock.extend()`` from the work.
    """

    def __init__(self, r: redis.asyncio.Redis, name: str, *, ttl: float = 10.0, timeout: float | None = 10.0) -> None:
        check_client("AsyncLock", r, asynchronous=True)
        # The sync Lock does everything but the I/O (its constructor only registers the scripts).
        self.lock = Lock(r, name, ttl=ttl, timeout=timeout)
        self.r = r

    def __repr__(self) -> str:
        return f"Async{self.lock!r}"

    @property
    def key(self) -> str:
        return self.lock.key

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of the last successful acquire (None before any)."""
        return self.lock.fencing_token

    async def acquire(self, *, blocking: bool = True, timeout: float | None | EllipsisType = ...) -> bool:
        """``Lock.acquire``, awaited: True once held, False when not free or at the deadline."""
        lock = self.lock
        lock._check_not_held()
        limit = lock.timeout if timeout is ... else _check_timeout(timeout)
        waiting = _Waiting(blocking, limit, lock.backoff_first, lock.backoff_max)
        will_wait = blocking and limit != 0
        token = secrets.token_hex(16)
        first = True
        while True:
            with lock._foreign():
                if lock._acquired(await lock._acquire_script(**lock._acquire_call(token, will_wait, first))):
                    break
            first = False
            pause = waiting.pause()
            if pause is None:
                return False
            await self.r.blpop([lock.wake_key], timeout=max(pause, 0.001))  # woken by a release, as Lock
        lock.token = token
        return True

    async def release(self) -> None:
        """``Lock.release``, awaited; ``LockNotOwnedError`` if it expired meanwhile."""
        lock = self.lock
        token = lock._held_token()
        lock.token = None
        with lock._foreign():
            released = await lock._release_script(**lock._release_call(token))
        if not released:
            raise LockNotOwnedError(lock._lost())

    async def extend(self, ttl: float | None = None) -> None:
        """``Lock.extend``, awaited: reset the time left if still the owner."""
        lock = self.lock
        token = lock._held_token()
        ttl_ms = _ms(lock.ttl if ttl is None else _check_ttl(ttl))
        with lock._foreign():
            extended = await lock._extend_script(keys=[lock.key], args=[token, ttl_ms])
        if not extended:
            raise LockNotOwnedError(lock._lost())

    async def __aenter__(self) -> Self:
        if not await self.acquire():
            raise self.lock._timeout_error()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


def contend(url: str, name: str, *, hold: float = 0.0, locked: bool = True, cluster: bool = False) -> None:
    """One contending process of the lessons and tests (a picklable entry point).

    Under ``Lock(name)`` (or with no lock when ``locked`` is False): read the counter
    ``{name}:counter``, wait ``hold`` seconds, write it back plus one, and append
    ``"start end fence"`` (``time.monotonic_ns()``, the same clock for every process on one
    machine) to the list ``{name}:sections``. With a working lock the sections never overlap
    and no increment is lost. ``cluster``: ``url`` is a node of a Redis Cluster.
    """
    check_seconds("hold", hold, zero=True)
    r: Any = (redis.RedisCluster if cluster else redis.Redis).from_url(url, decode_responses=True)
    lock = Lock(r, name, ttl=30, timeout=60)
    if locked and not lock.acquire():
        raise LockTimeoutError(f"contend: lock {name!r} not acquired within 60s")
    start = time.monotonic_ns()
    count = int(r.get(f"{name}:counter") or 0)
    time.sleep(hold)
    r.set(f"{name}:counter", count + 1)
    end = time.monotonic_ns()
    r.rpush(f"{name}:sections", f"{start} {end} {lock.fencing_token or 0}")
    if locked:
        lock.release()
    r.close()
