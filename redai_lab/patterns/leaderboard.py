"""A leaderboard on one sorted set: highest score first, ties share a rank, one round trip a read.

Ranks are *standard competition* ranks ("1224"): a member's rank is one plus the number of
members with a strictly higher score, ``1 + ZCOUNT key (score +inf``. ``ZREVRANK`` alone gives
the *ordinal* position ("1234"), which ranks tied players differently depending on their names.

Every read (``rank``, ``page``, ``around``) is one Lua script: the range, the ``ZCOUNT`` that
ranks its first entry and the board's size are read atomically, in one round trip, so a page
never mixes two states of the board. Within a tie, entries come in ``ZRANGE ... REV`` order
(member names in reverse byte order): stable, so pages neither repeat nor skip anyone while
the board does not change.

    board = Leaderboard(r, "game:1:scores")
    board.add({"ann": 300, "bob": 200, "cat": 200})
    board.incr("dan", 100)
    board.page(1, size=10).entries   # [Entry(1, 'ann', 300.0), Entry(2, 'cat', 200.0), ...]
    board.rank("bob")                # Entry(rank=2, member='bob', score=200.0)
    board.around("bob", before=1, after=1)

Members are ``str``; scores real numbers (not NaN; ``incr`` takes finite amounts). A key of
another type, or members that are not UTF-8 text for a client that decodes responses, answer
``LeaderboardDataError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import redis

from ..errors import InvalidArgument, InvalidArgumentType, LabError, foreign_data

# A read is one script, and the server runs nothing else meanwhile: keep windows small.
MAX_PAGE_SIZE = 1000

# KEYS[1]: the board. ARGV[1], ARGV[2]: 0-based positions (highest score first), or, when
# ARGV[3] (a member) is given, how many entries to show before and after that member.
# Returns false for an unknown member, else {first position, members scoring strictly more
# than the first entry, board size, {member, score, member, score, ...}}.
_WINDOW = """
local first, last, size = ARGV[1], ARGV[2], redis.call('ZCARD', KEYS[1])
if ARGV[3] then
  local position = redis.call('ZREVRANK', KEYS[1], ARGV[3])
  if not position then return false end
  first, last = math.max(0, position - tonumber(ARGV[1])), position + tonumber(ARGV[2])
end
local rows, above = {}, 0
if tonumber(first) < size then  -- a page past the end (even past 2^63) is simply empty
  rows = redis.call('ZRANGE', KEYS[1], first, last, 'REV', 'WITHSCORES')
  above = redis.call('ZCOUNT', KEYS[1], '(' .. rows[2], '+inf')
end
return {first, above, size, rows}
"""


class LeaderboardError(LabError):
    """Base class of the leaderboard's errors."""


class LeaderboardDataError(LeaderboardError):
    """The board's key holds what a leaderboard did not write (another type, binary members)."""


@dataclass(frozen=True)
class Entry:
    """One line of the board: competition rank (1-based, shared by ties), member, score."""

    rank: int
    member: str
    score: float


@dataclass(frozen=True)
class Page:
    """Page ``number`` (1-based) of ``size`` entries, out of ``total`` members on the board."""

    number: int
    size: int
    total: int
    entries: list[Entry]

    @property
    def pages(self) -> int:
        """How many pages of ``size`` the whole board fills."""
        return math.ceil(self.total / self.size)


class Leaderboard:
    """Scores of members in the sorted set ``key``; the highest score ranks first."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"A leaderboard's key is a non-empty str, not {key!r}.")
        self.client = client
        self.key = key
        self._window = client.register_script(_WINDOW)

    def add(self, scores: Mapping[str, float], *, keep_best: bool = False) -> int:
        """Set the scores of members (ZADD); return how many members were added or changed.

        With ``keep_best`` a member's score only ever rises (``ZADD GT``): submitting a worse
        result than the member's best leaves the board as it is.
        """
        if not isinstance(scores, Mapping):
            raise InvalidArgumentType(
                f"add() takes a mapping of members to scores, not {type(scores).__name__}."
            )
        if not scores:
            raise InvalidArgument("add() needs at least one member: add({'ann': 300})")
        for member, score in scores.items():
            _check_score(member, score)
        # Without INCR, ZADD answers a count (redis-py types it as a possible score too).
        with self._foreign():
            return cast(int, self.client.zadd(self.key, dict(scores), gt=keep_best, ch=True))

    def incr(self, member: str, amount: float) -> float:
        """Add ``amount`` to ``member``'s score (from 0 for a new member); return the new score."""
        _check_score(member, amount)
        if math.isinf(amount):  # inf - inf is NaN, which Redis refuses; an infinite step means nothing
            raise InvalidArgument(f"amount for {member!r} must be finite, not {amount!r}")
        with self._foreign():
            return cast(float, self.client.zincrby(self.key, amount, member))

    def remove(self, *members: str) -> int:
        """Take members off the board; return how many were on it."""
        for member in members:
            _check_member(member)
        with self._foreign():
            return int(self.client.zrem(self.key, *members)) if members else 0

    def score(self, member: str) -> float | None:
        """``member``'s score, or None when it is not on the board."""
        _check_member(member)
        with self._foreign():
            return self.client.zscore(self.key, member)

    def __len__(self) -> int:
        with self._foreign():
            return int(self.client.zcard(self.key))

    def rank(self, member: str) -> Entry | None:
        """``member``'s entry (rank shared with ties), or None when it is not on the board."""
        entries = self.around(member, before=0, after=0)
        return entries[0] if entries else None

    def page(self, number: int, size: int = 10) -> Page:
        """Page ``number`` (1-based) of ``size`` entries; past the last page, no entries."""
        if not (_whole(number) and number >= 1):
            raise InvalidArgument(f"pages are numbered from 1 (got page {number!r})")
        if not (_whole(size) and 1 <= size <= MAX_PAGE_SIZE):
            raise InvalidArgument(f"a page holds 1 to {MAX_PAGE_SIZE} entries (got size {size!r}); "
                                  f"export a whole board with ZSCAN instead")
        first = (number - 1) * size
        with self._foreign():
            reply = self._window(keys=[self.key], args=[first, first + size - 1])
            return Page(number=number, size=size, total=int(reply[2]), entries=_entries(reply))

    def around(self, member: str, *, before: int = 2, after: int = 2) -> list[Entry]:
        """``member``'s entry with up to ``before`` entries above it and ``after`` below it.

        Empty when ``member`` is not on the board.
        """
        _check_member(member)
        if not (_whole(before) and _whole(after) and before >= 0 and after >= 0
                and before + after < MAX_PAGE_SIZE):
            raise InvalidArgument(f"before and after count entries: integers >= 0 that add up to less than "
                                  f"{MAX_PAGE_SIZE} (got {before!r}, {after!r})")
        with self._foreign():
            reply = self._window(keys=[self.key], args=[before, after, member])
            return _entries(reply) if reply else []

    def _foreign(self) -> AbstractContextManager[None]:
        """Errors caused by what the board's key holds become ``LeaderboardDataError``."""
        return foreign_data(lambda problem: LeaderboardDataError(
            f"{self.key!r} holds {problem}, not a leaderboard's sorted set of str members: use another "
            f"key, or delete it if nothing else uses it."
        ))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_member(member: object) -> None:
    if not isinstance(member, str):
        raise InvalidArgumentType(
            f"a member is a str (a player's name or id), not {type(member).__name__} {member!r}"
        )


def _check_score(member: str, score: float) -> None:
    _check_member(member)
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or math.isnan(score):
        raise InvalidArgument(f"score of {member!r} must be a number, not {score!r}")


def _entries(reply: list) -> list[Entry]:
    """Entries with competition ranks from a window reply (see ``_WINDOW``)."""
    first, above, _total, rows = reply
    entries: list[Entry] = []
    for i in range(0, len(rows), 2):
        member, score = rows[i], float(rows[i + 1])
        position = int(first) + i // 2  # 0-based, highest score first
        if not entries:
            rank = int(above) + 1
        elif score == entries[-1].score:
            rank = entries[-1].rank  # a tie shares the rank of the first member with that score
        else:
            rank = position + 1  # everyone scoring more stands before this entry
        entries.append(Entry(rank, member.decode() if isinstance(member, bytes) else member, score))
    return entries
