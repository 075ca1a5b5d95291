"""Rate limiting: five algorithms, each check one atomic round trip on the server's clock.

Every limiter admits ``limit`` requests (or units of ``cost``) per ``period`` seconds and per
identity (a user id, an API key, an IP address)::

    limiter = GCRA(r, "api", limit=100, period=60)
    result = limiter.hit("user:42")          # one EVALSHA
    if not result.allowed:
        raise TooManyRequests(retry_after=result.retry_after)

| class                    | stores per identity           | precision              | bursts                            |
| ------------------------ | ----------------------------- | ---------------------- | --------------------------------- |
| ``FixedWindow``          | a small hash (window, count)  | exact per clock window | up to 2 x limit at a window edge  |
| ``SlidingLog``           | one sorted-set entry per unit | exact over any period  | never more than limit             |
| ``SlidingWindowCounter`` | a small hash (2 counts)       | approximate (weighted) | can exceed limit at window edges  |
| ``TokenBucket``          | a small hash (tokens, time)   | exact, smooth refill   | limit at once, then the rate      |
| ``GCRA``                 | one number                    | exact, smooth refill   | limit at once, then the rate      |

From ``redis.asyncio`` code: ``AsyncRateLimiter(GCRA, ar, "api", limit=100, period=60)`` and
``await limiter.hit(...)``: the same script, key and answers as the sync class.

Design (the same for all five):

* One Lua script per algorithm, registered with ``register_script``: each check is one
  ``EVALSHA`` (redis-py falls back to ``SCRIPT LOAD`` when the server answers NOSCRIPT, so the
  very first check after a server start costs three round trips). Read, decide and write happen
  in one atomic step, so concurrent clients can never both see "one left".
* The script reads ``TIME``: the server's clock decides, so clients with skewed clocks agree.
* Each identity has one key, ``{rl:<name>:<identity>}:<algorithm>``; the hash tag keeps every
  key of one identity in one Cluster slot. Every key has a TTL: nothing outlives its use.
  ``FixedWindow`` and ``SlidingWindowCounter`` set it at a window's first write only (the
  window's end does not move): one command less per check.
* ``cost`` above ``limit`` can never be admitted: the check answers ``allowed=False`` with
  ``retry_after=math.inf`` (an HTTP service answers 413 or 429 without ``Retry-After``) and
  consumes nothing.
* An identity is a non-empty ``str`` or an ``int``; anything else (``None``, an object, ``True``)
  is refused with ``InvalidArgumentType``: ``None`` would put every such caller in one shared
  bucket and an object's ``repr`` a new, never-limited bucket per call, and a bool is a flag
  passed by mistake, not somebody's id.
* A key holding anything but this limiter's state (another type, text that is no number)
  answers ``RateLimitDataError``; the script stops before writing, so nothing foreign is changed.
"""

from __future__ import annotations

import math
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

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

__all__ = [
    "GCRA",
    "AsyncRateLimiter",
    "FixedWindow",
    "RateLimitDataError",
    "RateLimitError",
    "RateLimitResult",
    "RateLimiter",
    "SlidingLog",
    "SlidingWindowCounter",
    "TokenBucket",
]

# A simulated clock is seconds since the epoch whose microseconds are exact in a Lua number.
MAX_NOW = 2**53 // 1_000_000


class RateLimitError(LabError):
    """Base class of the rate limiters' errors."""


class RateLimitDataError(RateLimitError):
    """An identity's key holds something this limiter did not write; it is left as it is."""


@dataclass(frozen=True)
class RateLimitResult:
    """The answer to one check.

    ``remaining``: requests of cost 1 still admissible right now. ``retry_after``: seconds until a
    request of the same cost could be admitted (0 when allowed, ``math.inf`` when never).
    ``reset_after``: seconds until the identity is back to its full ``limit``.
    """

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


# KEYS[1]: the identity's key. ARGV: limit, period (µs), cost, now (µs; empty: the server's
# clock), then the algorithm's own arguments. Every script returns
# {allowed (0/1), remaining, retry after (µs; -1: never), reset after (µs)}.
_PROLOGUE = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
-- Expiry never changes an answer (a key expires only once its state no longer counts), but a
-- simulated clock does not advance with the real one: its keys get a minute of slack.
local slack = 0
if now then
  slack = 60000000
else
  -- TIME then writes is allowed: Redis replicates a script's effects, never the script itself
  -- (the default since 5.0, the only mode since 7.0), so no replica re-reads its own clock.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Numbers are written as '%.17g' text: exact, and the same on every Redis version (newer ones
-- would turn 1.7e15 into '1.7e+15', which PEXPIRE refuses and lessons would print differently).
local function num(x) return string.format('%.17g', x) end
-- PEXPIRE takes whole milliseconds, and 0 would delete the key at once.
local function ms(us) return num(math.max(1, math.ceil((us + slack) / 1000))) end
-- A number this limiter stored (nil when absent). Anything else was written by someone else:
-- stop before deciding or writing anything.
local function stored(value)
  if not value then return nil end
  local n = tonumber(value)
  if not n or n ~= n or n < 0 or n == math.huge then
    error({err = 'CORRUPT a field that is not a number this limiter stored'})
  end
  return n
end
"""


class RateLimiter:
    """What the five algorithms share: parameters, key naming, the one-round-trip check.

    ``r`` may use ``decode_responses`` either way. ``name`` names the limiter (no ``:``, ``{``
    or ``}``, so two limiters never share a key).
    """

    algorithm: ClassVar[str]  # key suffix, e.g. "gcra"
    LUA: ClassVar[str]  # the script's body, after _PROLOGUE

    MAX_LIMIT: ClassVar[int] = 2**53  # counts stay exact in a Lua number

    def __init__(self, r: redis.Redis | redis.asyncio.Redis, name: str, *, limit: int, period: float) -> None:
        if not isinstance(name, str):
            raise InvalidArgumentType(f"A limiter's name is a str (e.g. 'api'), not {name!r}.")
        if not name or any(c in name for c in ":{}"):
            raise InvalidArgument(
                f"Limiter name {name!r} must be non-empty without ':', '{{' or '}}' (e.g. 'api')."
            )
        self.limit = check_count("limit", limit, maximum=self.MAX_LIMIT)
        self.period = check_seconds("period", period)
        if self.period < 0.001:
            raise InvalidArgument(f"period must be at least 0.001 seconds, not {period!r}.")
        self.r = r
        self.name = name
        self._period_us = round(self.period * 1_000_000)
        self._script = r.register_script(_PROLOGUE + self.LUA)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, limit={self.limit}, period={self.period})"

    def key(self, identity: str | int) -> str:
        """The key holding ``identity``'s state (``InvalidArgumentType`` for no str or int)."""
        if isinstance(identity, bool) or not isinstance(identity, (str, int)):
            raise InvalidArgumentType(
                f"An identity is a str or an int (a user id, an API key, an address), not "
                f"{type(identity).__name__} {identity!r}: pass the caller's id, never None or an object."
            )
        if identity == "":
            raise InvalidArgument(
                "An identity is never empty: an empty one would put every such caller in one bucket."
            )
        return f"{{rl:{self.name}:{identity}}}:{self.algorithm}"

    def hit(self, identity: str | int, cost: int = 1, *, now: float | None = None) -> RateLimitResult:
        """Check a request of ``cost`` units from ``identity`` and count it if admitted.

        ``now`` replaces the server's clock with a simulated one (seconds): for replaying
        traffic and for lessons, never in production, where client clocks disagree. Keys
        written on a simulated clock live a minute longer than their TTL.
        """
        check_client(type(self).__name__, self.r, asynchronous=False)  # AsyncRateLimiter awaits it instead
        call = self._call(identity, cost, now)
        try:
            reply = self._script(**call)
        except (redis.ResponseError, UnicodeDecodeError):
            with self._foreign(identity):  # only on an error: the hot path builds no context manager
                raise
        return self._result(reply)

    def reset(self, identity: str | int) -> None:
        """Forget ``identity``'s history (it gets its full limit back)."""
        self.r.delete(self.key(identity))

    def _call(self, identity: str | int, cost: int, now: float | None) -> dict[str, list[Any]]:
        """The script's keys and arguments for one check (every argument checked first)."""
        key = self.key(identity)
        if type(cost) is not int or not 1 <= cost <= self.MAX_LIMIT:  # the common case checked fast
            cost = check_count("cost", cost, maximum=self.MAX_LIMIT)
        if now is None:
            clock: str | int = ""
        elif isinstance(now, Real) and not isinstance(now, bool) and 0 <= now <= MAX_NOW:
            clock = round(now * 1_000_000)
        else:
            raise InvalidArgument(
                f"now is simulated seconds since the epoch, from 0 to {MAX_NOW}, not {now!r}."
            )
        return {"keys": [key], "args": [self.limit, self._period_us, cost, clock, *self._extra_args()]}

    def _foreign(self, identity: str | int) -> AbstractContextManager[None]:
        key = self.key(identity)
        return foreign_data(lambda problem: RateLimitDataError(
            f"{key!r} holds {problem}, not this limiter's state: reset it (limiter.reset({identity!r})) "
            f"if nothing else uses that key, or give the limiter another name."
        ))

    @staticmethod
    def _result(reply: list[Any]) -> RateLimitResult:
        allowed, remaining, retry_us, reset_us = reply
        return RateLimitResult(
            allowed=bool(allowed),
            remaining=max(0, int(remaining)),
            retry_after=math.inf if retry_us < 0 else retry_us / 1_000_000,
            reset_after=reset_us / 1_000_000,
        )

    def _extra_args(self) -> tuple[str, ...]:
        return ()


class FixedWindow(RateLimiter):
    """At most ``limit`` per clock-aligned window of ``period``: cheap, but a client can send
    ``limit`` at the end of one window and ``limit`` more at the start of the next."""

    algorithm = "fixed"
    LUA = """
local start = now - now % period
local reset = start + period - now
local state = redis.call('HMGET', KEYS[1], 'window', 'count')
local used = 0
local same_window = stored(state[1]) == start
if same_window then used = stored(state[2]) or 0 end
if cost > limit then return {0, limit - used, -1, reset} end
if used + cost > limit then return {0, limit - used, reset, reset} end
if same_window then
  -- the window's first write set the expiry (its end): one command less on the hot path
  redis.call('HSET', KEYS[1], 'count', num(used + cost))
else
  -- The window's start is stored with its count: a count from an older window never leaks
  -- in, even in the microseconds between the window's end and the key's expiry.
  redis.call('HSET', KEYS[1], 'window', num(start), 'count', num(used + cost))
  redis.call('PEXPIRE', KEYS[1], ms(reset))
end
return {1, limit - used - cost, 0, reset}
"""


class SlidingLog(RateLimiter):
    """Exact: a sorted set of the admitted requests' times, so any ``period``-long span holds at
    most ``limit``. Memory grows with ``limit`` (one entry per admitted unit), and a check adds
    ``cost`` entries while the server waits: ``limit`` is at most 1,000,000."""

    algorithm = "log"
    MAX_LIMIT = 1_000_000
    # Members must be unique: the seed used the timestamp itself, so requests in the same second
    # overwrote each other and were undercounted. A random token per check (ARGV[5]) fixes it.
    LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
local function reset_after()
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then return tonumber(newest[2]) + period - now end
  return 0
end
if cost > limit then return {0, limit - used, -1, reset_after()} end
if used + cost > limit then
  -- admissible once the (used + cost - limit) oldest entries have left the window
  local oldest = redis.call('ZRANGE', KEYS[1], used + cost - limit - 1, used + cost - limit - 1, 'WITHSCORES')
  return {0, limit - used, tonumber(oldest[2]) + period - now, reset_after()}
end
for i = 1, cost do
  redis.call('ZADD', KEYS[1], num(now), ARGV[5] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], ms(period))
return {1, limit - used - cost, 0, period}
"""

    def _extra_args(self) -> tuple[str, ...]:
        return (secrets.token_hex(8),)


class SlidingWindowCounter(RateLimiter):
    """Approximates a sliding window with two counters: the current clock window's count plus the
    previous window's, weighted by the share of it still inside the last ``period``. Constant
    memory, no boundary burst; exact only when traffic is evenly spread."""

    algorithm = "counter"
    LUA = """
local start = now - now % period
local state = redis.call('HMGET', KEYS[1], 'window', 'current', 'previous')
local window = stored(state[1])
local current, previous = 0, 0
if window == start then
  current, previous = stored(state[2]) or 0, stored(state[3]) or 0
elseif window == start - period then
  previous = stored(state[2]) or 0
end
local elapsed = now - start
local used = previous * (period - elapsed) / period + current
local function reset_after(cur, prev)
  if cur > 0 then return start + 2 * period - now end
  if prev > 0 then return start + period - now end
  return 0
end
if cost > limit then return {0, math.floor(limit - used), -1, reset_after(current, previous)} end
if used + cost > limit then
  local retry
  if current + cost <= limit then
    -- wait until the previous window's weight has decayed enough, within this window
    retry = start + math.ceil(period * (1 - (limit - cost - current) / previous)) - now
  else
    -- wait for the next window, where this window's count becomes the decaying one
    retry = start + period + math.max(0, math.ceil(period * (1 - (limit - cost) / current))) - now
  end
  return {0, math.floor(limit - used), math.max(1, retry), reset_after(current, previous)}
end
if window == start then
  -- the window's first write set the expiry: one command less on the hot path
  redis.call('HSET', KEYS[1], 'current', num(current + cost))
else
  redis.call('HSET', KEYS[1], 'window', num(start), 'current', num(current + cost), 'previous', num(previous))
  -- this window's count matters until the end of the next one
  redis.call('PEXPIRE', KEYS[1], ms(start + 2 * period - now))
end
return {1, math.floor(limit - used - cost), 0, reset_after(current + cost, previous)}
"""


class TokenBucket(RateLimiter):
    """A bucket of ``limit`` tokens refilled continuously at ``limit / period`` per second; a
    request takes ``cost`` tokens. Allows a burst of ``limit``, then the steady rate."""

    algorithm = "bucket"
    LUA = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'time')
local held, since = stored(state[1]) or limit, stored(state[2]) or now
-- the tokens at time t, by the one formula every check uses
local function tokens_at(t) return math.min(limit, held + math.max(0, t - since) * limit / period) end
local tokens = tokens_at(now)
-- µs until `want` tokens are there. The exact quotient can fall a rounding error short of `want`
-- in floating point: step on until the formula itself says so, so a client that waits passes.
local function refill(want)
  local wait = math.max(0, math.ceil((want - tokens) * period / limit))
  while tokens_at(now + wait) < want do wait = wait + 1 end
  return wait
end
if cost > limit then return {0, math.floor(tokens), -1, refill(limit)} end
if tokens < cost then return {0, math.floor(tokens), refill(cost), refill(limit)} end
held, since = tokens - cost, now
tokens = held
redis.call('HSET', KEYS[1], 'tokens', num(held), 'time', num(since))
-- once full again the bucket equals a missing key, so the key may go then
local reset = refill(limit)
redis.call('PEXPIRE', KEYS[1], ms(reset))
return {1, math.floor(tokens), 0, reset}
"""


class GCRA(RateLimiter):
    """The generic cell rate algorithm: a token bucket stored as one number, the theoretical
    arrival time (TAT) of the next request. Requests are spaced ``period / limit`` apart, with a
    burst of ``limit`` allowed.

    The emission interval is rounded up to a whole microsecond so that all arithmetic is exact
    integer arithmetic (a burst of exactly ``limit`` fits, never ``limit - 1`` by rounding).
    """

    algorithm = "gcra"
    LUA = """
local interval = math.ceil(period / limit)
local burst = interval * limit
local tat = math.max(stored(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + cost * interval
if cost > limit then return {0, math.floor((burst - (tat - now)) / interval), -1, tat - now} end
if new_tat - now > burst then
  return {0, math.floor((burst - (tat - now)) / interval), new_tat - burst - now, tat - now}
end
redis.call('SET', KEYS[1], num(new_tat), 'PX', ms(new_tat - now))
return {1, math.floor((burst - (new_tat - now)) / interval), 0, new_tat - now}
"""


class AsyncRateLimiter:
    """One of the five algorithms for ``redis.asyncio``: the same script, key and answers.

        limiter = AsyncRateLimiter(GCRA, ar, "api", limit=100, period=60)
        result = await limiter.hit("user:42")          # one EVALSHA, awaited

    It shares its keys with the sync class of the same name and parameters: a sync worker and
    an async web server limiting one identity draw on one budget.
    """

    def __init__(
        self, algorithm: type[RateLimiter], r: redis.asyncio.Redis, name: str, *, limit: int, period: float
    ) -> None:
        if not (isinstance(algorithm, type) and issubclass(algorithm, RateLimiter) and algorithm is not RateLimiter):
            raise InvalidArgumentType(f"algorithm is one of the five limiter classes (e.g. GCRA), not {algorithm!r}.")
        check_client("AsyncRateLimiter", r, asynchronous=True)
        # The sync class does everything but the I/O: its constructor only registers the script.
        self.limiter = algorithm(r, name, limit=limit, period=period)
        self.r = r

    def __repr__(self) -> str:
        return f"Async{self.limiter!r}"

    def key(self, identity: str | int) -> str:
        """The key holding ``identity``'s state, as the sync limiter's."""
        return self.limiter.key(identity)

    async def hit(self, identity: str | int, cost: int = 1, *, now: float | None = None) -> RateLimitResult:
        """``RateLimiter.hit``, awaited."""
        call = self.limiter._call(identity, cost, now)
        try:
            reply = await self.limiter._script(**call)
        except (redis.ResponseError, UnicodeDecodeError):
            with self.limiter._foreign(identity):
                raise
        return self.limiter._result(reply)

    async def reset(self, identity: str | int) -> None:
        """Forget ``identity``'s history."""
        await self.r.delete(self.key(identity))
