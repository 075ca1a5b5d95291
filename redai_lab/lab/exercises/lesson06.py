"""Lesson 06's exercises: ranges read the right way round, ranks with ties, best scores kept
atomically, and a board trimmed to its top."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

from . import Case, Spec, unless_none

# --- 1. Scores in a range, best first -------------------------------------------------------


def best_in_range(r: redis.Redis, board: str, low: float, high: float, limit: int) -> list[str]:
    """The members of sorted set `board` whose score is between `low` and `high`, both included,
    highest score first, at most `limit` of them (`limit` >= 1). Members with equal scores come in
    reverse byte order of their names, as when the board is read from the top. A board that does
    not exist has no members. Use no deprecated command."""
    return r.zrange(board, high, low, byscore=True, desc=True, offset=0, num=limit)


def best_in_range_bounds_not_swapped(r, board, low, high, limit):
    return r.zrange(board, low, high, byscore=True, desc=True, offset=0, num=limit)


def best_in_range_exclusive(r, board, low, high, limit):
    return r.zrange(board, f"({high}", f"({low}", byscore=True, desc=True, offset=0, num=limit)


def best_in_range_lowest_reversed(r, board, low, high, limit):
    return r.zrange(board, low, high, byscore=True, offset=0, num=limit)[::-1]


def best_in_range_ties_by_name(r, board, low, high, limit):
    members = r.zrange(board, low, high, byscore=True, withscores=True)
    return [member for member, _ in sorted(members, key=lambda pair: -pair[1])][:limit]


def _board(scores: Mapping[str, float], *args: Any) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    """A case's setup: the sorted set `<prefix>board` holding ``scores``; the function gets the
    key and ``args``."""

    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        if scores:
            r.zadd(f"{prefix}board", dict(scores))
        return (f"{prefix}board", *args)

    return setup


LESSON_SCORES = {"ann": 300, "bob": 200, "cat": 200, "dan": 150, "eve": 100, "fay": 50}

# --- 2. A rank that ties share ---------------------------------------------------------------


def competition_rank(r: redis.Redis, board: str, member: str) -> int | None:
    """The rank of `member` on sorted set `board`, highest score first, in standard competition
    ranking ("1224"): 1 for the best, members with equal scores share a rank, and the rank after a
    tie skips as many places as the tie took. None when the member (or the board) is not there."""
    score = r.zscore(board, member)
    if score is None:
        return None
    return 1 + r.zcount(board, f"({score}", "+inf")


def competition_rank_ordinal(r, board, member):
    rank = r.zrevrank(board, member)
    return None if rank is None else rank + 1


def competition_rank_zero_based(r, board, member):
    return r.zrevrank(board, member)


def competition_rank_counts_itself(r, board, member):
    score = r.zscore(board, member)
    return None if score is None else 1 + r.zcount(board, score, "+inf")


def competition_rank_dense(r, board, member):
    score = r.zscore(board, member)
    if score is None:
        return None
    higher = r.zrange(board, f"({score}", "+inf", byscore=True, withscores=True)
    return 1 + len({s for _, s in higher})


# --- 3. Keep each player's best score ---------------------------------------------------------


def record_best(r: redis.Redis, board: str, player: str, score: float) -> bool:
    """Record `score` for `player` on sorted set `board`, which keeps each player's best
    (highest) score: a score lower than or equal to the player's best changes nothing. Return True
    when the call changed the board (a first score, or a better one), else False. Many clients
    record scores at once: a worse result must never replace a better one, whatever the order."""
    return r.zadd(board, {player: score}, gt=True, ch=True) == 1


def record_best_overwrites(r, board, player, score):
    return r.zadd(board, {player: score}, ch=True) == 1


def record_best_without_ch(r, board, player, score):
    return r.zadd(board, {player: score}, gt=True) == 1


def record_best_missing_is_zero(r, board, player, score):
    if score > (r.zscore(board, player) or 0):
        r.zadd(board, {player: score})
        return True
    return False


def record_best_adds_up(r, board, player, score):
    r.zincrby(board, score, player)
    return True


def _board_after(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, list]:
    """What a call returned, and the whole board after it."""
    return result, r.zrange(f"{prefix}board", 0, -1, withscores=True)


# --- 4. Keep the top n -----------------------------------------------------------------------


def keep_top(r: redis.Redis, board: str, n: int) -> int:
    """Trim sorted set `board` so that only its `n` best positions remain (highest scores; at the
    cut, members with equal scores are kept in the board's own order, read from the top, so
    exactly `n` stay). With one command. Return how many members were removed."""
    return r.zremrangebyrank(board, 0, -(n + 1))


def keep_top_off_by_one(r, board, n):
    return r.zremrangebyrank(board, 0, -n)


def keep_top_removes_the_best(r, board, n):
    return r.zremrangebyrank(board, n, -1)


def keep_top_whole_ties(r, board, n):
    cut = r.zrange(board, n - 1, n - 1, desc=True, withscores=True)
    return r.zremrangebyscore(board, "-inf", f"({cut[0][1]}") if cut else 0


def keep_top_pops_the_rest(r, board, n):
    return len(r.zpopmin(board, r.zcard(board) - n))


BIG_BOARD = {f"player{i:03d}": i % 40 for i in range(300)}  # the lesson's big-board: many ties

EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="scores in a range, best first",
        reference=best_in_range,
        cases=(
            Case("the lesson's board, 100 to 200, at most 3", _board(LESSON_SCORES, 100, 200, 3)),
            Case("members exactly on both bounds",
                 _board({"lo": 10, "mid": 15, "hi": 20, "out": 21}, 10, 20, 10)),
            Case("more members in range than the limit",
                 _board({f"p{i}": i * 10 for i in range(10)}, 20, 80, 2)),
            Case("a tie on one score", _board({"amy": 5, "ben": 5, "cal": 5, "dot": 1}, 1, 5, 4)),
            Case("nothing in range", _board(LESSON_SCORES, 310, 400, 3)),
            Case("a board that does not exist", _board({}, 0, 100, 3)),
        ),
        hint="One ZRANGE reads by score, from the top, with a limit; read from the top, the first bound "
             "is the high one.",
        wrong=(best_in_range_bounds_not_swapped, best_in_range_exclusive, best_in_range_lowest_reversed,
               best_in_range_ties_by_name),
    ),
    Spec(
        number=2,
        title="a rank that ties share",
        reference=competition_rank,
        cases=(
            Case("the leader", _board(LESSON_SCORES, "ann")),
            Case("a member tied with another", _board(LESSON_SCORES, "bob")),
            Case("the member right after a tie", _board(LESSON_SCORES, "dan")),
            Case("a member below two ties", _board({"a": 9, "b": 9, "c": 7, "d": 7, "e": 3}, "e")),
            Case("a member not on the board", _board(LESSON_SCORES, "zoe")),
            Case("a board that does not exist", _board({}, "ann")),
        ),
        hint="A member's rank is one more than the number of members with a strictly higher score.",
        wrong=(competition_rank_ordinal, competition_rank_zero_based, competition_rank_counts_itself,
               competition_rank_dense),
    ),
    Spec(
        number=3,
        title="keep each player's best score",
        reference=record_best,
        cases=(
            Case("a player's first score", _board({"ann": 50}, "bob", 30)),
            Case("a better score", _board({"ann": 50}, "ann", 70)),
            Case("a worse score", _board({"ann": 50}, "ann", 40)),
            Case("the same score again", _board({"ann": 50}, "ann", 50)),
            Case("a first score below zero", _board({"ann": 50}, "cat", -5)),
        ),
        outcome=unless_none(_board_after),
        hint="One ZADD can compare and write on the server; one of its options also makes it count "
             "updated members.",
        wrong=(record_best_overwrites, record_best_without_ch, record_best_missing_is_zero,
               record_best_adds_up),
    ),
    Spec(
        number=4,
        title="keep the top n",
        reference=keep_top,
        cases=(
            Case("300 players with ties, keep 3", _board(BIG_BOARD, 3)),
            Case("keep 2 of 4", _board({"ann": 4, "bob": 3, "cat": 2, "dan": 1}, 2)),
            Case("exactly n players", _board({"ann": 4, "bob": 3}, 2)),
            Case("fewer players than n", _board({"ann": 4}, 5)),
            Case("a board that does not exist", _board({}, 3)),
        ),
        outcome=unless_none(_board_after),
        hint="Remove by position, not by score: positions count from the lowest score, negative ones "
             "from the highest.",
        wrong=(keep_top_off_by_one, keep_top_removes_the_best, keep_top_whole_ties, keep_top_pops_the_rest),
    ),
)
