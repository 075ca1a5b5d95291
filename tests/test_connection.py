"""connect(): clear one-line errors within the connect timeout, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from redai_lab import connect
from redai_lab.errors import LabConnectionError
from redai_lab.server import start_local


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_fails_fast_with_what_to_do() -> None:
    started = time.monotonic()
    with pytest.raises(LabConnectionError) as error:
        connect(f"redis://127.0.0.1:{_closed_port()}/0")
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "Connection refused" in message and "./lab" in message and "REDIS_URL" in message
    assert "\n" not in message


def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    import socket

    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(LabConnectionError, match="did not answer in time"):
            connect(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", connect_timeout=1.0)
        assert time.monotonic() - started < 5


def test_the_acceptance_command_prints_a_few_lines_within_five_seconds() -> None:
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0")
    env.pop("REDAI_LAB_REDIS_URL", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "import redai_lab; redai_lab.connect().ping()"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert time.monotonic() - started < 5
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) <= 6
    assert "Cannot reach Redis at redis://127.0.0.1:1/0" in result.stderr


def test_wrong_password_is_a_clear_error_and_hides_the_password(tmp_path) -> None:
    with start_local(modules=[]) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right-password")
        url = server.url.replace("redis://", "redis://:wrong-password@")
        started = time.monotonic()
        with pytest.raises(LabConnectionError) as error:
            connect(url)
        assert time.monotonic() - started < 5
        message = str(error.value)
        assert "refused the credentials" in message and "redis://:PASSWORD@" in message
        assert "wrong-password" not in message
        right = connect(server.url.replace("redis://", "redis://:right-password@"))
        assert right.ping()


def test_missing_password_is_a_clear_error() -> None:
    with start_local(modules=[]) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "pw")
        with pytest.raises(LabConnectionError, match="refused the credentials"):
            connect(server.url)


def test_not_a_redis_url() -> None:
    with pytest.raises(LabConnectionError, match="Not a Redis URL.*Expected redis://"):
        connect("http://localhost:6379")


def test_database_out_of_range(lab_server) -> None:
    with pytest.raises(LabConnectionError, match="fewer databases"):
        connect(lab_server.url, db=10_000)


def test_client_settings(redis_url) -> None:
    client = connect(redis_url)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["decode_responses"] is True
    assert kwargs["socket_timeout"] == 5.0 and kwargs["socket_connect_timeout"] == 2.0
    retry = kwargs["retry"]
    assert retry.get_retries() == 2
    assert client.connection_pool.max_connections == 50
