from __future__ import annotations

import pytest

from redai_lab.exercises import ExerciseFailed, check


def test_right_answer_is_ticked(capsys) -> None:
    check("Exercise 1", [1, 2], [1, 2])
    assert capsys.readouterr().out == "✔ Exercise 1\n"


def test_wrong_answer_names_the_difference() -> None:
    with pytest.raises(ExerciseFailed, match=r"Exercise 2: expected 3, got 4"):
        check("Exercise 2", 4, 3)
