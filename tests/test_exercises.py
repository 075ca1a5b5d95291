"""Exercises grade the learner's code: the right answer passes, the blank starter and every
plausible wrong answer are caught, and the notebooks ship starters, not solutions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from redai_lab.lab import exercises
from redai_lab.lab.exercises import Case, Exercise, ExerciseFailed, Spec
from redai_lab.lab.features import has_command

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if re.match(r"\d\db?_", p.stem))


def top_two(r: redis.Redis, board: str) -> list[str]:
    """The two best members of sorted set `board`, best first."""
    return r.zrange(board, 0, 1, desc=True)


def top_two_ascending(r: redis.Redis, board: str) -> list[str]:
    return r.zrange(board, 0, 1)


def _board(scores: dict[str, float]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        if scores:
            r.zadd(f"{prefix}board", scores)
        return (f"{prefix}board",)

    return setup


TOY = Spec(
    number=1, title="the top two", reference=top_two, hint="ZRANGE with REV (desc=True).",
    cases=(Case("three players", _board({"ann": 3, "bob": 5, "cat": 1})), Case("an empty board", _board({}))),
    wrong=(top_two_ascending,),
)


def _starter(spec: Spec):
    namespace: dict = {}
    exec(spec.starter(), namespace)
    return namespace[spec.function]


def test_the_reference_passes_and_says_which_cases(r, capsys) -> None:
    Exercise(TOY, r).check(top_two)
    assert capsys.readouterr().out == "✓ Exercise 1 (the top two): right on all 2 cases: three players; an empty board.\n"


def multi_line(r: redis.Redis, board: str) -> list[str]:
    """The two best members of `board`,
    best first."""
    return r.zrange(board, 0, 1, desc=True)


def test_the_starter_keeps_the_docstring_as_written() -> None:
    starter = Spec(number=2, title="t", reference=multi_line, hint="", cases=()).starter()
    assert starter == ('def multi_line(r: redis.Redis, board: str) -> list[str]:\n'
                       '    """The two best members of `board`,\n    best first."""\n'
                       "    ...  # your code here\n")


def test_the_blank_starter_is_not_yet_with_a_hint_never_a_traceback(r, capsys) -> None:
    assert TOY.starter() == (
        "def top_two(r: redis.Redis, board: str) -> list[str]:\n"
        '    """The two best members of sorted set `board`, best first."""\n'
        "    ...  # your code here\n"
    )
    Exercise(TOY, r).check(_starter(TOY))
    out = capsys.readouterr().out
    assert out == ("Exercise 1 (the top two): not yet: `top_two` returned None: write its body in the cell above.\n"
                   "Hint: ZRANGE with REV (desc=True).\n")


def test_a_wrong_answer_names_the_case_what_was_expected_and_what_came_back(r, capsys) -> None:
    Exercise(TOY, r).check(top_two_ascending)
    assert "for three players, expected ['bob', 'ann'], got ['cat', 'ann']." in capsys.readouterr().out


def test_an_answer_that_raises_is_one_line(r, capsys) -> None:
    def broken(r, board):
        return r.hgetall(board)  # WRONGTYPE on a sorted set

    Exercise(TOY, r).check(broken)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Exercise 1 (the top two): not yet: for three players, `top_two` raised ResponseError: WRONGTYPE")


def test_check_finds_the_learners_function_by_name_in_the_notebook(r, capsys) -> None:
    notebook = {"ex1": Exercise(TOY, r)}  # a kernel's globals, as a learner's cells fill them
    exec("ex1.check()", notebook)
    assert "define `top_two` in the cell above" in capsys.readouterr().out
    exec("def top_two(r, board):\n    return r.zrange(board, 0, 1, desc=True)\nex1.check()", notebook)
    assert capsys.readouterr().out.startswith("✓ Exercise 1")


def test_strict_mode_raises(r, monkeypatch) -> None:
    monkeypatch.setenv(exercises.STRICT_ENV, "strict")
    with pytest.raises(ExerciseFailed, match="not yet: for three players"):
        Exercise(TOY, r).check(top_two_ascending)


def test_the_check_touches_only_its_own_keys(r) -> None:
    r.set("user:1000", "the lesson's own data")
    r.set("ex1:left-over", "from an earlier check")
    Exercise(TOY, r).check(top_two)
    assert r.get("user:1000") == "the lesson's own data"
    assert list(r.scan_iter(match="ex1:*")) == []


# Every lesson's real exercises.
def _skip_without(spec: Spec, r: redis.Redis) -> None:
    missing = [command for command in spec.requires if not has_command(r, command)]
    if missing:
        pytest.skip(f"this server has no {', '.join(missing)}")


def test_an_exercise_the_server_cannot_run_says_so_in_one_line(r, capsys) -> None:
    needs_more = Spec(number=3, title="t", reference=top_two, hint="", cases=TOY.cases, requires=("NO.SUCH",))
    Exercise(needs_more, r).check(top_two_ascending)  # not checked at all
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "has no NO.SUCH, needed by exercise 3" in out


# (``lesson_name``, not ``lesson``: that is the fixture behind ``r``.)
ALL = [(lesson_name, spec) for lesson_name in LESSONS for spec in exercises.specs(lesson_name)]


@pytest.mark.parametrize(("lesson_name", "spec"), ALL, ids=[f"{l}-{s.number}" for l, s in ALL])
def test_each_reference_passes_and_the_starter_does_not(lesson_name, spec, r) -> None:
    _skip_without(spec, r)
    exercise = Exercise(spec, r)
    assert spec.evaluate(r, spec.reference, exercise.prefix) is None
    assert spec.evaluate(r, _starter(spec), exercise.prefix).startswith("not yet")


WRONG = [(lesson_name, spec, wrong) for lesson_name, spec in ALL for wrong in spec.wrong]


@pytest.mark.parametrize(("lesson_name", "spec", "wrong"), WRONG,
                         ids=[f"{l}-{s.number}-{w.__name__}" for l, s, w in WRONG])
def test_every_plausible_wrong_answer_is_caught(lesson_name, spec, wrong, r) -> None:
    _skip_without(spec, r)
    assert spec.evaluate(r, wrong, f"ex{spec.number}:") is not None


def _cells(lesson: str) -> list[dict]:
    return json.loads((NOTEBOOKS / f"{lesson}.ipynb").read_text())["cells"]


@pytest.mark.parametrize("lesson", [lesson for lesson in LESSONS if exercises.specs(lesson)])
def test_notebooks_ship_starters_and_committed_checks_say_not_yet(lesson: str) -> None:
    specs = {spec.number: spec for spec in exercises.specs(lesson)}
    assert len(specs) >= 2, f"{lesson} has fewer than 2 exercises"
    shipped = {}
    for cell in _cells(lesson):
        for tag in cell.get("metadata", {}).get("tags", []):
            if match := re.fullmatch(r"exercise-(\d+)", tag):
                shipped[int(match.group(1))] = "".join(cell["source"])
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(r"\bex\d+\.check\(\)", source):
            text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
            assert ": not yet" in text, f"{lesson}: a committed check does not say 'not yet': {text!r}"
        for spec in specs.values():  # no solution anywhere in the notebook
            body = spec.solution_source().split('"""')[-1].strip()
            assert body not in source, f"{lesson}: the solution of exercise {spec.number} is in the notebook"
    assert shipped.keys() == specs.keys()
    for number, source in shipped.items():
        assert source.strip() == specs[number].starter().strip(), f"{lesson} exercise {number}: not the starter"


# An ``async def`` answer is awaited with a redis.asyncio client on the lesson's own database.
async def top_two_async(r, board: str) -> list[str]:
    """The two best members of sorted set `board`, best first."""
    return await r.zrange(board, 0, 1, desc=True)


async def top_two_async_raises(r, board: str) -> list[str]:
    return await r.hgetall(board)  # WRONGTYPE on a sorted set


ASYNC_TOY = Spec(number=1, title="the top two", reference=top_two_async, hint="", cases=TOY.cases)


def test_an_async_answer_is_awaited_on_the_lessons_database(r, capsys) -> None:
    assert r.connection_pool.connection_kwargs["db"] != 0  # the setup's data is not in db 0
    Exercise(ASYNC_TOY, r).check(top_two_async)
    assert capsys.readouterr().out.startswith("✓ Exercise 1")
    assert ASYNC_TOY.evaluate(r, top_two, "ex1:") is None  # sync and async answers agree
    Exercise(ASYNC_TOY, r).check(top_two_async_raises)
    assert "`top_two_async` raised ResponseError: WRONGTYPE" in capsys.readouterr().out
    assert ASYNC_TOY.starter().startswith("async def top_two_async(r, board: str) -> list[str]:\n")
