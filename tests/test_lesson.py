"""The isolation scheme: one database per lesson, emptied on throwaway servers, never foreign data."""

from __future__ import annotations

import pytest
import redis

from redai_lab.connection import database_url
from redai_lab.errors import RefusedToFlushError
from redai_lab.lesson import ALLOW_FLUSH_ENV, start_lesson
from redai_lab.server import RedisServer, start_local


@pytest.fixture
def foreign_server(tmp_path, monkeypatch):
    """A server the lab did not start, as if given by REDIS_URL; claims kept in tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(ALLOW_FLUSH_ENV, raising=False)
    with start_local(modules=[]) as real:
        yield RedisServer(url=real.url, kind="external", throwaway=False, version=real.version)


def test_lesson_number_picks_the_database(lab_server) -> None:
    lesson = start_lesson("07_json", server=lab_server)
    assert lesson.db == 7
    assert lesson.url.endswith("/7")
    assert lesson.client.connection_pool.connection_kwargs["db"] == 7
    lesson.client.set("user:1000", "natural key names")
    assert redis.Redis.from_url(lesson.url).exists("user:1000") == 1
    assert lesson.finish() == 1
    assert lesson.client.dbsize() == 0


def test_an_advanced_part_has_its_own_database(lab_server) -> None:
    core = start_lesson("13_caching", server=lab_server)
    core.client.set("user:1000", "core part")
    advanced = start_lesson("13b_caching_advanced", server=lab_server)
    assert (core.db, advanced.db) == (13, 45)
    assert core.client.get("user:1000") == "core part"  # starting the advanced part emptied only its own
    assert core.finish() == 1 and advanced.finish() == 0


def test_rerun_starts_from_a_clean_slate(lab_server) -> None:
    first = start_lesson("09_rerun", server=lab_server)
    first.client.set("leftover", "from a crashed run")
    second = start_lesson("09_rerun", server=lab_server)
    assert second.client.dbsize() == 0


def test_lessons_do_not_see_each_other(lab_server) -> None:
    one, two = start_lesson("11_one", server=lab_server), start_lesson("12_two", server=lab_server)
    one.client.set("k", "one")
    assert two.client.get("k") is None
    one.finish()


def test_foreign_data_is_never_flushed(foreign_server) -> None:
    owner = redis.Redis.from_url(database_url(foreign_server.url, 3), decode_responses=True)
    owner.set("precious", "the user's data")
    with pytest.raises(RefusedToFlushError, match="holds 1 keys that redai-lab did not create"):
        start_lesson("03_hashes", server=foreign_server)
    assert owner.get("precious") == "the user's data"


def test_foreign_flush_needs_an_explicit_opt_in(foreign_server, monkeypatch) -> None:
    owner = redis.Redis.from_url(database_url(foreign_server.url, 3))
    owner.set("scratch", "the user agreed to lose this")
    monkeypatch.setenv(ALLOW_FLUSH_ENV, "1")
    assert start_lesson("03_hashes", server=foreign_server).client.dbsize() == 0


def test_an_empty_foreign_database_is_claimed_and_can_be_rerun(foreign_server) -> None:
    lesson = start_lesson("05_sets", server=foreign_server)
    lesson.client.sadd("tags", "redis")  # then the notebook "crashes" before finish()
    rerun = start_lesson("05_sets", server=foreign_server)
    assert rerun.client.dbsize() == 0
    other = redis.Redis.from_url(database_url(foreign_server.url, 6))
    other.set("theirs", "1")
    with pytest.raises(RefusedToFlushError):
        start_lesson("06_sorted_sets", server=foreign_server)


def test_a_finished_lesson_no_longer_owns_its_foreign_database(foreign_server) -> None:
    lesson = start_lesson("04_lists", server=foreign_server)
    lesson.client.rpush("queue", "job")
    lesson.finish()
    owner = redis.Redis.from_url(database_url(foreign_server.url, 4), decode_responses=True)
    owner.set("precious", "written after the lesson, by the user")
    with pytest.raises(RefusedToFlushError):
        start_lesson("04_lists", server=foreign_server)
    assert owner.get("precious") == "written after the lesson, by the user"


def test_database_url() -> None:
    assert database_url("redis://h:1/0", 5) == "redis://h:1/5"
    assert database_url("redis://h:1", 5) == "redis://h:1/5"
    assert database_url("redis://:pw@h:1/2", 9) == "redis://:pw@h:1/9"
    # redis-py reads ?db= before the path, and a unix:// path is the socket's.
    assert database_url("redis://h:1/0?db=4&protocol=3", 5) == "redis://h:1/5?protocol=3"
    assert database_url("unix:///run/redis.sock?db=2", 5) == "unix:///run/redis.sock?db=5"


def test_a_unix_socket_server_gets_the_lessons_database(tmp_path, monkeypatch) -> None:
    import subprocess
    import time

    from redai_lab.server import find_server_binary

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    socket_path = tmp_path / "redis.sock"
    binary = find_server_binary()
    assert binary is not None
    process = subprocess.Popen(
        **binary.popen_args("--port", "0", "--unixsocket", str(socket_path), "--save", "", "--dir", str(tmp_path),
                            "--logfile", str(tmp_path / "redis.log")),
    )
    try:
        url = f"unix://{socket_path}"
        while not socket_path.exists():
            assert process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        lesson = start_lesson("03_hashes", server=RedisServer(url=url, kind="external", throwaway=False))
        lesson.client.set("user:1000", "in db 3")
        assert redis.Redis.from_url(url, db=3).exists("user:1000") == 1
        assert lesson.finish() == 1
    finally:
        process.terminate()
        process.wait()


def test_redis_cli_mirror_runs_against_the_lessons_database(lab_server, capsys) -> None:
    import shutil

    lesson = start_lesson("08_cli", server=lab_server)
    lesson.client.hset("user:1000", mapping={"name": "John Doe"})
    lesson.cli("HGET user:1000 name")
    if shutil.which("redis-cli"):
        assert capsys.readouterr().out == 'redis> HGET user:1000 name\n"John Doe"\n'
    lesson.finish()
