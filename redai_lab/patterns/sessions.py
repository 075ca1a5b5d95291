"""Server-side sessions in Redis: one hash per session, sliding and absolute expiry, rotation.

    store = SessionStore(r, idle_ttl=1800, max_lifetime=86400)
    sid = store.create({"theme": "dark"})          # anonymous visitor
    sid = store.rotate(sid, user_id=42)            # login: new id, same data, old id dead
    store.update(sid, {"cart": [7, 9]})            # field-level: no lost update
    store.get(sid).data                            # one round trip, refreshes the idle TTL
    store.logout(sid); store.logout_everywhere(42)

Layout: ``session:{<tag>}.<token>`` is a hash of the data (each value JSON, so types survive) plus three
reserved fields, ``@user``, ``@created`` and ``@deadline`` (ms, server clock). Its TTL is
``min(idle_ttl, deadline - now)``, set again by every read and update in the same Lua script
(one round trip, atomic): a session dies after ``idle_ttl`` without use and at its deadline
(``max_lifetime`` after creation) whatever happens. ``session:{<tag>}:user:<user id>`` is a
sorted set of that user's session ids scored by deadline: it expires with the last of them and
drops ids past their deadline whenever a session is added (``ZREMRANGEBYSCORE``).

An id is ``<tag>.<token>``: the token comes from ``secrets.token_urlsafe(32)`` (256 random
bits, 43 characters); the tag, 4 hex digits, is the Redis Cluster hash tag of the session's
key. A user's sessions carry the user's tag (the start of the SHA-256 of the user id), the one
of their index, so a session and its index share a slot and every script stays atomic on a
Cluster; an anonymous session gets a random tag. Anything else is answered like an unknown
id, so a crafted id cannot address another key.

Login rotates an anonymous session into the user's slot, usually another one: there one script
cannot do it, so it takes two steps, and the old id dies in the first. Step one (a script on
the old slot) checks the owner, reads the fields and deletes the old session; step two (a
script on the user's slot) writes them under the new id and indexes it. A crash between the
two loses the session, never keeps the old id alive: fail-safe, the user logs in again. Any
other rotation (same user, or an anonymous session kept anonymous) stays in its slot: one
script, as before. Every script names
its keys in ``KEYS``. A user id is a non-empty ``str`` or an ``int`` (not a bool).

A key holding what this store did not write (another type, a hash without a usable deadline or
creation time, a field that is not JSON, bytes that are not text, a pickle: never unpickled)
answers ``SessionDataError``, a ``SessionNotFound``: the caller treats the session as ended,
and the message says what was wrong. Nothing is changed or deleted on the way. Messages show
no more than the first characters of a session id: ids are secrets, and messages reach logs.

Commands: HGETALL O(fields); HSET O(fields set); PEXPIRE, RENAME, DEL O(1) (DEL of a hash
O(fields)); ZADD, ZREM O(log n); ZREMRANGEBYSCORE O(log n + removed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import redis

from ..errors import InvalidArgument, InvalidArgumentType, LabError, check_seconds, foreign_data
from .serializers import JSON, Serializer

ID_BYTES = 32  # 256 bits: OWASP asks for at least 64 bits of entropy
TAG_DIGITS = 4  # 65,536 tags: more than the Cluster's 16,384 slots
_ID = re.compile(rf"[0-9a-f]{{{TAG_DIGITS}}}\.[A-Za-z0-9_-]{{43}}")
USER, CREATED, DEADLINE = "@user", "@created", "@deadline"

# Every script starts here: the server's clock, in ms.
_NOW = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
"""

# A session's deadline (ms) from its @deadline field (a hash without one, or without a usable
# one, was not written by this store: stop, changing nothing); deadline_of: nil when it is gone.
_DEADLINE = """
local function checked_deadline(value)
  if not value then error({err = 'CORRUPT a hash without a @deadline field'}) end
  local deadline = tonumber(value)
  if not deadline or deadline ~= deadline or math.abs(deadline) == math.huge then
    error({err = 'CORRUPT a @deadline that is not a time in ms'})
  end
  return deadline
end
local function deadline_of(key)
  local value = redis.call('HGET', key, '@deadline')
  if not value and redis.call('EXISTS', key) == 0 then return nil end
  return checked_deadline(value)
end
"""

# KEYS[1] a session; ARGV[1] idle ms. Stops the script with nil when the session is gone, else
# sets its TTL to the idle timeout, capped by the absolute deadline.
_SLIDE = _DEADLINE + """
local deadline = deadline_of(KEYS[1])
if not deadline then
  return false
end
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(tonumber(ARGV[1]), deadline - now)))
"""

# The user index in KEYS[index]: add `sid` with its deadline, drop ids past theirs, and keep
# the set alive as long as its longest-lived session.
_INDEX = """
local function index(key, sid, deadline)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, deadline, sid)
  if redis.call('PTTL', key) < deadline - now then
    redis.call('PEXPIRE', key, string.format('%d', deadline - now))
  end
end
"""

# KEYS: session, [user index]. ARGV: idle ms, lifetime ms, id, user ('' = anonymous), field, value...
_CREATE = _NOW + _INDEX + """
local deadline = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], '@created', string.format('%d', now), '@deadline', string.format('%d', deadline))
if #ARGV > 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], '@user', ARGV[4])
  index(KEYS[2], ARGV[3], deadline)
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(tonumber(ARGV[1]), tonumber(ARGV[2]))))
return deadline
"""

# KEYS: session. ARGV: idle ms. The session's fields, its TTL slid; nil when it is gone. The hot
# path: three commands (HGETALL, TIME, PEXPIRE), the deadline read from HGETALL's reply.
_TOUCH = _DEADLINE + """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
local value
for i = 1, #fields, 2 do
  if fields[i] == '@deadline' then
    value = fields[i + 1]
    break
  end
end
local deadline = checked_deadline(value)
""" + _NOW + """
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(tonumber(ARGV[1]), deadline - now)))
return fields
"""

# KEYS: session. ARGV: idle ms, field, value... Sets only the given fields: writers of other
# fields lose nothing. 1 when done, nil when the session is gone.
_UPDATE = _NOW + _SLIDE + """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: old session, new session, [user index]. ARGV: idle ms, old id, new id, owner read
# before ('' = none), user to log in ('' = keep). 1 done, 0 session gone, -1 owner changed.
_ROTATE = _NOW + _INDEX + _DEADLINE + """
local deadline = deadline_of(KEYS[1])
if not deadline or deadline <= now then
  return 0
end
if (redis.call('HGET', KEYS[1], '@user') or '') ~= ARGV[4] then
  return -1
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], '@user', ARGV[5])
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], string.format('%d', math.min(tonumber(ARGV[1]), deadline - now)))
if KEYS[3] then
  redis.call('ZREM', KEYS[3], ARGV[2])
  index(KEYS[3], ARGV[3], deadline)
end
return 1
"""


# KEYS: an anonymous session. ARGV: user to log in. Step one of a rotation into another slot:
# {its fields with @user set, {field, ms left...} of the fields with a TTL}, deleting it; 0 when
# it is gone, -1 when it has an owner meanwhile. (Field TTLs, Redis 7.4+, must survive as RENAME
# keeps them: a "re-authenticated" mark must not outlive its minute. Older servers have none.)
_TAKE = _NOW + _DEADLINE + """
local deadline = deadline_of(KEYS[1])
if not deadline or deadline <= now then
  return 0
end
if redis.call('HEXISTS', KEYS[1], '@user') == 1 then
  return -1
end
redis.call('HSET', KEYS[1], '@user', ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
local expiring = {}
for i = 1, #fields, 2 do
  local ok, ttl = pcall(redis.call, 'HPTTL', KEYS[1], 'FIELDS', 1, fields[i])
  if ok and ttl[1] > 0 then
    expiring[#expiring + 1] = fields[i]
    expiring[#expiring + 1] = ttl[1]
  end
end
redis.call('DEL', KEYS[1])
return {fields, expiring}
"""

# KEYS: new session, user index. ARGV: idle ms, new id, n, then n (field, ms left) of the fields
# with a TTL, then field, value... (step two: the fields taken, @created and @deadline included).
# 1 done, 0 when the deadline passed in between.
_PUT = _NOW + _INDEX + _DEADLINE + """
local expiring = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 4 + 2 * expiring))
for i = 4, 2 + 2 * expiring, 2 do
  redis.call('HPEXPIRE', KEYS[1], ARGV[i + 1], 'FIELDS', 1, ARGV[i])
end
local deadline = deadline_of(KEYS[1])
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(tonumber(ARGV[1]), deadline - now)))
index(KEYS[2], ARGV[2], deadline)
return 1
"""


class SessionError(LabError):
    """Base class of the session store's errors."""


class SessionNotFound(SessionError):
    """No live session has this id: unknown, expired, rotated away or logged out."""


class SessionDataError(SessionNotFound):
    """A session's key (or a user's index) holds what this store did not write: no live session."""


@dataclass(frozen=True)
class Session:
    """One session as read: its data and bookkeeping (times in seconds, server clock)."""

    id: str
    user_id: str | None
    data: dict[str, Any]
    created_at: float
    expires_at: float


class SessionStore:
    """Sessions with sliding (``idle_ttl``) and absolute (``max_lifetime``) expiry, in seconds."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "session",
        idle_ttl: float = 1800.0,
        max_lifetime: float = 86400.0,
        serializer: Serializer = JSON,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise InvalidArgument(f"prefix is a non-empty str without braces, e.g. 'session', not {prefix!r}.")
        self.client = client
        self.prefix = prefix
        self.idle_ttl = check_seconds("idle_ttl", idle_ttl)
        self.max_lifetime = check_seconds("max_lifetime", max_lifetime)
        self.serializer = serializer
        self._idle_ms = max(1, round(idle_ttl * 1000))
        self._lifetime_ms = max(1, round(max_lifetime * 1000))
        self._create = client.register_script(_CREATE)
        self._touch = client.register_script(_TOUCH)
        self._update = client.register_script(_UPDATE)
        self._rotate = client.register_script(_ROTATE)
        self._take = client.register_script(_TAKE)
        self._put = client.register_script(_PUT)

    def key(self, session_id: str) -> str:
        """The hash holding a session (``SessionNotFound`` for a malformed id)."""
        if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
            raise self._not_found()
        tag, token = session_id.split(".")
        return f"{self.prefix}:{{{tag}}}.{token}"

    def index_key(self, user_id: str | int) -> str:
        """The sorted set of a user's session ids (in the hash slot of their sessions)."""
        return f"{self.prefix}:{{{_tag(user_id)}}}:user:{_user(user_id)}"

    def create(self, data: Mapping[str, Any] | None = None, *, user_id: str | int | None = None) -> str:
        """A new session holding ``data`` (anonymous unless ``user_id``); returns its id."""
        session_id = _new_id(user_id)
        keys = [self.key(session_id)]
        if user_id is not None:
            keys.append(self.index_key(user_id))
        owner = "" if user_id is None else _user(user_id)
        args: list[str | int] = [self._idle_ms, self._lifetime_ms, session_id, owner, *self._fields(data or {})]
        with self._foreign(keys[-1]):  # the new session's key is fresh: only the index can be foreign
            self._create(keys=keys, args=args)
        return session_id

    def get(self, session_id: str) -> Session:
        """The session, its idle TTL refreshed in the same round trip; ``SessionNotFound`` if gone."""
        key = self.key(session_id)
        try:
            reply = self._touch(keys=[key], args=[self._idle_ms])
            flat = None if reply is None else reply if isinstance(reply[0], str) else [_text(i) for i in reply]
        except (redis.ResponseError, UnicodeDecodeError):
            with self._foreign(key):  # only on an error: the hot path builds no context manager
                raise
        if flat is None:
            raise self._not_found()
        fields = dict(zip(flat[::2], flat[1::2]))
        user = fields.pop(USER, None)
        try:
            created_at, expires_at = int(fields.pop(CREATED)) / 1000, int(fields.pop(DEADLINE)) / 1000
        except (KeyError, ValueError):
            raise SessionDataError(_corrupt(key, "no @created and @deadline times in ms")) from None
        data = {}
        for name, value in fields.items():
            try:
                data[name] = self.serializer.loads(value)
            except LabError:
                problem = f"a field {name!r} that {self.serializer.name} cannot read"
                raise SessionDataError(_corrupt(key, problem)) from None
        return Session(id=session_id, user_id=user, created_at=created_at, expires_at=expires_at, data=data)

    def update(self, session_id: str, changes: Mapping[str, Any]) -> None:
        """Set the given fields only (other fields, written concurrently, are kept); slides the TTL."""
        if not changes:
            raise InvalidArgument("update needs at least one field to set")
        key = self.key(session_id)
        args: list[str | int] = [self._idle_ms, *self._fields(changes)]
        with self._foreign(key):
            if self._update(keys=[key], args=args) is None:
                raise self._not_found()

    def rotate(self, session_id: str, *, user_id: str | int | None = None) -> str:
        """A new id for the session, same data and deadline; the old id is dead at once.

        Call it at login (pass ``user_id``: the session becomes that user's) and whenever
        privileges change, so an id planted or seen before (session fixation) is worthless.
        """
        old = self.key(session_id)
        with self._foreign(old):
            stored_owner = self.client.hget(old, USER)
            owner = None if stored_owner is None else _text(stored_owner)
        login = None if user_id is None else _user(user_id)
        if owner is not None and login is not None and login != owner:
            raise SessionError(
                "This session belongs to another user: log it out and create a new one rather than "
                "switching users inside it."
            )
        user = owner or login
        new_id = _new_id(user) if user else _new_id(None, tag=session_id.split(".")[0])
        if user and new_id.split(".")[0] != session_id.split(".")[0]:  # a login into another slot
            return self._rotate_across_slots(session_id, new_id, user)
        keys = [old, self.key(new_id)] + ([self.index_key(user)] if user else [])
        args: list[str | int] = [self._idle_ms, session_id, new_id, owner or "", login if owner is None and login else ""]
        with self._foreign(*keys):
            result = self._rotate(keys=keys, args=args)
        if result == 0:
            raise self._not_found()
        if result == -1:
            raise SessionError("The session changed owner while it was being rotated: retry.")
        return new_id

    def _rotate_across_slots(self, session_id: str, new_id: str, user: str) -> str:
        """Log an anonymous session in: take it from its slot, then write it into the user's."""
        old, new, index = self.key(session_id), self.key(new_id), self.index_key(user)
        with self._foreign(old):
            taken = self._take(keys=[old], args=[user])
        if taken == 0:
            raise self._not_found()
        if taken == -1:
            raise SessionError("The session changed owner while it was being rotated: retry.")
        # The old id is dead now. A crash here loses the session: the user logs in again.
        with self._foreign(new, index):
            fields, expiring = taken
            args = [self._idle_ms, new_id, len(expiring) // 2, *expiring, *fields]
            if self._put(keys=[new, index], args=args) == 0:
                raise self._not_found()
        return new_id

    def logout(self, session_id: str) -> bool:
        """End one session; True if it was live. (Its id leaves the user's index at its deadline.)"""
        return bool(self.client.delete(self.key(session_id)))

    def sessions_of(self, user_id: str | int) -> list[str]:
        """The ids of a user's live sessions; ids of ended ones are dropped from the index."""
        index = self.index_key(user_id)
        with self._foreign(index):
            ids = self._ids(index, self.client.zrange(index, 0, -1))
        pipe = self.client.pipeline(transaction=False)
        for session_id in ids:
            pipe.exists(self.key(session_id))
        alive = pipe.execute()
        dead = [session_id for session_id, exists in zip(ids, alive) if not exists]
        if dead:
            self.client.zrem(index, *dead)
        return [session_id for session_id, exists in zip(ids, alive) if exists]

    def logout_everywhere(self, user_id: str | int) -> int:
        """End every session of a user; returns how many were live.

        Optimistic (WATCH on the index): a login or rotation at the same moment changes the
        index, so the transaction runs again and ends that session too.
        """
        index = self.index_key(user_id)

        def end_all(pipe: redis.client.Pipeline) -> None:
            ids = self._ids(index, pipe.zrange(index, 0, -1))
            pipe.multi()
            if ids:
                pipe.delete(*(self.key(i) for i in ids))
                pipe.zrem(index, *ids)

        with self._foreign(index):
            replies = self.client.transaction(end_all, index)
        return int(replies[0]) if replies else 0

    def _ids(self, index: str, members: list[Any]) -> list[str]:
        """The session ids of an index; a member that is none was not put there by this store."""
        ids = [_text(member) for member in members]
        if not all(_ID.fullmatch(i) for i in ids):
            raise SessionDataError(_corrupt(index, "members that are not session ids"))
        return ids

    def _fields(self, data: Mapping[str, Any]) -> list[str]:
        if not isinstance(data, Mapping):
            raise InvalidArgumentType(
                f"session data is a mapping of field names to values, not {type(data).__name__}."
            )
        flat: list[str] = []
        for name, value in data.items():
            if not isinstance(name, str) or not name or name.startswith("@"):
                raise InvalidArgument(
                    f"session fields are non-empty str names not starting with '@', got {name!r}"
                )
            flat += [name, self.serializer.dumps(value)]
        return flat

    @staticmethod
    def _foreign(*keys: str) -> AbstractContextManager[None]:
        """Errors caused by what ``keys`` hold become ``SessionDataError``."""
        return foreign_data(lambda problem: SessionDataError(_corrupt(" or ".join(keys), problem)))

    @staticmethod
    def _not_found() -> SessionNotFound:
        return SessionNotFound("No such session (unknown, expired or logged out): log in again.")


def _user(user_id: object) -> str:
    """A user id as the store writes it: a non-empty str, or an int's digits."""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise InvalidArgumentType(f"user_id is a str or an int, not {type(user_id).__name__} {user_id!r}.")
    if user_id == "":
        raise InvalidArgument("user_id is never empty.")
    return str(user_id)


def _tag(user_id: object) -> str:
    """A user's hash tag: the start of the SHA-256 of their id (spreads users over the slots)."""
    return hashlib.sha256(_user(user_id).encode()).hexdigest()[:TAG_DIGITS]


def _new_id(user_id: str | int | None, *, tag: str | None = None) -> str:
    """A fresh session id in ``user_id``'s slot (a random one, or ``tag``'s, when anonymous)."""
    if tag is None:
        tag = secrets.token_hex(TAG_DIGITS // 2) if user_id is None else _tag(user_id)
    return f"{tag}.{secrets.token_urlsafe(ID_BYTES)}"


def _corrupt(keys: str, problem: str) -> str:
    # Session ids are secrets and messages end up in logs: show only the first characters.
    shown = re.sub(r"([A-Za-z0-9_-]{6})[A-Za-z0-9_-]{37}", r"\1…", keys)
    return (
        f"{shown} holds {problem}: not written by this store, so it is no live session "
        f"(treat the user as logged out; delete the key if nothing else uses it)."
    )


def _text(value: Any) -> str:
    """A reply item as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)
