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

Design (the same for all five):

* One Lua script per algorithm, registered with ``register_script``: each check is one
  ``EVALSHA`` (redis-py falls back to ``SCRIPT LOAD`` when the server answers NOSCRIPT, so the
  very first check after a server start costs three round trips). Read, decide and write happen
  in one atomic step, so concurrent clients can never both see "one left".
* The script reads ``TIME``: the server's clock decides, so clients with skewed clocks agree.
* Each identity has one key, ``{rl:<name>:<identity>}:<algorithm>``; the hash tag keeps every
  key of one identity in one Cluster slot. Every write sets a TTL: nothing outlives its use.
* ``cost`` above ``limit`` can never be admitted: the check answers ``allowed=False`` with
  ``retry_after=math.inf`` (an HTTP service answers 413 or 429 without ``Retry-After``) and
  consumes nothing.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import ClassVar

import redis

__all__ = [
    "GCRA",
    "FixedWindow",
    "RateLimitResult",
    "RateLimiter",
    "SlidingLog",
    "SlidingWindowCounter",
    "TokenBucket",
]


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
"""


class RateLimiter:
    """What the five algorithms share: parameters, key naming, the one-round-trip check.

    ``r`` may use ``decode_responses`` either way. ``name`` names the limiter (no ``:``, ``{``
    or ``}``, so two limiters never share a key).
    """

    algorithm: ClassVar[str]  # key suffix, e.g. "gcra"
    LUA: ClassVar[str]  # the script's body, after _PROLOGUE

    def __init__(self, r: redis.Redis, name: str, *, limit: int, period: float) -> None:
        if not name or any(c in name for c in ":{}"):
            raise ValueError(f"Limiter name {name!r} must be non-empty without ':', '{{' or '}}' (e.g. 'api').")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number of requests >= 1, not {limit!r}.")
        if not period > 0 or round(period * 1_000_000) < 1000:
            raise ValueError(f"period must be at least 0.001 seconds, not {period!r}.")
        self.r = r
        self.name = name
        self.limit = limit
        self.period = period
        self._period_us = round(period * 1_000_000)
        self._script = r.register_script(_PROLOGUE + self.LUA)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, limit={self.limit}, period={self.period})"

    def key(self, identity: str | int) -> str:
        """The key holding ``identity``'s state."""
        return f"{{rl:{self.name}:{identity}}}:{self.algorithm}"

    def hit(self, identity: str | int, cost: int = 1, *, now: float | None = None) -> RateLimitResult:
        """Check a request of ``cost`` units from ``identity`` and count it if admitted.

        ``now`` replaces the server's clock with a simulated one (seconds): for replaying
        traffic and for lessons, never in production, where client clocks disagree. Keys
        written on a simulated clock live a minute longer than their TTL.
        """
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a whole number >= 1, not {cost!r}.")
        clock = "" if now is None else round(now * 1_000_000)
        allowed, remaining, retry_us, reset_us = self._script(
            keys=[self.key(identity)],
            args=[self.limit, self._period_us, cost, clock, *self._extra_args()],
        )
        return RateLimitResult(
            allowed=bool(allowed),
            remaining=max(0, int(remaining)),
            retry_after=math.inf if retry_us < 0 else retry_us / 1_000_000,
            reset_after=reset_us / 1_000_000,
        )

    def reset(self, identity: str | int) -> None:
        """Forget ``identity``'s history (it gets its full limit back)."""
        self.r.delete(self.key(identity))

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
if tonumber(state[1]) == start then used = tonumber(state[2]) end
if cost > limit then return {0, limit - used, -1, reset} end
if used + cost > limit then return {0, limit - used, reset, reset} end
-- The window's start is stored with its count: a count from an older window never leaks in,
-- even in the microseconds between the window's end and the key's expiry.
redis.call('HSET', KEYS[1], 'window', num(start), 'count', num(used + cost))
redis.call('PEXPIRE', KEYS[1], ms(reset))
return {1, limit - used - cost, 0, reset}
"""


class SlidingLog(RateLimiter):
    """Exact: a sorted set of the admitted requests' times, so any ``period``-long span holds at
    most ``limit``. Memory grows with ``limit`` (one entry per admitted unit)."""

    algorithm = "log"
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
local window = tonumber(state[1])
local current, previous = 0, 0
if window == start then
  current, previous = tonumber(state[2]), tonumber(state[3])
elseif window == start - period then
  previous = tonumber(state[2])
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
redis.call('HSET', KEYS[1], 'window', num(start), 'current', num(current + cost), 'previous', num(previous))
-- this window's count matters until the end of the next one
redis.call('PEXPIRE', KEYS[1], ms(start + 2 * period - now))
return {1, math.floor(limit - used - cost), 0, reset_after(current + cost, previous)}
"""


class TokenBucket(RateLimiter):
    """A bucket of ``limit`` tokens refilled continuously at ``limit / period`` per second; a
    request takes ``cost`` tokens. Allows a burst of ``limit``, then the steady rate."""

    algorithm = "bucket"
    LUA = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'time')
local stored, since = tonumber(state[1]) or limit, tonumber(state[2]) or now
-- the tokens at time t, by the one formula every check uses
local function tokens_at(t) return math.min(limit, stored + math.max(0, t - since) * limit / period) end
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
stored, since = tokens - cost, now
tokens = stored
redis.call('HSET', KEYS[1], 'tokens', num(stored), 'time', num(since))
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
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + cost * interval
if cost > limit then return {0, math.floor((burst - (tat - now)) / interval), -1, tat - now} end
if new_tat - now > burst then
  return {0, math.floor((burst - (tat - now)) / interval), new_tat - burst - now, tat - now}
end
redis.call('SET', KEYS[1], num(new_tat), 'PX', ms(new_tat - now))
return {1, math.floor((burst - (new_tat - now)) / interval), 0, new_tat - now}
"""
