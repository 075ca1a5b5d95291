"""Lesson 30's exercises: a page of a sorted-set index you maintain, the data and that index kept
in step, and a tag filter escaped for the query engine. They run in the lesson's own database and
need no module (the query engine indexes database 0 only, see ``redai_lab.lab.search``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis

from . import Case, Spec

# --- 1. A page of a score index --------------------------------------------------------------


def questions_between(r: redis.Redis, index: str, low: float, high: float) -> list[str]:
    """The members of the sorted set `index` whose score is from `low` to `high`, both included,
    lowest score first (ties in the sorted set's own order). An empty list when none is, or when
    `index` does not exist."""
    return r.zrange(index, low, high, byscore=True)


def questions_between_exclusive(r, index, low, high):
    return r.zrange(index, f"({low}", f"({high}", byscore=True)


def questions_between_by_rank(r, index, low, high):
    return r.zrange(index, int(low), int(high))


def questions_between_highest_first(r, index, low, high):
    return r.zrange(index, high, low, byscore=True, desc=True)


def questions_between_sorted_by_id(r, index, low, high):
    return sorted(r.zrange(index, low, high, byscore=True))


def _index(scores: dict[str, float], low: float, high: float) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        if scores:
            r.zadd(f"{prefix}by_points", scores)
        return (f"{prefix}by_points", low, high)

    return setup


POINTS = {"q7": 12, "q3": 8, "q5": 10, "q1": 10, "q9": 2, "q2": 11}

# --- 2. Data and its index, in step -----------------------------------------------------------


def save_question(r: redis.Redis, index: str, key: str, question_id: str, points: int, text: str) -> None:
    """Write the hash `key` with fields `text` and `points`, and give `question_id` the score
    `points` in the sorted set `index`, in one MULTI/EXEC transaction. Saving a question again
    replaces its points in both places (its old score must not stay)."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"text": text, "points": points})
    pipe.zadd(index, {question_id: points})
    pipe.execute()


def save_question_keeps_old_score(r, index, key, question_id, points, text):
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"text": text, "points": points})
    pipe.zadd(index, {question_id: points}, nx=True)
    pipe.execute()


def save_question_adds_points(r, index, key, question_id, points, text):
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"text": text, "points": points})
    pipe.zincrby(index, points, question_id)
    pipe.execute()


def save_question_indexes_the_key(r, index, key, question_id, points, text):
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"text": text, "points": points})
    pipe.zadd(index, {key: points})
    pipe.execute()


def save_question_forgets_the_index(r, index, key, question_id, points, text):
    r.hset(key, mapping={"text": text, "points": points})


def _saves(*earlier: tuple[str, int, str], then: tuple[str, int, str]) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    """A case: questions saved before (by the reference), then the one the function saves."""

    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        for question_id, points, text in earlier:
            save_question(r, f"{prefix}by_points", f"{prefix}question:{question_id}", question_id, points, text)
        question_id, points, text = then
        return (f"{prefix}by_points", f"{prefix}question:{question_id}", question_id, points, text)

    return setup


def _saved(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, ...]:
    """The score index and every question hash after the call."""
    hashes = {key.removeprefix(prefix): r.hgetall(key) for key in sorted(r.scan_iter(match=f"{prefix}question:*"))}
    return tuple(r.zrange(f"{prefix}by_points", 0, -1, withscores=True)), hashes


# --- 3. A tag filter that survives punctuation ------------------------------------------------


def tag_filter(r: redis.Redis, field: str, values: list[str]) -> str:
    """The query `@field:{v1|v2|...}` for the tag values `values`, in order, with every character
    that is not an ASCII letter, a digit or `_` escaped by a backslash (spaces too). No values:
    the empty string."""
    if not values:
        return ""
    escaped = ["".join(c if c.isascii() and (c.isalnum() or c == "_") else "\\" + c for c in value)
               for value in values]
    return f"@{field}:{{{'|'.join(escaped)}}}"


def tag_filter_unescaped(r, field, values):
    return f"@{field}:{{{'|'.join(values)}}}" if values else ""


def tag_filter_escapes_slashes_only(r, field, values):
    return f"@{field}:{{{'|'.join(v.replace('/', chr(92) + '/') for v in values)}}}" if values else ""


def tag_filter_keeps_spaces(r, field, values):
    escaped = [re.sub(r"([^A-Za-z0-9_ ])", r"\\\1", value) for value in values]
    return f"@{field}:{{{'|'.join(escaped)}}}" if values else ""


def tag_filter_empty_braces(r, field, values):
    escaped = [re.sub(r"([^A-Za-z0-9_])", r"\\\1", value) for value in values]
    return f"@{field}:{{{'|'.join(escaped)}}}"


def _values(field: str, *values: str) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    return lambda r, prefix: (field, list(values))


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a page of a score index",
        reference=questions_between,
        cases=(
            Case("scores inside the range, and ties", _index(POINTS, 9, 12)),
            Case("bounds that are scores", _index(POINTS, 8, 10)),
            Case("one score", _index(POINTS, 10, 10)),
            Case("no score in the range", _index(POINTS, 3, 7)),
            Case("no index", _index({}, 0, 100)),
        ),
        hint="ZRANGE with BYSCORE takes scores, not ranks, and includes its bounds unless you write '('.",
        wrong=(questions_between_exclusive, questions_between_by_rank, questions_between_highest_first,
               questions_between_sorted_by_id),
    ),
    Spec(
        number=2,
        title="data and its index, in step",
        reference=save_question,
        cases=(
            Case("a first question", _saves(then=("q1", 8, "Explain TCP."))),
            Case("a question saved again with other points",
                 _saves(("q1", 8, "Explain TCP."), ("q2", 4, "Explain UDP."), then=("q1", 12, "Explain TCP!"))),
            Case("a question beside others", _saves(("q2", 4, "Explain UDP."), then=("q3", 6, "Explain DNS."))),
        ),
        outcome=_saved,
        hint="MULTI/EXEC (a transaction pipeline) around HSET and ZADD; a plain ZADD replaces a member's score.",
        wrong=(save_question_keeps_old_score, save_question_adds_points, save_question_indexes_the_key,
               save_question_forgets_the_index),
    ),
    Spec(
        number=3,
        title="a tag filter that survives punctuation",
        reference=tag_filter,
        cases=(
            Case("plain values", _values("subject", "biology", "chemistry")),
            Case("a slash", _values("term", "HTTP/2", "TCP")),
            Case("an apostrophe and a space", _values("term", "Dijkstra's algorithm")),
            Case("a hyphen, a dot and a brace", _values("tag", "node.js", "e-mail", "{x}")),
            Case("no values", _values("subject")),
        ),
        hint="Go through each value character by character: keep ASCII letters, digits and _, put a backslash "
             "before anything else.",
        wrong=(tag_filter_unescaped, tag_filter_escapes_slashes_only, tag_filter_keeps_spaces,
               tag_filter_empty_braces),
    ),
)
