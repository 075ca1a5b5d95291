"""Checked exercises: every lesson ends with a few, and CI runs their solutions.

A lesson shows the task, leaves a cell for the reader, and keeps a collapsed solution cell
followed by ``check(...)``. A wrong answer stops with one line naming what differs.
"""

from __future__ import annotations

from typing import Any


class ExerciseFailed(AssertionError):
    """The answer to an exercise is not the expected one."""


def check(title: str, answer: Any, expected: Any) -> None:
    """Print ``✔ title`` when ``answer == expected``, else raise ``ExerciseFailed``."""
    if answer != expected:
        raise ExerciseFailed(f"{title}: expected {expected!r}, got {answer!r}")
    print(f"✔ {title}")
