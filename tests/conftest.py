"""Fixtures for the unit and concurrency tests: a clean database on the session's server
(``lab_server`` itself comes from the repository's root conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from redai_lab.lesson import Lesson, start_lesson
from redai_lab.roundtrips import RoundTripCounter
from redai_lab.server import RedisServer


@pytest.fixture
def redis_docs(lab_server: RedisServer) -> None:
    """Skip on Valkey: the handbook's version table holds Redis's versions, and Valkey's COMMAND
    DOCS give Valkey's own (HEXPIRE "since 9.0.0") and mark fewer commands deprecated."""
    if lab_server.product.startswith("Valkey"):
        pytest.skip("Valkey's COMMAND DOCS give Valkey versions, not Redis's")


@pytest.fixture
def lesson(lab_server: RedisServer) -> Iterator[Lesson]:
    """The tests' database (the server's last one), empty before and after each test."""
    lesson = start_lesson("tests", server=lab_server)
    yield lesson
    lesson.finish()
    lesson.client.close()


@pytest.fixture
def r(lesson: Lesson) -> redis.Redis:
    """A client (decode_responses=True) on the tests' empty database."""
    return lesson.client


@pytest.fixture
def redis_url(lesson: Lesson) -> str:
    """The URL of the tests' empty database, for threads and subprocesses."""
    return lesson.url


@pytest.fixture
def round_trips() -> RoundTripCounter:
    """A counter of round trips; ``round_trips.client(redis_url)`` makes a counted client."""
    return RoundTripCounter()
