"""RoundTripCounter counts socket writes: one per command, one per pipeline, none for handshakes."""

from __future__ import annotations


def test_one_command_is_one_round_trip(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    with round_trips.measure() as trips:
        client.set("k", "v")
        client.get("k")
    assert trips.count == 2


def test_a_pipeline_is_one_round_trip(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    with round_trips.measure() as trips:
        pipe = client.pipeline(transaction=True)
        for i in range(100):
            pipe.set(f"k{i}", i)
        pipe.execute()
    assert trips.count == 1


def test_a_new_connection_handshake_is_not_counted(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url, check=False)  # no PING: the first command connects
    with round_trips.measure() as trips:
        client.get("k")
    assert trips.count == 1
