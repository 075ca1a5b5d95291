"""redai_lab.lab.monitoring against throwaway servers of its own: on the shared server other tests'
commands would make the exact counts below impossible."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from redai_lab.lab.monitoring import WATCHED_FIELDS, InfoSampler, MonitorDrain, redis_cli_for, watched
from redai_lab.lab.server import RedisServer, start_local


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with start_local(modules=[]) as throwaway:
        yield throwaway


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url, decode_responses=True)
    r.ping()  # connected before anything is counted: the handshake's commands are not the test's
    yield r
    r.close()


def test_watched_reads_the_ten_fields_and_the_hit_ratio(client: redis.Redis) -> None:
    client.config_resetstat()
    assert watched(client.info())["hit_ratio"] is None  # nothing read yet
    client.set("k", "v")
    for key in ("k", "k", "k", "missing"):
        client.get(key)
    values = watched(client.info())
    assert list(values) == [field.name for field in WATCHED_FIELDS] and len(values) == 10
    assert values["hit_ratio"] == 0.75
    assert values["evicted_keys"] == 0 and values["rejected_connections"] == 0
    assert values["rdb_last_bgsave_status"] == "ok"
    assert values["used_memory"] > 0 and values["connected_clients"] == 1


def test_the_sampler_reports_exactly_the_others_commands_and_clients(client: redis.Redis,
                                                                     server: RedisServer) -> None:
    with InfoSampler(client, interval=0.05) as sampler:
        for _ in range(120):
            client.incr("counter")
        time.sleep(0.2)  # several readings while idle
        # A second client that sends nothing (redis-py's handshake differs between servers).
        other = socket.create_connection(("127.0.0.1", urlsplit(server.url).port))
        for _ in range(80):
            client.incr("counter")
        time.sleep(0.12)
    first, last = sampler.samples[0], sampler.samples[-1]
    assert last.commands - first.commands == 200
    assert first.clients == 1 and last.clients == 2
    rows = sampler.rates()
    assert len(rows) == len(sampler.samples) - 1 >= 6
    assert [row["elapsed_s"] for row in rows] == sorted(row["elapsed_s"] for row in rows)
    assert min(row["ops_per_s"] for row in rows) == 0  # the idle readings
    assert max(row["ops_per_s"] for row in rows) > 0
    other.close()


def test_the_sampler_alone_reports_no_commands_and_no_clients(server: RedisServer) -> None:
    idle = redis.Redis.from_url(server.url)
    with InfoSampler(idle, interval=0.05) as sampler:
        time.sleep(0.3)
    assert len(sampler.samples) >= 4
    assert {row["ops_per_s"] for row in sampler.rates()} == {0.0}
    assert {sample.clients for sample in sampler.samples} == {0}


def test_a_server_that_goes_away_ends_the_sampling_with_its_error() -> None:
    throwaway = start_local(modules=[])
    r = redis.Redis.from_url(throwaway.url, retry=None, socket_timeout=2)
    with pytest.raises(redis.ConnectionError), InfoSampler(r, interval=0.05):
        throwaway.stop()
        time.sleep(0.3)


def test_the_drain_counts_every_command_after_monitor_started(client: redis.Redis) -> None:
    client.set("before", 1)  # before MONITOR: not seen
    with MonitorDrain(client) as drain:
        pipe = client.pipeline(transaction=False)
        for i in range(50):
            pipe.set(f"k:{i}", i)
        pipe.execute()
        assert drain.wait_for(50, timeout=5)
        assert not drain.wait_for(51, timeout=0.1)  # a 51st line would have arrived by now
        assert drain.lines == 50
    assert client.info("clients")["connected_clients"] == 1  # the monitor's connection is closed


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
def test_redis_cli_for_stops_a_live_view_and_keeps_its_lines(server: RedisServer) -> None:
    began = time.monotonic()
    lines = redis_cli_for(server.url, ["--stat", "-i", "0.1"], 0.6)
    assert time.monotonic() - began < 5
    assert lines is not None and "data" in lines[0] and "keys" in lines[1]
    assert len(lines) >= 4  # the header's two lines, then a line per interval
    latency = redis_cli_for(server.url, ["--latency", "-i", "0.1"], 0.5)
    assert latency and all(line.startswith("min: ") and line.endswith(" samples)") for line in latency)


def test_redis_cli_for_without_redis_cli_is_none(server: RedisServer, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert redis_cli_for(server.url, ["--stat"], 0.1) is None


def test_everything_reaches_a_server_that_needs_a_password() -> None:
    with start_local(modules=[]) as secured:
        redis.Redis.from_url(secured.url).config_set("requirepass", "s3cret")
        url = secured.url.replace("redis://", "redis://:s3cret@")
        r = redis.Redis.from_url(url)
        r.ping()
        with MonitorDrain(r) as drain:
            with InfoSampler(r, interval=0.05) as sampler:
                r.set("k", "v")
            assert drain.wait_for(1, timeout=5)
        assert sampler.samples[-1].commands - sampler.samples[0].commands == 1
        assert sampler.samples[-1].clients == 2  # r and the monitor
        if shutil.which("redis-cli"):
            lines = redis_cli_for(url, ["--stat", "-i", "0.1"], 0.4)
            assert lines is not None and "keys" in lines[1] and not any("NOAUTH" in line for line in lines)
        r.close()
