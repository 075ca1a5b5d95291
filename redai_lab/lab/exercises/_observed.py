"""Lessons 17-20's exercises are graded on what a call *did*, not only on what it returned: the
round trips it made (counted exactly with ``redai_lab.lab.roundtrips.RoundTripCounter``, never timed)
and how many times it ran some commands (from ``INFO commandstats``).

The framework calls every answer with the lesson's own client, so ``ObservedSpec`` (a ``Spec``)
lends that client a counting connection pool for the duration of the call only, and hands the
outcome an ``Observed`` in place of the bare return value. (A workaround in this module: the
framework has no hook around the call.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ..roundtrips import CountingConnection, RoundTripCounter
from . import Case, Spec, clear


@dataclass(frozen=True)
class Observed:
    """What one call of an answer did: its return value, its round trips, and how many times it
    ran each watched command (lower-case names, from ``INFO commandstats``)."""

    result: Any
    trips: int
    calls: dict[str, int] = field(default_factory=dict)


def _command_calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value.get("calls", 0)) for name, value in stats.items()}


class ObservedSpec(Spec):
    """A ``Spec`` whose outcome gets an ``Observed`` (None when the call returned None, so that a
    blank starter reads "write its body"). Only the answer's own commands are counted: the
    case's setup and the outcome's reads go through the client's usual pool."""

    def _run(self, r: redis.Redis, function: Callable[..., Any], case: Case, prefix: str) -> Any:
        clear(r, prefix)
        args = case.setup(r, prefix)
        try:
            before = _command_calls(r)
            counter = RoundTripCounter()
            own = r.connection_pool
            kwargs = dict(own.connection_kwargs)
            kwargs.pop("connection_class", None)
            counting = redis.ConnectionPool(connection_class=CountingConnection,
                                            round_trip_counter=counter, **kwargs)
            r.connection_pool = counting
            try:
                with counter.measure() as trips:
                    result = function(r, *args)
            finally:
                r.connection_pool = own
                counting.disconnect()
            after = _command_calls(r)
            calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
            calls.pop("info", None)
            if result is None:
                return None
            return self.outcome(r, prefix, Observed(result, trips.count, calls))
        finally:
            if function is self.reference:
                clear(r, prefix)


def keys_under(r: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every string key under ``prefix`` with its value, sorted (for outcomes)."""
    names = sorted(r.scan_iter(match=f"{prefix}*", count=1000))
    return dict(zip(names, r.mget(names))) if names else {}
