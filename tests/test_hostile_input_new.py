"""Bad input and hostile data for the modules added in session 9: the semantic cache, the async
classes and the ACL helpers, as ``test_hostile_input.py`` does for the older ones. Each refusal
is the module's own one-line error; nothing is unpickled; nothing the module did not write is
touched."""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from test_hostile_input import NAN, refused  # tests/ is on sys.path (prepend import mode)

from redai_lab.errors import InvalidArgument, InvalidArgumentType, MissingFeatureError
from redai_lab.lab.acl import create_user, permissions
from redai_lab.lab.features import has_command
from redai_lab.lab.server import find_server_binary, start_local
from redai_lab.patterns.cache import AsyncCache, Cache
from redai_lab.patterns.locks import AsyncLock, Lock, LockDataError
from redai_lab.patterns.ratelimit import GCRA, AsyncRateLimiter
from redai_lab.patterns.semantic_cache import SemanticCache, SemanticCacheDataError


def embed(question: str) -> list[float]:
    return [1.0, float(len(question)), 0.5]


@pytest.fixture
def vr(r: redis.Redis) -> redis.Redis:
    if not has_command(r, "VADD"):
        pytest.skip("this server has no vector sets (VADD): Redis 8 has them")
    return r


# -- the semantic cache ---------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error"), [
    ({"distance_threshold": NAN}, InvalidArgument), ({"distance_threshold": math.inf}, InvalidArgument),
    ({"distance_threshold": -0.1}, InvalidArgument), ({"distance_threshold": 2.01}, InvalidArgument),
    ({"ttl": NAN}, InvalidArgument), ({"ttl": -1}, InvalidArgument), ({"ttl": True}, InvalidArgument),
    ({"candidates": True}, InvalidArgument), ({"candidates": 1001}, InvalidArgument),
    ({"candidates": 2.5}, InvalidArgument), ({"quantisation": None}, InvalidArgument),
], ids=repr)
def test_semantic_cache_parameters_are_refused_in_one_line(r, options, error) -> None:
    refused(error, lambda: SemanticCache(r, "sc", embed=embed, **options))
    refused(InvalidArgumentType, lambda: SemanticCache(r, b"sc", embed=embed))  # type: ignore[arg-type]


def test_semantic_cache_call_arguments_are_refused_in_one_line(vr) -> None:
    cache = SemanticCache(vr, "sc", embed=embed)
    refused(InvalidArgument, lambda: cache.lookup("q", distance_threshold=NAN))
    refused(InvalidArgument, lambda: cache.store("q", "a", ttl=0))
    refused(InvalidArgumentType, lambda: cache.invalidate_similar("q", within=True))
    refused(InvalidArgument, lambda: cache.invalidate_similar("q", within=0.1, limit=True))
    refused(InvalidArgumentType, lambda: cache.invalidate(None))  # type: ignore[arg-type]
    assert vr.keys("*") == []


def test_a_vector_beyond_float32_is_refused_before_anything_is_written(vr) -> None:
    huge = SemanticCache(vr, "sc", embed=lambda question: [1e39, 1.0])
    assert "float32" in refused(InvalidArgument, lambda: huge.store("q", "a"))
    assert "float32" in refused(InvalidArgument, lambda: huge.lookup("q"))
    assert vr.keys("*") == []


@pytest.mark.parametrize("missing", ["question", "answer"])
def test_an_entry_missing_a_field_is_foreign_data_and_is_left_alone(vr, missing: str) -> None:
    cache = SemanticCache(vr, "sc", embed=embed)
    cache.store("q", "a")
    vr.hdel(cache.entry_key("q"), missing)
    text = refused(SemanticCacheDataError, lambda: cache.lookup("q"))
    assert f"no {missing} field" in text
    assert vr.exists(cache.entry_key("q")) == 1 and len(cache) == 1  # neither the hash nor its vector removed


def test_a_pickle_or_garbage_bytes_in_an_entry_are_never_unpickled(vr, redis_url) -> None:
    cache = SemanticCache(vr, "sc", embed=embed)
    cache.store("q", "a")
    vr.hset(cache.entry_key("q"), "answer", pickle.dumps(object()))
    binary = SemanticCache(redis.Redis.from_url(redis_url), "sc", embed=embed)  # no decode_responses
    for reader in (cache, binary):
        assert "not UTF-8" in refused(SemanticCacheDataError, lambda reader=reader: reader.lookup("q"))
    vr.set(cache.entry_key("q"), pickle.dumps(1))
    assert "another Redis type" in refused(SemanticCacheDataError, lambda: cache.lookup("q"))


def test_a_client_without_decode_responses_finds_the_same_answers(vr, redis_url) -> None:
    SemanticCache(vr, "sc", embed=embed).store("Explain TCP.", "a byte stream")
    binary = SemanticCache(redis.Redis.from_url(redis_url), "sc", embed=embed)
    hit = binary.lookup("Explain TCP.")
    assert hit is not None and (hit.answer, hit.question) == ("a byte stream", "Explain TCP.")
    assert binary.invalidate_similar("Explain TCP.", within=0.01) == 1 and len(binary) == 0


def test_clearing_a_cache_whose_name_is_a_glob_spares_the_caches_it_matches(vr) -> None:
    SemanticCache(vr, "scores", embed=embed).store("q", "kept")
    glob = SemanticCache(vr, "sc*", embed=embed)
    glob.store("q", "gone")
    assert glob.clear() == 2
    assert sorted(vr.keys("*")) == sorted(["scores:vectors", SemanticCache(vr, "scores", embed=embed).entry_key("q")])


def test_a_server_without_vector_sets_is_a_one_line_missing_feature() -> None:
    binary = find_server_binary("redis7")
    if binary is None:
        pytest.skip("no redis7 binary")
    with start_local(binary=binary, modules=[]) as server:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        cache = SemanticCache(r, "sc", embed=embed)
        for action in (lambda: cache.store("q", "a"), lambda: cache.lookup("q"), lambda: len(cache)):
            assert "no vector sets" in refused(MissingFeatureError, action)
        r.close()


# -- the async classes and their sync twins get the client they need -------------------------


def test_a_client_of_the_other_kind_is_refused_in_one_line(r, redis_url) -> None:
    ar = redis.asyncio.Redis.from_url(redis_url)
    assert "redis.asyncio.Redis" in refused(InvalidArgumentType, lambda: AsyncCache(r, "ac"))
    assert "redis.asyncio.Redis" in refused(InvalidArgumentType, lambda: AsyncRateLimiter(GCRA, r, "rl", limit=1,
                                                                                          period=1))
    assert "redis.asyncio.Redis" in refused(InvalidArgumentType, lambda: AsyncLock(r, "l"))
    assert "Async" in refused(InvalidArgumentType, lambda: Cache(ar, "c"))
    assert "Async" in refused(InvalidArgumentType, lambda: GCRA(ar, "rl", limit=1, period=1).hit("u"))
    assert "Async" in refused(InvalidArgumentType, lambda: Lock(ar, "l").acquire())
    assert r.keys("*") == []
    asyncio.run(ar.aclose())


def test_a_sync_loader_given_to_the_async_cache_is_refused_and_hands_back_the_lease(r, redis_url) -> None:
    async def main() -> tuple[str, object]:
        ar = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        cache = AsyncCache(ar, "ac", wait_timeout=1)
        with pytest.raises(InvalidArgumentType) as raised:
            await cache.get_or_load("exam:7", lambda: "a value, not an awaitable")  # type: ignore[arg-type,return-value]
        value = await cache.get_or_load("exam:7", lambda: asyncio.sleep(0, "loaded"))  # no wait for a lease
        await ar.aclose()
        return str(raised.value), value

    text, value = asyncio.run(main())
    assert "async function" in text and "\n" not in text
    assert value == "loaded" and r.keys("*") == ["ac:exam:7"]


def test_a_lock_key_without_a_ttl_is_lock_data_error_not_a_wait_for_ever(r, redis_url) -> None:
    r.set("{lock:job}", "a token whose TTL was removed (PERSIST)")

    async def acquire() -> bool:
        ar = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await AsyncLock(ar, "job", timeout=None).acquire()
        finally:
            await ar.aclose()

    assert "without a TTL" in refused(LockDataError, lambda: asyncio.run(acquire()))
    assert "without a TTL" in refused(LockDataError, lambda: Lock(r, "job", timeout=None).acquire())
    assert r.get("{lock:job}") == "a token whose TTL was removed (PERSIST)" and r.pttl("{lock:job}") == -1


def test_async_parameters_are_refused_in_one_line(redis_url) -> None:
    ar = redis.asyncio.Redis.from_url(redis_url)
    refused(InvalidArgument, lambda: AsyncRateLimiter(GCRA, ar, "", limit=1, period=1))
    refused(InvalidArgument, lambda: AsyncRateLimiter(GCRA, ar, "rl", limit=True, period=1))
    refused(InvalidArgument, lambda: AsyncRateLimiter(GCRA, ar, "rl", limit=1, period=NAN))
    refused(InvalidArgument, lambda: AsyncLock(ar, "l", ttl=NAN))
    refused(InvalidArgument, lambda: AsyncLock(ar, "l", timeout=-1))
    refused(InvalidArgument, lambda: AsyncCache(ar, "ac", ttl=math.inf))
    asyncio.run(ar.aclose())


# -- ACL users ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin() -> Iterator[redis.Redis]:
    with start_local(modules=[]) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        yield client
        client.close()


@pytest.mark.parametrize(("name", "password", "rules", "error"), [
    ("", "pw", ["+get"], InvalidArgument), ("a b", "pw", ["+get"], InvalidArgument),
    (None, "pw", ["+get"], InvalidArgumentType), ("svc", "", ["+get"], InvalidArgument),
    ("svc", None, ["+get"], InvalidArgumentType), ("svc", "pw", "+get", InvalidArgumentType),
    ("svc", "pw", [b"+get"], InvalidArgumentType), ("svc", "pw", [">in-clear"], InvalidArgument),
    ("svc", "pw", ["<in-clear"], InvalidArgument), ("svc", "pw", ["nopass"], InvalidArgument),
    ("svc", "pw", ["bogus"], InvalidArgument),
], ids=repr)
def test_create_user_refuses_bad_users_in_one_line_and_creates_none(admin: redis.Redis, name, password, rules,
                                                                  error) -> None:
    text = refused(error, lambda: create_user(admin, name, password, rules))
    assert "in-clear" not in text  # a refused rule that sets a password is not echoed
    assert admin.acl_users() == ["default"]


def test_permissions_refuses_commands_that_are_no_lists_of_words(admin: redis.Redis) -> None:
    create_user(admin, "svc", "pw", ["~cache:*", "+get"])
    try:
        for commands in ("GET x", ["GET x"], [[]], [[b"GET"]]):
            refused(InvalidArgumentType, lambda commands=commands: permissions(admin, "svc", commands))
        refused(InvalidArgument, lambda: permissions(admin, "", [["GET", "x"]]))
        assert permissions(admin, "svc", [["GET", "cache:1"]]) == {"GET cache:1": "allowed"}
    finally:
        admin.acl_deluser("svc")


