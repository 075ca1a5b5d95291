"""`redai-lab bench patterns`: every group measured, round trips and server commands counted
exactly, a missing peer skipped in one line, nothing left behind. Nothing is timed."""

from __future__ import annotations

import shutil

import pytest

from redai_lab import cli, connect
from redai_lab.bench import benchmarks, harness, peers
from redai_lab.lab.lesson import database_count


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quick mode, smaller still: the test checks the shape and the counts, not the speeds."""
    scale = peers.PatternScale(rounds=2, ops=5, lock_threads=3, lock_acquisitions=3, lock_hold=0.001)
    monkeypatch.setitem(peers.PATTERN_SCALES, "quick", scale)


def test_bench_patterns_counts_every_row_and_cleans_up(tiny, tmp_path, capsys, lab_server, monkeypatch) -> None:
    monkeypatch.setitem(peers.PEERS, "no-such-peer", "no_such_peer_module")
    out = tmp_path / "patterns.json"
    assert cli.main(["bench", "patterns", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped: no-such-peer is not installed (pip install 'redai-lab[bench]')" in printed
    frame = harness.load(out).set_index("implementation")
    counted = frame.dropna(subset=["round_trips"])
    trips = counted["round_trips"].to_dict()
    assert trips["Cache.get_or_load"] == trips["@cache.cached"] == trips["SessionStore.get"] == 1
    assert trips["Lock acquire+release"] == 2
    assert {trips[f"{name}.hit"] for name in ("FixedWindow", "SlidingLog", "SlidingWindowCounter",
                                               "TokenBucket", "GCRA")} == {1}
    commands = counted["server_commands"].to_dict()
    assert commands["Cache.get_or_load"] == commands["@cache.cached"] == 1  # one GET
    assert commands["SessionStore.get"] == 4  # EVALSHA, HGETALL, TIME, PEXPIRE
    assert commands["FixedWindow.hit"] == 4  # EVALSHA, TIME, HMGET, HSET: no PEXPIRE within a window
    assert frame.loc["EVALSHA return 1", "script_us"] > 0
    assert (counted["server_cpu_us"] > 0).all()
    # limits' hit() answers a bool: the lab's answer (remaining, reset) costs it more round trips
    for peer in ("FixedWindowRateLimiter", "MovingWindowRateLimiter", "SlidingWindowCounterRateLimiter"):
        assert trips[f"limits {peer}"] == 1 and trips[f"limits {peer} + stats"] > 1
    assert frame.loc["FixedWindow.hit", "peer"] == "limits FixedWindowRateLimiter + stats"
    ceilings = frame[frame["kind"] == "ceiling"]
    assert len(ceilings) == (4 if shutil.which("redis-benchmark") else 0)
    assert (ceilings["ratio"] > 0).all() and ceilings["round_trips"].isna().all()
    assert (frame["ratio"] > 0).all() and set(frame["kind"]) >= {"floor", "lab"}
    assert frame.loc["Lock", "wait_over_hold_x_waiters"] > 0
    client = connect(lab_server.url)
    assert connect(lab_server.url, db=database_count(client) - 2).dbsize() == 0
    client.close()


def test_the_benchmark_deletes_every_key_it_and_its_peers_wrote(lab_server) -> None:
    """Before the database is emptied: what a peer wrote under its own prefix is gone too."""
    assert peers.missing_peers() == [], "the test extra installs every peer"
    scale = peers.PatternScale(rounds=1, ops=2, lock_threads=2, lock_acquisitions=2, lock_hold=0.001)
    lesson = benchmarks.bench_database(lab_server)
    try:
        peers.patterns(harness.Bench(lesson.client), lesson, scale=scale)
        assert list(lesson.client.scan_iter(count=1000)) == []
    finally:
        lesson.finish()
        lesson.client.close()
