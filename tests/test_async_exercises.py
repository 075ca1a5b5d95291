"""An ``async def`` exercise answer runs on a ``redis.asyncio`` client that reaches the lesson's
server and database over the lesson client's own transport: TCP, a Unix socket, TLS."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio

from redai_lab.lab.exercises import call
from redai_lab.lab.server import start_local
from redai_lab.lab.tls import make_certificates, start_tls_server, tls_binary


async def write_and_name(r: redis.asyncio.Redis, key: str) -> str:
    await r.set(key, "written by the async answer")
    return type(r).__module__


def test_tcp(r) -> None:
    assert call(write_and_name, r, ["ex:k"]) == "redis.asyncio.client"
    assert r.get("ex:k") == "written by the async answer"


def test_a_unix_socket(tmp_path) -> None:
    socket = tmp_path / "redis.sock"
    with start_local(modules=[], config=["--unixsocket", str(socket), "--unixsocketperm", "700"]):
        r = redis.Redis(unix_socket_path=str(socket), db=3, decode_responses=True)
        assert call(write_and_name, r, ["ex:k"]) == "redis.asyncio.client"
        assert r.get("ex:k") == "written by the async answer"
        r.close()


def test_tls_with_the_lessons_certificates(tmp_path) -> None:
    if tls_binary() is None:
        pytest.skip("no TLS-capable redis-server")
    certificates = make_certificates(tmp_path)
    with start_tls_server(certificates, mutual=True) as server:
        r = redis.Redis.from_url(server.url(ca=certificates.ca, client=certificates.client, db=2),
                                 decode_responses=True)
        assert call(write_and_name, r, ["ex:k"]) == "redis.asyncio.client"
        assert r.get("ex:k") == "written by the async answer"
        r.close()
