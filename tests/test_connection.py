"""connect(): clear one-line errors within the connect timeout, never a hang; after a lost reply,
reads are sent again and writes never (a real proxy drops the reply after the server ran the command)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from redai_lab import connect
from redai_lab.errors import LabConnectionError, LabError
from redai_lab.lab.connection import (
    INTROSPECTION,
    REPEATABLE,
    LabRedis,
    OutcomeUnknownError,
    OutcomeUnknownTimeoutError,
    command_name,
    is_repeatable,
)
from redai_lab.lab.faults import ReplyCutter
from redai_lab.lab.server import start_local
from redai_lab.patterns.pubsub import Listener


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
    # redis-py's connections repeat nothing; the client decides what is safe to send again.
    assert kwargs["retry"].get_retries() == 0
    assert client.connection_pool.get_connection().retry.get_retries() == 0
    assert isinstance(client, LabRedis) and client.retries == 2
    assert client.connection_pool.max_connections == 50


# --- what is repeated after a lost reply (a proxy drops the reply, the server ran the command) ---


@pytest.fixture
def cutter(redis_url: str) -> Iterator[ReplyCutter]:
    with ReplyCutter(redis_url) as proxy:
        yield proxy


def test_redis_py_default_client_applies_a_write_twice_after_a_lost_reply(r: redis.Redis, cutter: ReplyCutter) -> None:
    # The premise: redis.Redis(host=..., port=...) retries every command (10 times in redis-py 8.1).
    db = int(urlsplit(cutter.url).path[1:])
    default = redis.Redis(host="127.0.0.1", port=cutter.port, db=db, decode_responses=True)
    default.ping()
    cutter.cut_next_reply()
    assert default.incr("hits") == 2  # one INCR asked for, two applied
    assert (cutter.cuts, r.get("hits")) == (1, "2")
    default.close()


def test_a_write_whose_reply_was_lost_is_not_repeated_and_says_so_in_one_line(
    r: redis.Redis, cutter: ReplyCutter
) -> None:
    client = connect(cutter.url)
    client.ping()
    cutter.cut_next_reply()
    with pytest.raises(OutcomeUnknownError) as error:
        client.incr("hits")
    assert r.get("hits") == "1"  # applied once, and not again
    message = str(error.value)
    assert message.startswith("INCRBY was sent, then the connection was lost before the reply")
    assert "may or may not have been applied" in message and "\n" not in message
    assert isinstance(error.value, redis.ConnectionError) and isinstance(error.value, LabError)
    assert client.incr("hits") == 2  # the client works on: a new connection


def test_a_read_whose_reply_was_lost_is_sent_again(r: redis.Redis, cutter: ReplyCutter) -> None:
    r.set("greeting", "hello")
    client = connect(cutter.url)
    client.ping()
    cutter.cut_next_reply()
    assert client.get("greeting") == "hello"
    cutter.cut_next_reply()
    assert client.config_get("databases") == {"databases": r.config_get("databases")["databases"]}
    assert cutter.cuts == 2


@pytest.mark.parametrize("transaction", [False, True])
def test_a_pipeline_with_a_write_is_not_repeated(r: redis.Redis, cutter: ReplyCutter, transaction: bool) -> None:
    client = connect(cutter.url)
    client.ping()
    cutter.cut_next_reply()
    pipe = client.pipeline(transaction=transaction)
    pipe.get("hits")
    pipe.incr("hits")
    pipe.incr("hits")
    with pytest.raises(OutcomeUnknownError) as error:
        pipe.execute()
    assert r.get("hits") == "2"
    kind = "MULTI/EXEC transaction" if transaction else "pipeline"
    assert str(error.value).startswith(f"A {kind} of 3 commands (GET, INCRBY, INCRBY) was sent")
    assert ("applied entirely or not at all" in str(error.value)) is transaction
    assert pipe.execute() == []  # emptied, as redis-py leaves a pipeline after execute()


def test_an_explicit_multi_is_reported_as_a_transaction(r: redis.Redis, cutter: ReplyCutter) -> None:
    client = connect(cutter.url)
    client.ping()
    cutter.cut_next_reply()
    pipe = client.pipeline(transaction=False)
    pipe.multi()
    pipe.incr("hits")
    with pytest.raises(OutcomeUnknownError, match=r"^A MULTI/EXEC transaction of 1 commands \(INCRBY\).*entirely"):
        pipe.execute()
    assert r.get("hits") == "1"


@pytest.mark.parametrize("transaction", [False, True])
def test_a_pipeline_of_reads_is_sent_again(r: redis.Redis, cutter: ReplyCutter, transaction: bool) -> None:
    r.rpush("jobs", "a", "b")
    client = connect(cutter.url)
    client.ping()
    cutter.cut_next_reply()
    pipe = client.pipeline(transaction=transaction)
    pipe.llen("jobs")
    pipe.lrange("jobs", 0, -1)
    assert pipe.execute() == [2, ["a", "b"]]
    assert cutter.cuts == 1


def test_a_watched_transaction_cut_at_exec_is_not_run_again(r: redis.Redis, cutter: ReplyCutter) -> None:
    # redis-py turns the lost EXEC reply into WatchError, and Redis.transaction() reruns the function.
    client = connect(cutter.url)
    client.ping()
    runs = []

    def add_one(pipe: redis.client.Pipeline) -> None:
        runs.append(int(pipe.get("hits") or 0))
        pipe.multi()
        pipe.set("hits", runs[-1] + 1)

    cutter.cut_next_reply(skip=2)  # WATCH and GET answered; the MULTI ... EXEC reply lost
    with pytest.raises(OutcomeUnknownError, match="MULTI/EXEC transaction of 1 commands \\(SET\\)"):
        client.transaction(add_one, "hits")
    assert (runs, r.get("hits")) == ([0], "1")


def test_a_command_that_was_never_sent_is_retried_even_a_write(r: redis.Redis, cutter: ReplyCutter) -> None:
    client = connect(cutter.url)
    cutter.refuse_next_connections(2)  # a server restarting: the pool cannot connect, twice
    assert client.incr("hits") == 1
    assert cutter.refused == 2
    cutter.refuse_next_connections(3)  # more than the 2 retries
    client.connection_pool.disconnect()
    with pytest.raises(redis.ConnectionError) as error:
        client.incr("hits")
    assert not isinstance(error.value, OutcomeUnknownError)  # known: not applied
    assert r.get("hits") == "1"
    cutter.refuse_next_connections(1)
    with pytest.raises(redis.ConnectionError):
        connect(cutter.url, retries=0, check=False).get("hits")  # retries=0: not even a read
    assert cutter.refused == 6


def test_a_blocking_pop_that_timed_out_is_not_repeated(r: redis.Redis, redis_url: str) -> None:
    impatient = connect(redis_url, socket_timeout=0.3)
    with pytest.raises(OutcomeUnknownTimeoutError) as error:
        impatient.brpop("queue:tasks", timeout=1)
    assert isinstance(error.value, redis.TimeoutError)  # still what redis-py users catch
    assert str(error.value).startswith("BRPOP was sent")
    impatient.close()


def test_command_names_as_command_info_knows_them() -> None:
    assert command_name(("CONFIG GET", "maxmemory")) == "CONFIG GET"
    assert command_name(("OBJECT", "encoding", "key")) == "OBJECT ENCODING"
    assert command_name((b"get", "key")) == "GET"
    assert is_repeatable(("XINFO STREAM", "s")) and is_repeatable(("EVALSHA_RO", "sha", 0))
    assert not any(is_repeatable((name,)) for name in ("INCR", "SET", "EVALSHA", "BLMOVE", "LREM", "XREADGROUP"))


def test_repeatable_commands_change_no_data_says_the_server(r: redis.Redis) -> None:
    names = sorted(REPEATABLE)
    connection = r.connection_pool.get_connection()
    try:  # raw replies: redis-py's parser of COMMAND INFO fails on a command the server lacks
        connection.send_command("COMMAND", "INFO", *(name.lower().replace(" ", "|") for name in names))
        infos = connection.read_response()
    finally:
        r.connection_pool.release(connection)
    checked = 0
    for name, info in zip(names, infos):
        if info is None:  # a module or a newer server's command
            continue
        flags = {flag.decode() if isinstance(flag, bytes) else flag for flag in info[2]}
        assert "write" not in flags, name
        assert name in INTROSPECTION or "readonly" in flags, name
        checked += 1
    assert checked >= 100


def test_a_subscription_survives_a_killed_connection_and_gives_back_a_connection_that_repeats_nothing(
    r: redis.Redis, redis_url: str
) -> None:
    client = connect(redis_url, client_name="subscriber", max_connections=1)
    with Listener(client, channels=["news"]) as listener:
        (subscriber,) = [c["id"] for c in r.client_list() if c.get("name") == "subscriber"]
        assert r.client_kill_filter(_id=subscriber) == 1
        deadline = time.monotonic() + 10
        while r.publish("news", "back") == 0:  # until the listener has subscribed again
            assert time.monotonic() < deadline, "the subscription did not come back within 10 s"
            time.sleep(0.02)
        assert [m.data for m in listener.wait_for(1)] == ["back"]
    pooled = client.connection_pool.get_connection()  # the subscription's connection, given back
    assert pooled.retry.get_retries() == 0
    client.connection_pool.release(pooled)


# --- TLS expected, plain server ------------------------------------------------------------------


def test_rediss_to_a_plain_server_says_tls_was_expected(lab_server) -> None:
    url = lab_server.url.replace("redis://", "rediss://:secret@")
    started = time.monotonic()
    with pytest.raises(LabConnectionError) as error:
        connect(url, connect_timeout=1.0)
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert "does not speak TLS" in message and "rediss://" in message
    assert "Use redis://:***@127.0.0.1:" in message and "secret" not in message and "\n" not in message
    assert "firewall" not in message


def test_rediss_to_a_silent_port_says_tls_may_not_be_spoken() -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(LabConnectionError) as error:
            connect(f"rediss://127.0.0.1:{silent.getsockname()[1]}/0", connect_timeout=0.5)
    assert "did not complete a TLS handshake" in str(error.value)
    assert "may not speak it" in str(error.value)



def test_a_server_that_drops_connections_is_not_taken_for_a_tls_one(cutter: ReplyCutter) -> None:
    cutter.refuse_next_connections(2)
    with pytest.raises(LabConnectionError) as error:
        connect(cutter.url, connect_timeout=1.0)
    assert str(error.value).startswith("Cannot reach Redis at redis://127.0.0.1:")
    assert "TLS" not in str(error.value)
    assert cutter.refused == 2  # the PING, then the TLS handshake that did not happen

DEBIAN_REDIS = "/usr/bin/redis-check-rdb"  # Debian's redis-server, built with TLS (see redai_lab.lab.server)


@pytest.mark.skipif(not (os.path.exists(DEBIAN_REDIS) and shutil.which("openssl")),
                    reason="needs Debian's redis-server (redis-tools) and openssl for a TLS server")
def test_redis_url_to_a_tls_server_says_use_rediss(tmp_path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    port = _closed_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", str(tmp_path / "cert.pem"),
         "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "cert.pem"),
         "--tls-auth-clients", "no"],
        executable=DEBIAN_REDIS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        tls_url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
        deadline = time.monotonic() + 15
        while True:
            try:
                assert redis.Redis.from_url(tls_url).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the TLS server did not start within 15 s"
                time.sleep(0.05)
        with pytest.raises(LabConnectionError) as error:
            connect(f"redis://:secret@127.0.0.1:{port}/0", connect_timeout=1.0)
        message = str(error.value)
        assert "speaks TLS" in message and f"Use rediss://:***@127.0.0.1:{port}/0 instead." in message
        assert "secret" not in message and "\n" not in message
        assert connect(tls_url).ping()
    finally:
        server.kill()
        server.wait(10)
