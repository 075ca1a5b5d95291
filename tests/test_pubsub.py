"""Listener: real subscriber threads against the real server."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from redai_lab.lab.connection import connect
from redai_lab.patterns.pubsub import Listener, ListenerTimeout, Message

CHANNEL = "tests:pubsub:news"


def test_every_message_published_after_enter_arrives_in_order(r) -> None:
    with Listener(r, channels=[CHANNEL]) as listener:
        receivers = [r.publish(CHANNEL, f"m{i}") for i in range(200)]
        got = listener.wait_for(200)
    assert receivers == [1] * 200
    assert [m.data for m in got] == [f"m{i}" for i in range(200)]
    assert got[0] == Message(channel=CHANNEL, data="m0", pattern=None)


def test_concurrent_publishers_lose_nothing(redis_url, r) -> None:
    def publish(worker: int) -> None:
        client = connect(redis_url)
        for i in range(100):
            client.publish(CHANNEL, f"{worker}:{i}")
        client.close()

    with Listener(r, channels=[CHANNEL]) as listener:
        threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = listener.wait_for(400)
    assert sorted(m.data for m in got) == sorted(f"{w}:{i}" for w in range(4) for i in range(100))
    for worker in range(4):  # each publisher's own messages keep their order
        mine = [m.data for m in got if m.data.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{i}" for i in range(100)]


def test_at_most_once_a_message_without_subscribers_is_gone(r) -> None:
    assert r.publish(CHANNEL, "nobody listens") == 0
    with Listener(r, channels=[CHANNEL]) as listener:
        r.publish(CHANNEL, "after")
        got = listener.wait_for(1)
    assert [m.data for m in got] == ["after"]
    assert r.publish(CHANNEL, "after exit") == 0  # leaving the block unsubscribed


def test_patterns_channels_and_databases(r, lab_server) -> None:
    other_db = connect(lab_server.url, db=0)  # Pub/Sub ignores databases
    with Listener(r, channels=[CHANNEL], patterns=["tests:pubsub:orders:*"]) as listener:
        assert other_db.publish("tests:pubsub:orders:42", "paid") == 1
        assert other_db.publish("tests:pubsub:other", "ignored") == 0
        assert r.publish(CHANNEL, "news") == 1
        got = listener.wait_for(2)
    other_db.close()
    assert got == [
        Message(channel="tests:pubsub:orders:42", data="paid", pattern="tests:pubsub:orders:*"),
        Message(channel=CHANNEL, data="news"),
    ]


def test_two_listeners_each_get_every_message(r) -> None:
    with Listener(r, channels=[CHANNEL]) as first, Listener(r, channels=[CHANNEL]) as second:
        assert r.publish(CHANNEL, "both") == 2
        assert [m.data for m in first.wait_for(1)] == [m.data for m in second.wait_for(1)] == ["both"]


def test_wait_for_times_out_with_a_clear_error(r) -> None:
    expected = r"Expected 1 messages on \['tests:pubsub:news'\], got 0 in 0.2s"
    with Listener(r, channels=[CHANNEL]) as listener, pytest.raises(ListenerTimeout, match=expected):
        listener.wait_for(1, timeout=0.2)


def test_wait_for_returns_at_once_when_enough_have_arrived(r) -> None:
    with Listener(r, channels=[CHANNEL]) as listener:
        r.publish(CHANNEL, "one")
        assert [m.data for m in listener.wait_for(1)] == ["one"]
        # Already there: no waiting (a wait for one more would hang here, and fail by timeout).
        assert [m.data for m in listener.wait_for(1, timeout=3600)] == ["one"]
        assert listener.wait_for(0, timeout=3600) == [Message(channel=CHANNEL, data="one")]


def test_a_short_confirm_timeout_is_enough_on_a_local_server(r) -> None:
    with Listener(r, channels=[CHANNEL], confirm_timeout=0.5) as listener:
        r.publish(CHANNEL, "quick")
        assert [m.data for m in listener.wait_for(1)] == ["quick"]


def test_a_message_cannot_be_changed(r) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Message(channel=CHANNEL, data="x").data = "y"  # type: ignore[misc]


def test_needs_something_to_subscribe_to(r) -> None:
    with pytest.raises(ValueError, match="at least one channel or pattern"):
        Listener(r)


def test_a_name_given_twice_is_subscribed_once(r) -> None:
    with Listener(r, channels=[CHANNEL, CHANNEL], patterns=["tests:pubsub:*", "tests:pubsub:*"],
                  confirm_timeout=2) as listener:
        assert r.publish(CHANNEL, "once") == 2  # the channel and the pattern, one of each
        got = listener.wait_for(2)
    assert (listener.channels, listener.patterns) == ([CHANNEL], ["tests:pubsub:*"])
    assert [(m.data, m.pattern) for m in got] == [("once", None), ("once", "tests:pubsub:*")]
