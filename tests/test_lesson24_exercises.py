"""Lesson 24's checks accept every correct design the lesson teaches, not only the reference's:
a WATCH retry loop where the reference is a script, a script with ``redis.pcall`` where the
reference is MULTI/EXEC. (That they reject the wrong ones is in ``test_exercises.py``.)"""

from __future__ import annotations

import pytest
import redis

from redai_lab.lab.exercises import spec

LESSON = "24_transactions_and_scripting"


def transfer(r, source, target, amount):
    def attempt(pipe):
        enough = int(pipe.get(source) or 0) >= amount
        pipe.multi()
        if enough:
            pipe.decrby(source, amount)
            pipe.incrby(target, amount)
        return enough

    return r.transaction(attempt, source, value_from_callable=True)


def reserve(r, stock, quantities):
    def attempt(pipe):
        levels = pipe.hmget(stock, list(quantities))
        enough = all(int(level or 0) >= wanted for level, wanted in zip(levels, quantities.values()))
        pipe.multi()
        if enough:
            for product, wanted in quantities.items():
                pipe.hincrby(stock, product, -wanted)
        return enough

    return r.transaction(attempt, stock, value_from_callable=True)


def increment_all(r, counters):
    bump = r.register_script('''
local values = {}
for i, key in ipairs(KEYS) do
  local reply = redis.pcall('INCR', key)
  if type(reply) == 'number' then values[i] = reply else values[i] = false end
end
return values
''')
    return bump(keys=counters)


@pytest.mark.parametrize(("number", "answer"), [(1, transfer), (2, reserve), (3, increment_all)],
                         ids=["transfer with WATCH", "reserve with WATCH", "increment_all with pcall"])
def test_another_correct_design_passes(number, answer, r: redis.Redis) -> None:
    assert spec(LESSON, number).evaluate(r, answer, f"ex{number}:") is None


def test_a_watch_answer_is_checked_against_a_real_conflict(r: redis.Redis) -> None:
    """The race case hits a WATCH answer too: its first attempt fails, and the retry sees the
    other client's spending (else this answer would overdraw and the check would say so)."""
    calls = []

    def transfer_counting_attempts(r, source, target, amount):
        def attempt(pipe):
            calls.append(1)
            enough = int(r.get(source) or 0) >= amount  # a read through the client itself
            pipe.multi()
            if enough:
                pipe.decrby(source, amount)
                pipe.incrby(target, amount)
            return enough

        return r.transaction(attempt, source, value_from_callable=True)

    assert spec(LESSON, 1).evaluate(r, transfer_counting_attempts, "ex1:") is None
    assert len(calls) == 6  # five cases, and the race case's conflict retried once
