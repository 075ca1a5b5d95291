"""Lesson 00's exercises: a first key with a time to live, a claim in one command, a client with
the settings an application needs."""

from __future__ import annotations

import redis

from . import Case, Spec

# ---------------------------------------------------------------------------------------------
# What a key looks like after a call, with its TTL in bands (two runs a few ms apart agree).


def _ttl_band(ttl: int) -> str:
    if ttl == -2:
        return "no such key"
    if ttl == -1:
        return "no TTL"
    if ttl == 0:
        return "under 1 s"
    if ttl <= 60:
        return "1-60 s"
    if ttl <= 600:
        return "61-600 s"
    return "over 600 s"


def _key_state(r: redis.Redis, key: str) -> dict:
    kind = r.type(key)
    return {"type": kind, "value": r.get(key) if kind == "string" else None, "TTL": _ttl_band(r.ttl(key))}


# ---------------------------------------------------------------------------------------------
# 1. A key that disappears by itself.


def remember(r: redis.Redis, key: str, value: str | int, seconds: int) -> str | None:
    """Store `value` under `key` so that Redis deletes it by itself `seconds` seconds from now,
    in one command, replacing whatever `key` held before. Then read the key back and return what
    Redis returns."""
    r.set(key, value, ex=seconds)
    return r.get(key)


def remember_without_ttl(r, key, value, seconds):
    r.set(key, value)  # forgets the time to live: the key stays forever
    return r.get(key)


def remember_in_milliseconds(r, key, value, seconds):
    r.set(key, value, px=seconds)  # PX counts milliseconds: 60 means 0.06 s
    return r.get(key)


def remember_only_if_new(r, key, value, seconds):
    r.set(key, value, ex=seconds, nx=True)  # NX: an existing key keeps its old value
    return r.get(key)


def remember_returns_its_argument(r, key, value, seconds):
    r.set(key, value, ex=seconds)
    return value  # not what Redis stored: Redis stores (and returns) strings


def _remember(held: tuple[str, object, int | None] | None, value: str | int, seconds: int):
    """A case: `key` is new, or already holds `held` = (type, value, ttl or None)."""

    def setup(r: redis.Redis, prefix: str) -> tuple:
        key = f"{prefix}student:name"
        if held is not None:
            kind, old, ttl = held
            if kind == "string":
                r.set(key, old)
            else:
                r.rpush(key, *old)
            if ttl is not None:
                r.expire(key, ttl)
        return key, value, seconds

    return setup


def _remember_outcome(r: redis.Redis, prefix: str, result: object) -> dict | None:
    state = _key_state(r, f"{prefix}student:name")
    if result is None and state["type"] == "none":
        return None  # nothing written, nothing returned: the blank starter
    return {"returned": result, **state}


# ---------------------------------------------------------------------------------------------
# 2. A claim: first come, first served, for a while.


def claim(r: redis.Redis, key: str, owner: str, seconds: int) -> bool:
    """Make `owner` the holder of `key` for `seconds` seconds, but only if `key` does not exist
    yet, in one command. Return True if this call got it, False if the key already existed:
    then the key's value and its remaining time to live must stay exactly as they were."""
    return bool(r.set(key, owner, nx=True, ex=seconds))


def claim_overwrites(r, key, owner, seconds):
    return bool(r.set(key, owner, ex=seconds))  # takes the key from whoever held it


def claim_returns_the_raw_reply(r, key, owner, seconds):
    return r.set(key, owner, nx=True, ex=seconds)  # None, not False, when the key exists


def claim_in_two_commands(r, key, owner, seconds):
    got = r.setnx(key, owner)
    r.expire(key, seconds)  # runs even when the key was someone else's: changes their TTL
    return got


def claim_after_reading(r, key, owner, seconds):
    if r.get(key):  # an empty string is a value too; and another client may write in between
        return False
    r.set(key, owner, ex=seconds)
    return True


def _claim(holder: str | None, ttl: int | None, seconds: int):
    """A case: the key is free, or held by `holder` (with `ttl` seconds left, or none)."""

    def setup(r: redis.Redis, prefix: str) -> tuple:
        key = f"{prefix}lock:report"
        if holder is not None:
            r.set(key, holder, ex=ttl)
        return key, "ada", seconds

    return setup


def _claim_outcome(r: redis.Redis, prefix: str, result: object) -> dict | None:
    state = _key_state(r, f"{prefix}lock:report")
    if result is None and state["type"] == "none":
        return None  # nothing written, nothing returned: the blank starter
    return {"returned": result, **state}


# ---------------------------------------------------------------------------------------------
# 3. The client an application needs.


def app_client(r: redis.Redis, url: str) -> redis.Redis:
    """Return a new redis-py client for the server and database that `url` names, for a web
    application: replies come back as `str` (not `bytes`), and the client gives up after at
    most 1 second both when connecting and when waiting for a reply."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)


def app_client_with_bytes(r, url):
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)  # replies are bytes


def app_client_with_the_defaults(r, url):
    return redis.Redis.from_url(url, decode_responses=True)  # redis-py 8 waits up to 5 s


def app_client_with_a_read_timeout_only(r, url):
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1)  # connecting: still 5 s


def app_client_in_milliseconds(r, url):
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1000, socket_connect_timeout=1000)


def _url_of(r: redis.Redis) -> str:
    """The URL of `r`'s server and database (what the lesson's `lesson.url` is)."""
    kwargs = r.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    auth = ""
    if kwargs.get("password"):
        auth = f"{kwargs.get('username') or ''}:{kwargs['password']}@"
    return f"redis://{auth}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _app_client(value: str | None):
    def setup(r: redis.Redis, prefix: str) -> tuple:
        if value is not None:
            r.set(f"{prefix}greeting", value)
        return (_url_of(r),)

    return setup


def _app_client_outcome(r: redis.Redis, prefix: str, client: object) -> dict | None:
    if client is None:
        return None
    if not isinstance(client, redis.Redis):
        return {"returned": client}
    try:
        reply = client.get(f"{prefix}greeting")
        connection = client.connection_pool.get_connection()
        try:
            read, connect = connection.socket_timeout, connection.socket_connect_timeout
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()
    return {
        "GET returns": reply,
        "reply timeout at most 1 s": read is not None and 0 < read <= 1,
        "connect timeout at most 1 s": connect is not None and 0 < connect <= 1,
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a key that disappears by itself",
        reference=remember,
        cases=(
            Case("a new key for 60 s", _remember(None, "Ada", 60)),
            Case("a key that already holds a value, with no TTL", _remember(("string", "Grace", None), "Ada", 30)),
            Case("a key that already holds a value for 1000 s", _remember(("string", "Grace", 1000), "Ada", 10)),
            Case("a key that holds a list", _remember(("list", ["a", "b"], None), "Ada", 45)),
            Case("a number as the value", _remember(None, 42, 300)),
        ),
        hint="SET takes options after the value; one of them gives the key a time to live in seconds.",
        outcome=_remember_outcome,
        wrong=(remember_without_ttl, remember_in_milliseconds, remember_only_if_new, remember_returns_its_argument),
    ),
    Spec(
        number=2,
        title="first come, first served",
        reference=claim,
        cases=(
            Case("a free key", _claim(None, None, 30)),
            Case("a key someone holds for 1000 s more", _claim("bob", 1000, 30)),
            Case("a key someone holds with no TTL", _claim("bob", None, 300)),
            Case("a key that holds an empty string", _claim("", 500, 30)),
        ),
        hint="SET has an option that writes only when the key does not exist yet; "
             "look at what SET replies when it does not write.",
        outcome=_claim_outcome,
        wrong=(claim_overwrites, claim_returns_the_raw_reply, claim_in_two_commands, claim_after_reading),
    ),
    Spec(
        number=3,
        title="a client for an application",
        reference=app_client,
        cases=(
            Case("a greeting", _app_client("hello")),
            Case("a value with accents and an emoji", _app_client("naïve café ☕")),
            Case("a key that does not exist", _app_client(None)),
        ),
        hint="redis.Redis.from_url takes the same keyword arguments as redis.Redis; "
             "there are two timeouts, both in seconds.",
        outcome=_app_client_outcome,
        wrong=(app_client_with_bytes, app_client_with_the_defaults, app_client_with_a_read_timeout_only,
               app_client_in_milliseconds),
    ),
)
