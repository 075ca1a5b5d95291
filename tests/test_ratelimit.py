"""redai_lab.patterns.ratelimit: exact under real concurrency, one round trip per check, a TTL on every key."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from topologies import connect_to

from redai_lab.patterns.ratelimit import (
    GCRA,
    FixedWindow,
    RateLimiter,
    SlidingLog,
    SlidingWindowCounter,
    TokenBucket,
)

pytestmark = pytest.mark.cluster_too

ALGORITHMS = [FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket, GCRA]
algorithms = pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda cls: cls.__name__)


def longest_wait(limiter: RateLimiter) -> float:
    # A full current window of the sliding window counter still weighs on the next one.
    return 2 * limiter.period if isinstance(limiter, SlidingWindowCounter) else limiter.period


def keys_of(r, limiter: RateLimiter) -> list[str]:
    return sorted(r.scan_iter(match=f"{{rl:{limiter.name}:*", count=1000))


@algorithms
def test_100_threads_racing_a_limit_of_5_admit_exactly_5(algorithm, redis_url) -> None:
    # A pool big enough for every thread to hold a connection at once: they really race.
    client = connect_to(redis_url, max_connections=110)
    limiter = algorithm(client, "race", limit=5, period=60)
    start = threading.Barrier(100)

    def request(_: int) -> bool:
        start.wait()
        return limiter.hit("alice").allowed

    with ThreadPoolExecutor(max_workers=100) as pool:
        admitted = sum(pool.map(request, range(100)))
    client.close()
    assert admitted == 5


@algorithms
def test_a_same_second_burst_is_counted_exactly(algorithm, r) -> None:
    limiter = algorithm(r, "burst", limit=10, period=60)
    results = [limiter.hit("alice") for _ in range(25)]
    assert [res.allowed for res in results] == [True] * 10 + [False] * 15
    assert [res.remaining for res in results[:10]] == list(range(9, -1, -1))
    assert all(0 < res.retry_after <= longest_wait(limiter) for res in results[10:])
    assert all(res.retry_after == 0 for res in results[:10])


@algorithms
def test_every_key_written_has_a_ttl(algorithm, r) -> None:
    # An hour-long period: no window ends (and no key expires) while the test runs.
    limiter = algorithm(r, "ttl", limit=3, period=3600)
    for identity in range(20):
        for _ in range(5):
            limiter.hit(f"user{identity}", cost=1 + identity % 3)
    keys = keys_of(r, limiter)
    assert len(keys) == 20
    assert all(r.pttl(key) > 0 for key in keys)  # PTTL: TTL rounds a last half second to 0


@algorithms
def test_a_rejected_check_writes_nothing(algorithm, r) -> None:
    limiter = algorithm(r, "nowrite", limit=2, period=60)
    assert not limiter.hit("alice", cost=3).allowed
    assert keys_of(r, limiter) == []


@algorithms
def test_cost_above_the_limit_is_refused_for_ever_and_consumes_nothing(algorithm, r) -> None:
    limiter = algorithm(r, "cost", limit=5, period=60)
    limiter.hit("alice", cost=2)
    refused = limiter.hit("alice", cost=6)
    assert not refused.allowed
    assert refused.retry_after == math.inf
    assert refused.remaining == 3
    assert limiter.hit("alice", cost=3).allowed  # the refused request took nothing
    assert not limiter.hit("alice").allowed


@algorithms
def test_cost_counts_units(algorithm, r) -> None:
    limiter = algorithm(r, "units", limit=5, period=60)
    first = limiter.hit("alice", cost=3)
    second = limiter.hit("alice", cost=3)
    assert (first.allowed, first.remaining) == (True, 2)
    assert (second.allowed, second.remaining) == (False, 2)
    assert limiter.hit("alice", cost=2).allowed


@pytest.mark.server_only  # counts one connection's round trips
@algorithms
def test_one_round_trip_per_check(algorithm, round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    limiter = algorithm(client, "trips", limit=3, period=60)
    limiter.hit("warm-up")  # the first check ever may load the script (NOSCRIPT, SCRIPT LOAD)
    with round_trips.measure() as trips:
        for _ in range(5):
            limiter.hit("alice")
    assert trips.count == 5


@algorithms
def test_retry_after_is_honest(algorithm, r) -> None:
    limiter = algorithm(r, "retry", limit=3, period=0.3)
    while (result := limiter.hit("alice")).allowed:
        pass
    assert 0 < result.retry_after <= longest_wait(limiter)
    time.sleep(result.retry_after + 0.02)
    assert limiter.hit("alice").allowed


@algorithms
def test_identities_and_limiters_are_independent(algorithm, r) -> None:
    one = algorithm(r, "one", limit=1, period=60)
    two = algorithm(r, "two", limit=1, period=60)
    assert one.hit("alice").allowed and one.hit("bob").allowed and two.hit("alice").allowed
    assert not one.hit("alice").allowed
    one.reset("alice")
    assert one.hit("alice").allowed


@algorithms
def test_works_with_bytes_replies(algorithm, redis_url) -> None:
    client = connect_to(redis_url, decode_responses=False)
    limiter = algorithm(client, "bytes", limit=2, period=60)
    assert [limiter.hit(7).allowed for _ in range(3)] == [True, True, False]
    client.close()


def test_keys_of_one_identity_share_a_cluster_slot(r) -> None:
    limiter = SlidingLog(r, "api", limit=5, period=60)
    assert limiter.key("user:42") == "{rl:api:user:42}:log"


# Simulated time (``now=``): the exact shape of each algorithm, independent of the test's speed.
def admitted_at(limiter: RateLimiter, times: list[float]) -> list[bool]:
    return [limiter.hit("sim", now=1_000_000 + t).allowed for t in times]


def test_fixed_window_admits_twice_the_limit_across_a_window_edge(r) -> None:
    limiter = FixedWindow(r, "edge", limit=5, period=10)
    assert admitted_at(limiter, [9.9] * 6 + [10.0] * 6) == ([True] * 5 + [False]) * 2


def test_sliding_log_never_admits_more_than_the_limit_in_any_period(r) -> None:
    limiter = SlidingLog(r, "edge", limit=5, period=10)
    assert admitted_at(limiter, [9.9] * 5 + [10.0, 19.8, 19.9]) == [True] * 5 + [False, False, True]


def test_sliding_window_counter_weights_the_previous_window(r) -> None:
    limiter = SlidingWindowCounter(r, "edge", limit=10, period=10)
    admitted_at(limiter, [5.0] * 10)  # previous window: 10
    # 2 s into the next window, 80% of the previous count remains: 8, so 2 more fit.
    assert admitted_at(limiter, [12.0] * 3) == [True, True, False]


@pytest.mark.parametrize("algorithm", [TokenBucket, GCRA], ids=lambda cls: cls.__name__)
def test_token_bucket_and_gcra_refill_at_the_steady_rate(algorithm, r) -> None:
    limiter = algorithm(r, "rate", limit=5, period=10)  # one request every 2 s after a burst of 5
    assert admitted_at(limiter, [0] * 6) == [True] * 5 + [False]
    assert admitted_at(limiter, [1.9, 2.0, 2.1, 4.0]) == [False, True, False, True]


def test_token_bucket_retry_after_survives_float_rounding(r) -> None:
    limiter = TokenBucket(r, "float", limit=5, period=1)  # a token every 0.2 s
    assert admitted_at(limiter, [0] * 5 + [0.223371]) == [True] * 6  # 0.116855 tokens left
    refused = limiter.hit("sim", now=1_000_000 + 0.223372)
    # Exactly, the token is due at 0.4 s; in floating point 0.116855 + 0.176629 * 5 is 0.99999...
    # there, so the honest wait is one microsecond longer.
    assert not refused.allowed
    assert admitted_at(limiter, [0.223372 + refused.retry_after]) == [True]


def test_gcra_burst_fits_exactly_when_the_interval_is_not_whole(r) -> None:
    limiter = GCRA(r, "odd", limit=7, period=1)  # 142857.14... µs: rounded up, never short of 7
    assert admitted_at(limiter, [0] * 8) == [True] * 7 + [False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a:b", "limit": 1, "period": 1}, "name"),
        ({"name": "api", "limit": 0, "period": 1}, "limit"),
        ({"name": "api", "limit": 2.5, "period": 1}, "limit"),
        ({"name": "api", "limit": 1, "period": 0}, "period"),
        ({"name": "api", "limit": 1, "period": 0.0001}, "period"),
    ],
)
def test_bad_parameters_are_refused_with_one_line(kwargs, message, r) -> None:
    with pytest.raises(ValueError, match=message):
        GCRA(r, **kwargs)


@pytest.mark.parametrize("cost", [0, -1, 1.5, True])
def test_bad_cost_is_refused(cost, r) -> None:
    with pytest.raises(ValueError, match="cost"):
        TokenBucket(r, "api", limit=5, period=1).hit("alice", cost=cost)


@algorithms
def test_state_on_a_simulated_clock_outlives_real_pauses(algorithm, r) -> None:
    limiter = algorithm(r, "slow", limit=2, period=10)
    assert admitted_at(limiter, [9.95, 9.95]) == [True, True]  # a TTL of 50 ms, simulated
    time.sleep(0.1)  # the real clock moves on; the simulated one did not
    assert admitted_at(limiter, [9.95]) == [False]


# Exact answers on a simulated clock, one scenario per algorithm: every field of every result.
# The clock is hit(now=...): the same script, which takes ``now`` from its argument instead of
# TIME and adds a minute to each key's TTL (simulated time does not pass while the test runs).
# Nothing else differs, and the production path (no ``now``) is held to the server's clock by
# test_the_key_lives_exactly_as_long_as_its_state_counts: no slack, no other clock.
# (time, cost) -> (allowed, remaining, retry_after, reset_after); times in seconds after an epoch
# second that is a multiple of every period, so windows start at 0.
INF = math.inf
EXACT = {
    FixedWindow: (3, 10, [
        ((1, 1), (True, 2, 0, 9)),
        ((2, 2), (True, 0, 0, 8)),
        ((3, 1), (False, 0, 7, 7)),  # the window ends at 10
        ((9.5, 4), (False, 0, INF, 0.5)),  # more than the limit: never
        ((10, 1), (True, 2, 0, 10)),  # a new window, a new count
    ]),
    SlidingLog: (3, 10, [
        ((0, 1), (True, 2, 0, 10)),
        ((4, 1), (True, 1, 0, 10)),
        ((6, 1), (True, 0, 0, 10)),
        ((7, 1), (False, 0, 3, 9)),  # the oldest entry (0) leaves at 10; the newest (6) at 16
        ((7, 2), (False, 0, 7, 9)),  # two must leave: the second oldest (4) leaves at 14
        ((10, 1), (True, 0, 0, 10)),  # the entry at 0 is out of (0, 10]
        ((13.5, 4), (False, 0, INF, 6.5)),
    ]),
    SlidingWindowCounter: (8, 8, [
        ((4, 8), (True, 0, 0, 12)),  # counted until the end of the next window, 16
        ((6, 1), (False, 0, 3, 10)),  # at 9 the previous 8 weigh 8 * 7/8 = 7: one more fits
        ((11.5, 1), (True, 2, 0, 12.5)),  # 8 * 4.5/8 = 4.5 weigh: floor(8 - 4.5 - 1) = 2 left
        ((11.5, 3), (False, 2, 0.5, 12.5)),  # 4.5 + 1 + 3 > 8; at 12, 4 + 1 + 3 = 8 fits
        ((12, 3), (True, 0, 0, 12)),
        ((20, 9), (False, 6, INF, 4)),  # this window's 4 now weigh 4 * 4/8 = 2
    ]),
    TokenBucket: (4, 8, [  # a token every 2 s
        ((0, 1), (True, 3, 0, 2)),
        ((0, 3), (True, 0, 0, 8)),
        ((1, 1), (False, 0, 1, 7)),  # half a token at 1
        ((3, 1), (True, 0, 0, 7)),  # 1.5 tokens at 3, 0.5 left
        ((4, 5), (False, 1, INF, 6)),
    ]),
    GCRA: (4, 8, [  # the same bucket as one number: the same answers
        ((0, 1), (True, 3, 0, 2)),
        ((0, 3), (True, 0, 0, 8)),
        ((1, 1), (False, 0, 1, 7)),
        ((3, 1), (True, 0, 0, 7)),
        ((4, 5), (False, 1, INF, 6)),
    ]),
}
EPOCH = 1_000_000  # seconds: a multiple of 8 and of 10


@algorithms
def test_exact_answers_on_a_simulated_clock(algorithm, r) -> None:
    limit, period, steps = EXACT[algorithm]
    limiter = algorithm(r, "exact", limit=limit, period=period)
    answers = [limiter.hit("sim", cost, now=EPOCH + t) for (t, cost), _ in steps]
    got = [(a.allowed, a.remaining, a.retry_after, a.reset_after) for a in answers]
    assert got == [expected for _, expected in steps]


@pytest.mark.parametrize("algorithm", [SlidingLog, SlidingWindowCounter, TokenBucket, GCRA], ids=lambda c: c.__name__)
def test_an_oversized_first_request_finds_nothing_to_reset(algorithm, r) -> None:
    # (A fixed window reports the time to its window's end whatever was used.)
    result = algorithm(r, "fresh", limit=3, period=60).hit("alice", cost=4, now=EPOCH)
    assert (result.allowed, result.remaining, result.retry_after, result.reset_after) == (False, 3, INF, 0)


def test_sliding_window_counter_resets_when_a_single_previous_request_has_decayed(r) -> None:
    limiter = SlidingWindowCounter(r, "one", limit=3, period=60)
    start = 1_000_020  # a multiple of 60
    limiter.hit("alice", now=start + 10)  # window [0, 60): one request
    refused = limiter.hit("alice", cost=4, now=start + 70)  # window [60, 120): it weighs 5/6
    assert (refused.remaining, refused.reset_after) == (2, 50)  # gone at 120


@pytest.mark.parametrize(
    ("first", "then", "retry"),
    [
        ((1, 3), (2, 1), 11.333334),  # this window is full: wait into the next, 10 + 10/3 s
        ((1, 3), (11, 2), 2.333334),  # the previous 3 must decay to 2: at 10 + 10/3 s
    ],
)
def test_sliding_window_counter_retry_is_rounded_up_to_the_microsecond(r, first, then, retry) -> None:
    # 10/3 s is no whole number of microseconds: rounding down would answer a moment too soon.
    limiter = SlidingWindowCounter(r, "round", limit=3 if then[1] == 1 else 4, period=10)
    limiter.hit("alice", first[1], now=EPOCH + first[0])
    refused = limiter.hit("alice", then[1], now=EPOCH + then[0])
    assert not refused.allowed and refused.retry_after == retry
    at = EPOCH + then[0] + retry
    late = limiter.hit("alice", then[1], now=at - 0.000001)
    assert (late.allowed, late.retry_after) == (False, 0.000001)  # one microsecond short
    assert limiter.hit("alice", then[1], now=at).allowed


def test_a_result_cannot_be_changed_after_the_check(r) -> None:
    result = GCRA(r, "frozen", limit=1, period=60).hit("alice")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.allowed = False  # type: ignore[misc]


@algorithms
def test_the_key_lives_exactly_as_long_as_its_state_counts(algorithm, r) -> None:
    # Real clock: PEXPIRE is the reset time, rounded up to a millisecond, and no more (a slack
    # would mean the script took its time from somewhere else than the server's TIME). The
    # lower bound leaves 30 s for the PTTL to arrive, far less than a period of the counter's
    # state (it must outlive the window it was counted in by a whole period).
    limiter = algorithm(r, "lifetime", limit=3, period=60)
    result = limiter.hit("alice")
    ttl = r.pttl(limiter.key("alice"))
    assert result.reset_after * 1000 - 30_000 < ttl <= math.ceil(result.reset_after * 1000)
    if isinstance(limiter, SlidingWindowCounter):
        assert ttl > 60_000  # counted in this window, it still weighs on the next


@algorithms
def test_a_simulated_clock_adds_one_minute_to_the_key_and_nothing_else(algorithm, r) -> None:
    limiter = algorithm(r, "simlife", limit=3, period=60)
    result = limiter.hit("alice", now=EPOCH + 1)
    ttl = r.pttl(limiter.key("alice"))
    assert 60_000 + result.reset_after * 1000 - 30_000 < ttl <= 60_000 + math.ceil(result.reset_after * 1000)

