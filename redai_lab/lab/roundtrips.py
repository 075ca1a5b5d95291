"""Count round trips to Redis exactly (not time them).

Every write of a command (or of a whole pipeline) to the socket is one round trip: redis-py
sends a pipeline's commands in one ``send_packed_command`` call and then reads every reply.
The connection handshake (HELLO, AUTH, SELECT, CLIENT SETINFO) is not counted, so the count
does not depend on whether the pool had a connection ready.

    counter = RoundTripCounter()
    r = counter.client(url)
    with counter.measure() as trips:
        r.get("k")
    assert trips.count == 1
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from .connection import connect


@dataclass
class Trips:
    """The round trips seen inside one ``RoundTripCounter.measure()`` block."""

    count: int = 0


class RoundTripCounter:
    """A thread-safe count of the round trips made by the clients it creates."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.total += 1

    def client(self, url: str, **kwargs: Any) -> redis.Redis:
        """A ``connect()`` client whose round trips this counter counts."""
        return connect(url, connection_class=CountingConnection, round_trip_counter=self, **kwargs)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Trips]:
        trips = Trips()
        start = self.total
        try:
            yield trips
        finally:
            trips.count = self.total - start


class CountingConnection(redis.Connection):
    """A ``redis.Connection`` that reports each command write to a ``RoundTripCounter``."""

    def __init__(self, *args: Any, round_trip_counter: RoundTripCounter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter = round_trip_counter
        self._in_handshake = False

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self._in_handshake = True
        try:
            super().on_connect_check_health(check_health)
        finally:
            self._in_handshake = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._in_handshake:
            self._counter.add()
        super().send_packed_command(command, check_health)
