"""Lesson 04's exercises: lists (the two ends, blocking pops, capped lists, positions)."""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec


def _lists(r: redis.Redis, prefix: str) -> dict[str, list[str]]:
    """Every list under ``prefix``, by key name without the prefix: what a call left in Redis."""
    return {key.removeprefix(prefix): r.lrange(key, 0, -1) for key in sorted(r.scan_iter(match=f"{prefix}*"))}


def _returned_and_lists(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, dict[str, list[str]]]:
    return result, _lists(r, prefix)


# Exercise 1 ------------------------------------------------------------------------------------


def next_jobs(r: redis.Redis, queue: str, n: int) -> list[str]:
    """Producers add jobs to list `queue` with `LPUSH queue job`. Take up to `n` jobs off the queue,
    oldest first, with one command, and return them as a list (an empty list when the queue is
    empty or missing)."""
    # LPUSH adds at the head, so the oldest job is at the tail: a queue pops at the other end.
    # With a count (6.2), RPOP returns up to n jobs, or None when there is nothing to pop.
    return r.rpop(queue, n) or []


def next_jobs_from_the_head(r, queue, n):
    return r.lpop(queue, n) or []


def next_jobs_none_when_empty(r, queue, n):
    return r.rpop(queue, n)


def next_jobs_one_pop_each(r, queue, n):
    return [r.rpop(queue) for _ in range(n)]


def next_jobs_without_taking_them(r, queue, n):
    return r.lrange(queue, -n, -1)[::-1]


def _queue(jobs: int, n: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        for i in range(1, jobs + 1):
            r.lpush(f"{prefix}queue", f"job:{i}")  # job:1 first: the oldest
        return f"{prefix}queue", n

    return setup


# Exercise 2 ------------------------------------------------------------------------------------


def wait_for_job(r: redis.Redis, queues: list[str], timeout: float) -> str | None:
    """Lists `queues` are job queues in priority order, the most urgent first; producers add jobs
    with `RPUSH`. Wait at most `timeout` seconds for a job, take the oldest job of the most urgent
    non-empty queue, and return the job itself (None when no job came in time)."""
    # BLPOP serves the first non-empty list in the order given; RPUSH + LPOP is first in, first out.
    reply = r.blpop(queues, timeout=timeout)  # (queue, job), or None after the timeout
    return None if reply is None else reply[1]


def wait_for_job_returns_the_reply(r, queues, timeout):
    return r.blpop(queues, timeout=timeout)


def wait_for_job_ignores_the_timeout(r, queues, timeout):
    return r.blpop(queues, timeout=timeout)[1]


def wait_for_job_newest_first(r, queues, timeout):
    reply = r.brpop(queues, timeout=timeout)
    return None if reply is None else reply[1]


def _queues(urgent: list[str], normal: list[str], timeout: float = 1):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str], float]:
        for name, jobs in (("urgent", urgent), ("normal", normal)):
            if jobs:
                r.rpush(f"{prefix}jobs:{name}", *jobs)
        return [f"{prefix}jobs:urgent", f"{prefix}jobs:normal"], timeout

    return setup


# Exercise 3 ------------------------------------------------------------------------------------


def record_view(r: redis.Redis, key: str, product: str, keep: int) -> None:
    """List `key` holds the products a user viewed recently, newest first, each at most once.
    Record a view of `product`: it goes to the front (moved there if it was already in the list),
    and the list keeps only the `keep` most recent products. No other client may ever see the list
    half-updated or longer than `keep`."""
    pipe = r.pipeline(transaction=True)  # MULTI/EXEC: one round trip, no reader sees a step in between
    pipe.lrem(key, 0, product)  # drop an earlier view of it
    pipe.lpush(key, product)  # newest first: push at the head ...
    pipe.ltrim(key, 0, keep - 1)  # ... and trim at the same end (stop is inclusive)
    pipe.execute()


def record_view_at_the_tail(r, key, product, keep):
    pipe = r.pipeline(transaction=True)
    pipe.lrem(key, 0, product)
    pipe.rpush(key, product)
    pipe.ltrim(key, 0, keep - 1)
    pipe.execute()


def record_view_with_duplicates(r, key, product, keep):
    pipe = r.pipeline(transaction=True)
    pipe.lpush(key, product)
    pipe.ltrim(key, 0, keep - 1)
    pipe.execute()


def record_view_keeps_one_too_many(r, key, product, keep):
    pipe = r.pipeline(transaction=True)
    pipe.lrem(key, 0, product)
    pipe.lpush(key, product)
    pipe.ltrim(key, 0, keep)
    pipe.execute()


def record_view_removes_after_pushing(r, key, product, keep):
    pipe = r.pipeline(transaction=True)
    pipe.lpush(key, product)
    pipe.lrem(key, -1, product)  # the older view, from the tail... or the only one
    pipe.ltrim(key, 0, keep - 1)
    pipe.execute()


def _viewed(products: list[str], product: str, keep: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        if products:
            r.rpush(f"{prefix}user:7:viewed", *products)
        return f"{prefix}user:7:viewed", product, keep

    return setup


# Exercise 4 ------------------------------------------------------------------------------------


def mark_last(r: redis.Redis, key: str, value: str, new: str) -> int | None:
    """List `key` is a log. Replace its **last** entry equal to `value` by `new`, in place, and
    return that entry's index (from the head, the first entry is 0). When no entry equals
    `value` (or the list is missing), change nothing and return None."""
    index = r.lpos(key, value, rank=-1)  # RANK -1: the first match from the tail
    if index is not None:  # not `if index:`, since 0 is an index too
        r.lset(key, index, new)
    return index


def mark_first(r, key, value, new):
    index = r.lpos(key, value)
    if index is not None:
        r.lset(key, index, new)
    return index


def mark_last_unless_at_zero(r, key, value, new):
    index = r.lpos(key, value, rank=-1)
    if index:
        r.lset(key, index, new)
    return index


def mark_last_even_when_missing(r, key, value, new):
    index = r.lpos(key, value, rank=-1)
    r.lset(key, index, new)
    return index


def mark_last_by_moving_it(r, key, value, new):
    index = r.lpos(key, value, rank=-1)
    if index is not None:
        r.lrem(key, -1, value)
        r.rpush(key, new)
    return index


def _log(entries: list[str], value: str = "error"):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str]:
        if entries:
            r.rpush(f"{prefix}log", *entries)
        return f"{prefix}log", value, f"{value}:handled"

    return setup


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a FIFO queue",
        reference=next_jobs,
        cases=(
            Case("5 jobs, take 2", _queue(5, 2)),
            Case("3 jobs, take 10 (fewer than asked)", _queue(3, 10)),
            Case("an empty queue", _queue(0, 3)),
            Case("1 job, take 1", _queue(1, 1)),
        ),
        outcome=_returned_and_lists,
        hint="Draw the list with its head on the left: LPUSH puts the newest job there, so where is the "
             "oldest? A pop takes a count.",
        wrong=(next_jobs_from_the_head, next_jobs_none_when_empty, next_jobs_one_pop_each,
               next_jobs_without_taking_them),
    ),
    Spec(
        number=2,
        title="wait for the most urgent job",
        reference=wait_for_job,
        cases=(
            Case("an urgent job and 2 normal ones", _queues(["urgent:1"], ["normal:1", "normal:2"])),
            Case("only normal jobs", _queues([], ["normal:1", "normal:2"])),
            Case("2 urgent jobs (the oldest first)", _queues(["urgent:1", "urgent:2"], ["normal:1"])),
            Case("no job at all, timeout 0.1 s", _queues([], [], timeout=0.1)),
        ),
        outcome=_returned_and_lists,
        hint="A blocking pop takes several lists and serves the first non-empty one; look at what it "
             "returns, and at what it returns when the time is up.",
        wrong=(wait_for_job_returns_the_reply, wait_for_job_ignores_the_timeout, wait_for_job_newest_first),
    ),
    Spec(
        number=3,
        title="recently viewed",
        reference=record_view,
        cases=(
            Case("a first view", _viewed([], "p1", 3)),
            Case("a new product on a full list of 3", _viewed(["p3", "p2", "p1"], "p4", 3)),
            Case("the oldest product viewed again", _viewed(["p3", "p2", "p1"], "p1", 3)),
            Case("the newest product viewed again", _viewed(["p2", "p1"], "p2", 3)),
            Case("a list that keeps 1", _viewed(["p1"], "p2", 1)),
        ),
        outcome=lambda r, prefix, result: _lists(r, prefix),
        hint="Push and trim at the same end, and think about what an earlier view of the same product "
             "should become; a transaction sends the steps as one.",
        wrong=(record_view_at_the_tail, record_view_with_duplicates, record_view_keeps_one_too_many,
               record_view_removes_after_pushing),
    ),
    Spec(
        number=4,
        title="find and fix the last error",
        reference=mark_last,
        cases=(
            Case("ok, error, ok, error, ok", _log(["ok", "error", "ok", "error", "ok"])),
            Case("the only error is the first entry", _log(["error", "ok", "ok"])),
            Case("a log without errors", _log(["ok", "ok"])),
            Case("a missing log", _log([])),
        ),
        outcome=_returned_and_lists,
        hint="One command finds a value's position, counting matches from either end; another "
             "overwrites by position.",
        wrong=(mark_first, mark_last_unless_at_zero, mark_last_even_when_missing, mark_last_by_moving_it),
    ),
)
