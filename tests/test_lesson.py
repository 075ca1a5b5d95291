"""The isolation scheme: one database per lesson, emptied on throwaway servers, never foreign data.

A "foreign" server here is a real server this test started but hands to the lab as one the lab
did not start (``throwaway=False``, as ``REDIS_URL`` gives it). ``flushes()`` reads the server's
own count of FLUSHDB and FLUSHALL calls (INFO commandstats): a test that says no flush reached
the user's data checks that count as well as the data.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from redai_lab.errors import RefusedToFlushError
from redai_lab.lab import lesson as lab_lesson
from redai_lab.lab.connection import database_url
from redai_lab.lab.lesson import ALLOW_FLUSH_ENV, CliOptions, redis_cli, start_lesson
from redai_lab.lab.server import LAB_URL_ENV, USER_URL_ENV, RedisServer, start_local


@pytest.fixture
def foreign_server(monkeypatch):
    """A server the lab did not start, as if given by REDIS_URL."""
    monkeypatch.delenv(ALLOW_FLUSH_ENV, raising=False)
    with start_local(modules=[]) as real:
        yield RedisServer(url=real.url, kind="external", throwaway=False, version=real.version)


def owner(server: RedisServer, db: int) -> redis.Redis:
    """The user's own client on database ``db``."""
    return redis.Redis.from_url(database_url(server.url, db), decode_responses=True)


def flushes(server: RedisServer) -> int:
    """FLUSHDB and FLUSHALL calls the server has run since it started."""
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("flushdb", "flushall"))


def holds(server: RedisServer) -> list[str]:
    """The channels of every live hold on the server."""
    return sorted(redis.Redis.from_url(server.url, decode_responses=True).pubsub_channels("redai-lab:claim:*"))


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


# --- throwaway servers ----------------------------------------------------------------------


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


def test_a_throwaway_server_gets_no_hold_and_no_marker(lab_server) -> None:
    """What lessons print about clients, channels and keys is the same as without holds."""
    names_before = {c["name"] for c in redis.Redis.from_url(lab_server.url, decode_responses=True).client_list()}
    lesson = start_lesson("10_no_hold", server=lab_server)
    try:
        clients = redis.Redis.from_url(lab_server.url, decode_responses=True).client_list()
        assert lesson.hold is None and holds(lab_server) == []
        assert {c["name"] for c in clients} == names_before
        assert lesson.client.dbsize() == 0
    finally:
        lesson.finish()


# --- servers the lab did not start: what is there at start ----------------------------------


def test_foreign_data_is_never_flushed(foreign_server) -> None:
    owner(foreign_server, 3).set("precious", "the user's data")
    with pytest.raises(RefusedToFlushError) as refused:
        start_lesson("03_hashes", server=foreign_server)
    assert one_line(refused).startswith(
        f"Database 3 ({database_url(foreign_server.url, 3)}) holds 1 key the lab cannot tell from yours "
        "(for example 'precious'): lesson 03_hashes needs it empty"
    )
    assert f"{ALLOW_FLUSH_ENV}=1" in str(refused.value)
    assert owner(foreign_server, 3).get("precious") == "the user's data"
    assert flushes(foreign_server) == 0 and holds(foreign_server) == []


@pytest.mark.parametrize("value", ["1", "yes", "true", "on", "YES", " True ", "On"])
def test_foreign_flush_needs_an_explicit_yes(foreign_server, monkeypatch, value) -> None:
    owner(foreign_server, 3).set("scratch", "the user agreed to lose this")
    monkeypatch.setenv(ALLOW_FLUSH_ENV, value)
    lesson = start_lesson("03_hashes", server=foreign_server)
    assert lesson.client.dbsize() == 0 and flushes(foreign_server) == 0  # emptied key by key, never FLUSHDB
    lesson.finish()


@pytest.mark.parametrize("value", ["", "0", "no", "false", "off", "NO", " False ", "Off"])
def test_every_no_value_refuses(foreign_server, monkeypatch, value) -> None:
    owner(foreign_server, 3).set("precious", "kept")
    monkeypatch.setenv(ALLOW_FLUSH_ENV, value)
    with pytest.raises(RefusedToFlushError, match="holds 1 key the lab cannot tell from yours"):
        start_lesson("03_hashes", server=foreign_server)
    assert owner(foreign_server, 3).get("precious") == "kept" and flushes(foreign_server) == 0


@pytest.mark.parametrize("value", ["maybe", "2", "y", "yes please", "nope"])
def test_an_unrecognised_allow_flush_value_is_one_line(foreign_server, monkeypatch, value) -> None:
    owner(foreign_server, 3).set("precious", "kept")
    monkeypatch.setenv(ALLOW_FLUSH_ENV, value)
    with pytest.raises(RefusedToFlushError) as refused:
        start_lesson("03_hashes", server=foreign_server)
    assert one_line(refused) == (
        f"{ALLOW_FLUSH_ENV}={value!r} is neither yes nor no: set it to 1, yes, true, on to let the lab empty a "
        "database of a server it did not start, or unset it (or 0, no, false, off)."
    )
    assert owner(foreign_server, 3).get("precious") == "kept" and flushes(foreign_server) == 0


def test_only_the_labs_own_keys_are_removed_and_without_a_flush(foreign_server) -> None:
    """Leftovers under redai-lab: (a killed benchmark's) go key by key; a key of the user's
    among them makes the whole database the user's."""
    user = owner(foreign_server, 4)
    user.mset({f"redai-lab:bench:scan:{i}": "x" for i in range(2500)})
    lesson = start_lesson("04_lists", server=foreign_server)
    assert lesson.client.dbsize() == 0 and flushes(foreign_server) == 0
    lesson.finish()
    user.mset({"redai-lab:bench:probe": "x", "bench:mine": "the user's, not under the lab's prefix"})
    with pytest.raises(RefusedToFlushError, match=r"holds 2 keys .*\(for example 'bench:mine'\)"):
        start_lesson("04_lists", server=foreign_server)
    assert sorted(user.keys("*")) == ["bench:mine", "redai-lab:bench:probe"]
    assert flushes(foreign_server) == 0  # the lab empties key by key, never with FLUSHDB


def test_hostile_key_names_are_quoted_on_one_line(foreign_server) -> None:
    user = redis.Redis.from_url(database_url(foreign_server.url, 5))
    user.set(b"\xff\xfe binary", 1)
    user.set("line\nbreak" + "x" * 100, 1)
    with pytest.raises(RefusedToFlushError) as refused:
        start_lesson("05_sets", server=foreign_server)
    message = one_line(refused)
    assert "holds 2 keys" in message and "'line\\nbreak" in message and "...'" in message
    assert user.dbsize() == 2


# --- servers the lab did not start: the hold ------------------------------------------------


LESSON_SCRIPT = """
import sys
from redai_lab import start_lesson
lesson = start_lesson(sys.argv[1])
lesson.client.sadd("tags", "redis")
print("started", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def lesson_process(server: RedisServer, name: str) -> subprocess.Popen[str]:
    """A real process running lesson ``name`` on ``server`` as the user's REDIS_URL, until killed."""
    env = {key: value for key, value in os.environ.items() if key not in (LAB_URL_ENV, ALLOW_FLUSH_ENV)}
    env[USER_URL_ENV] = server.url
    return subprocess.Popen([sys.executable, "-c", LESSON_SCRIPT, name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_lesson_killed_mid_way_leaves_no_hold_and_the_users_data_survives(foreign_server) -> None:
    process = lesson_process(foreign_server, "05_sets")
    try:
        assert process.stdout is not None and process.stdout.readline() == "started\n", process.stderr.read()
        [channel] = holds(foreign_server)
        assert channel.startswith(f"redai-lab:claim:db5:05_sets:{process.pid}:")
        with pytest.raises(RefusedToFlushError) as refused:  # a live hold: another process's lesson
            start_lesson("05_sets", server=foreign_server)
        assert one_line(refused) == (
            f"Database 5 ({database_url(foreign_server.url, 5)}) is held by lesson 05_sets in another redai-lab "
            f"process (pid {process.pid}): finish or stop that lesson first (lesson.finish(), or restart its "
            "kernel), then start lesson 05_sets again."
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert wait_until(lambda: holds(foreign_server) == [])  # the hold died with the process
    user = owner(foreign_server, 5)
    user.set("precious", "written after the lesson died")
    with pytest.raises(RefusedToFlushError) as refused:
        start_lesson("05_sets", server=foreign_server)
    assert "holds 2 keys the lab cannot tell from yours" in one_line(refused)
    assert user.get("precious") == "written after the lesson died" and user.smembers("tags") == {"redis"}
    assert flushes(foreign_server) == 0 and holds(foreign_server) == []


def test_a_finished_lesson_no_longer_owns_its_foreign_database(foreign_server) -> None:
    lesson = start_lesson("04_lists", server=foreign_server)
    lesson.client.rpush("queue", "job")
    assert lesson.finish() == 1 and holds(foreign_server) == []
    owner(foreign_server, 4).set("precious", "written after the lesson, by the user")
    with pytest.raises(RefusedToFlushError):
        start_lesson("04_lists", server=foreign_server)
    assert owner(foreign_server, 4).get("precious") == "written after the lesson, by the user"
    with pytest.raises(RefusedToFlushError, match=r"no longer holds database 4 .* because it was released, so"):
        lesson.finish()  # twice: the hold is gone, so nothing is emptied
    assert owner(foreign_server, 4).get("precious") == "written after the lesson, by the user"


def test_a_lesson_started_again_in_its_process_takes_its_database_over(foreign_server) -> None:
    """A notebook's first cell run twice: the database is this process's own, and emptied."""
    first = start_lesson("05_sets", server=foreign_server)
    first.client.sadd("tags", "redis")
    rerun = start_lesson("05_sets", server=foreign_server)
    assert rerun.client.dbsize() == 0 and len(holds(foreign_server)) == 1
    rerun.client.set("k", "v")
    with pytest.raises(RefusedToFlushError, match="was started again in this process and took the database over"):
        first.finish()
    assert rerun.client.get("k") == "v"
    assert rerun.finish() == 1


def test_finish_empties_only_while_the_hold_is_live(foreign_server) -> None:
    lesson = start_lesson("06_sorted_sets", server=foreign_server)
    lesson.client.zadd("board", {"alice": 1})
    admin = redis.Redis.from_url(foreign_server.url, decode_responses=True)
    [hold] = [c for c in admin.client_list() if c["name"].startswith("redai-lab:claim:db6:")]
    admin.client_kill_filter(_id=hold["id"])  # an admin's CLIENT KILL, or a server restart
    owner(foreign_server, 6).set("precious", "the user's, written once the hold was gone")
    with pytest.raises(RefusedToFlushError) as refused:
        lesson.finish()
    assert one_line(refused).startswith(
        f"Lesson 06_sorted_sets no longer holds database 6 ({database_url(foreign_server.url, 6)}) because its "
        "connection was closed (Connection closed by server), so the lab leaves its keys there:"
    )
    assert owner(foreign_server, 6).get("precious") is not None and flushes(foreign_server) == 0


def test_the_hold_outlives_the_servers_idle_timeout(foreign_server) -> None:
    """A notebook left open is idle; managed servers close idle connections (``timeout``), but
    not subscribed ones."""
    redis.Redis.from_url(foreign_server.url).config_set("timeout", 1)
    lesson = start_lesson("08_streams", server=foreign_server)
    lesson.client.xadd("events", {"n": 1})
    lesson.client.close()
    time.sleep(2.5)  # > timeout, and the server checks idle clients several times a second
    assert lesson.finish() == 1


def test_two_holds_that_both_subscribed_before_checking_both_refuse(foreign_server) -> None:
    """Each start subscribes, then looks: whatever the interleaving, at most one goes on."""
    first = lab_lesson.DatabaseClaim(foreign_server.url, 7, "first")
    second = lab_lesson.DatabaseClaim(foreign_server.url, 7, "second")
    try:
        for hold in (first, second):
            with pytest.raises(RefusedToFlushError, match="is held by lesson (first|second) in another"):
                lab_lesson._take_over(hold, "07_race")
    finally:
        first.release()
        second.release()


RACE_SCRIPT = """
import sys
from redai_lab import RefusedToFlushError, start_lesson
sys.stdin.readline()
try:
    start_lesson("07_race")
    print("started", flush=True)
except RefusedToFlushError as refused:
    print("refused", str(refused), flush=True)
sys.stdin.read()
"""


def test_lessons_started_at_once_in_four_processes_let_at_most_one_through(foreign_server) -> None:
    env = {key: value for key, value in os.environ.items() if key not in (LAB_URL_ENV, ALLOW_FLUSH_ENV)}
    env[USER_URL_ENV] = foreign_server.url
    racers = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env) for _ in range(4)]
    try:
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outcomes = [racer.stdout.readline() for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait(timeout=30)
    assert len(outcomes) == 4 and all(o.startswith(("started\n", "refused Database 7")) for o in outcomes), outcomes
    assert sum(o == "started\n" for o in outcomes) <= 1
    assert all("is held by lesson 07_race in another redai-lab process" in o for o in outcomes if o != "started\n")


def test_an_empty_foreign_database_is_held_and_finished(foreign_server) -> None:
    lesson = start_lesson("05_sets", server=foreign_server)
    assert lesson.client.dbsize() == 0 and flushes(foreign_server) == 0  # nothing to flush, none sent
    lesson.client.sadd("tags", "redis")
    owner(foreign_server, 6).set("theirs", "1")
    with pytest.raises(RefusedToFlushError):
        start_lesson("06_sorted_sets", server=foreign_server)
    assert lesson.finish() == 1 and owner(foreign_server, 6).get("theirs") == "1"


# --- URLs -----------------------------------------------------------------------------------


def test_database_url() -> None:
    assert database_url("redis://h:1/0", 5) == "redis://h:1/5"
    assert database_url("redis://h:1", 5) == "redis://h:1/5"
    assert database_url("redis://:pw@h:1/2", 9) == "redis://:pw@h:1/9"
    # redis-py reads ?db= before the path, and a unix:// path is the socket's.
    assert database_url("redis://h:1/0?db=4&protocol=3", 5) == "redis://h:1/5?protocol=3"
    assert database_url("unix:///run/redis.sock?db=2", 5) == "unix:///run/redis.sock?db=5"


def test_a_unix_socket_server_gets_the_lessons_database(tmp_path) -> None:
    from redai_lab.lab.server import find_server_binary

    socket_path = tmp_path / "redis.sock"
    binary = find_server_binary()
    assert binary is not None
    process = subprocess.Popen(
        **binary.popen_args("--port", "0", "--unixsocket", str(socket_path), "--save", "", "--dir", str(tmp_path),
                            "--logfile", str(tmp_path / "redis.log")),
    )
    try:
        url = f"unix://{socket_path}"
        assert wait_until(socket_path.exists), "redis-server did not start"
        lesson = start_lesson("03_hashes", server=RedisServer(url=url, kind="external", throwaway=False))
        lesson.client.set("user:1000", "in db 3")
        assert redis.Redis.from_url(url, db=3).exists("user:1000") == 1
        assert lesson.finish() == 1
    finally:
        process.terminate()
        process.wait()


# --- lesson.cli -----------------------------------------------------------------------------

needs_cli = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")


@needs_cli
def test_redis_cli_mirror_runs_against_the_lessons_database(lab_server, capsys) -> None:
    lesson = start_lesson("08_cli", server=lab_server)
    lesson.client.hset("user:1000", mapping={"name": "John Doe"})
    lesson.cli("HGET user:1000 name")
    assert capsys.readouterr().out == 'redis> HGET user:1000 name\n"John Doe"\n'
    lesson.finish()


@pytest.fixture
def password_server():
    """A throwaway server with a default-user password and an ACL user alice (password pw-alice)."""
    with start_local(modules=[]) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("alice", enabled=True, passwords=["+pw-alice"], keys=["~*"], channels=["&*"],
                          commands=["+@all"])
        admin.config_set("requirepass", "s3cret")
        yield server


@needs_cli
@pytest.mark.parametrize("credentials, query", [(":s3cret@", ""), ("alice:pw-alice@", ""), ("", "?password=s3cret")])
def test_redis_cli_authenticates_as_redis_py_does(password_server, credentials, query) -> None:
    """``redis://:PASSWORD@`` too, which redis-cli 7.0 given ``-u`` sends as the empty user name."""
    url = password_server.url.replace("redis://", f"redis://{credentials}") + query
    lesson = start_lesson("03_auth", server=RedisServer(url=url, kind="lab", throwaway=True))
    lesson.client.set("who", "authenticated")
    assert redis_cli(lesson.url, "GET who") == '"authenticated"'
    assert redis_cli(lesson.url, "ACL WHOAMI") == ('"alice"' if credentials.startswith("alice") else '"default"')
    lesson.finish()


def test_cli_options_follow_redis_py_reading_of_the_url(monkeypatch) -> None:
    monkeypatch.setenv("REDISCLI_AUTH", "from-the-users-shell")
    plain = CliOptions.from_url("redis://h:7/3")
    assert (plain.args, plain.db, plain.password, "REDISCLI_AUTH" in plain.env) == (("-h", "h", "-p", "7"), 3, None, False)
    user = CliOptions.from_url("redis://al%40ce:p%40ss@h/2?password=ignored")
    assert user.args == ("-h", "h", "-p", "6379", "--user", "al@ce") and user.env["REDISCLI_AUTH"] == "p@ss"
    unix = CliOptions.from_url("unix:///run/r.sock?db=4&password=pw")
    assert (unix.args, unix.db, unix.env["REDISCLI_AUTH"]) == (("-s", "/run/r.sock"), 4, "pw")
    tls = CliOptions.from_url("rediss://h:6380/1?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert tls.args == ("-h", "h", "-p", "6380", "--tls", "--sni", "h", "--cacert", "/ca.pem", "--insecure")


def _children_named(name: str) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        comm, ppid = stat[stat.index("(") + 1:stat.rindex(")")], int(stat[stat.rindex(")") + 2:].split()[1])
        if comm == name and ppid == os.getpid():
            children.append(int(entry.name))
    return children


@needs_cli
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to read another process's argv")
def test_the_password_never_shows_in_ps(password_server, capsys) -> None:
    url = password_server.url.replace("redis://", "redis://alice:pw-alice@")
    lesson = start_lesson("03_ps", server=RedisServer(url=url, kind="lab", throwaway=True))
    blocked = threading.Thread(target=lesson.cli, args=("BLPOP jobs 20",))
    blocked.start()
    try:
        assert wait_until(lambda: _children_named("redis-cli"), timeout=20)
        [pid] = _children_named("redis-cli")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(b"pw-alice" in arg for arg in argv), argv  # what `ps` shows every local user
        assert b"REDISCLI_AUTH=pw-alice" in environment  # readable by the same user only
    finally:
        lesson.client.rpush("jobs", "job-1")
        blocked.join(timeout=30)
    assert capsys.readouterr().out == 'redis> BLPOP jobs 20\n1) "jobs"\n2) "job-1"\n'
    lesson.finish()


# -- a machine without the apt tools (no root) ---------------------------------------------------

REPOSITORY = Path(__file__).resolve().parents[1]


def test_missing_tools_name_each_tool_and_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from redai_lab.lab import durability, tls

    monkeypatch.setattr(lab_lesson.shutil, "which", lambda name: None if name == "redis-cli" else f"/bin/{name}")
    assert lab_lesson.missing_tools("01_keys_and_expiry") == ["redis-cli (apt install redis-tools)"]

    def no_compiler() -> Path:
        raise durability.PowerLossUnavailableError("no C compiler")

    monkeypatch.setattr(lab_lesson.shutil, "which", lambda name: f"/bin/{name}")
    monkeypatch.setattr(durability, "powerloss_shim", no_compiler)
    monkeypatch.setattr(tls, "tls_binary", lambda: None)
    assert lab_lesson.missing_tools("01_keys_and_expiry") == []
    assert lab_lesson.missing_tools("23_persistence_and_durability") == [
        "a C compiler for the power-loss shim (apt install gcc)"]
    assert lab_lesson.missing_tools("25_security") == ["a Redis server built with TLS (apt install redis-server)"]


@pytest.mark.timeout(300)
def test_a_lesson_runs_uncompared_where_redis_cli_is_missing(tmp_path: Path) -> None:
    """`./lab test` without root on a machine without redis-tools: the lesson runs every cell, its
    asserts included, says once why its outputs are not compared, and passes."""
    env = {key: value for key, value in os.environ.items()
           if key not in (LAB_URL_ENV, USER_URL_ENV, "REDAI_LAB_SERVER", "PYTEST_ADDOPTS")}
    env["PATH"] = os.path.dirname(sys.executable)  # the virtualenv's tools, none of /usr/bin's
    notebook = REPOSITORY / "notebooks" / "01_keys_and_expiry.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"), str(notebook)],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=280, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert ("lessons run without comparing their outputs, for want of redis-cli (apt install redis-tools); "
            "redis-benchmark (apt install redis-tools): 01_keys_and_expiry") in result.stdout
