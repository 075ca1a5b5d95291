"""A capped list: the newest ``maxlen`` items of an endless stream (recent activity, last logins).

The pattern is ``LPUSH`` then ``LTRIM key 0 maxlen-1``. Both go in one ``MULTI``/``EXEC``:
one round trip, and no client ever sees the list longer than ``maxlen`` (sent as two separate
calls, a reader can catch it between them). Pushing and trimming at the same end is what keeps
the *newest* items; ``RPUSH`` followed by ``LTRIM 0 N-1`` keeps the oldest and throws every new
item away.

    recent = CappedList(r, "user:1000:recent", maxlen=100)
    recent.push("viewed:42")
    recent.latest(10)   # newest first

Items are ``str`` or ``bytes``. A key of another type, or items that are not UTF-8 text for a
client that decodes responses, answer ``CappedListDataError``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import redis

from ..errors import InvalidArgument, InvalidArgumentType, LabError, check_count, foreign_data


class CappedListDataError(LabError):
    """The list's key holds what a capped list did not write (another type, binary items)."""


class CappedList:
    """A Redis list at ``key`` that keeps only its ``maxlen`` newest items, newest first."""

    def __init__(self, r: redis.Redis, key: str, maxlen: int) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"A capped list's key is a non-empty str, not {key!r}.")
        self.r = r
        self.key = key
        self.maxlen = check_count("CappedList maxlen", maxlen)

    def push(self, *items: str) -> int:
        """Add ``items`` (the last one becomes the newest) and return the length after trimming.

        One round trip. Pushing more than ``maxlen`` items at once keeps the last ``maxlen``.
        """
        if not items:
            raise InvalidArgument("CappedList.push() needs at least one item.")
        for item in items:
            if not isinstance(item, (str, bytes)):
                raise InvalidArgumentType(
                    f"CappedList items are str or bytes, not {type(item).__name__} {item!r}."
                )
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(self.key, *items)
        pipe.ltrim(self.key, 0, self.maxlen - 1)  # O(number removed): one item per push, normally
        with self._foreign():
            length_before_trim, _ = pipe.execute()
        return min(int(length_before_trim), self.maxlen)

    def latest(self, count: int | None = None) -> list[str | bytes]:
        """The ``count`` newest items (all of them by default), newest first (``str`` with a
        ``decode_responses`` client such as the lab's)."""
        stop = -1 if count is None else check_count("CappedList.latest() count", count) - 1
        with self._foreign():
            return list(self.r.lrange(self.key, 0, stop))

    def _foreign(self) -> AbstractContextManager[None]:
        """Errors caused by what the list's key holds become ``CappedListDataError``."""
        return foreign_data(lambda problem: CappedListDataError(
            f"{self.key!r} holds {problem}, not a capped list's items: use another key, or delete it "
            f"if nothing else uses it."
        ))
