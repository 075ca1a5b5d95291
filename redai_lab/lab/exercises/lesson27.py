"""Lesson 27's exercises: async code against redis.asyncio (seats that never overfill however
tasks interleave; the Retry-After of a fixed-window limit, in one round trip). The learner writes
``async def`` functions; ``check()`` awaits them with a ``redis.asyncio`` client."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio

from redai_lab.lab.exercises import Case, Spec, ttl_seconds

# Exercise 1 ------------------------------------------------------------------------------------


async def enroll_all(r: redis.asyncio.Redis, course: str, users: list[str], capacity: int) -> int:
    """The set `course` holds the students enrolled in a course with `capacity` seats. Enroll all
    of `users` at once, each in a task of its own (`asyncio.gather`), never filling more than
    `capacity` seats however the tasks interleave; a user already enrolled keeps the seat.
    Return how many of `users` hold a seat afterwards."""
    enroll = r.register_script('''
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
return redis.call('SADD', KEYS[1], ARGV[1])
''')
    seats = await asyncio.gather(*(enroll(keys=[course], args=[user, capacity]) for user in users))
    return sum(seats)  # count, check and add in one atomic step per user


async def enroll_all_check_then_add(r, course, users, capacity):
    async def enroll(user):
        if await r.sismember(course, user):
            return 1
        if await r.scard(course) >= capacity:
            return 0
        return await r.sadd(course, user)  # the other tasks counted the same free seats meanwhile

    return sum(await asyncio.gather(*(enroll(user) for user in users)))


async def enroll_all_add_then_undo(r, course, users, capacity):
    async def enroll(user):
        if not await r.sadd(course, user):
            return 1
        if await r.scard(course) > capacity:  # every task sees the others' adds: all undo
            await r.srem(course, user)
            return 0
        return 1

    return sum(await asyncio.gather(*(enroll(user) for user in users)))


async def enroll_all_forgets_the_enrolled(r, course, users, capacity):
    enroll = r.register_script('''
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
return redis.call('SADD', KEYS[1], ARGV[1])
''')
    return sum(await asyncio.gather(*(enroll(keys=[course], args=[user, capacity]) for user in users)))


def _course(applicants: int, capacity: int, earlier: int = 0, again: bool = False):
    """`applicants` new users; `earlier` seats taken by others; `again`: the first user is one of them."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[str], int]:
        course = f"{prefix}course:redis-101"
        taken = [f"earlier-{i}" for i in range(earlier)]
        if taken:
            r.sadd(course, *taken)
        users = ([taken[0]] if again else []) + [f"user-{i}" for i in range(applicants)]
        return course, users, capacity

    return setup


def _seats(r: redis.Redis, prefix: str, result: Any) -> Any:
    members = r.smembers(f"{prefix}course:redis-101")
    return {"returned": result, "seats taken": len(members),
            "earlier students kept": sum(m.startswith("earlier-") for m in members)}


# Exercise 2 ------------------------------------------------------------------------------------


async def retry_after(r: redis.asyncio.Redis, key: str, limit: int, window: int) -> int | None:
    """A fixed-window rate limit for an HTTP dependency, in one round trip. The counter `key`
    counts the requests of the current window: the first request creates it with an expiry of
    `window` seconds, later ones count without touching the expiry. Count this request, then
    return None if at most `limit` requests were counted in the window, else the Retry-After
    value: the seconds until the window ends, rounded up to a whole second."""
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)  # only the window's first request sets it
        pipe.pttl(key)
        count, _, left_ms = await pipe.execute()
    return None if count <= limit else -(-left_ms // 1000)


async def retry_after_restarts_the_window(r, key, limit, window):
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window)  # every request pushes the window's end back
        pipe.pttl(key)
        count, _, left_ms = await pipe.execute()
    return None if count <= limit else -(-left_ms // 1000)


async def retry_after_rounds_down(r, key, limit, window):
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        pipe.pttl(key)
        count, _, left_ms = await pipe.execute()
    return None if count <= limit else left_ms // 1000  # "retry in 0 s" while still refused


async def retry_after_with_ttl(r, key, limit, window):
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        pipe.ttl(key)  # TTL rounds to the nearest second: 0.4 s left reads 0
        count, _, left = await pipe.execute()
    return None if count <= limit else left


async def retry_after_refuses_the_last(r, key, limit, window):
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        pipe.pttl(key)
        count, _, left_ms = await pipe.execute()
    return None if count < limit else -(-left_ms // 1000)


def _window(counted: int | None, left_ms: int = 0):
    """The counter before this request: `counted` requests, `left_ms` ms before the window ends."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, int]:
        key = f"{prefix}rl:api:ip:203.0.113.7"
        if counted is not None:
            r.set(key, counted, px=left_ms)
        return key, 5, 60

    return setup


def _counter(r: redis.Redis, prefix: str, result: Any) -> Any:
    key = f"{prefix}rl:api:ip:203.0.113.7"
    return {"returned": result, "counter": r.get(key), "expires in": ttl_seconds(r, key)}


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="seats that never overfill",
        reference=enroll_all,
        cases=(
            Case("10 users, 3 free seats", _course(10, 3)),
            Case("12 users, 5 seats of which 2 are taken", _course(12, 5, earlier=2)),
            Case("a full course, and one of the users is already enrolled", _course(6, 3, earlier=3, again=True)),
            Case("4 users, 10 seats", _course(4, 10)),
        ),
        outcome=_seats,
        hint="Between two awaits other tasks run: 'is a seat free?' and 'take it' must be one "
             "atomic step on the server (a Lua script), one per user, gathered.",
        wrong=(enroll_all_check_then_add, enroll_all_add_then_undo, enroll_all_forgets_the_enrolled),
    ),
    Spec(
        number=2,
        title="Retry-After in one round trip",
        reference=retry_after,
        cases=(
            Case("the first request", _window(None)),
            Case("the 3rd request of 5, 20 s before the window ends", _window(2, 20_000)),
            Case("the 5th request of 5", _window(4, 20_000)),
            Case("the 6th request of 5, 20 s before the window ends", _window(5, 20_000)),
            Case("the 7th request of 5, 0.4 s before the window ends", _window(6, 400)),
        ),
        outcome=_counter,
        hint="In one MULTI pipeline: INCR, EXPIRE with NX (only a key without expiry gets one), "
             "PTTL; round the milliseconds up.",
        wrong=(retry_after_restarts_the_window, retry_after_rounds_down, retry_after_with_ttl,
               retry_after_refuses_the_last),
    ),
)
