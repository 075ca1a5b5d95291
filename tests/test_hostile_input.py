"""Bad input and hostile data get each pattern module's own one-line error (issue 16, item 10).

Hostile data is planted with a raw client, as anyone who can write to the server could: keys
of another type, garbage and pickles where a helper keeps its state. The helper must answer
with its own error, change nothing it did not write, and never unpickle.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from redai_lab import connect
from redai_lab.errors import MAX_SECONDS, InvalidArgument, InvalidArgumentType, LabError, check_seconds
from redai_lab.patterns.cache import Cache, CacheEntryError, should_recompute_early
from redai_lab.patterns.capped import CappedList, CappedListDataError
from redai_lab.patterns.leaderboard import Leaderboard, LeaderboardDataError
from redai_lab.patterns.locks import FencedStorage, Lock, LockDataError, Semaphore, contend
from redai_lab.patterns.pubsub import Listener, ListenerDataError
from redai_lab.patterns.ratelimit import (
    GCRA,
    MAX_NOW,
    FixedWindow,
    RateLimitDataError,
    SlidingLog,
    SlidingWindowCounter,
    TokenBucket,
)
from redai_lab.patterns.serializers import JsonSerializer, SerializationError
from redai_lab.patterns.sessions import SessionDataError, SessionNotFound, SessionStore

NAN, INF = math.nan, math.inf
BAD_SECONDS = [NAN, INF, -INF, -1, 0, "5", None, True, MAX_SECONDS + 1, 10**400]
LIMITERS = [FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket, GCRA]
limiters = pytest.mark.parametrize("algorithm", LIMITERS, ids=lambda cls: cls.__name__)


def refused(error: type[Exception], call: Callable[[], object]) -> str:
    """``call()`` raises ``error``, a LabError with one line; returns that line."""
    with pytest.raises(error) as caught:
        call()
    text = str(caught.value)
    assert isinstance(caught.value, LabError)
    assert text and "\n" not in text
    return text


class RunsCode:
    """Unpickling this runs ``touch <path>``: what an attacker would plant."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


def snapshot(r: redis.Redis, key: str) -> object:
    """What a key holds, to show it was left as it was: DUMP (type and value, byte for byte), and
    its TTL to the minute (it ticks while the test runs; a write would set it anew)."""
    return r.dump(key), round(r.pttl(key) / 60_000)


# -- the shared checks ----------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_durations_are_finite_positive_numbers_up_to_a_century(value: object) -> None:
    error = InvalidArgumentType if value is None or isinstance(value, str) else InvalidArgument
    refused(error, lambda: check_seconds("ttl", value))
    assert check_seconds("ttl", MAX_SECONDS) == MAX_SECONDS and check_seconds("ttl", 0, zero=True) == 0


# -- rate limits ----------------------------------------------------------------------------


@limiters
@pytest.mark.parametrize("identity", [None, object(), True, 1.5, b"alice", ("a",)], ids=repr)
def test_identities_that_are_no_str_or_int_are_refused(algorithm, r, identity: object) -> None:
    limiter = algorithm(r, "who", limit=1, period=60)
    text = refused(InvalidArgumentType, lambda: limiter.hit(identity))  # type: ignore[arg-type]
    assert "never None or an object" in text
    refused(InvalidArgument, lambda: limiter.hit(""))
    assert r.keys("*") == []  # no shared bucket, no bucket per call
    assert limiter.hit(42).allowed and limiter.hit("42").allowed is False  # an int is its digits


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        *[({"period": bad}, InvalidArgumentType if bad is None or isinstance(bad, str) else InvalidArgument)
          for bad in BAD_SECONDS],
        ({"limit": None}, InvalidArgumentType),
        ({"limit": 2**60}, InvalidArgument),
        ({"limit": NAN}, InvalidArgument),
        ({"name": None}, InvalidArgumentType),
    ],
    ids=repr,
)
def test_limiter_parameters_are_refused_in_one_line(kwargs: dict[str, object], error: type[Exception], r) -> None:
    refused(error, lambda: TokenBucket(r, **{"name": "api", "limit": 5, "period": 1, **kwargs}))


def test_limiter_boundaries_are_accepted(r) -> None:
    assert TokenBucket(r, "edge", limit=2**53, period=0.001).period == 0.001
    refused(InvalidArgument, lambda: TokenBucket(r, "edge", limit=2**53 + 1, period=1))
    refused(InvalidArgument, lambda: TokenBucket(r, "edge", limit=1, period=0.000999))
    limiter = GCRA(r, "edge", limit=1, period=1)
    assert limiter.hit("alice", now=0).allowed and not limiter.hit("alice", now=0.5).allowed
    assert limiter.hit("bob", now=MAX_NOW).allowed  # the last second whose microseconds are exact
    refused(InvalidArgument, lambda: limiter.hit("bob", now=MAX_NOW + 1))


def test_a_sliding_log_limit_that_would_stall_the_server_is_refused(r) -> None:
    refused(InvalidArgument, lambda: SlidingLog(r, "big", limit=1_000_001, period=1))
    assert SlidingLog(r, "big", limit=1_000_000, period=1).limit == 1_000_000


@pytest.mark.parametrize("now", [NAN, INF, -1, True, 2**60])
@pytest.mark.parametrize("cost", [1, NAN])
def test_a_simulated_clock_and_a_cost_must_be_numbers_in_range(r, now: object, cost: object) -> None:
    limiter = GCRA(r, "clock", limit=5, period=1)
    refused(InvalidArgument, lambda: limiter.hit("alice", cost, now=now))  # type: ignore[arg-type]
    assert r.keys("*") == []


@limiters
def test_a_limiter_key_of_another_type_is_left_alone(algorithm, r) -> None:
    limiter = algorithm(r, "typed", limit=3, period=60)
    key = limiter.key("alice")
    if algorithm is GCRA:
        r.hset(key, "tat", "1")
    else:
        r.set(key, "not a limiter's state")
    before = snapshot(r, key)
    text = refused(RateLimitDataError, lambda: limiter.hit("alice"))
    assert "another Redis type" in text and "limiter.reset('alice')" in text
    assert snapshot(r, key) == before
    limiter.reset("alice")
    assert limiter.hit("alice").allowed


@pytest.mark.parametrize("garbage", ["abc", "nan", "inf", "-1", ""])
@pytest.mark.parametrize(
    ("algorithm", "field"),
    [(FixedWindow, "window"), (FixedWindow, "count"), (SlidingWindowCounter, "window"),
     (SlidingWindowCounter, "current"), (SlidingWindowCounter, "previous"), (TokenBucket, "tokens"),
     (TokenBucket, "time"), (GCRA, None)],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_garbled_limiter_state_is_refused_and_left_alone(algorithm, field, garbage: str, r) -> None:
    limiter = algorithm(r, "garbled", limit=3, period=60)
    key = limiter.key("alice")
    now = 1_000_020  # window state of this instant: the garbled field is the one read
    limiter.hit("alice", now=now)
    if field is None:
        r.set(key, garbage)
    else:
        r.hset(key, field, garbage)
    before = snapshot(r, key)
    text = refused(RateLimitDataError, lambda: limiter.hit("alice", now=now))
    assert f"{key!r} holds a field that is not a number this limiter stored, not this limiter's state" in text
    assert snapshot(r, key) == before


@pytest.mark.parametrize(("algorithm", "planted", "remaining"), [
    (FixedWindow, {"window": 1_000_020_000_000}, 2),  # the window without its count: none used
    (SlidingWindowCounter, {"window": 1_000_020_000_000}, 2),
    (SlidingWindowCounter, {"window": 1_000_020_000_000 - 60_000_000}, 2),  # the previous window's, no count
    (TokenBucket, {"time": 1_000_020_000_000}, 2),  # no tokens field: a full bucket
])
def test_a_missing_field_counts_as_the_empty_state(algorithm, planted: dict, remaining: int, r) -> None:
    limiter = algorithm(r, "partial", limit=3, period=60)
    r.hset(limiter.key("alice"), mapping=planted)
    assert limiter.hit("alice", now=1_000_020).remaining == remaining


# -- sessions -------------------------------------------------------------------------------


@pytest.fixture
def store(r) -> SessionStore:
    return SessionStore(r)


def session_calls(store: SessionStore, sid: str) -> list[Callable[[], object]]:
    return [lambda: store.get(sid), lambda: store.update(sid, {"a": 2}), lambda: store.rotate(sid)]


def test_a_session_key_of_another_type_is_session_data_error(store, r) -> None:
    sid = store.create({"a": 1})
    key = store.key(sid)
    r.delete(key)
    r.rpush(key, "planted")
    for call in session_calls(store, sid):
        text = refused(SessionDataError, call)
        token = sid.split(".")[1]
        assert "another Redis type" in text and token not in text and token[:6] in text  # ids are secrets
    assert r.lrange(key, 0, -1) == ["planted"]
    with pytest.raises(SessionNotFound):  # what callers already catch: treated as logged out
        store.get(sid)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"delete": "@deadline"}, "without a @deadline"),
        ({"set": ("@deadline", "soon")}, "not a time in ms"),
        ({"set": ("@deadline", "nan")}, "not a time in ms"),
        ({"delete": "@created"}, "no @created"),
        ({"set": ("@created", "yesterday")}, "no @created"),
        ({"set": ("cart", "{not json")}, "a field 'cart'"),
        ({"set": ("cart", "NaN")}, "a field 'cart'"),
        ({"set": ("cart", "[" * 100_000)}, "a field 'cart'"),
    ],
    ids=repr,
)
def test_garbled_session_fields_are_session_data_error(store, r, change: dict, problem: str) -> None:
    sid = store.create({"cart": [1]})
    key = store.key(sid)
    if "delete" in change:
        r.hdel(key, change["delete"])
    else:
        r.hset(key, *change["set"])
    before = snapshot(r, key)
    assert problem in refused(SessionDataError, lambda: store.get(sid))
    if problem.startswith("a field") or "@created" in problem:
        return  # the deadline is sound: update and rotate never read the data or @created
    assert snapshot(r, key) == before
    for call in session_calls(store, sid):
        assert problem in refused(SessionDataError, call)
    assert snapshot(r, key) == before


@pytest.mark.parametrize("decode_responses", [True, False])
def test_a_pickle_in_a_session_field_is_never_unpickled(redis_url: str, r, tmp_path: Path, decode_responses: bool) -> None:
    marker = tmp_path / "pwned"
    client = connect(redis_url, decode_responses=decode_responses)
    store = SessionStore(client)
    sid = store.create({"cart": [1]}, user_id=7)
    r.hset(store.key(sid), "cart", pickle.dumps(RunsCode(marker)))
    refused(SessionDataError, lambda: store.get(sid))
    r.hset(store.key(sid), "@user", b"\xff\xfe")  # and the owner, as bytes no text decodes
    refused(SessionDataError, lambda: store.rotate(sid))
    assert not marker.exists()
    assert client.ping()
    client.close()


def test_a_user_index_of_another_type_or_with_foreign_members_is_refused(store, r) -> None:
    index = store.index_key(7)
    r.set(index, "planted")
    for call in (lambda: store.create(user_id=7), lambda: store.sessions_of(7), lambda: store.logout_everywhere(7)):
        assert "another Redis type" in refused(SessionDataError, call)
    assert r.get(index) == "planted"
    r.delete(index)
    victim = store.create({"a": 1})
    r.zadd(index, {"user:8": 1, "../../etc": 2})  # names that would address other keys
    for call in (lambda: store.sessions_of(7), lambda: store.logout_everywhere(7)):
        assert "members that are not session ids" in refused(SessionDataError, call)
    assert store.get(victim).data == {"a": 1} and r.zcard(index) == 2


@pytest.mark.parametrize("user_id", [object(), True, 1.5, b"7", ""], ids=repr)
def test_user_ids_are_str_or_int(store, r, user_id: object) -> None:
    error = InvalidArgument if user_id == "" else InvalidArgumentType
    for call in (lambda: store.create(user_id=user_id), lambda: store.sessions_of(user_id),
                 lambda: store.logout_everywhere(user_id)):
        refused(error, call)  # type: ignore[arg-type]
    sid = store.create()
    refused(error, lambda: store.rotate(sid, user_id=user_id))  # type: ignore[arg-type]
    assert store.sessions_of(7) == []
    assert r.keys("session:user:*") == []


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("parameter", ["idle_ttl", "max_lifetime"])
def test_session_durations_are_checked(r, parameter: str, value: object) -> None:
    error = InvalidArgumentType if value is None or isinstance(value, str) else InvalidArgument
    refused(error, lambda: SessionStore(r, **{parameter: value}))


def test_session_data_must_be_a_mapping_with_str_names(store) -> None:
    refused(InvalidArgumentType, lambda: store.create([("a", 1)]))  # type: ignore[arg-type]
    sid = store.create()
    refused(InvalidArgument, lambda: store.update(sid, {1: "x"}))  # type: ignore[dict-item]
    refused(SerializationError, lambda: store.update(sid, {"x": math.nan}))


# -- cache ----------------------------------------------------------------------------------


def test_a_cache_entry_or_lease_of_another_type_is_cache_entry_error(r) -> None:
    cache = Cache(r, "t", wait_timeout=60)
    calls = []
    r.hset("t:k", "field", "planted")
    for call in (lambda: cache.get("k"), lambda: cache.get_or_load("k", lambda: calls.append(1))):
        assert "another Redis type" in refused(CacheEntryError, call)
    r.delete("t:k")
    r.hset(cache.lease_key("k"), "field", "planted")  # every caller would wait for a loader that is not there
    assert "lease key of another Redis type" in refused(CacheEntryError, lambda: cache.get_or_load("k", lambda: 1))
    assert calls == [] and r.hgetall(cache.lease_key("k")) == {"field": "planted"} and not r.exists("t:k")


@pytest.mark.parametrize("delta", ["nan", "inf", "-5", "x"])
def test_a_garbled_recompute_time_is_cache_entry_error(r, delta: str) -> None:
    r.set("t:k", f"rc1:json:99999999999999:{delta}:1")
    assert "corrupt entry" in refused(CacheEntryError, lambda: Cache(r, "t").get_or_load("k", lambda: 2))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        *[({"ttl": bad}, InvalidArgumentType if bad is None or isinstance(bad, str) else InvalidArgument)
          for bad in BAD_SECONDS],
        ({"lease_ttl": INF}, InvalidArgument),
        ({"wait_timeout": NAN}, InvalidArgument),
        ({"stale_ttl": INF}, InvalidArgument),
        ({"stale_ttl": -1}, InvalidArgument),
        ({"negative_ttl": NAN}, InvalidArgument),
        ({"negative_ttl": 0}, InvalidArgument),
        ({"jitter": NAN}, InvalidArgument),
        ({"beta": NAN}, InvalidArgument),
        ({"beta": INF}, InvalidArgument),
        ({"namespace": None}, InvalidArgument),
    ],
    ids=repr,
)
def test_cache_settings_are_checked(r, options: dict[str, object], error: type[Exception]) -> None:
    refused(error, lambda: Cache(r, **options))  # type: ignore[arg-type]


def test_cache_calls_check_their_arguments(r) -> None:
    cache = Cache(r, "t")
    refused(InvalidArgument, lambda: cache.get_or_load("k", lambda: 1, ttl=NAN))
    refused(InvalidArgument, lambda: cache.get_or_load("k", lambda: None, negative_ttl=INF))
    refused(InvalidArgument, lambda: cache.set("k", 1, ttl=INF))
    refused(InvalidArgument, lambda: cache.set("k", 1, delta=NAN))
    refused(InvalidArgument, lambda: cache.warm([("k", 1)], chunk_size=2.5))  # type: ignore[arg-type]
    refused(InvalidArgumentType, lambda: cache.get(None))  # type: ignore[arg-type]
    refused(InvalidArgumentType, lambda: cache.get_or_load(7, lambda: 1))  # type: ignore[arg-type]
    refused(InvalidArgument, lambda: cache.cached(ttl=-1)(lambda: 1))
    refused(InvalidArgument, lambda: cache.cached(name=""))
    refused(InvalidArgumentType, lambda: cache.lease_key(None))  # type: ignore[arg-type]
    refused(InvalidArgumentType, lambda: cache.warm(["k"]))  # type: ignore[list-item]
    refused(InvalidArgumentType, lambda: cache.warm([("k", 1, 2)]))  # type: ignore[list-item]
    for rand in (0.0, 1.5, NAN):
        refused(InvalidArgument, lambda rand=rand: should_recompute_early(1.0, 1.0, 1.0, rand))
    assert r.keys("*") == []


# -- locks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fence", [None, "5"])
def test_a_lock_key_of_another_type_is_lock_data_error_not_a_wait(r, fence: str | None) -> None:
    r.hset("{lock:job}", "field", "planted")
    if fence:
        r.set("{lock:job}:fence", fence)
    lock = Lock(r, "job", timeout=60)
    assert "lock key of another Redis type" in refused(LockDataError, lambda: lock.acquire())
    assert r.hgetall("{lock:job}") == {"field": "planted"} and r.get("{lock:job}:fence") == fence


def test_a_fencing_counter_that_is_no_number_stops_the_acquire_before_any_write(r) -> None:
    r.set("{lock:job}:fence", "abc")
    assert "fencing counter" in refused(LockDataError, lambda: Lock(r, "job").acquire(blocking=False))
    assert not r.exists("{lock:job}") and r.get("{lock:job}:fence") == "abc"


def test_release_and_extend_of_a_lock_key_replaced_by_another_type(r) -> None:
    lock = Lock(r, "job")
    lock.acquire()
    r.delete(lock.key)
    r.hset(lock.key, "field", "planted")
    refused(LockDataError, lock.extend)
    refused(LockDataError, lock.owned)
    refused(LockDataError, lock.release)
    assert r.hgetall(lock.key) == {"field": "planted"}


def test_a_semaphore_key_of_another_type_is_lock_data_error(r) -> None:
    r.set("{sem:pool}", "planted")
    semaphore = Semaphore(r, "pool", 2)
    refused(LockDataError, lambda: semaphore.acquire(blocking=False))
    assert r.get("{sem:pool}") == "planted"


def test_fenced_storage_refuses_a_token_that_is_no_number_and_a_key_of_another_type(r) -> None:
    storage = FencedStorage(r, "report")
    r.hset(storage.key, mapping={"token": "abc", "value": "theirs"})
    refused(LockDataError, lambda: storage.write("mine", 5))
    assert r.hgetall(storage.key) == {"token": "abc", "value": "theirs"}
    r.delete(storage.key)
    r.set(storage.key, "planted")
    refused(LockDataError, storage.read)
    refused(LockDataError, lambda: storage.write("mine", 5))


@pytest.mark.parametrize(
    "call",
    [
        lambda r: Lock(r, "x", ttl=NAN),
        lambda r: Lock(r, "x", ttl=INF),
        lambda r: Lock(r, "x", ttl=0.0001),
        lambda r: Lock(r, "x", ttl="10"),
        lambda r: Lock(r, "x", timeout=NAN),
        lambda r: Lock(r, "x", timeout=INF),
        lambda r: Lock(r, "x", timeout=-1),
        lambda r: Lock(r, None),
        lambda r: Lock(r, ""),
        lambda r: Lock(r, "x").acquire(timeout=NAN),
        lambda r: Semaphore(r, "x", 2.5),
        lambda r: Semaphore(r, "x", None),
        lambda r: Semaphore(r, "x", True),
        lambda r: FencedStorage(r, "x").write("v", 0),
        lambda r: FencedStorage(r, "x").write("v", 1.5),
        lambda r: FencedStorage(r, "x").write(None, 1),
        lambda r: FencedStorage(r, None),
        lambda r: contend("redis://127.0.0.1:1/0", "x", hold=-1),
    ],
)
def test_lock_arguments_are_checked(r, call: Callable[[redis.Redis], object]) -> None:
    with pytest.raises((InvalidArgument, InvalidArgumentType)) as caught:
        call(r)
    assert "\n" not in str(caught.value)
    assert r.keys("*") == []


def test_extend_checks_its_ttl_and_keeps_the_lock(r) -> None:
    lock = Lock(r, "x", ttl=10)
    lock.acquire()
    for ttl in (NAN, INF, 0, "5"):
        with pytest.raises((InvalidArgument, InvalidArgumentType)):
            lock.extend(ttl)  # type: ignore[arg-type]
    assert r.pttl(lock.key) > 5000
    lock.release()


# -- leaderboard, capped list, listener, serializer ------------------------------------------


def test_a_leaderboard_key_of_another_type_or_binary_members(r, redis_url: str) -> None:
    r.set("lb", "planted")
    board = Leaderboard(r, "lb")
    for call in (lambda: board.page(1), lambda: board.rank("ann"), lambda: board.around("ann"),
                 lambda: board.add({"ann": 1}), lambda: board.incr("ann", 1), lambda: board.score("ann"),
                 lambda: len(board), lambda: board.remove("ann")):
        refused(LeaderboardDataError, call)
    assert r.get("lb") == "planted"
    r.delete("lb")
    r.zadd("lb", {b"\xff\xfe": 5, "ann": 3})
    for call in (lambda: board.page(1), lambda: board.around("ann")):
        assert "not UTF-8 text" in refused(LeaderboardDataError, call)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.add({None: 1}), lambda b: b.add([("ann", 1)]), lambda b: b.incr("ann", INF),
        lambda b: b.incr(None, 1), lambda b: b.page(True), lambda b: b.page(1, True),
        lambda b: b.around("ann", before=True), lambda b: b.score(None), lambda b: b.remove(None),
        lambda b: b.around(None), lambda b: Leaderboard(b.client, ""),
    ],
)
def test_leaderboard_arguments_are_checked(r, call: Callable[[Leaderboard], object]) -> None:
    with pytest.raises((InvalidArgument, InvalidArgumentType)) as caught:
        call(Leaderboard(r, "lb"))
    assert "\n" not in str(caught.value)
    assert r.keys("*") == []


def test_a_capped_list_key_of_another_type_or_binary_items(r) -> None:
    r.set("recent", "planted")
    recent = CappedList(r, "recent", maxlen=3)
    refused(CappedListDataError, lambda: recent.push("x"))
    refused(CappedListDataError, lambda: recent.push("x) of pipeline caused error: ERR ok"))  # an item mimicking it
    refused(CappedListDataError, recent.latest)
    assert r.get("recent") == "planted"
    r.delete("recent")
    r.lpush("recent", b"\xff\xfe")
    assert "not UTF-8 text" in refused(CappedListDataError, recent.latest)


@pytest.mark.parametrize(
    "call",
    [lambda r: CappedList(r, "x", NAN), lambda r: CappedList(r, "x", True), lambda r: CappedList(r, "x", 2.5),
     lambda r: CappedList(r, None, 2), lambda r: CappedList(r, "x", 2).push(None),
     lambda r: CappedList(r, "x", 2).push(5), lambda r: CappedList(r, "x", 2).latest(0.5)],
)
def test_capped_list_arguments_are_checked(r, call: Callable[[redis.Redis], object]) -> None:
    with pytest.raises((InvalidArgument, InvalidArgumentType)) as caught:
        call(r)
    assert "\n" not in str(caught.value)
    assert r.keys("*") == []


def test_a_message_that_is_not_text_is_dropped_and_said_and_the_listener_goes_on(r) -> None:
    channel = "tests:hostile"
    with Listener(r, channels=[channel]) as listener:
        r.publish(channel, pickle.dumps(RunsCode(Path("/nonexistent/pwned"))))
        # At once, not after the timeout: a dropped message wakes the waiter (else this hangs).
        assert "not UTF-8 text" in refused(ListenerDataError, lambda: listener.wait_for(1, timeout=3600))
        r.publish(channel, "text")
        for _ in range(200):  # the thread survived: the next message arrives (bounded wait)
            if listener.messages:
                break
            listener._stop.wait(0.05)
    assert [m.data for m in listener.messages] == ["text"] and listener.dropped == 1


@pytest.mark.parametrize(
    "call",
    [lambda r: Listener(r, channels="news"), lambda r: Listener(r, channels=[None]),
     lambda r: Listener(r, patterns=[""]), lambda r: Listener(r, channels=["a"], confirm_timeout=NAN)],
)
def test_listener_arguments_are_checked(r, call: Callable[[redis.Redis], object]) -> None:
    with pytest.raises((InvalidArgument, InvalidArgumentType)) as caught:
        call(r)
    assert "\n" not in str(caught.value)


def test_wait_for_checks_its_arguments(r) -> None:
    with Listener(r, channels=["tests:hostile"]) as listener:
        refused(InvalidArgument, lambda: listener.wait_for(-1))
        refused(InvalidArgument, lambda: listener.wait_for(1, timeout=NAN))


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[" * 100_000, b"\xff\xfe", "{'a': 1}", None])
def test_json_loads_refuses_what_dumps_cannot_have_written(text: object) -> None:
    refused(SerializationError, lambda: JsonSerializer().loads(text))  # type: ignore[arg-type]


@pytest.mark.parametrize("strict", [True, False])
def test_json_dumps_refuses_nan_as_not_json_even_when_lenient(strict: bool) -> None:
    for value in (NAN, [INF]):
        assert "is not JSON" in refused(SerializationError, lambda value=value: JsonSerializer(strict=strict).dumps(value))


def test_json_dumps_refuses_nesting_too_deep() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert "nested too deeply" in refused(SerializationError, lambda: JsonSerializer().dumps(value))
    refused(InvalidArgumentType, lambda: JsonSerializer(strict="yes"))  # type: ignore[arg-type]
