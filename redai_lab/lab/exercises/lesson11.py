"""Lesson 11's exercises: Pub/Sub, graded with real subscribers and bounded waits.

Every function gets ``r`` (``decode_responses=True``) and channel or key names. Channels are
server-wide, so each exercise's channels start with the lesson's name and the exercise's prefix
(``11_pubsub:ex1:...``). Where a case needs an audience (other subscribers), it starts
``redai_lab.patterns.pubsub.Listener``s, confirmed subscribed, before the learner's function runs; the
outcome then publishes an end marker, waits (at most a few seconds) until every listener has it,
so that everything published before has arrived too, and unsubscribes them. Nothing waits
without a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from redai_lab.patterns.pubsub import Listener

from . import Case, Spec

LESSON = "11_pubsub:"






def _base(prefix: str) -> str:
    return f"{LESSON}{prefix}"  # "11_pubsub:ex1:"


# The audience of the current case: listeners started by a setup, dismissed by the outcome.
_audience: list[Listener] = []
_END = "__end of the case__"


def _seat(r: redis.Redis, prefix: str, *, channels: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> None:
    """Start one listener (confirmed subscribed) on ``channels`` and ``patterns`` (names after the
    exercise's base), and on the case's end channel."""
    base = _base(prefix)
    listener = Listener(r, channels=[*(base + c for c in channels), base + "end"],
                        patterns=[base + p for p in patterns])
    _audience.append(listener.__enter__())


def _leave() -> None:
    """Unsubscribe every listener of the audience (left over when a function raised)."""
    while _audience:
        _audience.pop().__exit__(None, None, None)


def _dismiss(r: redis.Redis, prefix: str) -> list[list[tuple[str, str]]]:
    """What each listener of the audience received, in order, once the end marker (published
    after everything the function published) has reached every one of them."""
    if not _audience:
        return []
    r.publish(_base(prefix) + "end", _END)
    deadline = time.monotonic() + 5.0
    try:
        for listener in _audience:
            while not any(m.data == _END for m in list(listener.messages)) and time.monotonic() < deadline:
                time.sleep(0.005)
        return [[(m.channel, m.data) for m in listener.messages if m.data != _END] for listener in _audience]
    finally:
        _leave()


def _with_audience(outcome: Callable[[redis.Redis, str, object], object]):
    """An outcome that also says what the audience received (and dismisses it)."""

    def read(r: redis.Redis, prefix: str, result: object) -> object:
        heard = _dismiss(r, prefix)
        return None if result is None else (outcome(r, prefix, result), heard)

    read.__doc__ = outcome.__doc__
    return read


def _returned(r: redis.Redis, prefix: str, result: object) -> object:
    return result


# ---------------------------------------------------------------------------------------------
# 1. Subscribe, be sure of it, publish, receive.


def round_trip(r, channel: str, messages: list[str]) -> tuple[list[int], list[str]]:
    """Subscribe to `channel` on a connection of your own, then publish each of `messages` to it
    (from `r`), and return two lists: what each PUBLISH returned, and the messages your
    subscriber received, in order. The subscription must be in effect before the first PUBLISH;
    wait at most one second for the messages, and close your subscriber before returning."""
    import time

    subscriber = r.pubsub()
    try:
        subscriber.subscribe(channel)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the server confirms the subscription with a message
            reply = subscriber.get_message(timeout=deadline - time.monotonic())
            if reply is not None and reply["type"] == "subscribe":
                break
        counts = [r.publish(channel, message) for message in messages]
        received: list[str] = []
        deadline = time.monotonic() + 1.0
        while len(received) < len(messages) and time.monotonic() < deadline:
            reply = subscriber.get_message(timeout=deadline - time.monotonic())
            if reply is not None and reply["type"] == "message":
                received.append(reply["data"])
        return counts, received
    finally:
        subscriber.close()


def _round_trip_case(messages: list[str], *, others: int = 0):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[str]]:
        _leave()
        for _ in range(others):
            _seat(r, prefix, channels=("news",))
        return _base(prefix) + "news", messages

    return setup


def _read_messages(subscriber, count: int, seconds: float = 1.0) -> list[dict]:
    deadline = time.monotonic() + seconds
    replies: list[dict] = []
    while len(replies) < count and time.monotonic() < deadline:
        reply = subscriber.get_message(timeout=deadline - time.monotonic())
        if reply is not None:
            replies.append(reply)
    return replies


def round_trip_published_first(r, channel, messages):
    counts = [r.publish(channel, message) for message in messages]  # nobody of ours listens yet
    subscriber = r.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    received = [reply["data"] for reply in _read_messages(subscriber, len(messages))]
    subscriber.close()
    return counts, received


def round_trip_assumes_one_each(r, channel, messages):
    subscriber = r.pubsub()
    subscriber.subscribe(channel)
    _read_messages(subscriber, 1)  # the confirmation
    for message in messages:
        r.publish(channel, message)
    received = [reply["data"] for reply in _read_messages(subscriber, len(messages))]
    subscriber.close()
    return [1] * len(messages), received  # "one subscriber: mine"


def round_trip_confirmation_as_message(r, channel, messages):
    subscriber = r.pubsub()
    subscriber.subscribe(channel)
    counts = [r.publish(channel, message) for message in messages]
    received = [reply["data"] for reply in _read_messages(subscriber, len(messages))]  # starts with the confirmation
    subscriber.close()
    return counts, received


def round_trip_reads_one(r, channel, messages):
    subscriber = r.pubsub()
    subscriber.subscribe(channel)
    _read_messages(subscriber, 1)
    counts = [r.publish(channel, message) for message in messages]
    reply = subscriber.get_message(timeout=1.0)  # one message, however many were published
    subscriber.close()
    return counts, [reply["data"]] if reply else []


# ---------------------------------------------------------------------------------------------
# 2. One pattern for every alert channel, and nothing else.


def alerts(r, base: str, send) -> list[tuple[str, str]]:
    """Subscribe, with one pattern, to every channel whose name is `base` followed by `alerts:` and
    anything (`{base}alerts:disk`, `{base}alerts:cpu:eu`...), and to no other channel. Once the
    subscription is in effect, call `send()`: it publishes messages to various channels. Return
    (channel, message) for each message your subscriber received, in order, and close it; stop
    listening when no message has come for 0.2 seconds."""
    subscriber = r.pubsub()
    try:
        subscriber.psubscribe(f"{base}alerts:*")
        while (reply := subscriber.get_message(timeout=1.0)) is not None and reply["type"] != "psubscribe":
            pass  # wait (at most a second) for the server to confirm the subscription
        send()
        received = []
        while (reply := subscriber.get_message(timeout=0.2)) is not None:
            if reply["type"] == "pmessage":
                received.append((reply["channel"], reply["data"]))
        return received
    finally:
        subscriber.close()


def _alerts_case(published: list[tuple[str, str]]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, Callable[[], None]]:
        _leave()

        def send() -> None:
            for channel, message in published:
                r.publish(LESSON + channel.format(base=prefix), message)

        return _base(prefix), send

    return setup


def _quiet(subscriber, kind: str) -> list[tuple[str, str]]:
    received = []
    while (reply := subscriber.get_message(timeout=0.2)) is not None:
        if reply["type"] == kind:
            received.append((reply["channel"], reply["data"]))
    return received


def alerts_without_colon(r, base, send):
    subscriber = r.pubsub()
    subscriber.psubscribe(f"{base}alerts*")  # also {base}alertsdisk, {base}alerts-archive...
    _read_messages(subscriber, 1)
    send()
    received = _quiet(subscriber, "pmessage")
    subscriber.close()
    return received


def alerts_subscribe_not_psubscribe(r, base, send):
    subscriber = r.pubsub()
    subscriber.subscribe(f"{base}alerts:*")  # a channel named "...alerts:*", literally
    _read_messages(subscriber, 1)
    send()
    received = _quiet(subscriber, "message")
    subscriber.close()
    return received


def alerts_anywhere(r, base, send):
    subscriber = r.pubsub()
    subscriber.psubscribe("*alerts:*")  # other applications' alerts too
    _read_messages(subscriber, 1)
    send()
    received = _quiet(subscriber, "pmessage")
    subscriber.close()
    return received


def alerts_reports_pattern(r, base, send):
    subscriber = r.pubsub()
    subscriber.psubscribe(f"{base}alerts:*")
    _read_messages(subscriber, 1)
    send()
    received = []
    while (reply := subscriber.get_message(timeout=0.2)) is not None:
        if reply["type"] == "pmessage":
            received.append((reply["pattern"], reply["data"]))  # the pattern, not the channel
    subscriber.close()
    return received


# ---------------------------------------------------------------------------------------------
# 3. Who is subscribed, without disturbing anyone.


def subscriber_counts(r, channels: list[str]) -> dict[str, int]:
    """How many connections are subscribed to each of `channels` by its name (pattern
    subscriptions do not count)? Return {channel: count} for every channel asked, 0 for a channel
    nobody is subscribed to, without sending anything to anyone."""
    return dict(r.pubsub_numsub(*channels)) if channels else {}


def _counts_case(subscribers: dict[str, int], asked: list[str], *, pattern: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str]]:
        _leave()
        for channel, count in subscribers.items():
            for _ in range(count):
                _seat(r, prefix, channels=(channel,))
        if pattern:
            _seat(r, prefix, patterns=("*",))  # one connection hears every channel of the exercise
        return ([_base(prefix) + channel for channel in asked],)

    return setup


def subscriber_counts_by_probe(r, channels):
    return {channel: r.publish(channel, "ping") for channel in channels}  # a message to everyone


def subscriber_counts_active(r, channels):
    active = set(r.pubsub_channels())
    return {channel: int(channel in active) for channel in channels}  # active or not, not how many


def subscriber_counts_with_patterns(r, channels):
    patterns = r.pubsub_numpat()  # every pattern on the server, matching or not
    return {channel: count + patterns for channel, count in r.pubsub_numsub(*channels)}


def subscriber_counts_pairs(r, channels):
    return r.pubsub_numsub(*channels) if channels else []  # [(channel, count), ...], not a dict


# ---------------------------------------------------------------------------------------------
# 4. Announce now, keep for later.


def announce(r, channel: str, log: str, order: str) -> int:
    """Announce `order` to whoever is subscribed to `channel` right now (the message is the order
    itself), and keep it for consumers that start later: append it to the stream `log` as an
    entry with one field, `order`, after the orders already there. Return how many subscribers
    received the announcement."""
    pipe = r.pipeline()  # MULTI/EXEC: logged and announced together, logged first
    pipe.xadd(log, {"order": order})
    pipe.publish(channel, order)
    return pipe.execute()[1]


def _announce_case(order: str, *, listeners: int, earlier: tuple[str, ...] = ()):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str]:
        _leave()
        for earlier_order in earlier:
            r.xadd(f"{prefix}orders:log", {"order": earlier_order})
        for _ in range(listeners):
            _seat(r, prefix, channels=("orders",))
        return _base(prefix) + "orders", f"{prefix}orders:log", order

    return setup


def _log(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, the log's type and its entries' fields (ids are times: left out)."""
    key = f"{prefix}orders:log"
    kind = r.type(key)
    stream: Any = r.xrange(key) if kind == "stream" else []
    entries = [fields for _id, fields in stream]
    return result, kind, entries


def announce_publish_only(r, channel, log, order):
    return r.publish(channel, order)  # gone for anyone who starts later


def announce_log_only(r, channel, log, order):
    r.xadd(log, {"order": order})
    return 0  # nobody is told now


def announce_in_a_list(r, channel, log, order):
    r.rpush(log, order)
    return r.publish(channel, order)


def announce_keeping_the_last(r, channel, log, order):
    r.xadd(log, {"order": order}, maxlen=1, approximate=False)  # trims the earlier orders away
    return r.publish(channel, order)


EXERCISES = (
    Spec(
        number=1,
        title="subscribe, publish, receive",
        reference=round_trip,
        outcome=_with_audience(_returned),
        cases=(
            Case("three messages, nobody else subscribed", _round_trip_case(["m1", "m2", "m3"])),
            Case("the same message twice, with another subscriber listening",
                 _round_trip_case(["again", "again"], others=1)),
            Case("a message with spaces and accents", _round_trip_case(["café au lait, s'il vous plaît"])),
            Case("no messages at all", _round_trip_case([])),
        ),
        hint="SUBSCRIBE is confirmed by a first message of type 'subscribe': read it before you publish, "
             "and do not count it as a message.",
        wrong=(round_trip_published_first, round_trip_assumes_one_each, round_trip_confirmation_as_message,
               round_trip_reads_one),
    ),
    Spec(
        number=2,
        title="one pattern for the alerts",
        reference=alerts,
        cases=(
            Case("alerts among other channels", _alerts_case([
                ("{base}alerts:disk", "disk 90%"), ("{base}alertsdisk", "not an alert"), ("{base}news", "hello"),
                ("{base}alerts:memory", "memory 80%"), ("{base}alerts:disk", "disk 95%"),
                ("{base}alerts:cpu:eu", "cpu 99%")])),
            Case("another exercise's alerts (11_pubsub:ex9:alerts:disk)", _alerts_case([
                ("ex9:alerts:disk", "not ours"), ("{base}alerts:net", "net down")])),
            Case("no alerts at all", _alerts_case([("{base}news", "quiet day")])),
        ),
        hint="PSUBSCRIBE takes a glob-style pattern (SUBSCRIBE would take it as a channel's name), and "
             "a pmessage says both the pattern and the channel.",
        wrong=(alerts_without_colon, alerts_subscribe_not_psubscribe, alerts_anywhere, alerts_reports_pattern),
    ),
    Spec(
        number=3,
        title="how many subscribers, without a word",
        reference=subscriber_counts,
        outcome=_with_audience(_returned),
        cases=(
            Case("two, one and no subscribers, and a pattern subscriber hearing them all",
                 _counts_case({"orders": 2, "payments": 1}, ["orders", "payments", "refunds"])),
            Case("nobody subscribed at all", _counts_case({}, ["orders", "payments"], pattern=False)),
            Case("no channels asked", _counts_case({"orders": 1}, [])),
        ),
        hint="PUBSUB has a sub-command that counts a channel's subscribers; PUBLISH counts pattern "
             "subscribers too, and delivers the message.",
        wrong=(subscriber_counts_by_probe, subscriber_counts_active, subscriber_counts_with_patterns,
               subscriber_counts_pairs),
    ),
    Spec(
        number=4,
        title="announce now, keep for later",
        reference=announce,
        outcome=_with_audience(_log),
        cases=(
            Case("two subscribers listening, an empty log", _announce_case("order:1001", listeners=2)),
            Case("nobody listening: the order must still be kept", _announce_case("order:1002", listeners=0)),
            Case("a log with two earlier orders, one subscriber",
                 _announce_case("order:1003", listeners=1, earlier=("order:1001", "order:1002"))),
        ),
        hint="Pub/Sub keeps nothing for a consumer that is not there yet; a stream keeps every entry "
             "until it is trimmed.",
        wrong=(announce_publish_only, announce_log_only, announce_in_a_list, announce_keeping_the_last),
    ),
)
