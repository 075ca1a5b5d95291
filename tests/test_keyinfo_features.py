from __future__ import annotations

import pytest

from redai_lab.errors import MissingFeatureError
from redai_lab.lab.features import ensure, has_command, require, server_version
from redai_lab.lab.keyinfo import key_info, keys_table


def test_key_info_of_each_type(r) -> None:
    r.set("s", "12345")
    r.rpush("l", "a", "b")
    r.hset("h", mapping={"f": "v"})
    r.expire("h", 100)
    info = key_info(r, "s")
    assert (info["type"], info["encoding"], info["length"], info["ttl"]) == ("string", "int", 5, -1)
    assert info["memory_bytes"] > 0
    assert key_info(r, "l")["length"] == 2
    assert 0 < key_info(r, "h")["ttl"] <= 100
    table = keys_table(r, "s", "l", "h", columns=("type", "length"))
    assert table.to_dict("index") == {
        "s": {"type": "string", "length": 5},
        "l": {"type": "list", "length": 2},
        "h": {"type": "hash", "length": 1},
    }


def test_missing_key(r) -> None:
    info = key_info(r, "nope")
    assert info["type"] == "none" and info["encoding"] is None and info["ttl"] == -2


def test_features(r, capsys) -> None:
    assert server_version(r) >= (7, 0)
    assert has_command(r, "SET") and has_command(r, "object|encoding")
    assert not has_command(r, "NO.SUCH.COMMAND") and not has_command(r, "object|nosuch")
    assert require(r, "SET") and capsys.readouterr().out == ""
    assert not require(r, "NO.SUCH", why="for the demo")
    out = capsys.readouterr().out
    assert "has no NO.SUCH, needed for the demo" in out and "module loaded" in out
    assert not require(r, "NOSUCH") and "the lab's default server (Redis 8.2" in capsys.readouterr().out


def test_a_missing_feature_is_logged_for_the_compatibility_matrix(r, tmp_path, monkeypatch, capsys) -> None:
    import json

    from redai_lab.lab import features, lesson

    log = tmp_path / "gaps.jsonl"
    monkeypatch.setenv(features.COMPAT_LOG_ENV, str(log))
    monkeypatch.setattr(lesson, "_current_lesson", "03_hashes")
    assert require(r, "SET") and not log.exists()
    assert not require(r, "no.such")
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry == {"lesson": "03_hashes", "missing": "NO.SUCH", "server": features.server_product(r)}
    with pytest.raises(MissingFeatureError, match="has no NO.SUCH: load it"):
        ensure(r, "no.such", hint="load it")


def test_a_missing_key_keeps_counts_integers(r) -> None:
    r.rpush("l", "a")
    table = keys_table(r, "l", "nope")
    assert str(table.loc["l", "length"]) == "1" and table["length"].dtype == "Int64"


def test_key_info_takes_two_round_trips(r, round_trips, redis_url) -> None:
    r.rpush("l", "a", "b")
    counted = round_trips.client(redis_url)
    with round_trips.measure() as trips:
        info = key_info(counted, "l")
    assert info["length"] == 2 and trips.count == 2
