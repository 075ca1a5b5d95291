"""redai_lab.patterns.sessions against a real server: expiry, rotation, logout everywhere, concurrent
field writers (real threads), round trips counted."""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import pytest
import redis
from redis.crc import key_slot
from topologies import connect_to

from redai_lab import LabError
from redai_lab.patterns.sessions import USER, SessionError, SessionNotFound, SessionStore

pytestmark = pytest.mark.cluster_too

DATA = {"name": "Ada", "visits": 3, "cart": [7, 9], "prefs": {"theme": "dark"}, "admin": False, "note": None}


def test_ids_are_256_random_bits(r: redis.Redis) -> None:
    store = SessionStore(r)
    ids = {store.create() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{4}\.[A-Za-z0-9_-]{43}", i) for i in ids)  # tag, then 256 bits
    assert len({i[:4] for i in ids}) > 1  # anonymous sessions spread over the slots


def test_a_session_shares_the_slot_of_its_users_index_also_after_login(r: redis.Redis) -> None:
    store = SessionStore(r)
    anonymous = store.create({"cart": [7]})
    logged_in = store.rotate(anonymous, user_id=42)
    assert key_slot(store.key(logged_in).encode()) == key_slot(store.index_key(42).encode())
    assert store.key(logged_in).startswith(f"session:{{{logged_in[:4]}}}.") and logged_in[:4] == store.create(
        user_id=42)[:4]
    assert r.exists(store.key(anonymous)) == 0  # the old id is dead
    session = store.get(logged_in)
    assert (session.user_id, session.data) == ("42", {"cart": [7]})
    assert store.sessions_of(42) == [logged_in] or set(store.sessions_of(42)) >= {logged_in}
    with pytest.raises(SessionNotFound):
        store.rotate(anonymous, user_id=42)


def test_a_login_into_another_slot_keeps_field_ttls(r: redis.Redis) -> None:
    store = SessionStore(r)
    anonymous = store.create({"cart": [7]})
    while anonymous[:4] == store.create(user_id=42)[:4]:  # a login that crosses slots (1 in 65,536)
        anonymous = store.create({"cart": [7]})
    try:
        r.execute_command("HPEXPIRE", store.key(anonymous), 60_000, "FIELDS", 1, "cart")
    except redis.RedisError:  # the server's error, or RedisCluster's: it knows no such command
        pytest.skip("no hash field expiration on this server (Redis 7.4+)")
    logged_in = store.rotate(anonymous, user_id=42)
    assert 0 < r.execute_command("HPTTL", store.key(logged_in), "FIELDS", 1, "cart")[0] <= 60_000
    assert store.get(logged_in).data == {"cart": [7]}


def test_lifecycle_keeps_types_and_ends_with_logout(r: redis.Redis) -> None:
    store = SessionStore(r)
    sid = store.create(DATA)
    session = store.get(sid)
    assert session.data == DATA and session.user_id is None and session.id == sid
    assert session.expires_at - session.created_at == pytest.approx(86400)
    store.update(sid, {"visits": 4, "cart": []})
    assert store.get(sid).data == {**DATA, "visits": 4, "cart": []}
    assert r.hget(store.key(sid), "visits") == "4"  # readable with redis-cli: JSON per field
    store.update(sid, {"city": "Zürich"})
    assert r.hget(store.key(sid), "city") == '"Zürich"'  # as written, not \u00fc
    assert store.logout(sid) is True and store.logout(sid) is False
    with pytest.raises(SessionNotFound, match="log in again"):
        store.get(sid)


def test_a_session_read_cannot_be_changed_and_a_prefix_is_needed(r: redis.Redis) -> None:
    store = SessionStore(r)
    session = store.get(store.create({"a": 1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.user_id = "admin"  # type: ignore[misc]
    with pytest.raises(ValueError, match="prefix"):
        SessionStore(r, prefix="")


@pytest.mark.server_only  # counts one connection's round trips
def test_read_with_refresh_and_update_are_one_round_trip_each(round_trips, redis_url: str) -> None:
    client = round_trips.client(redis_url)
    store = SessionStore(client, idle_ttl=60)
    sid = store.create({"a": 1})
    store.get(sid)
    store.update(sid, {"a": 2})  # scripts loaded
    with round_trips.measure() as read:
        assert store.get(sid).data == {"a": 2}
    with round_trips.measure() as write:
        store.update(sid, {"b": 3})
    with round_trips.measure() as create:
        store.create({"c": 4}, user_id=1)
    assert (read.count, write.count, create.count) == (1, 1, 1)
    assert 0 < client.pttl(store.key(sid)) <= 60_000


def test_sliding_expiry_is_refreshed_by_reads_and_writes(r: redis.Redis) -> None:
    store = SessionStore(r, idle_ttl=0.4, max_lifetime=60)
    sid = store.create({"a": 1})
    for _ in range(4):  # 0.6 s in all: longer than idle_ttl, but never idle that long
        time.sleep(0.15)
        store.get(sid)
        assert r.pttl(store.key(sid)) > 300
    time.sleep(0.15)
    store.update(sid, {"a": 2})
    assert r.pttl(store.key(sid)) > 300
    time.sleep(0.6)
    with pytest.raises(SessionNotFound):
        store.get(sid)
    with pytest.raises(SessionNotFound):
        store.update(sid, {"a": 3})
    assert r.exists(store.key(sid)) == 0  # an update never recreates a dead session


def test_absolute_lifetime_ends_a_session_in_use(r: redis.Redis) -> None:
    store = SessionStore(r, idle_ttl=0.4, max_lifetime=0.7)
    sid = store.create({"a": 1})
    deadline = store.get(sid).expires_at
    ended = None
    for step in range(20):
        time.sleep(0.1)
        now = server_ms(r)
        try:
            store.get(sid)
        except SessionNotFound:
            ended = step
            break
        assert r.pttl(store.key(sid)) <= round(deadline * 1000) - now  # the TTL never reaches past the deadline
    assert ended is not None and ended >= 3  # used every 0.1 s, it still died near 0.7 s


def server_ms(r: redis.Redis) -> int:
    """The server's clock in whole ms, as the store's scripts read it."""
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


@pytest.mark.parametrize("touch", ["create", "get", "update", "rotate"])
def test_every_touch_caps_the_ttl_at_the_deadline(r: redis.Redis, touch: str) -> None:
    # An hour of idle time, ten seconds of life: the deadline is what ends the key, whatever
    # touched it last, and exactly then (measured from the server's clock before the touch).
    store = SessionStore(r, idle_ttl=3600, max_lifetime=10)
    before = server_ms(r)
    sid = store.create({"a": 1}, user_id=7)
    deadline = round(store.get(sid).expires_at * 1000)
    if touch != "create":
        before = server_ms(r)
        if touch == "get":
            store.get(sid)
        elif touch == "update":
            store.update(sid, {"a": 2})
        else:
            sid = store.rotate(sid)
    ttl = r.pttl(store.key(sid))
    assert 0 < ttl <= deadline - before and ttl <= 10_000


@pytest.mark.parametrize("touch", ["get", "update", "rotate"])
def test_every_touch_slides_the_idle_ttl_back_to_full(r: redis.Redis, touch: str) -> None:
    store = SessionStore(r, idle_ttl=100, max_lifetime=3600)
    sid = store.create({"a": 1})
    r.pexpire(store.key(sid), 1000)  # as if the session had been idle for 99 s
    if touch == "get":
        store.get(sid)
    elif touch == "update":
        store.update(sid, {"a": 2})
    else:
        sid = store.rotate(sid)
    assert 50_000 < r.pttl(store.key(sid)) <= 100_000  # idle_ttl again, not the deadline (an hour)


def test_rotation_keeps_data_and_deadline_and_kills_the_old_id(r: redis.Redis) -> None:
    store = SessionStore(r)
    anonymous = store.create(DATA)
    before = store.get(anonymous)
    logged_in = store.rotate(anonymous, user_id=42)
    after = store.get(logged_in)
    assert logged_in != anonymous
    assert after.data == DATA and after.user_id == "42" and after.expires_at == before.expires_at
    with pytest.raises(SessionNotFound):
        store.get(anonymous)
    assert store.sessions_of(42) == [logged_in]
    promoted = store.rotate(logged_in)  # privilege change: same user, new id
    assert store.get(promoted).user_id == "42"
    assert store.sessions_of(42) == [promoted]
    assert r.zcard(store.index_key(42)) == 1
    with pytest.raises(SessionError, match="belongs to another user"):
        store.rotate(promoted, user_id=43)
    with pytest.raises(SessionNotFound):
        store.rotate(anonymous, user_id=42)


def test_a_fixed_session_id_is_worthless_after_login(r: redis.Redis) -> None:
    store = SessionStore(r)
    planted = store.create()  # the attacker's id, planted in the victim's browser
    victim = store.rotate(planted, user_id="victim")  # the login rotates
    store.update(victim, {"balance": 100})
    with pytest.raises(SessionNotFound):
        store.get(planted)
    assert store.get(victim).data == {"balance": 100}


def test_logout_everywhere_ends_every_session_of_one_user(r: redis.Redis) -> None:
    store = SessionStore(r)
    mine = [store.create({"device": d}, user_id=7) for d in ("phone", "laptop", "tablet")]
    other = store.create(user_id=8)
    anonymous = store.create()
    store.logout(mine[0])
    assert sorted(store.sessions_of(7)) == sorted(mine[1:])
    assert r.zcard(store.index_key(7)) == 2  # the ended id was pruned from the index
    assert store.logout_everywhere(7) == 2
    for sid in mine:
        with pytest.raises(SessionNotFound):
            store.get(sid)
    assert store.get(other).user_id == "8" and store.get(anonymous).user_id is None
    assert store.logout_everywhere(7) == 0 and store.sessions_of(7) == []


def test_logout_everywhere_counts_live_sessions_not_index_entries(r: redis.Redis) -> None:
    store = SessionStore(r)
    ended, *live = [store.create(user_id=7) for _ in range(3)]
    store.logout(ended)  # its id stays in the index until pruned
    assert r.zcard(store.index_key(7)) == 3
    assert store.logout_everywhere(7) == 2


@pytest.mark.server_only  # a subclass of redis.Redis
def test_a_rotation_whose_owner_changes_meanwhile_is_refused(redis_url: str) -> None:
    # The owner is read, then another client logs the session in as someone else, then the
    # rotation script runs: it must see the change and refuse, not hand out a new id.
    other = connect_to(redis_url)

    class OwnerChangesAfterRead(redis.Redis):
        def hget(self, name, key):  # type: ignore[no-untyped-def, override]
            value = super().hget(name, key)
            other.hset(name, USER, "mallory")
            return value

    client = OwnerChangesAfterRead.from_url(redis_url, decode_responses=True)
    store = SessionStore(client)
    sid = store.create({"a": 1})
    with pytest.raises(SessionError, match="changed owner while it was being rotated"):
        store.rotate(sid, user_id=7)
    assert store.get(sid).user_id == "mallory"  # the old id still holds the session: nothing moved
    client.close()
    other.close()


def test_logout_everywhere_catches_sessions_rotating_meanwhile(redis_url: str) -> None:
    client = connect_to(redis_url)
    store = SessionStore(client)
    rotating = [store.create(user_id=7) for _ in range(3)]
    started = threading.Barrier(4)
    last: list[str] = []

    def keep_rotating(sid: str) -> None:
        started.wait()
        try:
            while True:  # until logout_everywhere ends the session, whatever its id by then
                sid = store.rotate(sid)
        except SessionNotFound:
            last.append(sid)

    threads = [threading.Thread(target=keep_rotating, args=(sid,)) for sid in rotating]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.05)
    assert store.logout_everywhere(7) == 3
    for thread in threads:
        thread.join(10)
    assert len(last) == 3 and store.sessions_of(7) == []
    client.close()


def test_the_user_index_expires_and_prunes_by_deadline(r: redis.Redis) -> None:
    store = SessionStore(r, idle_ttl=0.2, max_lifetime=0.3)
    first = store.create(user_id=7)
    assert 0 < r.pttl(store.index_key(7)) <= 300
    time.sleep(0.35)
    second = store.create(user_id=7)
    assert r.zrange(store.index_key(7), 0, -1) == [second]  # `first` was past its deadline
    assert first != second
    time.sleep(0.35)
    assert r.exists(store.index_key(7)) == 0


def test_twenty_concurrent_field_writers_lose_no_update(r: redis.Redis, redis_url: str) -> None:
    client = connect_to(redis_url)
    store = SessionStore(client)
    sid = store.create({"shared": "kept"})
    barrier = threading.Barrier(20)

    def writer(n: int) -> None:
        barrier.wait()
        for round_ in range(10):
            store.update(sid, {f"field{n}": round_})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(sid).data == {"shared": "kept", **{f"field{n}": 9 for n in range(20)}}
    client.close()


@pytest.mark.parametrize(
    "bad_id",
    ["nope", "user:7", "x" * 42 + ":", "", None, 42, "A" * 43, "0000.x", "0000." + "A" * 43],  # the last is well-formed but unknown
)
def test_unknown_or_malformed_ids_are_session_not_found(r: redis.Redis, bad_id: object) -> None:
    store = SessionStore(r)
    store.create(user_id=7)
    for call in (store.get, lambda i: store.update(i, {"a": 1}), store.rotate):
        with pytest.raises(SessionNotFound) as caught:
            call(bad_id)  # type: ignore[operator]
        assert isinstance(caught.value, LabError)
    assert r.zcard(store.index_key(7)) == 1  # nothing touched


def test_reserved_and_empty_fields_are_refused(r: redis.Redis) -> None:
    store = SessionStore(r)
    sid = store.create()
    with pytest.raises(ValueError, match="not starting with '@'"):
        store.update(sid, {"@user": "admin"})  # no privilege escalation through data
    with pytest.raises(ValueError, match="at least one field"):
        store.update(sid, {})
    with pytest.raises(ValueError, match="idle_ttl must be finite seconds > 0"):
        SessionStore(r, idle_ttl=0)
    assert store.get(sid).user_id is None


def test_a_client_without_decode_responses_works(redis_url: str) -> None:
    client = connect_to(redis_url, decode_responses=False)
    store = SessionStore(client)
    sid = store.rotate(store.create({"a": [1]}), user_id=5)
    assert store.get(sid).data == {"a": [1]} and store.get(sid).user_id == "5"
    assert store.sessions_of(5) == [sid]
    assert store.logout_everywhere(5) == 1
    client.close()
