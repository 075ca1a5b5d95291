"""Lessons 01-04: the capped list (``redai_lab.patterns.capped``), ``printed_warnings``, and the lessons'
concurrency claims, proven with real threads against the real server: INCR loses no update where
GET+SET does, competing BLPOP consumers each get a job exactly once, and a capped list is never
seen longer than its cap."""

from __future__ import annotations

import threading

import pytest

from redai_lab.lab.connection import connect
from redai_lab.lab.deprecations import printed_warnings
from redai_lab.patterns.capped import CappedList


def test_push_keeps_the_newest_items_newest_first(r) -> None:
    recent = CappedList(r, "recent", maxlen=3)
    assert [recent.push(f"e{i}") for i in range(1, 6)] == [1, 2, 3, 3, 3]
    assert recent.latest() == ["e5", "e4", "e3"]
    assert recent.latest(2) == ["e5", "e4"]
    assert recent.push("a", "b", "c", "d") == 3  # more than maxlen at once: the last 3 stay
    assert recent.latest() == ["d", "c", "b"]


def test_push_is_one_round_trip(redis_url, round_trips) -> None:
    recent = CappedList(round_trips.client(redis_url), "recent", maxlen=2)
    with round_trips.measure() as trips:
        recent.push("x", "y", "z")
    assert trips.count == 1


def test_bad_arguments_are_refused(r) -> None:
    with pytest.raises(ValueError, match="maxlen must be a whole number >= 1, not 0"):
        CappedList(r, "recent", maxlen=0)
    recent = CappedList(r, "recent", maxlen=2)
    with pytest.raises(ValueError, match="needs at least one item"):
        recent.push()
    with pytest.raises(ValueError, match="count must be a whole number >= 1, not 0"):
        recent.latest(0)
    assert not r.exists("recent")


def _run(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_capped_list_is_never_seen_longer_than_its_cap(redis_url) -> None:
    maxlen, writers, pushes = 5, 4, 150
    done = threading.Event()
    seen: list[int] = []

    def write(n: int) -> None:
        recent = CappedList(connect(redis_url), "recent", maxlen=maxlen)
        for i in range(pushes):
            recent.push(f"w{n}:{i}")

    def observe() -> None:
        client = connect(redis_url)
        while not done.is_set():
            seen.append(client.llen("recent"))

    observer = threading.Thread(target=observe)
    observer.start()
    _run([threading.Thread(target=write, args=(n,)) for n in range(writers)])
    done.set()
    observer.join(timeout=30)
    assert seen and max(seen) <= maxlen
    final = CappedList(connect(redis_url), "recent", maxlen=maxlen).latest()
    assert len(final) == maxlen == len(set(final))


def test_incr_loses_no_update_where_get_then_set_does(redis_url, r) -> None:
    threads, increments = 4, 250
    barrier = threading.Barrier(threads)

    def atomic() -> None:
        client = connect(redis_url)
        barrier.wait()
        for _ in range(increments):
            client.incr("atomic")

    _run([threading.Thread(target=atomic) for _ in range(threads)])
    assert int(r.get("atomic")) == threads * increments
    # GET then SET: two clients that both read before either writes lose an update, every time.
    a, b = connect(redis_url), connect(redis_url)
    r.set("naive", 0)
    seen_by_a, seen_by_b = int(a.get("naive")), int(b.get("naive"))
    a.set("naive", seen_by_a + 1)
    b.set("naive", seen_by_b + 1)
    assert int(r.get("naive")) == 1


def test_competing_blpop_consumers_get_each_job_exactly_once(redis_url, r) -> None:
    jobs, consumers = 60, 3
    received: list[str] = []
    lock = threading.Lock()

    def consume() -> None:
        client = connect(redis_url)
        while (reply := client.blpop("jobs", timeout=1)) is not None:
            with lock:
                received.append(reply[1])

    workers = [threading.Thread(target=consume) for _ in range(consumers)]
    for worker in workers:
        worker.start()
    r.rpush("jobs", *(f"job:{i}" for i in range(jobs)))
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert sorted(received) == sorted(f"job:{i}" for i in range(jobs))


def test_printed_warnings_turns_deprecations_into_output(r, capsys) -> None:
    with printed_warnings() as caught:
        r.setex("k", 10, "v")
    assert [w.category for w in caught] == [DeprecationWarning]
    out = capsys.readouterr()
    assert out.out == "DeprecationWarning: Call to deprecated setex. (Use 'set' instead.) -- Deprecated since version 2.6.12.\n"
    assert out.err == ""
    with printed_warnings() as caught:  # the same warning again: still caught, not deduplicated
        r.setex("k", 10, "v")
    assert len(caught) == 1 and r.get("k") == "v"
    capsys.readouterr()
    with printed_warnings() as caught:
        r.set("k", "v", ex=10)
    assert caught == [] and capsys.readouterr().out == ""


def test_push_and_trim_travel_in_one_multi_exec(r, redis_url) -> None:
    # What the server executes, in order, seen by MONITOR: a transaction, so no reader can run
    # between LPUSH and LTRIM and see the list longer than its cap (a pipeline alone allows it).
    monitor_client = connect(redis_url, socket_timeout=10)
    recent = CappedList(r, "recent", maxlen=2)
    with monitor_client.monitor() as monitor:
        r.ping()  # the first command MONITOR reports is this one: the monitor is listening
        while monitor.next_command()["command"] != "PING":
            pass
        recent.push("x")
        commands = [monitor.next_command()["command"].split()[0] for _ in range(4)]
    monitor_client.close()
    assert commands == ["MULTI", "LPUSH", "LTRIM", "EXEC"]


def test_an_empty_key_is_refused(r) -> None:
    with pytest.raises(ValueError, match="non-empty str"):
        CappedList(r, "", maxlen=2)
