"""Lesson 15's exercises: rate limiting (a fixed window that is atomic and always expires, a sliding
log in one script, several limits checked all or nothing)."""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec
from redai_lab.lab.exercises.lesson13 import race, settle, ttl_bucket

# Exercise 1 ------------------------------------------------------------------------------------


def allow_request(r: redis.Redis, counter: str, limit: int, period: int) -> bool:
    """Fixed window. The string `counter` counts one client's requests in the current window (the
    caller names it after the window, e.g. `rate:alice:28333334`). Count this request and return
    True if it is among the first `limit` of the window, else False. The counter expires `period`
    seconds after the window's first request: later requests never push that back, and it must
    never be left without an expiry, not even after a client crashed between two commands. Many
    clients check at the same moment: never admit more than `limit` in all."""
    pipe = r.pipeline(transaction=True)  # MULTI/EXEC: the count and its expiry in one step
    pipe.incr(counter)  # INCR counts and answers atomically: no read, then write
    pipe.expire(counter, period, nx=True)  # NX (7.0): only a counter without an expiry gets one
    count, _ = pipe.execute()
    return count <= limit


def allow_request_check_then_count(r, counter, limit, period):
    if int(r.get(counter) or 0) >= limit:
        return False
    r.incr(counter)  # another client may have counted since GET
    r.expire(counter, period, nx=True)
    return True


def allow_request_expiry_on_first(r, counter, limit, period):
    count = r.incr(counter)
    if count == 1:
        r.expire(counter, period)  # a crash before this line leaves a counter that never expires
    return count <= limit


def allow_request_pushes_the_expiry(r, counter, limit, period):
    count = r.incr(counter)
    r.expire(counter, period)
    return count <= limit


def allow_request_one_short(r, counter, limit, period):
    pipe = r.pipeline(transaction=True)
    pipe.incr(counter)
    pipe.expire(counter, period, nx=True)
    count, _ = pipe.execute()
    return count < limit


def _other_client(counter: str, limit: int, verdict: str):
    """Another client's request, counted atomically; whether it was admitted goes to `verdict`."""

    def request(r: redis.Redis) -> None:
        r.set(verdict, "admitted" if r.incr(counter) <= limit else "refused")

    return request


def _window(used: int | None, seconds_left: int | None = None, meanwhile: bool = False, limit: int = 5):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, int]:
        counter = f"{prefix}rate:alice:28333334"
        if used is not None:
            r.set(counter, used, ex=seconds_left)
        if meanwhile:
            race(r, prefix, counter, _other_client(counter, limit, f"{prefix}other"))
        return counter, limit, 60

    return setup


def _window_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    counter = f"{prefix}rate:alice:28333334"
    outcome = {
        "returned": result,
        "count (at most the limit shown)": min(int(r.get(counter) or 0), 5),
        "expiry": ttl_bucket(r, counter),
    }
    if other := r.get(f"{prefix}other"):
        outcome["the other client's request"] = other
    return outcome


# Exercise 2 ------------------------------------------------------------------------------------


def allow_logged(r: redis.Redis, log: str, limit: int, period_ms: int, now_ms: int, request_id: str) -> bool:
    """Sliding log. Sorted set `log` holds one client's admitted requests: member the request's id,
    score the time it was made (ms). A request `request_id` arrives at `now_ms` (ms, the clock to
    use). Admit it if fewer than `limit` requests were admitted in the last `period_ms`: those
    with a score greater than now_ms - period_ms. Log it only when admitted, drop the entries too
    old to count, and let the log expire `period_ms` after its newest entry. Return True if
    admitted. Many clients check at the same moment: never admit more than `limit` in a period."""
    check = r.register_script('''
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
''')
    # Prune, count, decide and log in one atomic step: no other check can run in between.
    return check(keys=[log], args=[limit, period_ms, now_ms, request_id]) == 1


def allow_logged_three_commands(r, log, limit, period_ms, now_ms, request_id):
    r.zremrangebyscore(log, "-inf", now_ms - period_ms)
    if r.zcard(log) >= limit:
        return False
    r.zadd(log, {request_id: now_ms})  # another client may have logged one since ZCARD
    r.pexpire(log, period_ms)
    return True


def allow_logged_logs_refusals(r, log, limit, period_ms, now_ms, request_id):
    pipe = r.pipeline(transaction=True)
    pipe.zremrangebyscore(log, "-inf", now_ms - period_ms)
    pipe.zadd(log, {request_id: now_ms})
    pipe.zcard(log)
    pipe.pexpire(log, period_ms)
    return pipe.execute()[2] <= limit


def allow_logged_keeps_the_boundary(r, log, limit, period_ms, now_ms, request_id):
    check = r.register_script('''
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
''')
    return check(keys=[log], args=[limit, period_ms, now_ms, request_id]) == 1


def allow_logged_member_is_the_time(r, log, limit, period_ms, now_ms, request_id):
    check = r.register_script('''
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
''')
    return check(keys=[log], args=[limit, period_ms, now_ms, request_id]) == 1


NOW = 1_700_000_040_000  # the request's time, ms


def _log(ages_s: list[float], meanwhile: bool = False, limit: int = 3, period_s: int = 60):
    """A log with requests `ages_s` seconds old (expiring in 50 s); `meanwhile`: another client's
    request lands between this check's first count and its write."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, int, int, str]:
        log = f"{prefix}rate:log:alice"
        if ages_s:
            r.zadd(log, {f"req-{i}": NOW - round(age * 1000) for i, age in enumerate(ages_s)})
            r.expire(log, 50)
        if meanwhile:
            def other(r: redis.Redis) -> None:
                allowed = allow_logged(r, log, limit, period_s * 1000, NOW, "req-other")
                r.set(f"{prefix}other", "admitted" if allowed else "refused")
            race(r, prefix, log, other, after=("ZCARD", "ZCOUNT", "ZRANGE", "ZRANGEBYSCORE", "EVAL", "EVALSHA"))
        return log, limit, period_s * 1000, NOW, "req-new"

    return setup


def _log_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    log = f"{prefix}rate:log:alice"
    outcome = {
        "returned": result,
        "log (member, seconds before now)": [(member, (NOW - score) / 1000) for member, score in
                                             r.zrange(log, 0, -1, withscores=True)],
        "log": ttl_bucket(r, log),
    }
    if other := r.get(f"{prefix}other"):
        outcome["the other client's request"] = other
    return outcome


# Exercise 3 ------------------------------------------------------------------------------------


def allow_within(r: redis.Redis, limits: list[tuple[str, int, int]]) -> bool:
    """Several limits at once ("10 a minute and 1000 a day"). Each of `limits` is a fixed window
    `(counter, limit, period)`: the string `counter` counts the client's requests in its current
    window and expires `period` seconds after that window's first request. Admit the request only
    if every counter is below its limit; then count it in every counter. A refused request counts
    in none of them (a client refused by its daily quota keeps its budget for the minute). An
    expiry is never pushed back, never missing. Many clients check at the same moment."""
    check = r.register_script('''
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[2 * i], 'NX')
end
return 1
''')
    # All the checks, then all the counts, in one atomic step.
    keys = [counter for counter, _, _ in limits]
    args = [item for _, limit, period in limits for item in (limit, period)]
    return check(keys=keys, args=args) == 1


def allow_within_one_after_the_other(r, limits):
    for counter, limit, period in limits:
        count = r.incr(counter)  # counted even if a later limit refuses
        r.expire(counter, period, nx=True)
        if count > limit:
            return False
    return True


def allow_within_check_then_count(r, limits):
    counts = r.mget([counter for counter, _, _ in limits])
    if any(int(count or 0) >= limit for count, (_, limit, _) in zip(counts, limits)):
        return False
    pipe = r.pipeline(transaction=True)  # atomic, but decided on counts read before it
    for counter, _, period in limits:
        pipe.incr(counter)
        pipe.expire(counter, period, nx=True)
    pipe.execute()
    return True


def allow_within_pushes_the_expiry(r, limits):
    check = r.register_script('''
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[2 * i])
end
return 1
''')
    keys = [counter for counter, _, _ in limits]
    return check(keys=keys, args=[item for _, limit, period in limits for item in (limit, period)]) == 1


def allow_within_one_too_many(r, limits):
    check = r.register_script('''
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > tonumber(ARGV[2 * i - 1]) then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[2 * i], 'NX')
end
return 1
''')
    keys = [counter for counter, _, _ in limits]
    return check(keys=keys, args=[item for _, limit, period in limits for item in (limit, period)]) == 1


WINDOWS = (("minute", 10, 60), ("hour", 100, 3600), ("day", 1000, 86400))


def _quota(used: dict[str, tuple[int, int]], windows: tuple[str, ...] = ("minute", "day"), meanwhile: bool = False):
    """`used`: window -> (count so far, seconds left); `meanwhile`: another client's request lands
    between this check's first command and its next."""

    def setup(r: redis.Redis, prefix: str) -> tuple[list[tuple[str, int, int]]]:
        limits = [(f"{prefix}rate:alice:{name}", limit, period) for name, limit, period in WINDOWS if name in windows]
        for name, (count, left) in used.items():
            r.set(f"{prefix}rate:alice:{name}", count, ex=left)
        if meanwhile:
            def other(r: redis.Redis) -> None:
                r.set(f"{prefix}other", "admitted" if allow_within(r, limits) else "refused")
            race(r, prefix, limits[0][0], other)
        return (limits,)

    return setup


def _quota_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    outcome: dict[str, Any] = {"returned": result}
    for name, _, _ in WINDOWS:
        key = f"{prefix}rate:alice:{name}"
        if r.exists(key):
            outcome[name] = (int(r.get(key)), ttl_bucket(r, key))
    if other := r.get(f"{prefix}other"):
        outcome["the other client's request"] = other
    return outcome


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a fixed window that holds",
        reference=allow_request,
        cases=(
            Case("the window's first request (no counter yet)", _window(None)),
            Case("the 5th request of 5, 20 s left in the window", _window(4, 20)),
            Case("the 6th request of 5", _window(5, 20)),
            Case("a counter at 3 left without an expiry by a client that crashed", _window(3)),
            Case("4 of 5 used; another client's request lands between this check's first command and "
                 "its next", _window(4, 20, meanwhile=True)),
        ),
        outcome=_window_outcome,
        hint="INCR counts and tells you the new count in one atomic step; EXPIRE has an option "
             "(Redis 7.0) that sets an expiry only where there is none; MULTI sends both together.",
        wrong=(allow_request_check_then_count, allow_request_expiry_on_first, allow_request_pushes_the_expiry,
               allow_request_one_short),
    ),
    Spec(
        number=2,
        title="a sliding log in one script",
        reference=allow_logged,
        cases=(
            Case("an empty log", _log([])),
            Case("2 of 3 in the last minute, and one entry 90 s old", _log([90, 30, 5])),
            Case("3 of 3 in the last minute: refused", _log([50, 30, 5])),
            Case("one of 3 entries exactly 60 s old (it no longer counts)", _log([60, 30, 5])),
            Case("2 of 3 used; another client's request lands between this check's count and its write",
                 _log([30, 5], meanwhile=True)),
        ),
        outcome=_log_outcome,
        hint="ZREMRANGEBYSCORE, ZCARD and ZADD, in one Lua script (read, decide, write with nothing "
             "in between); mind which bound is inclusive.",
        wrong=(allow_logged_three_commands, allow_logged_logs_refusals, allow_logged_keeps_the_boundary,
               allow_logged_member_is_the_time),
    ),
    Spec(
        number=3,
        title="several limits, all or nothing",
        reference=allow_within,
        cases=(
            Case("a new client (no counters), 10 a minute and 1000 a day", _quota({})),
            Case("the day's 1000 spent, this minute's 3 of 10 not",
                 _quota({"minute": (3, 30), "day": (1000, 3600)})),
            Case("this minute's 10 spent", _quota({"minute": (10, 30), "day": (500, 3600)})),
            Case("the day's last request (999 of 1000 used, 1 h left)",
                 _quota({"minute": (2, 30), "day": (999, 3600)})),
            Case("10 a minute, 100 an hour and 1000 a day, the hour spent",
                 _quota({"minute": (1, 30), "hour": (100, 1200), "day": (10, 3600)}, ("minute", "hour", "day"))),
            Case("9 of 10 this minute; another client's request lands between this check's first command "
                 "and its next", _quota({"minute": (9, 30), "day": (500, 3600)}, meanwhile=True)),
        ),
        outcome=_quota_outcome,
        hint="Check every counter before counting in any, with nothing in between: that is a job "
             "for one Lua script (EXPIRE ... NX works inside it).",
        wrong=(allow_within_one_after_the_other, allow_within_check_then_count, allow_within_pushes_the_expiry,
               allow_within_one_too_many),
    ),
)
