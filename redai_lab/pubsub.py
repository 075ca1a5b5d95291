"""A Pub/Sub subscriber on a background thread that collects what it receives.

Pub/Sub delivers a message to the connections subscribed *at the moment it is published*, once,
and keeps no copy (at most once). So a listener must be subscribed before anyone publishes:
``Listener`` returns from ``with`` only after the server has confirmed every subscription, and
from then on collects each message, in order, until the block ends.

    with Listener(r, channels=["11_pubsub:news"]) as listener:
        r.publish("11_pubsub:news", "hello")      # returns 1: one subscriber got it
        listener.wait_for(1)
    listener.messages   # [Message(channel='11_pubsub:news', data='hello', pattern=None)]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from .errors import LabError

_POLL_SECONDS = 0.05  # how often the thread checks whether to stop


@dataclass(frozen=True)
class Message:
    """One message as a subscriber received it."""

    channel: str
    data: str
    pattern: str | None = None  # the PSUBSCRIBE pattern that matched, if any


class ListenerTimeout(LabError):
    """Fewer messages arrived than a ``wait_for`` expected."""


class Listener:
    """Subscribe ``channels`` and ``patterns`` on a connection of its own and collect messages."""

    def __init__(
        self,
        r: redis.Redis,
        *,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        confirm_timeout: float = 5.0,
    ) -> None:
        # Each name once: the server confirms a repeated name once, so counting it twice would
        # wait for a confirmation that never comes.
        self.channels = list(dict.fromkeys(channels))
        self.patterns = list(dict.fromkeys(patterns))
        if not self.channels and not self.patterns:
            raise ValueError("Listener needs at least one channel or pattern to subscribe to.")
        self.messages: list[Message] = []
        self._pubsub = r.pubsub(ignore_subscribe_messages=False)
        self._confirm_timeout = confirm_timeout
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redai-lab-listener", daemon=True)

    def __enter__(self) -> Listener:
        if self.channels:
            self._pubsub.subscribe(*self.channels)
        if self.patterns:
            self._pubsub.psubscribe(*self.patterns)
        # Each (P)SUBSCRIBE is confirmed with the connection's subscription count; once the last
        # confirmation is read, every later PUBLISH reaches this connection.
        expected = len(self.channels) + len(self.patterns)
        try:
            self._await("subscribed", lambda reply: reply["type"] in ("subscribe", "psubscribe")
                        and reply["data"] == expected)
        except ListenerTimeout:
            self._pubsub.close()
            raise
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        try:
            # Unsubscribe and wait for the server to confirm: once the block is left, no
            # PUBLISH counts this listener any more (closing the socket alone is asynchronous).
            if self.channels:
                self._pubsub.unsubscribe()
            if self.patterns:
                self._pubsub.punsubscribe()
            self._await("unsubscribed", lambda reply: reply["type"] in ("unsubscribe", "punsubscribe")
                        and reply["data"] == 0)
        finally:
            self._pubsub.close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Block until ``count`` messages have arrived in all; return a copy of them.

        Raises ``ListenerTimeout`` if they have not after ``timeout`` seconds.
        """
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise ListenerTimeout(
                    f"Expected {count} messages on {self.channels + self.patterns}, got "
                    f"{len(self.messages)} in {timeout:g}s: was anything published after subscribing?"
                )
            return list(self.messages)

    def _await(self, what: str, done: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + self._confirm_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ListenerTimeout(f"The server did not confirm that {self.channels + self.patterns} "
                                      f"were {what} within {self._confirm_timeout:g}s.")
            reply = self._pubsub.get_message(timeout=left)
            if reply is None:
                continue
            if done(reply):
                return
            self._collect(reply)  # a message published between two confirmations is kept

    def _collect(self, reply: dict[str, Any]) -> None:
        if reply["type"] not in ("message", "pmessage"):
            return
        with self._arrived:
            self.messages.append(Message(channel=reply["channel"], data=reply["data"], pattern=reply["pattern"]))
            self._arrived.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            reply = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_SECONDS)
            if reply is not None:
                self._collect(reply)
