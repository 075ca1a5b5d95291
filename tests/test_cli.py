"""`redai-lab server|start|info` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis

from redai_lab import cli
from redai_lab.lab.server import LAB_URL_ENV, USER_URL_ENV, docker_engine_answers, start_container

CLI = [sys.executable, "-m", "redai_lab.cli"]


def _env_without_servers() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(LAB_URL_ENV, None)
    env.pop(USER_URL_ENV, None)
    return env


def _wait_dead(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float = 60) -> re.Match[str]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if match := re.search(pattern, line):
            return match
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no {pattern!r} in output: {''.join(seen)!r}")


def _as_background_job() -> None:
    """What a non-interactive shell does to a job started with `&`: SIGINT ignored, inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("stop_signal", "start_as"),
    [(signal.SIGINT, None), (signal.SIGTERM, None), (signal.SIGINT, _as_background_job)],
    ids=["ctrl-c", "sigterm", "ctrl-c-background-job"],
)
def test_server_command_prints_its_url_and_stops_its_server(stop_signal, start_as) -> None:
    process = subprocess.Popen(
        CLI + ["server"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_env_without_servers(), preexec_fn=start_as,
    )
    url = _read_until(process, rf"^export {LAB_URL_ENV}=(\S+)").group(1)
    client = redis.Redis.from_url(url, decode_responses=True)
    pid, workdir = int(client.info("server")["process_id"]), client.config_get("dir")["dir"]
    process.send_signal(stop_signal)
    assert process.wait(timeout=30) in (0, 128 + stop_signal)
    assert _wait_dead(pid)
    assert not os.path.exists(workdir)


def test_info_describes_the_server(lab_server) -> None:
    env = dict(_env_without_servers(), **{LAB_URL_ENV: lab_server.url})
    result = subprocess.run(CLI + ["info"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0
    assert f"{lab_server.product} (lab, throwaway)" in result.stdout


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(monkeypatch, capsys) -> None:
    """Not only while a command waits for Ctrl-C: between two prints of `server`, mid-benchmark."""
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_info", interrupted)
    assert cli.main(["info"]) == 128 + signal.SIGINT
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_errors_are_one_line_and_exit_2() -> None:
    env = dict(_env_without_servers(), **{USER_URL_ENV: "redis://127.0.0.1:1/0"})
    result = subprocess.run(CLI + ["info"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("redai-lab: Cannot reach Redis at redis://127.0.0.1:1/0")
    assert len(result.stderr.strip().splitlines()) == 1


def test_start_serves_jupyterlab_and_stops_the_server_with_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        CLI + ["start", "--no-browser", f"--port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env_without_servers(),
    )
    try:
        url = _read_until(process, r"^redai-lab: (?:Redis|Valkey) \S+ \(local, [^)]*throwaway\) at (\S+);").group(1)
        redis_pid = int(redis.Redis.from_url(url).info("server")["process_id"])
        lesson_url = _read_until(process, r"^redai-lab: open (\S+)$").group(1)
        assert lesson_url.startswith(f"http://127.0.0.1:{port}/lab/tree/00_getting_started.ipynb?token=")
        token = lesson_url.rsplit("=", 1)[1]
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(lesson_url, timeout=2) as response:
                    assert response.status == 200  # the lesson's page, not the launcher
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        settings = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification"
        with urllib.request.urlopen(f"{settings}?token={token}", timeout=10) as response:
            notification = json.loads(response.read())
        # The lab's overrides.json becomes the default: no "Jupyter news?" pop-up, no update check.
        defaults = {name: spec["default"] for name, spec in notification["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert _wait_dead(redis_pid)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers on this machine")
def test_container_path() -> None:
    with start_container() as server:
        assert server.kind == "container" and server.throwaway
        assert server.version_tuple[:2] == (8, 2)
        for module in ("ReJSON", "bf", "search", "vectorset"):
            assert server.has_module(module)
        assert redis.Redis.from_url(server.url).ping()


def test_bad_arguments_are_one_line_saying_what_to_type() -> None:
    result = subprocess.run(CLI + ["start", "--port", "-5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("redai-lab start: argument --port: '-5' is not a TCP port: give a number from 1 to "
                             "65535 (see `redai-lab start --help`)\n")


def test_a_redis_error_such_as_a_missing_permission_is_one_line(lab_server) -> None:
    admin = redis.Redis.from_url(lab_server.url)
    admin.acl_setuser("redai-lab-test-limited", enabled=True, passwords=["+s3cret"], commands=["+ping"])
    try:
        host, port = lab_server.url.split("//")[1].split("/")[0].split(":")
        url = f"redis://redai-lab-test-limited:s3cret@{host}:{port}/0"
        env = dict(_env_without_servers(), **{USER_URL_ENV: url})
        result = subprocess.run(CLI + ["info"], capture_output=True, text=True, env=env, timeout=60)
    finally:
        admin.acl_deluser("redai-lab-test-limited")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("redai-lab: ") and "has no permissions to run the 'info' command" in result.stderr
    assert "ACL SETUSER" in result.stderr  # what to do
    assert "s3cret" not in result.stderr


def test_a_server_killed_mid_benchmark_is_one_line(tmp_path) -> None:
    from redai_lab.lab.server import start_local

    server = start_local(modules=[])
    watcher = redis.Redis.from_url(server.url)
    before = int(watcher.info("stats")["total_commands_processed"])
    env = dict(_env_without_servers(), **{LAB_URL_ENV: server.url, "TQDM_DISABLE": "1"})
    process = subprocess.Popen(CLI + ["bench", "pipeline", "--quick"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while int(watcher.info("stats")["total_commands_processed"]) < before + 2000:  # measuring: kill now
            assert process.poll() is None and time.monotonic() < deadline, "the benchmark never ran"
            time.sleep(0.005)
        os.kill(int(watcher.info("server")["process_id"]), signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
    assert process.returncode == 2 and len(stderr.strip().splitlines()) == 1, stderr
    # Killed mid-command, or between two: either way one line that says what happened.
    assert stderr.startswith("redai-lab: ") and ("the connection was lost" in stderr or "Cannot reach Redis" in stderr)
