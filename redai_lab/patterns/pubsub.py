"""A Pub/Sub subscriber on a background thread that collects what it receives.

Pub/Sub delivers a message to the connections subscribed *at the moment it is published*, once,
and keeps no copy (at most once). So a listener must be subscribed before anyone publishes:
``Listener`` returns from ``with`` only after the server has confirmed every subscription, and
from then on collects each message, in order, until the block ends.

    with Listener(r, channels=["11_pubsub:news"]) as listener:
        r.publish("11_pubsub:news", "hello")      # returns 1: one subscriber got it
        listener.wait_for(1)
    listener.messages   # [Message(channel='11_pubsub:news', data='hello', pattern=None)]

Anyone may publish anything: a message that is not UTF-8 text (for a client that decodes
responses) is dropped and counted in ``dropped``, the listener goes on receiving, and
``wait_for`` answers ``ListenerDataError`` rather than waiting for messages that will not come.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from ..errors import InvalidArgument, InvalidArgumentType, LabError, check_count, check_seconds

_POLL_SECONDS = 0.05  # how often the thread checks whether to stop


@dataclass(frozen=True)
class Message:
    """One message as a subscriber received it."""

    channel: str
    data: str
    pattern: str | None = None  # the PSUBSCRIBE pattern that matched, if any


class ListenerTimeout(LabError):
    """Fewer messages arrived than a ``wait_for`` expected."""


class ListenerDataError(LabError):
    """A message that is not UTF-8 text arrived; it was dropped."""


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
        self.channels = _names("channels", channels)
        self.patterns = _names("patterns", patterns)
        if not self.channels and not self.patterns:
            raise InvalidArgument("Listener needs at least one channel or pattern to subscribe to.")
        self.messages: list[Message] = []
        self.dropped = 0  # messages that were not UTF-8 text
        self._pubsub = r.pubsub(ignore_subscribe_messages=False)
        self._confirm_timeout = check_seconds("confirm_timeout", confirm_timeout)
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

        Raises ``ListenerTimeout`` if they have not after ``timeout`` seconds, and
        ``ListenerDataError`` once a message was dropped for not being text.
        """
        check_count("count", count, minimum=0)
        check_seconds("timeout", timeout)
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count or self.dropped > 0, timeout)
            if self.dropped:
                raise ListenerDataError(
                    f"{self.dropped} message(s) on {self.channels + self.patterns} were not UTF-8 text "
                    f"and were dropped: publishers must send text, or listen with a client without "
                    f"decode_responses."
                )
            if len(self.messages) < count:
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
            reply = self._receive(timeout=left)
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

    def _receive(self, **options: Any) -> dict[str, Any] | None:
        """The next reply, None when none came; a reply that is not text is counted and dropped.

        redis-py reads the whole reply before decoding it, so the connection stays usable.
        """
        try:
            return self._pubsub.get_message(**options)
        except UnicodeDecodeError:
            with self._arrived:
                self.dropped += 1
                self._arrived.notify_all()
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            reply = self._receive(ignore_subscribe_messages=True, timeout=_POLL_SECONDS)
            if reply is not None:
                self._collect(reply)


def _names(label: str, names: Iterable[str]) -> list[str]:
    """Each name once, in order: the server confirms a repeated name once, so counting it twice
    would wait for a confirmation that never comes."""
    if isinstance(names, str):
        raise InvalidArgumentType(f"{label} is a list of names, not the str {names!r}: write [{names!r}].")
    unique = list(dict.fromkeys(names))
    for name in unique:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentType(f"{label} holds non-empty str names, not {name!r}.")
    return unique
