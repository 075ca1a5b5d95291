"""Caching patterns: cache-aside with stampede protection, write-through, invalidation, warming.

    cache = Cache(r, namespace="cache", ttl=300)

    @cache.cached(ttl=60, negative_ttl=5)
    def exam_stats(exam_id: int) -> dict | None: ...

    exam_stats(7)                 # miss: runs the query, stores the result
    exam_stats(exam_id=7)         # hit: same key (arguments are bound, defaults applied)
    exam_stats.invalidate(7)      # after the database changed
    cache.get_or_load("exam:7", lambda: query(7))   # the same, without a decorator

An entry is one string, ``rc1:<serializer>:<expires at, ms>:<delta, ms>:<payload>``, stored
with ``PX``. The envelope tells a cached ``None`` (``...:null``) from a miss (no key), and
carries what XFetch needs: ``delta``, the time the value took to compute, and the expiry time,
taken from the *server's* clock when the entry is written (a Lua script calls ``TIME``). So a
hit is **one plain GET**. Readers compare that expiry with their own clock: a skew between a
client and the server shifts when early refreshes and stale serving happen by the skew (NTP
keeps it to milliseconds), never how long a value lives, which the server's ``PX`` enforces.

Stampede protection, both kinds:

* **Single flight with leases.** On a miss a script re-reads the key and, if still missing,
  takes ``SET lease token NX PX``; the one caller that gets it runs the loader, the others
  poll (bounded by ``wait_timeout``) or, within ``stale_ttl`` after expiry, get the stale value
  at once. The loader's write succeeds only while its lease still holds, and ``invalidate`` and
  ``set`` delete the lease: a loader that read the database *before* an update cannot put its
  stale value back *after* the invalidation (the "leases" of Facebook's memcache, NSDI 2013).
  The lease is a tiny token lock private to this module (``redai_lab.patterns.locks`` could provide it).
* **XFetch** (Vattani, Chierichetti, Lowenstein, VLDB 2015): a hit recomputes early when
  ``-delta * beta * ln(rand()) >= time left``, so one caller refreshes shortly before expiry
  and nobody sees the miss. ``beta > 1`` refreshes earlier.

From ``redis.asyncio`` code, ``AsyncCache`` has ``get``, ``get_or_load`` (an async loader),
``set`` and ``invalidate``: the same keys, envelope, scripts and decisions (``get_or_load``'s are
one I/O-free generator that both classes drive), so sync and async callers share entries and
leases.

Keys and Redis Cluster: a value lives at ``<namespace>:<key>``; its lease must share its hash
slot, since one script reads both. When the entry key has a hash tag (``{user:42}:profile``)
its lease ``<namespace>:lease:<key>`` has the same tag; otherwise the lease is
``{<namespace>:<key>}:lease``, tagged with the whole entry key. (A key with a ``}`` but no
hash tag is refused: no lease could share its slot.) ``invalidate`` deletes each lease, then
its value, in one pipeline (one round trip per Cluster node); ``warm`` writes one script call
per hash slot on a Cluster.

Commands: GET, SET NX PX O(1); a write O(1) per value; DEL O(keys). Scripts are loaded on
first use (``EVALSHA``, then ``SCRIPT LOAD`` once per server).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import random as _random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

import redis
import redis.asyncio
from redis.cluster import RedisCluster
from redis.crc import key_slot

from ..errors import (
    InvalidArgument,
    InvalidArgumentType,
    LabError,
    check_client,
    check_count,
    check_seconds,
    foreign_data,
)
from .serializers import JSON, Serializer

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

MAGIC = "rc1"
# Canonical JSON for keys: sorted keys, no spaces; one encoder, built once (it is stateless).
_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
LEASE_PREFIX = "lease:"
# How many calls' keys each ``cached`` function remembers, and the argument types it remembers.
MEMO_SIZE = 4096
_MEMO_SCALARS = frozenset({str, int, float, bool, type(None)})

# KEYS: entry, lease. ARGV: token, lease ms, the stamp of the entry this caller read ('' on a
# miss). The value if someone wrote another one meanwhile, else whether this caller now holds
# the lease (and must load). Checking the stamp stops a caller that read an entry just before
# another's refresh stored a new one from taking the freed lease and loading it a second time.
_READ_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value and (ARGV[3] == '' or string.sub(value, 1, #ARGV[3]) ~= ARGV[3]) then
  return {value, 0}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {false, 1}
end
-- a lease key of another type would make every caller wait for a loader that does not exist
if redis.call('TYPE', KEYS[2])['ok'] ~= 'string' then
  error({err = 'CORRUPT a lease key of another Redis type'})
end
return {false, 0}
"""

# KEYS: entry and lease of each value. ARGV: token ('' = unconditional), header, stale grace
# ms, then ttl ms, delta ms, payload of each value. With a token (one value, a loader's write)
# it writes only while the lease is that token's. Every write ends the value's lease.
_STORE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
for i = 1, #KEYS / 2 do
  local ttl = tonumber(ARGV[3 * i + 1])
  local envelope = ARGV[2] .. string.format('%d', now + ttl) .. ':' .. ARGV[3 * i + 2] .. ':' .. ARGV[3 * i + 3]
  redis.call('SET', KEYS[2 * i - 1], envelope, 'PX', string.format('%d', ttl + tonumber(ARGV[3])))
  redis.call('DEL', KEYS[2 * i])
end
return 1
"""

# KEYS: lease. ARGV: token. Compare-and-delete: never release a lease someone else now holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class CacheError(LabError):
    """Base class of the cache's errors."""


class CacheEntryError(CacheError):
    """A key in the cache's namespace holds data this cache did not write; it is never decoded."""


class CacheWaitTimeout(CacheError):
    """Another caller held the key's lease for longer than ``wait_timeout``."""


class UncacheableArgument(CacheError, TypeError):
    """An argument of a ``cached`` function has no canonical JSON form, hence no stable key."""


def should_recompute_early(delta: float, remaining: float, beta: float, rand: float) -> bool:
    """XFetch's test: recompute now when ``-delta * beta * ln(rand) >= remaining``.

    ``delta`` is the value's recompute time and ``remaining`` its time to expiry (seconds),
    ``rand`` uniform in (0, 1]. The probability is ``exp(-remaining / (delta * beta))``: it rises
    to 1 as expiry approaches, faster for values that are slow to compute.
    """
    if not 0 < rand <= 1:
        raise InvalidArgument(f"rand is a uniform draw in (0, 1], not {rand!r}")
    return delta > 0 and -delta * beta * math.log(rand) >= remaining


@dataclass
class CacheStats:
    """What a ``Cache`` did. A hit is a call served from the cache without loading or waiting.

    Latencies are summed wall-clock seconds of the calls counted as hits and as misses.
    """

    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_errors: int = 0
    early_refreshes: int = 0
    stale_served: int = 0
    waits: int = 0
    rejected_writes: int = 0
    hit_seconds: float = 0.0
    miss_seconds: float = 0.0

    @property
    def hit_ratio(self) -> float:
        calls = self.hits + self.misses
        return self.hits / calls if calls else 0.0

    @property
    def mean_hit_ms(self) -> float:
        return 1000 * self.hit_seconds / self.hits if self.hits else 0.0

    @property
    def mean_miss_ms(self) -> float:
        return 1000 * self.miss_seconds / self.misses if self.misses else 0.0


# What ``get_or_load``'s decisions (``_CacheBase._flight``) ask its driver to do, and the reply
# each step gets back: ("get",) the entry's text or None; ("lease", token, seen) ``_lease``'s
# pair; ("load", token) the loaded value; ("sleep", seconds) None. ``Cache`` performs the steps
# with blocking calls and ``AsyncCache`` awaits them: one logic, two kinds of I/O.
Step = tuple[Any, ...]


class _CacheBase:
    """What ``Cache`` and ``AsyncCache`` share: the parameters, the keys and envelope, the scripts
    and every decision; only their I/O differs.

    ``ttl``: seconds a value lives; ``negative_ttl``: seconds a *negative* result lives (one for
    which ``is_negative`` is true, by default ``None``: "not found"), or None to use ``ttl``;
    ``jitter``: each write's TTL is drawn from ``[ttl * (1 - jitter), ttl]`` so keys written
    together do not expire together; ``beta``: XFetch's eagerness (0 turns it off);
    ``stale_ttl``: seconds an expired value is kept and served while one caller reloads it;
    ``lease_ttl``: longest a loader may hold a key's lease (longer than the slowest load);
    ``wait_timeout``: longest a caller waits for another's load before ``CacheWaitTimeout``
    (longer than ``lease_ttl``, so a waiter can take over from a loader that died);
    ``random``: a source of floats in [0, 1) for jitter and XFetch (seed it in tests).
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        namespace: str = "cache",
        *,
        ttl: float = 300.0,
        negative_ttl: float | None = None,
        is_negative: Callable[[Any], bool] = lambda value: value is None,
        jitter: float = 0.0,
        beta: float = 1.0,
        stale_ttl: float = 0.0,
        lease_ttl: float = 10.0,
        wait_timeout: float = 15.0,
        serializer: Serializer = JSON,
        random: Callable[[], float] = _random.random,
    ) -> None:
        check_client(type(self).__name__, client, asynchronous=isinstance(self, AsyncCache))
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in ":{}"):
            raise InvalidArgument(f"namespace must be a non-empty name without ':', '{{' or '}}', got {namespace!r}")
        if not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise InvalidArgument(f"jitter is a fraction of the TTL in [0, 1), got {jitter!r}")
        if not isinstance(beta, (int, float)) or not 0 <= beta < math.inf:
            raise InvalidArgument(f"beta is XFetch's eagerness, finite and >= 0 (0: off), got {beta!r}")
        if not isinstance(serializer.name, str) or ":" in serializer.name:
            raise InvalidArgument(f"a serializer's name is a str without ':', got {serializer.name!r}")
        self.client = client
        self.namespace = namespace
        self.ttl = check_seconds("ttl", ttl)
        self.negative_ttl = None if negative_ttl is None else check_seconds("negative_ttl", negative_ttl)
        self.is_negative = is_negative
        self.jitter = jitter
        self.beta = beta
        self.stale_ttl = check_seconds("stale_ttl", stale_ttl, zero=True)
        self.lease_ttl = check_seconds("lease_ttl", lease_ttl)
        self.wait_timeout = check_seconds("wait_timeout", wait_timeout)
        self.serializer = serializer
        self.random = random
        self.stats = CacheStats()
        self._header = f"{MAGIC}:{serializer.name}:"
        self._stats_lock = threading.Lock()
        self._token_prefix = f"{secrets.token_hex(8)}:"
        self._tokens = itertools.count()
        self._read_or_lease = client.register_script(_READ_OR_LEASE)
        self._store = client.register_script(_STORE)
        self._release = client.register_script(_RELEASE)

    # -- keys ---------------------------------------------------------------------------------

    def entry_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s value."""
        if not isinstance(key, str):
            raise InvalidArgumentType(f"a cache key is a str, not {type(key).__name__} {key!r}")
        if not key or key.startswith(LEASE_PREFIX):
            raise InvalidArgument(
                f"cache keys are non-empty and do not start with {LEASE_PREFIX!r}, got {key!r}"
            )
        return f"{self.namespace}:{key}"

    def lease_key(self, key: str) -> str:
        """The Redis key of ``key``'s lease (held by the one caller loading it), in its entry's slot."""
        entry = self.entry_key(key)  # the same checks
        if hash_tag(entry) is not None:  # the same tag, so the same Cluster slot
            return f"{self.namespace}:{LEASE_PREFIX}{key}"
        if "}" in entry:
            raise InvalidArgument(
                f"cache key {key!r} has a '}}' but no hash tag: no lease could share its Redis Cluster slot; "
                f"drop the '}}' or give the key a tag such as '{{user:42}}'."
            )
        return f"{{{entry}}}:lease"  # the whole entry key as the tag: Cluster hashes both alike

    # -- what both kinds share ---------------------------------------------------------------

    def _flight(self, key: str, started: float) -> Generator[Step, Any, Any]:
        """``get_or_load``'s decisions, without I/O: yields each step (see ``Step``), gets its
        reply, returns the value. A hit is the one step ("get",)."""
        text = yield ("get",)  # the hit path: one round trip
        missed = text is None
        deadline = 0.0
        pause = 0.002
        while True:
            if text is not None:
                value, remaining, delta = self._decode(key, text)
                fresh = remaining > 0
                if fresh and not self._xfetch(delta, remaining):
                    self._count(started, hit=not missed)
                    return value
                # An early refresh, or expired and kept for stale_ttl: one caller reloads, the
                # others get the value they read at once.
                token = self._token()
                newer, won = yield ("lease", token, text)
                if won:
                    value = yield ("load", token)
                    self._count(started, hit=False, early_refreshes=1 if fresh else 0)
                    return value
                if newer is not None:  # refreshed by another caller since our GET
                    text = newer
                    continue
                self._count(started, hit=not missed, stale_served=0 if fresh else 1)
                return value
            token = self._token()
            text, won = yield ("lease", token, None)
            if won:
                value = yield ("load", token)
                self._count(started, hit=False)
                return value
            if text is not None:  # written by another caller since our first GET
                continue
            now = time.monotonic()
            if not deadline:
                deadline = now + self.wait_timeout
                self._count(waits=1)
            elif now >= deadline:
                raise CacheWaitTimeout(
                    f"Waited {self.wait_timeout:g} s for another caller to load {self.entry_key(key)!r}: "
                    f"the loader is slower than that or died; raise wait_timeout (and lease_ttl) or "
                    f"set stale_ttl to serve the previous value meanwhile."
                )
            yield ("sleep", min(pause, deadline - now))
            pause = min(pause * 2, 0.05)

    def _fresh(self, key: str, text: str | None, default: Any) -> Any:
        """``get``'s answer from the entry read: its value if fresh, else ``default``."""
        if text is None:
            return default
        value, remaining, _ = self._decode(key, text)
        return value if remaining > 0 else default

    def _set_call(self, key: str, value: Any, ttl: float | None, delta: float) -> dict[str, list[Any]]:
        """The ``_STORE`` call of ``set``: unconditional, ends the lease."""
        fields = self._fields(value, ttl, None, check_seconds("delta", delta, zero=True))
        return {"keys": [self.entry_key(key), self.lease_key(key)], "args": [*self._store_args(""), *fields]}

    def _lease_call(self, key: str, token: str, seen: str | None) -> dict[str, list[Any]]:
        """The ``_READ_OR_LEASE`` call. ``seen`` is the entry this caller read (None on a miss).
        Only its stamp, the envelope up to the payload, is compared: a new write has another
        expiry time."""
        stamp = "" if seen is None else seen[: len(seen) - len(seen.split(":", 4)[-1])]
        return {"keys": [self.entry_key(key), self.lease_key(key)], "args": [token, self._ms(self.lease_ttl), stamp]}

    def _lease_reply(self, key: str, reply: list[Any]) -> tuple[str | None, bool]:
        """``(a newer entry, None if there is none; whether the token now holds the lease)``."""
        text, won = reply
        return (None if text is None else self._text(key, text)), bool(won)

    def _loaded(self, key: str, token: str, value: Any, ttl: float | None, negative_ttl: float | None,
                started: float) -> dict[str, list[Any]]:
        """The ``_STORE`` call of a loader's result (written only while ``token`` holds the lease)."""
        fields = self._fields(value, ttl, negative_ttl, time.perf_counter() - started)
        return {"keys": [self.entry_key(key), self.lease_key(key)], "args": self._store_args(token) + fields}

    def _text(self, key: str, text: str | bytes) -> str:
        if isinstance(text, bytes):  # a client without decode_responses
            try:
                return text.decode()
            except UnicodeDecodeError:
                raise self._foreign(key, "bytes that are not UTF-8 text") from None
        return text

    def _decode(self, key: str, text: str) -> tuple[Any, float, float]:
        """``(value, seconds to expiry, delta)`` of an envelope; never runs anything it holds."""
        if not text.startswith(self._header):
            if text.startswith(f"{MAGIC}:"):
                raise CacheEntryError(
                    f"{self.entry_key(key)!r} was written with serializer {text.split(':')[1]!r}, this "
                    f"cache reads {self.serializer.name!r}: invalidate it or use another namespace."
                )
            raise self._foreign(key)
        try:
            expires_ms, delta_ms, payload = text[len(self._header):].split(":", 2)
            remaining = int(expires_ms) / 1000 - time.time()
            delta = float(delta_ms) / 1000
            if not 0 <= delta < math.inf:
                raise ValueError(f"a recompute time of {delta_ms} ms")
            return self.serializer.loads(payload), remaining, delta
        except (LabError, ValueError) as exc:
            raise CacheEntryError(f"{self.entry_key(key)!r} holds a corrupt entry ({exc}); invalidate it.") from None

    def _foreign(self, key: str, what: str = f"no {MAGIC!r} envelope, possibly a pickle") -> CacheEntryError:
        return CacheEntryError(
            f"{self.entry_key(key)!r} holds data this cache did not write ({what}); it is never "
            f"deserialised. Delete it (cache.invalidate({key!r})) or use another namespace."
        )

    def _foreign_data(self, key: str) -> AbstractContextManager[None]:
        """Errors caused by what ``key``'s entry or lease holds become ``CacheEntryError``."""
        return foreign_data(lambda problem: self._foreign(key, problem))

    def _token(self) -> str:
        # Unique among concurrent holders: random per Cache, the pid for forks, a counter per call.
        return f"{self._token_prefix}{os.getpid()}:{next(self._tokens)}"

    def _store_args(self, token: str) -> list[Any]:
        """The ``_STORE`` arguments before the values': token, header, stale grace ms."""
        return [token, self._header, self._ms(self.stale_ttl)]

    def _fields(self, value: Any, ttl: float | None, negative_ttl: float | None, delta: float) -> list[Any]:
        """The ``_STORE`` arguments of one value: ttl ms, delta ms, payload."""
        seconds = self.ttl if ttl is None else check_seconds("ttl", ttl)
        if self.is_negative(value):
            negative = (
                self.negative_ttl if negative_ttl is None else check_seconds("negative_ttl", negative_ttl)
            )
            seconds = seconds if negative is None else negative
        if self.jitter:
            seconds *= 1 - self.jitter * self.random()
        payload = self.serializer.dumps(value)
        return [self._ms(seconds), f"{delta * 1000:.3f}", payload]

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, round(seconds * 1000)) if seconds > 0 else 0

    def _xfetch(self, delta: float, remaining: float) -> bool:
        return self.beta > 0 and should_recompute_early(delta, remaining, self.beta, 1.0 - self.random())

    def _count(self, started: float | None = None, *, hit: bool | None = None, **counters: int) -> None:
        elapsed = 0.0 if started is None else time.perf_counter() - started
        stats = self.stats
        with self._stats_lock:
            if hit:
                stats.hits += 1
                stats.hit_seconds += elapsed
            elif hit is not None:
                stats.misses += 1
                stats.miss_seconds += elapsed
            for name, increment in counters.items():
                setattr(stats, name, getattr(stats, name) + increment)


class Cache(_CacheBase):
    """Cache-aside, write-through and invalidation over one namespace of a Redis database.

    ``client`` is a ``redis.Redis``; for ``redis.asyncio`` use ``AsyncCache`` (same keys, same
    scripts, same parameters). See ``_CacheBase`` for the parameters.
    """

    client: redis.Redis

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value of ``key`` if it is fresh, else ``default`` (no loading, no lease)."""
        return self._fresh(key, self._get(key), default)

    def get_or_load(
        self,
        key: str,
        loader: Callable[[], T],
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
    ) -> T:
        """Cache-aside: ``key``'s value, computed by ``loader()`` by one caller at a time on a miss.

        A hit is one GET. A miss costs the loader plus two more round trips (the lease, the
        write) for the one caller that loads; the others poll until the value appears (at most
        ``wait_timeout``).
        """
        flight = self._flight(key, time.perf_counter())
        reply: Any = None
        while True:
            try:
                step = flight.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if step[0] == "get":
                reply = self._get(key)
            elif step[0] == "lease":
                reply = self._lease(key, step[1], step[2])
            elif step[0] == "load":
                reply = self._load(key, loader, step[1], ttl, negative_ttl)
            else:
                time.sleep(step[1])

    def refresh(
        self, key: str, loader: Callable[[], T], *, ttl: float | None = None, negative_ttl: float | None = None
    ) -> T:
        """Run ``loader()`` now and store its result whatever the cache holds (ends any lease)."""
        return self._load(key, loader, "", ttl, negative_ttl)

    # -- writing ------------------------------------------------------------------------------

    def set(self, key: str, value: Any, *, ttl: float | None = None, delta: float = 0.0) -> None:
        """Write-through: store ``value`` (just written to the source of truth) for ``key``.

        Ends any lease on ``key``, so a loader that read the old value cannot overwrite this one.
        ``delta`` is the value's recompute time in seconds, for XFetch (0: never early).
        """
        self._store(**self._set_call(key, value, ttl, delta))

    def invalidate(self, *keys: str) -> int:
        """Invalidate-on-update: delete ``keys``' values and leases (after the source changed).

        Returns how many values were deleted. Each lease goes first, then its value: a load that
        started before the update loses its lease before its value can be written, so it cannot
        put the old value back (a new load in between reads the updated source). One pipeline,
        no MULTI: the keys may lie in different Cluster slots.
        """
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        _queue_invalidations(pipe, [(self.lease_key(key), self.entry_key(key)) for key in keys])
        return sum(pipe.execute()[1::2])

    def warm(self, items: Iterable[tuple[str, Any]], *, ttl: float | None = None, chunk_size: int = 500) -> int:
        """Store ``(key, value)`` pairs, ``chunk_size`` per round trip, like ``set`` each.

        ``items`` is consumed lazily: a generator over millions of rows keeps at most one chunk
        in memory, and the server is busy for one chunk's writes at a time. Returns how many
        values were stored.
        """
        check_count("chunk_size", chunk_size)
        iterator = iter(items)
        stored = 0
        while chunk := list(itertools.islice(iterator, chunk_size)):
            # One script call per chunk; on a Cluster one per hash slot (a script's keys share one).
            calls: dict[int, tuple[list[str], list[Any]]] = {}
            for item in chunk:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise InvalidArgumentType(f"warm() takes (key, value) pairs, not {item!r}")
                key, value = item
                slot = key_slot(self.entry_key(key).encode()) if isinstance(self.client, RedisCluster) else 0
                keys, args = calls.setdefault(slot, ([], self._store_args("")))
                keys += [self.entry_key(key), self.lease_key(key)]
                args += self._fields(value, ttl, None, 0.0)
            for keys, args in calls.values():
                self._store(keys=keys, args=args)
            stored += len(chunk)
        return stored

    # -- decorator ----------------------------------------------------------------------------

    def cached(
        self,
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        name: str | None = None,
        ignore: Iterable[str] = (),
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorator: cache a function's results under a key made of its name and arguments.

        ``name`` defaults to ``module.qualname`` (give one to closures made by one factory, which
        share a qualname); ``ignore`` names parameters left out of the key (``self``, a database
        connection). See ``CachedFunction``.
        """

        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name is a non-empty str, not {name!r}")

        def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
            return CachedFunction(self, func, ttl=ttl, negative_ttl=negative_ttl, name=name, ignore=ignore)

        return decorate

    # -- internals ----------------------------------------------------------------------------

    def _get(self, key: str) -> str | None:
        try:
            text = self.client.get(self.entry_key(key))
        except UnicodeDecodeError:  # binary data, e.g. a pickle, read by a decoding client
            raise self._foreign(key) from None
        except redis.ResponseError:
            with self._foreign_data(key):  # only on an error: a hit builds no context manager
                raise
        return None if text is None else self._text(key, text)

    def _lease(self, key: str, token: str, seen: str | None) -> tuple[str | None, bool]:
        with self._foreign_data(key):
            return self._lease_reply(key, self._read_or_lease(**self._lease_call(key, token, seen)))

    def _load(self, key: str, loader: Callable[[], T], token: str, ttl: float | None, negative_ttl: float | None) -> T:
        started = time.perf_counter()
        try:
            value = loader()
            store = self._loaded(key, token, value, ttl, negative_ttl, started)
        except BaseException:
            if token:  # let a waiting caller take over at once rather than after lease_ttl
                with self._foreign_data(key):
                    self._release(keys=[self.lease_key(key)], args=[token])
            self._count(load_errors=1)
            raise
        with self._foreign_data(key):
            written = self._store(**store)
        self._count(loads=1, rejected_writes=0 if written else 1)
        return value


class AsyncCache(_CacheBase):
    """``Cache`` for ``redis.asyncio``: the same keys, envelope, scripts and single flight, awaited.

        cache = AsyncCache(ar, namespace="cache", ttl=300)
        exam = await cache.get_or_load("exam:7", lambda: load_exam(7))   # loader: async, no args

    Concurrent tasks asking for one missing key run the loader once (the lease is in Redis, so
    tasks in other processes, and sync ``Cache`` users of the namespace, share it). A task
    cancelled while it loads releases the lease on its way out, so a waiter takes over at once.
    """

    client: redis.asyncio.Redis

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value of ``key`` if it is fresh, else ``default`` (no loading, no lease)."""
        return self._fresh(key, await self._get(key), default)

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
    ) -> T:
        """Cache-aside: ``key``'s value, computed by ``await loader()`` by one caller at a time."""
        flight = self._flight(key, time.perf_counter())
        reply: Any = None
        while True:
            try:
                step = flight.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if step[0] == "get":
                reply = await self._get(key)
            elif step[0] == "lease":
                reply = await self._lease(key, step[1], step[2])
            elif step[0] == "load":
                reply = await self._load(key, loader, step[1], ttl, negative_ttl)
            else:
                await asyncio.sleep(step[1])

    async def set(self, key: str, value: Any, *, ttl: float | None = None, delta: float = 0.0) -> None:
        """Write-through, as ``Cache.set``: ends any lease on ``key``."""
        await self._store(**self._set_call(key, value, ttl, delta))

    async def invalidate(self, *keys: str) -> int:
        """Delete ``keys``' leases, then their values, in one pipeline, as ``Cache.invalidate``."""
        if not keys:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            _queue_invalidations(pipe, [(self.lease_key(key), self.entry_key(key)) for key in keys])
            replies = await pipe.execute()
        return sum(replies[1::2])

    async def _get(self, key: str) -> str | None:
        try:
            text = await self.client.get(self.entry_key(key))
        except UnicodeDecodeError:  # binary data, e.g. a pickle, read by a decoding client
            raise self._foreign(key) from None
        except redis.ResponseError:
            with self._foreign_data(key):  # only on an error: a hit builds no context manager
                raise
        return None if text is None else self._text(key, text)

    async def _lease(self, key: str, token: str, seen: str | None) -> tuple[str | None, bool]:
        with self._foreign_data(key):
            return self._lease_reply(key, await self._read_or_lease(**self._lease_call(key, token, seen)))

    async def _load(
        self, key: str, loader: Callable[[], Awaitable[T]], token: str, ttl: float | None, negative_ttl: float | None
    ) -> T:
        started = time.perf_counter()
        try:
            pending = loader()
            if not inspect.isawaitable(pending):  # a sync loader: its value would meet a raw TypeError
                raise InvalidArgumentType(
                    f"AsyncCache's loader is an async function, not {loader!r}: wrap a blocking one as "
                    f"lambda: asyncio.to_thread(load, ...).")
            value = await pending
            store = self._loaded(key, token, value, ttl, negative_ttl, started)
        except BaseException:  # CancelledError too: a cancelled loader hands the lease back
            with self._foreign_data(key):
                await self._release(keys=[self.lease_key(key)], args=[token])
            self._count(load_errors=1)
            raise
        with self._foreign_data(key):
            written = await self._store(**store)
        self._count(loads=1, rejected_writes=0 if written else 1)
        return value


class CachedFunction(Generic[P, R]):
    """A function whose results live in a ``Cache``; made by ``Cache.cached``.

    The key is ``name:sha256(canonical JSON of the bound arguments)``: ``f(1)``, ``f(x=1)`` and
    ``f(1, y=<default>)`` share one entry, keyword order does not matter, and a list and a tuple
    with the same items are the same argument. Arguments that are not JSON data (objects,
    sets, dicts with non-str keys, NaN) raise ``UncacheableArgument``: their ``repr`` is no key
    (it may hold a memory address, or be truncated).
    """

    def __init__(
        self,
        cache: Cache,
        func: Callable[P, R],
        *,
        ttl: float | None,
        negative_ttl: float | None,
        name: str | None,
        ignore: Iterable[str],
    ) -> None:
        functools.update_wrapper(self, func)
        self.cache = cache
        self.func = func
        self.ttl = None if ttl is None else check_seconds("ttl", ttl)
        self.negative_ttl = None if negative_ttl is None else check_seconds("negative_ttl", negative_ttl)
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        self.ignore = frozenset(ignore)
        self._signature = inspect.signature(func)
        unknown = self.ignore - set(self._signature.parameters)
        if unknown:
            raise InvalidArgument(f"ignore names no parameter of {self.name}: {sorted(unknown)}")
        # Canonical keys of recent calls whose arguments are all plain scalars, so a hit skips
        # Signature.bind, JSON and SHA-256 (18 of its 22 µs of Python). Its key holds each
        # argument's type as well as its value: True, 1 and 1.0 are equal and hash alike, yet
        # their canonical keys differ. Mutable defaults would make a memo stale: none then.
        self._memo: dict[tuple[Any, ...], str] = {}
        self._memo_lock = threading.Lock()
        self._memoize = all(
            parameter.default is inspect.Parameter.empty or type(parameter.default) in _MEMO_SCALARS
            for parameter in self._signature.parameters.values()
        )

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (relative to the namespace) of this call."""
        values = args + tuple(kwargs.values()) if kwargs else args
        types = tuple(map(type, values))
        if not (self._memoize and _MEMO_SCALARS.issuperset(types)):
            return self._canonical_key(args, kwargs)
        memo_key = (values, types, tuple(kwargs)) if kwargs else (args, types)
        known = self._memo.get(memo_key)
        if known is not None:
            return known
        key = self._canonical_key(args, kwargs)
        if not (float in types and 0.0 in values):  # -0.0 == 0.0, the same type, another key
            with self._memo_lock:
                if len(self._memo) >= MEMO_SIZE:
                    del self._memo[next(iter(self._memo))]  # the oldest: dicts keep insertion order
                self._memo[memo_key] = key
        return key

    def _canonical_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = {
            name: _canonical(value, self.name, name)
            for name, value in bound.arguments.items()
            if name not in self.ignore
        }
        text = _KEY_JSON.encode(arguments)
        return f"{self.name}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._through(self.cache.get_or_load, args, kwargs)

    def bypass(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function without reading or writing the cache."""
        return self.func(*args, **kwargs)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function and store its result, whatever the cache holds."""
        return self._through(self.cache.refresh, args, kwargs)

    def _through(self, method: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        return method(
            self.key(*args, **kwargs),
            lambda: self.func(*args, **kwargs),
            ttl=self.ttl,
            negative_ttl=self.negative_ttl,
        )

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Delete this call's entry (1 if there was one)."""
        return self.cache.invalidate(self.key(*args, **kwargs))


def _canonical(value: Any, function: str, where: str) -> Any:
    """``value`` as plain JSON data, or ``UncacheableArgument`` naming where it failed."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, (list, tuple)):
        return [_canonical(item, function, f"{where}[{i}]") for i, item in enumerate(value)]
    elif isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _canonical(v, function, f"{where}[{k!r}]") for k, v in value.items()}
        return _uncacheable(function, where, "a dict with non-str keys")
    # The type, not the repr: a repr may hold a memory address, different on every run.
    return _uncacheable(function, where, f"the float {value!r}" if isinstance(value, float) else f"a {type(value).__name__}")


def _uncacheable(function: str, where: str, what: str) -> Any:
    raise UncacheableArgument(
        f"{function}: argument {where} is {what}, which has no stable cache key; pass JSON data "
        f"(str, int, float, bool, None, lists, str-keyed dicts), e.g. an id instead of an object, "
        f"or leave it out of the key with ignore=({where.split('[')[0]!r},)."
    )


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes when it has a hash tag (``{...}``, not empty)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start != -1 and end > start + 1 else None


def _queue_invalidations(pipe: Any, lease_and_entry: list[tuple[str, str]]) -> None:
    """Queue ``DEL lease``, ``DEL entry`` for each value: the replies at odd indexes count values."""
    for lease, entry in lease_and_entry:
        pipe.delete(lease)
        pipe.delete(entry)
