"""Exercises that grade the learner's own code (in the spirit of Kaggle Learn's ``learntools``).

In a lesson::

    ex1 = lesson.exercise(1)          # prints the task's title
    def top_scorers(r, board, n):     # the learner writes this, in a plain cell
        ...
    ex1.check()                       # runs it against data the check sets up, beside the reference
    ex1.hint()                        # one hint
    ex1.solution()                    # the reference solution, shown only when asked

``check()`` finds the learner's function by name in the notebook, sets up each ``Case`` in the
lesson's database (keys under ``ex<N>:``, removed afterwards), runs the reference solution and
the learner's code on the same fresh data, and compares what the exercise says matters: the
return value, or an ``outcome`` read from Redis afterwards (a TTL, the keys written). The
expected values are never in the notebook. An unfinished answer gets "not yet: ..." and a hint,
never a traceback; with ``REDAI_LAB_EXERCISES=strict`` (CI, with the solutions injected) a
failing check raises ``ExerciseFailed`` instead.

Each lesson's exercises live in ``redai_lab.lab.exercises.lessonNN`` as ``EXERCISES``: a tuple of
``Spec``, each with the reference solution (a function named as the learner's), the cases, a
hint, and ``wrong``: plausible wrong answers that the test suite proves the check rejects.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import os
import re
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from ..features import require

STRICT_ENV = "REDAI_LAB_EXERCISES"  # "strict": a failing check raises (CI with solutions injected)
NOT_YET = "not yet"


class ExerciseFailed(AssertionError):
    """A check did not pass (raised only in strict mode)."""


@dataclass(frozen=True)
class Case:
    """One situation a check sets up: ``setup(r, prefix)`` writes the data and returns the
    arguments the function gets after ``r``; ``label`` says in words what the case is."""

    label: str
    setup: Callable[[redis.Redis, str], Sequence[Any]]


def returned(r: redis.Redis, prefix: str, result: Any) -> Any:
    """The default outcome of a call: what the function returned."""
    return result


Outcome = Callable[[redis.Redis, str, Any], Any]


def ttl_seconds(r: redis.Redis, key: str) -> str:
    """A key's TTL in whole seconds, rounded up: equal for two runs a few ms apart."""
    pttl = r.pttl(key)
    if pttl == -2:
        return "no key"
    if pttl == -1:
        return "no TTL"
    return f"{-(-pttl // 1000)} s"


def unless_none(outcome: Outcome) -> Outcome:
    """``outcome``, but None when the call returned None: for a function that returns something
    and leaves state, so that the blank starter gets "write its body", not the expected state."""

    def read(r: redis.Redis, prefix: str, result: Any) -> Any:
        return None if result is None else outcome(r, prefix, result)

    return read


@dataclass(frozen=True)
class Spec:
    """One exercise: what the learner writes, the reference solution, and how it is checked."""

    number: int
    title: str
    reference: Callable[..., Any]  # named as the learner's function; its source is the solution
    cases: tuple[Case, ...]
    hint: str
    # What a call produced that must match the reference: the return value by default, or state
    # read from Redis after the call (``outcome(r, prefix, result)``).
    outcome: Outcome = returned
    wrong: tuple[Callable[..., Any], ...] = field(default=())  # answers the check must reject
    # Commands the cases need (``"HSETEX"``): on a server without one, check() says so in one
    # line and checks nothing, as a lesson does with ``features.require``.
    requires: tuple[str, ...] = ()

    @property
    def function(self) -> str:
        return self.reference.__name__

    def solution_source(self) -> str:
        return textwrap.dedent(inspect.getsource(self.reference))

    def starter(self) -> str:
        """The cell a lesson ships: the reference's signature and docstring as written, and ``...``."""
        source = self.solution_source()
        function = ast.parse(source).body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)), f"{self.function} is not a function"
        first = function.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str)
        # Up to the docstring's last line, else up to the line before the body.
        end = first.end_lineno if has_doc else first.lineno - 1
        head = "".join(source.splitlines(keepends=True)[:end])
        return f"{head}    ...  # your code here\n"

    def evaluate(self, r: redis.Redis, answer: Callable[..., Any] | None, prefix: str) -> str | None:
        """None when ``answer`` behaves like the reference on every case, else what differs."""
        if not callable(answer):
            return f"{NOT_YET}: define `{self.function}` in the cell above, then run this cell again."
        for case in self.cases:
            expected = self._run(r, self.reference, case, prefix)
            try:
                actual = self._run(r, answer, case, prefix)
            except NotImplementedError:
                return f"{NOT_YET}: `{self.function}` is not written yet (it raised NotImplementedError)."
            except Exception as exc:  # noqa: BLE001  (the learner's bug, reported in one line)
                first = str(exc).splitlines()[0] if str(exc) else ""
                return f"{NOT_YET}: for {case.label}, `{self.function}` raised {type(exc).__name__}: {first}"
            if actual != expected:
                if actual is None and case is self.cases[0]:
                    return f"{NOT_YET}: `{self.function}` returned None: write its body in the cell above."
                return f"{NOT_YET}: for {case.label}, expected {expected!r}, got {actual!r}."
        return None

    def _run(self, r: redis.Redis, function: Callable[..., Any], case: Case, prefix: str) -> Any:
        clear(r, prefix)
        args = case.setup(r, prefix)
        try:
            return self.outcome(r, prefix, call(function, r, args))
        finally:
            if function is self.reference:
                clear(r, prefix)


def call(function: Callable[..., Any], r: redis.Redis, args: Sequence[Any]) -> Any:
    """``function(r, *args)``; an ``async def`` function is awaited with a ``redis.asyncio``
    client on ``r``'s database, in an event loop of its own on a thread of its own (a notebook's
    kernel already runs a loop, and an async client belongs to the loop it was made in)."""
    if not inspect.iscoroutinefunction(function):
        return function(r, *args)

    async def run() -> Any:
        client = _async_twin(r)
        try:
            return await function(client, *args)
        finally:
            await client.aclose()

    outcome: dict[str, Any] = {}

    def thread() -> None:
        try:
            outcome["value"] = asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            outcome["error"] = exc

    worker = threading.Thread(target=thread, name="exercise", daemon=True)  # an interrupted kernel can exit
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _async_twin(r: redis.Redis) -> redis.asyncio.Redis:
    """A ``redis.asyncio`` client on ``r``'s server and database, over the same transport: TCP,
    TLS (with ``r``'s certificates) or a Unix socket."""
    pool = r.connection_pool
    settings = dict(pool.connection_kwargs)
    same = {"host", "port", "db", "username", "password", "decode_responses", "socket_timeout",
            "socket_connect_timeout"}
    if issubclass(pool.connection_class, redis.connection.UnixDomainSocketConnection):
        settings["unix_socket_path"] = settings.pop("path")
        same.add("unix_socket_path")
    if issubclass(pool.connection_class, redis.connection.SSLConnection):
        settings["ssl"] = True
        same |= {name for name in inspect.signature(redis.asyncio.Redis).parameters if name.startswith("ssl")}
    return redis.asyncio.Redis(**{name: value for name, value in settings.items() if name in same})


def clear(r: redis.Redis, prefix: str) -> None:
    """Delete the exercise's keys (and only those)."""
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


class Exercise:
    """An exercise bound to a lesson's client: ``check()``, ``hint()``, ``solution()``."""

    def __init__(self, spec: Spec, client: redis.Redis) -> None:
        self.spec = spec
        self.client = client
        self.prefix = f"ex{spec.number}:"

    def __repr__(self) -> str:
        return f"Exercise {self.spec.number}: {self.spec.title} (write `{self.spec.function}`, then .check())"

    def check(self, answer: Callable[..., Any] | None = None) -> None:
        """Check the learner's function (found by name in the caller's globals unless given)."""
        if not all(require(self.client, command, why=f"by exercise {self.spec.number}")
                   for command in self.spec.requires):
            return
        if answer is None:
            caller = inspect.currentframe()
            namespace = caller.f_back.f_globals if caller and caller.f_back else {}
            answer = namespace.get(self.spec.function)
        try:
            problem = self.spec.evaluate(self.client, answer, self.prefix)
        finally:
            clear(self.client, self.prefix)
        title = f"Exercise {self.spec.number} ({self.spec.title})"
        if problem is None:
            print(f"✓ {title}: right on all {len(self.spec.cases)} cases: "
                  + "; ".join(case.label for case in self.spec.cases) + ".")
            return
        if os.environ.get(STRICT_ENV) == "strict":
            raise ExerciseFailed(f"{title}: {problem}")
        print(f"{title}: {problem}\nHint: {self.spec.hint}")

    def hint(self) -> None:
        print(f"Hint: {self.spec.hint}")

    def solution(self) -> None:
        print(f"A solution to exercise {self.spec.number} ({self.spec.title}):\n")
        print(self.spec.solution_source())


def specs(lesson: str) -> tuple[Spec, ...]:
    """The exercises of lesson ``"03_hashes"`` (from ``redai_lab.lab.exercises.lesson03``; an advanced
    part ``"13b_caching_advanced"`` from ``lesson13b``)."""
    match = re.match(r"(\d\db?)_", lesson)
    if match is None:
        return ()
    try:
        module = importlib.import_module(f"{__name__}.lesson{match.group(1)}")
    except ModuleNotFoundError:
        return ()
    return tuple(module.EXERCISES)


def spec(lesson: str, number: int) -> Spec:
    for candidate in specs(lesson):
        if candidate.number == number:
            return candidate
    raise LookupError(f"Lesson {lesson} has no exercise {number}.")
