"""Lesson 20's exercises: the reliable list queue written by hand (claim into a processing list,
acknowledge one copy, give a dead consumer's tasks back in order). Graded on the lists left in
Redis; no Celery worker runs in a check."""

from __future__ import annotations

from typing import Any

import redis

from . import Case, clear
from ._observed import Observed, ObservedSpec

# Producers LPUSH new tasks on the left of `pending`; consumers take the oldest, on the right.

# --- 1. Claim a task ----------------------------------------------------------------------------


def claim(r: redis.Redis, pending: str, processing: str) -> str | None:
    """Take the oldest task of list `pending` (producers LPUSH, so the oldest is on the right)
    and put it on the left of list `processing`, in one atomic command with no deprecated name,
    so that at every moment the task is in one list or the other. Return it, or None (at once,
    without blocking) when `pending` is empty."""
    return r.lmove(pending, processing, "RIGHT", "LEFT")


def claim_newest(r, pending, processing):
    return r.lmove(pending, processing, "LEFT", "LEFT")


def claim_pop_only(r, pending, processing):
    return r.rpop(pending)


def claim_deprecated(r, pending, processing):
    return r.rpoplpush(pending, processing)


def claim_to_the_right(r, pending, processing):
    return r.lmove(pending, processing, "RIGHT", "RIGHT")


def _lists(pending: list[str], processing: list[str] = ()):  # left to right, as LRANGE shows
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if pending:
            r.rpush(f"{prefix}pending", *pending)
        if processing:
            r.rpush(f"{prefix}processing", *processing)
        return (f"{prefix}pending", f"{prefix}processing")

    return setup


def _claim_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    return (seen.result, r.lrange(f"{prefix}pending", 0, -1), r.lrange(f"{prefix}processing", 0, -1),
            seen.calls.get("rpoplpush", 0) + seen.calls.get("brpoplpush", 0))


class _ClaimSpec(ObservedSpec):
    """Claim returns None on an empty queue, and the lists still matter then: None becomes a
    marker, except on the first case (three tasks waiting), where None means "not written yet"."""

    def _run(self, r, function, case, prefix):  # type: ignore[override]
        def answer(r, *args):
            result = function(r, *args)
            return "(nothing)" if result is None and case is not self.cases[0] else result

        answer.__name__ = function.__name__
        if function is self.reference:  # the base class clears after the reference only
            try:
                return super()._run(r, answer, case, prefix)
            finally:
                clear(r, prefix)
        return super()._run(r, answer, case, prefix)


# --- 2. Acknowledge a task ----------------------------------------------------------------------


def ack(r: redis.Redis, processing: str, task: str) -> bool:
    """Acknowledge `task`: remove ONE copy of it from list `processing` (two identical tasks
    may be in flight; the other stays), the oldest one, which is nearest the right end. Return
    True when a copy was removed, False when the task was not there."""
    return r.lrem(processing, -1, task) == 1


def ack_every_copy(r, processing, task):
    return r.lrem(processing, 0, task) >= 1


def ack_newest_copy(r, processing, task):
    return r.lrem(processing, 1, task) == 1


def ack_pop(r, processing, task):
    return r.rpop(processing) is not None


def _processing(items: list[str], task: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if items:
            r.rpush(f"{prefix}processing", *items)
        return (f"{prefix}processing", task)

    return setup


def _ack_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    return seen.result, r.lrange(f"{prefix}processing", 0, -1)


# --- 3. Give a dead consumer's tasks back -------------------------------------------------------


def requeue_if_dead(r: redis.Redis, processing: str, pending: str, heartbeat: str) -> int:
    """A consumer holds its claimed tasks in list `processing` (newest on the left) and keeps
    key `heartbeat` alive while it lives. When `heartbeat` no longer exists, move every task of
    `processing` back to `pending`, where they must be the NEXT ones consumers take (consumers
    take from the right), oldest claimed first, and no task may ever be out of both lists. When
    the heartbeat exists, touch nothing. Return how many tasks were moved."""
    if r.exists(heartbeat):
        return 0
    moved = 0
    while r.lmove(processing, pending, "LEFT", "RIGHT") is not None:
        moved += 1
    return moved


def requeue_if_dead_reversed(r, processing, pending, heartbeat):
    if r.exists(heartbeat):
        return 0
    moved = 0
    while r.lmove(processing, pending, "RIGHT", "RIGHT") is not None:
        moved += 1
    return moved


def requeue_if_dead_to_the_back(r, processing, pending, heartbeat):
    if r.exists(heartbeat):
        return 0
    moved = 0
    while r.lmove(processing, pending, "RIGHT", "LEFT") is not None:
        moved += 1
    return moved


def requeue_if_dead_ignores_heartbeat(r, processing, pending, heartbeat):
    moved = 0
    while r.lmove(processing, pending, "LEFT", "RIGHT") is not None:
        moved += 1
    return moved


def requeue_if_dead_only_one(r, processing, pending, heartbeat):
    if r.exists(heartbeat):
        return 0
    return 0 if r.lmove(processing, pending, "RIGHT", "RIGHT") is None else 1


def _consumer(pending: list[str], processing: list[str], alive: bool):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str]:
        if pending:
            r.rpush(f"{prefix}pending", *pending)
        if processing:
            r.rpush(f"{prefix}processing:c1", *processing)
        if alive:
            r.set(f"{prefix}heartbeat:c1", 1, ex=30)
        return (f"{prefix}processing:c1", f"{prefix}pending", f"{prefix}heartbeat:c1")

    return setup


def _requeue_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    """What came back, then the order in which consumers would now take the tasks."""
    pending = r.lrange(f"{prefix}pending", 0, -1)
    return seen.result, pending[::-1], r.lrange(f"{prefix}processing:c1", 0, -1)


EXERCISES = (
    _ClaimSpec(
        number=1,
        title="claim a task into a processing list",
        reference=claim,
        cases=(
            Case("three tasks waiting", _lists(["t3", "t2", "t1"])),
            Case("a task already in processing", _lists(["t5", "t4"], ["t3"])),
            Case("one task", _lists(["only"])),
            Case("an empty queue", _lists([])),
        ),
        outcome=_claim_outcome,
        hint="One list command moves an element from either end of one list to either end of "
             "another; it replaced an older command that could only go right to left.",
        wrong=(claim_newest, claim_pop_only, claim_deprecated, claim_to_the_right),
    ),
    ObservedSpec(
        number=2,
        title="acknowledge one copy of a task",
        reference=ack,
        cases=(
            Case("the task among others", _processing(["t3", "t2", "t1"], "t2")),
            Case("two identical tasks in flight", _processing(["same", "t9", "same"], "same")),
            Case("a task that is not there", _processing(["t1"], "t7")),
            Case("an empty processing list", _processing([], "t1")),
        ),
        outcome=_ack_outcome,
        hint="LREM's count says how many copies to remove, and from which end (a negative count "
             "starts from the tail).",
        wrong=(ack_every_copy, ack_newest_copy, ack_pop),
    ),
    ObservedSpec(
        number=3,
        title="give a dead consumer's tasks back, in order",
        reference=requeue_if_dead,
        cases=(
            Case("a dead consumer holding two tasks, three waiting",
                 _consumer(["t5", "t4", "t3"], ["t2", "t1"], alive=False)),
            Case("a live consumer", _consumer(["t3"], ["t2", "t1"], alive=True)),
            Case("a dead consumer and an empty queue", _consumer([], ["t3", "t2", "t1"], alive=False)),
            Case("a dead consumer holding nothing", _consumer(["t1"], [], alive=False)),
        ),
        outcome=_requeue_outcome,
        hint="Move the tasks one at a time with the atomic list-to-list command, choosing both "
             "ends so that the oldest claimed becomes the very next one taken.",
        wrong=(requeue_if_dead_reversed, requeue_if_dead_to_the_back, requeue_if_dead_ignores_heartbeat,
               requeue_if_dead_only_one),
    ),
)
