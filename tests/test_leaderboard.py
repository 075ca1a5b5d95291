"""Leaderboard: competition ranks with ties, 1-based pages, around-me, one round trip a read."""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading

import pytest

from redai_lab.patterns.leaderboard import MAX_PAGE_SIZE, Entry, Leaderboard


@pytest.fixture
def board(r) -> Leaderboard:
    board = Leaderboard(r, "lb")
    board.add({"ann": 300, "bob": 200, "cat": 200, "dan": 100, "eve": 50})
    return board


def reference(r, key: str = "lb") -> list[Entry]:
    """The board ranked by brute force: 1 + how many score strictly more, in ZRANGE REV order."""
    rows = r.zrange(key, 0, -1, desc=True, withscores=True)
    return [Entry(1 + sum(s > score for _, s in rows), member, score) for member, score in rows]


def test_ties_share_a_rank_and_the_next_rank_is_skipped(board) -> None:
    assert board.page(1, 10).entries == [
        Entry(1, "ann", 300.0),
        Entry(2, "cat", 200.0),  # ties come in ZRANGE ... REV order: names reversed
        Entry(2, "bob", 200.0),
        Entry(4, "dan", 100.0),
        Entry(5, "eve", 50.0),
    ]
    assert board.rank("bob") == Entry(2, "bob", 200.0) and board.rank("dan") == Entry(4, "dan", 100.0)


def test_a_page_that_starts_inside_a_tie_ranks_its_first_entry_with_zcount(board) -> None:
    page = board.page(2, size=2)
    assert (page.number, page.size, page.total, page.pages) == (2, 2, 5, 3)
    assert page.entries == [Entry(2, "bob", 200.0), Entry(4, "dan", 100.0)]
    assert board.page(3, size=2).entries == [Entry(5, "eve", 50.0)]


def test_entries_and_pages_cannot_be_changed(board) -> None:
    page = board.page(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.entries[0].rank = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.total = 0  # type: ignore[misc]


def test_pages_past_the_end_are_empty(board) -> None:
    assert board.page(4, size=2).entries == [] and board.page(4, size=2).total == 5
    assert board.page(10**30, size=MAX_PAGE_SIZE).entries == []
    assert Leaderboard(board.client, "empty").page(1).entries == []


def test_around_a_member(board) -> None:
    assert board.around("cat", before=1, after=1) == [
        Entry(1, "ann", 300.0), Entry(2, "cat", 200.0), Entry(2, "bob", 200.0)
    ]
    assert [e.member for e in board.around("ann", before=3, after=0)] == ["ann"]
    assert [e.member for e in board.around("eve", before=1, after=5)] == ["dan", "eve"]
    assert board.around("nobody") == [] and board.rank("nobody") is None


def test_random_boards_with_many_ties_match_brute_force(r) -> None:
    rng = random.Random(7)
    board = Leaderboard(r, "lb")
    board.add({f"p{i:03d}": rng.choice([0, 1.5, 10, 10, 20, -3]) for i in range(150)})
    expected = reference(r)
    for size in (1, 7, 50, 150):
        pages = [board.page(n, size).entries for n in range(1, -(-150 // size) + 1)]
        assert [entry for page in pages for entry in page] == expected
        assert all(type(entry.rank) is int for page in pages for entry in page)  # 2, not 2.0
    for i, entry in enumerate(expected):
        assert board.rank(entry.member) == entry
        assert board.around(entry.member, before=3, after=2) == expected[max(0, i - 3): i + 3]


def test_add_incr_remove_and_keep_best(board) -> None:
    assert board.add({"bob": 150}, keep_best=True) == 0 and board.score("bob") == 200.0
    assert board.add({"bob": 250, "fay": 10}, keep_best=True) == 2 and board.score("bob") == 250.0
    assert board.add({"bob": 1}) == 1 and board.score("bob") == 1.0
    assert board.incr("new", 2.5) == 2.5 and board.incr("new", -1) == 1.5
    assert len(board) == 7
    assert board.remove("new", "ghost") == 1 and board.remove() == 0
    assert board.score("new") is None and len(board) == 6
    board.add({"inf": float("inf")})
    assert board.rank("inf") == Entry(1, "inf", float("inf"))


def test_works_with_a_bytes_client(lesson) -> None:
    from redai_lab.lab.connection import connect

    raw = connect(lesson.url, decode_responses=False)
    board = Leaderboard(raw, "lb")
    board.add({"ann": 3, "bob": 3})
    assert board.page(1).entries == [Entry(1, "bob", 3.0), Entry(1, "ann", 3.0)]
    raw.close()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: b.page(0), "numbered from 1"),
        (lambda b: b.page(1.5), "numbered from 1"),
        (lambda b: b.page(1, 0), "1 to 1000 entries"),
        (lambda b: b.page(1, MAX_PAGE_SIZE + 1), "1 to 1000 entries"),
        (lambda b: b.around("ann", before=-1), "integers >= 0"),
        (lambda b: b.around("ann", before=600, after=400), "less than 1000"),
        (lambda b: b.add({}), "at least one member"),
        (lambda b: b.add({"x": float("nan")}), "must be a number"),
        (lambda b: b.add({"x": "12"}), "must be a number"),
        (lambda b: b.incr("x", True), "must be a number"),
    ],
)
def test_bad_input_is_a_one_line_value_error(board, call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call(board)


def test_every_read_is_one_round_trip(board, round_trips, redis_url) -> None:
    counted = Leaderboard(round_trips.client(redis_url), "lb")
    counted.rank("ann")  # the first call in a server's life loads the script
    with round_trips.measure() as trips:
        counted.rank("bob")
    assert trips.count == 1
    with round_trips.measure() as trips:
        counted.page(2, size=2)
    assert trips.count == 1
    with round_trips.measure() as trips:
        counted.around("cat", before=2, after=2)
    assert trips.count == 1


def test_concurrent_increments_lose_nothing(redis_url) -> None:
    from redai_lab.lab.connection import connect

    def play(n: int) -> None:
        client = connect(redis_url)
        board = Leaderboard(client, "lb")
        for i in range(200):
            board.incr(f"p{(n + i) % 4}", 1)
        client.close()

    threads = [threading.Thread(target=play, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = connect(redis_url)
    assert check.zrange("lb", 0, -1, withscores=True) == [(f"p{i}", 300.0) for i in range(4)]
    check.close()


def test_a_page_is_one_consistent_state_while_scores_change(redis_url) -> None:
    """The range, its ZCOUNT and the size are read atomically: the top is always rank 1."""
    from redai_lab.lab.connection import connect

    writer_client, reader_client = connect(redis_url), connect(redis_url)
    board = Leaderboard(reader_client, "lb")
    board.add({f"p{i}": i % 3 for i in range(30)})
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            writer_client.zincrby("lb", 1, f"p{rng.randrange(30)}")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(300):
            entries = board.page(1, size=5).entries
            assert entries[0].rank == 1
            for above, below in itertools.pairwise(entries):
                assert above.score >= below.score
                assert (above.rank == below.rank) == (above.score == below.score)
    finally:
        stop.set()
        writer.join()
        writer_client.close()
        reader_client.close()
