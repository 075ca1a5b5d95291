"""Lesson 31's exercises: similar elements of a vector set within a filter, and a cached answer
within a cosine-distance threshold. Both need vector sets (Redis 8: ``requires``); the cases use
small exact vectors (``NOQUANT``) whose cosines are known."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import redis
from redis.commands.vectorset.commands import QuantizationOptions

from . import Case, Spec

# --- 1. Similar questions within a subject ------------------------------------------------------


def similar_in_subject(r: redis.Redis, key: str, element: str, subject: str, count: int) -> list[str]:
    """The names of the (at most) `count` elements of the vector set `key` nearest to its element
    `element`, among those whose JSON attribute `subject` equals `subject`, nearest first, never
    `element` itself."""
    found = r.vset().vsim(key, element, count=count + 1, filter=f'.subject == "{subject}"')
    return [name for name in found if name != element][:count]


def similar_in_subject_unfiltered(r, key, element, subject, count):
    return [name for name in r.vset().vsim(key, element, count=count + 1) if name != element][:count]


def similar_in_subject_includes_itself(r, key, element, subject, count):
    return list(r.vset().vsim(key, element, count=count, filter=f'.subject == "{subject}"'))


def similar_in_subject_filters_afterwards(r, key, element, subject, count):
    found = r.vset().vsim(key, element, count=count + 1)  # the filter applied to the nearest few only
    return [name for name in found if name != element and r.vset().vgetattr(key, name)["subject"] == subject]


def similar_in_subject_drops_the_first(r, key, element, subject, count):
    return list(r.vset().vsim(key, element, count=count + 1, filter=f'.subject == "{subject}"'))[1:]


# Unit vectors at known angles in the plane (degrees from the x axis), with a subject each. No two
# are equally far from a case's element: VSIM orders ties arbitrarily (d was 35° from a and f).
PLANE = {
    "a": (0, "history"), "b": (10, "biology"), "c": (20, "history"), "d": (35, "history"),
    "e": (50, "biology"), "f": (75, "history"), "g": (100, "biology"), "h": (160, "history"),
}


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _plane(element: str, subject: str, count: int, points: dict[str, tuple[float, str]] = PLANE
           ) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        for name, (degrees, attribute) in points.items():
            r.vset().vadd(f"{prefix}questions", _unit(degrees), name, quantization=QuantizationOptions.NOQUANT,
                          attributes={"subject": attribute})
        return (f"{prefix}questions", element, subject, count)

    return setup


# --- 2. A cached answer within a threshold ------------------------------------------------------


def cached_answer(r: redis.Redis, vectors: str, answers: str, vector: list[float], threshold: float) -> str | None:
    """The answer stored in the hash `answers` under the name of the element of the vector set
    `vectors` nearest to `vector`, when its cosine distance (1 - cos, from 0 to 2) is at most
    `threshold`; None when it is farther, or the set is empty or missing."""
    if not r.exists(vectors):
        return None
    nearest = r.vset().vsim(vectors, vector, with_scores=True, count=1)
    for name, similarity in nearest.items():  # similarity = (1 + cos) / 2
        if 2 * (1 - similarity) <= threshold:
            return r.hget(answers, name)
    return None


def cached_answer_one_minus_score(r, vectors, answers, vector, threshold):
    if not r.exists(vectors):
        return None
    for name, similarity in r.vset().vsim(vectors, vector, with_scores=True, count=1).items():
        if 1 - similarity <= threshold:
            return r.hget(answers, name)
    return None


def cached_answer_score_as_distance(r, vectors, answers, vector, threshold):
    if not r.exists(vectors):
        return None
    for name, similarity in r.vset().vsim(vectors, vector, with_scores=True, count=1).items():
        if similarity <= threshold:
            return r.hget(answers, name)
    return None


def cached_answer_no_threshold(r, vectors, answers, vector, threshold):
    if not r.exists(vectors):
        return None
    for name in r.vset().vsim(vectors, vector, count=1):
        return r.hget(answers, name)
    return None


def _cache(angle: float, threshold: float, entries: dict[str, float] | None = None
           ) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    """Cached questions at known angles, each with an answer; the query at ``angle``."""
    entries = {"tcp": 0, "dns": 90, "ntp": 180} if entries is None else entries

    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        for name, degrees in entries.items():
            r.vset().vadd(f"{prefix}vectors", _unit(degrees), name, quantization=QuantizationOptions.NOQUANT)
            r.hset(f"{prefix}answers", name, f"the answer about {name}")
        return (f"{prefix}vectors", f"{prefix}answers", _unit(angle), threshold)

    return setup


# cos 25 degrees = 0.906: distance 0.094 (similarity 0.953); cos 30 degrees = 0.866: distance 0.134.
EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="similar questions within a subject",
        reference=similar_in_subject,
        requires=("VADD",),
        cases=(
            Case("history questions near a", _plane("a", "history", 2)),
            Case("biology questions near c", _plane("c", "biology", 3)),
            Case("more asked for than there are", _plane("d", "history", 10)),
            Case("a subject nobody has", _plane("a", "physics", 3)),
        ),
        hint="VSIM takes ELE name, FILTER '.subject == \"...\"' and COUNT; the element itself is its own nearest.",
        wrong=(similar_in_subject_unfiltered, similar_in_subject_includes_itself,
               similar_in_subject_filters_afterwards, similar_in_subject_drops_the_first),
    ),
    Spec(
        number=2,
        title="a cached answer within a threshold",
        reference=cached_answer,
        requires=("VADD",),
        cases=(
            Case("a near question, a loose threshold", _cache(25, 0.2)),
            Case("a near question, a strict threshold", _cache(25, 0.05)),
            Case("a question 30 degrees away, threshold 0.1", _cache(150, 0.1)),
            Case("a question 30 degrees away, threshold 0.2", _cache(150, 0.2)),
            Case("an empty cache", _cache(0, 0.5, entries={})),
        ),
        hint="VSIM ... WITHSCORES COUNT 1 gives a similarity (1 + cos) / 2; the distance is 2 * (1 - similarity).",
        wrong=(cached_answer_one_minus_score, cached_answer_score_as_distance, cached_answer_no_threshold),
    ),
)
