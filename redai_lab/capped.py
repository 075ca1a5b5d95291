"""A capped list: the newest ``maxlen`` items of an endless stream (recent activity, last logins).

The pattern is ``LPUSH`` then ``LTRIM key 0 maxlen-1``. Both go in one ``MULTI``/``EXEC``:
one round trip, and no client ever sees the list longer than ``maxlen`` (sent as two separate
calls, a reader can catch it between them). Pushing and trimming at the same end is what keeps
the *newest* items; ``RPUSH`` followed by ``LTRIM 0 N-1`` keeps the oldest and throws every new
item away.

    recent = CappedList(r, "user:1000:recent", maxlen=100)
    recent.push("viewed:42")
    recent.latest(10)   # newest first
"""

from __future__ import annotations

import redis


class CappedList:
    """A Redis list at ``key`` that keeps only its ``maxlen`` newest items, newest first."""

    def __init__(self, r: redis.Redis, key: str, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"CappedList maxlen must be at least 1, got {maxlen}.")
        self.r = r
        self.key = key
        self.maxlen = maxlen

    def push(self, *items: str) -> int:
        """Add ``items`` (the last one becomes the newest) and return the length after trimming.

        One round trip. Pushing more than ``maxlen`` items at once keeps the last ``maxlen``.
        """
        if not items:
            raise ValueError("CappedList.push() needs at least one item.")
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(self.key, *items)
        pipe.ltrim(self.key, 0, self.maxlen - 1)  # O(number removed): one item per push, normally
        length_before_trim, _ = pipe.execute()
        return min(int(length_before_trim), self.maxlen)

    def latest(self, count: int | None = None) -> list[str | bytes]:
        """The ``count`` newest items (all of them by default), newest first (``str`` with a
        ``decode_responses`` client such as the lab's)."""
        if count is not None and count < 1:
            raise ValueError(f"CappedList.latest() count must be at least 1, got {count}.")
        stop = -1 if count is None else count - 1
        return list(self.r.lrange(self.key, 0, stop))
