"""Which Redis version each command the handbook teaches needs, checked against the server.

``COMMANDS`` is curated by hand: every command the lessons teach, the version that introduced
it (for a module command, the module's version) and the options the lessons use with the
version that added each. ``mismatches(r)`` compares it with the running server's
``COMMAND DOCS``, so the table cannot drift from what Redis itself says; ``version_table(r)``
shows it with a column that says whether this server can run each command as taught.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import redis

from .commanddocs import command_docs
from .features import has_command, server_version


def version(text: str) -> tuple[int, ...]:
    """``"6.0.6"`` -> ``(6, 0, 6)``, for comparing versions."""
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Command:
    """One command the handbook teaches, and what it needs."""

    name: str  # as COMMAND DOCS names it, upper case: "SET", "OBJECT|ENCODING", "BF.ADD"
    since: str  # version that introduced it: Redis's, or the module's for a module command
    topic: str  # the lesson that teaches it first
    options: Mapping[str, str] = field(default_factory=dict)  # token (or argument name) -> version
    module: str | None = None  # "bf", "ReJSON": the module that provides it
    replaced_by: str | None = None  # what the handbook teaches instead of this older form

    @property
    def needs(self) -> str:
        """The version the lessons' use needs: the newest of ``since`` and the options'."""
        return max([self.since, *self.options.values()], key=version)

    @property
    def display_name(self) -> str:
        return self.name.replace("|", " ")


def _core(topic: str, name: str, since: str, replaced_by: str | None = None, **options: str) -> Command:
    return Command(name, since, topic, options, replaced_by=replaced_by)


def _module(module: str, topic: str, since: str, *names: str) -> list[Command]:
    return [Command(name, since, topic, module=module) for name in names]


# Versions as COMMAND DOCS (Redis 7.0+) and the modules' commands.json give them.
COMMANDS: tuple[Command, ...] = (
    # 01 keys and expiry
    _core("keys", "SET", "1.0.0", EX="2.6.12", PX="2.6.12", NX="2.6.12", XX="2.6.12",
          KEEPTTL="6.0.0", GET="6.2.0", EXAT="6.2.0"),
    _core("keys", "GET", "1.0.0"),
    _core("keys", "EXISTS", "1.0.0"),
    _core("keys", "DEL", "1.0.0"),
    _core("keys", "UNLINK", "4.0.0"),
    _core("keys", "EXPIRE", "1.0.0", NX="7.0.0", XX="7.0.0", GT="7.0.0", LT="7.0.0"),
    _core("keys", "PEXPIRE", "2.6.0"),
    _core("keys", "EXPIRETIME", "7.0.0"),
    _core("keys", "TTL", "1.0.0"),
    _core("keys", "PTTL", "2.6.0"),
    _core("keys", "PERSIST", "2.2.0"),
    _core("keys", "TYPE", "1.0.0"),
    _core("keys", "RENAME", "1.0.0"),
    _core("keys", "RENAMENX", "1.0.0"),
    _core("keys", "COPY", "6.2.0", REPLACE="6.2.0"),
    _core("keys", "SCAN", "2.8.0", MATCH="2.8.0", COUNT="2.8.0", TYPE="6.0.0"),
    _core("keys", "KEYS", "1.0.0", replaced_by="SCAN (KEYS blocks the server)"),
    _core("keys", "SELECT", "1.0.0"),
    _core("keys", "DBSIZE", "1.0.0"),
    _core("keys", "FLUSHDB", "1.0.0", ASYNC="4.0.0"),
    # 02 strings and counters
    _core("strings", "MSET", "1.0.1"),
    _core("strings", "MGET", "1.0.0"),
    _core("strings", "MSETNX", "1.0.1"),
    _core("strings", "INCR", "1.0.0"),
    _core("strings", "INCRBY", "1.0.0"),
    _core("strings", "DECR", "1.0.0"),
    _core("strings", "DECRBY", "1.0.0"),
    _core("strings", "INCRBYFLOAT", "2.6.0"),
    _core("strings", "APPEND", "2.0.0"),
    _core("strings", "STRLEN", "2.2.0"),
    _core("strings", "GETRANGE", "2.4.0"),
    _core("strings", "SETRANGE", "2.2.0"),
    _core("strings", "GETEX", "6.2.0", PX="6.2.0", PERSIST="6.2.0"),
    _core("strings", "GETDEL", "6.2.0"),
    _core("strings", "SETEX", "2.0.0", replaced_by="SET key value EX seconds"),
    _core("strings", "SETNX", "1.0.0", replaced_by="SET key value NX EX seconds (a lock needs a TTL)"),
    _core("strings", "GETSET", "1.0.0", replaced_by="SET key value GET"),
    # 03 hashes
    _core("hashes", "HSET", "2.0.0"),
    _core("hashes", "HGET", "2.0.0"),
    _core("hashes", "HMGET", "2.0.0"),
    _core("hashes", "HGETALL", "2.0.0"),
    _core("hashes", "HEXISTS", "2.0.0"),
    _core("hashes", "HDEL", "2.0.0"),
    _core("hashes", "HKEYS", "2.0.0"),
    _core("hashes", "HVALS", "2.0.0"),
    _core("hashes", "HLEN", "2.0.0"),
    _core("hashes", "HINCRBY", "2.0.0"),
    _core("hashes", "HINCRBYFLOAT", "2.6.0"),
    _core("hashes", "HSETNX", "2.0.0"),
    _core("hashes", "HSCAN", "2.8.0"),
    _core("hashes", "HRANDFIELD", "6.2.0", WITHVALUES="6.2.0"),
    _core("hashes", "HMSET", "2.0.0", replaced_by="HSET key field value [field value ...]"),
    _core("hashes", "HEXPIRE", "7.4.0", GT="7.4.0", LT="7.4.0", XX="7.4.0"),
    _core("hashes", "HEXPIREAT", "7.4.0"),
    _core("hashes", "HEXPIRETIME", "7.4.0"),
    _core("hashes", "HPEXPIRETIME", "7.4.0"),
    _core("hashes", "HTTL", "7.4.0"),
    _core("hashes", "HPERSIST", "7.4.0"),
    _core("hashes", "HPEXPIRE", "7.4.0"),
    _core("hashes", "HPTTL", "7.4.0"),
    _core("hashes", "HGETDEL", "8.0.0"),
    _core("hashes", "HGETEX", "8.0.0", PERSIST="8.0.0", PX="8.0.0"),
    _core("hashes", "HSETEX", "8.0.0", FNX="8.0.0", FXX="8.0.0", EX="8.0.0", PX="8.0.0", KEEPTTL="8.0.0"),
    _core("hashes", "HSTRLEN", "3.2.0"),
    # 04 lists
    _core("lists", "LPUSH", "1.0.0"),
    _core("lists", "RPUSH", "1.0.0"),
    _core("lists", "LPOP", "1.0.0", count="6.2.0"),
    _core("lists", "RPOP", "1.0.0", count="6.2.0"),
    _core("lists", "BLPOP", "2.0.0"),
    _core("lists", "BRPOP", "2.0.0"),
    _core("lists", "LLEN", "1.0.0"),
    _core("lists", "LRANGE", "1.0.0"),
    _core("lists", "LINDEX", "1.0.0"),
    _core("lists", "LINSERT", "2.2.0"),
    _core("lists", "LSET", "1.0.0"),
    _core("lists", "LREM", "1.0.0"),
    _core("lists", "LTRIM", "1.0.0"),
    _core("lists", "LPOS", "6.0.6", RANK="6.0.6", COUNT="6.0.6"),
    _core("lists", "LMOVE", "6.2.0"),
    _core("lists", "BLMOVE", "6.2.0"),
    _core("lists", "LMPOP", "7.0.0"),
    _core("lists", "RPOPLPUSH", "1.2.0", replaced_by="LMOVE source destination RIGHT LEFT"),
    # 05 sets
    _core("sets", "SADD", "1.0.0"),
    _core("sets", "SREM", "1.0.0"),
    _core("sets", "SMEMBERS", "1.0.0"),
    _core("sets", "SISMEMBER", "1.0.0"),
    _core("sets", "SMISMEMBER", "6.2.0"),
    _core("sets", "SCARD", "1.0.0"),
    _core("sets", "SPOP", "1.0.0", count="3.2.0"),
    _core("sets", "SRANDMEMBER", "1.0.0", count="2.6.0"),
    _core("sets", "SUNION", "1.0.0"),
    _core("sets", "SINTER", "1.0.0"),
    _core("sets", "SDIFF", "1.0.0"),
    _core("sets", "SUNIONSTORE", "1.0.0"),
    _core("sets", "SINTERSTORE", "1.0.0"),
    _core("sets", "SDIFFSTORE", "1.0.0"),
    _core("sets", "SINTERCARD", "7.0.0", LIMIT="7.0.0"),
    _core("sets", "SMOVE", "1.0.0"),
    _core("sets", "SORT", "1.0.0", ALPHA="1.0.0"),
    _core("sets", "SSCAN", "2.8.0"),
    # 06 sorted sets
    _core("sorted sets", "ZADD", "1.2.0", NX="3.0.2", XX="3.0.2", CH="3.0.2", INCR="3.0.2",
          GT="6.2.0", LT="6.2.0"),
    _core("sorted sets", "ZRANK", "2.0.0", WITHSCORE="7.2.0"),
    _core("sorted sets", "ZREVRANK", "2.0.0", WITHSCORE="7.2.0"),
    _core("sorted sets", "ZSCORE", "1.2.0"),
    _core("sorted sets", "ZMSCORE", "6.2.0"),
    _core("sorted sets", "ZRANGE", "1.2.0", BYSCORE="6.2.0", BYLEX="6.2.0", REV="6.2.0",
          LIMIT="6.2.0", WITHSCORES="1.2.0"),
    _core("sorted sets", "ZRANGESTORE", "6.2.0"),
    _core("sorted sets", "ZINCRBY", "1.2.0"),
    _core("sorted sets", "ZREM", "1.2.0"),
    _core("sorted sets", "ZREMRANGEBYSCORE", "1.2.0"),
    _core("sorted sets", "ZREMRANGEBYRANK", "2.0.0"),
    _core("sorted sets", "ZCOUNT", "2.0.0"),
    _core("sorted sets", "ZCARD", "1.2.0"),
    _core("sorted sets", "ZPOPMIN", "5.0.0"),
    _core("sorted sets", "ZPOPMAX", "5.0.0"),
    _core("sorted sets", "ZLEXCOUNT", "2.8.9"),
    _core("sorted sets", "BZPOPMIN", "5.0.0"),
    _core("sorted sets", "ZMPOP", "7.0.0", COUNT="7.0.0"),
    _core("sorted sets", "BZMPOP", "7.0.0", COUNT="7.0.0"),
    _core("sorted sets", "ZUNIONSTORE", "2.0.0", WEIGHTS="2.0.0"),
    _core("sorted sets", "ZINTERSTORE", "2.0.0", WEIGHTS="2.0.0"),
    _core("sorted sets", "ZRANGEBYSCORE", "1.0.5", replaced_by="ZRANGE key min max BYSCORE"),
    _core("sorted sets", "ZREVRANGE", "1.2.0", replaced_by="ZRANGE key start stop REV"),
    # 07 JSON (RedisJSON)
    *_module("ReJSON", "JSON", "1.0.0", "JSON.SET", "JSON.GET", "JSON.MGET", "JSON.DEL", "JSON.TYPE",
             "JSON.NUMINCRBY", "JSON.ARRAPPEND", "JSON.ARRPOP", "JSON.STRAPPEND", "JSON.OBJKEYS",
             "JSON.TOGGLE"),
    *_module("ReJSON", "JSON", "2.6.0", "JSON.MERGE"),
    # 08 streams
    _core("streams", "XADD", "5.0.0", MAXLEN="5.0.0", MINID="6.2.0", NOMKSTREAM="6.2.0", ACKED="8.2.0"),
    _core("streams", "XDEL", "5.0.0"),
    _core("streams", "XDELEX", "8.2.0", KEEPREF="8.2.0", DELREF="8.2.0", ACKED="8.2.0"),
    _core("streams", "XACKDEL", "8.2.0", KEEPREF="8.2.0", DELREF="8.2.0", ACKED="8.2.0"),
    _core("streams", "XLEN", "5.0.0"),
    _core("streams", "XRANGE", "5.0.0", COUNT="5.0.0"),
    _core("streams", "XREVRANGE", "5.0.0"),
    _core("streams", "XREAD", "5.0.0", BLOCK="5.0.0"),
    _core("streams", "XGROUP|CREATE", "5.0.0", MKSTREAM="5.0.0"),
    _core("streams", "XREADGROUP", "5.0.0"),
    _core("streams", "XACK", "5.0.0"),
    _core("streams", "XPENDING", "5.0.0", IDLE="6.2.0"),
    _core("streams", "XCLAIM", "5.0.0"),
    _core("streams", "XAUTOCLAIM", "6.2.0"),
    _core("streams", "XINFO|STREAM", "5.0.0"),
    _core("streams", "XINFO|GROUPS", "5.0.0"),
    _core("streams", "XINFO|CONSUMERS", "5.0.0"),
    _core("streams", "XGROUP|DELCONSUMER", "5.0.0"),
    _core("streams", "XTRIM", "5.0.0", MAXLEN="5.0.0", MINID="6.2.0", ACKED="8.2.0"),
    # 09 bitmaps, bitfields, HyperLogLog
    _core("bitmaps & HLL", "SETBIT", "2.2.0"),
    _core("bitmaps & HLL", "GETBIT", "2.2.0"),
    _core("bitmaps & HLL", "BITCOUNT", "2.6.0", BIT="7.0.0"),
    _core("bitmaps & HLL", "BITPOS", "2.8.7"),
    _core("bitmaps & HLL", "BITOP", "2.6.0", DIFF="8.2.0", DIFF1="8.2.0", ANDOR="8.2.0", ONE="8.2.0"),
    _core("bitmaps & HLL", "BITFIELD", "3.2.0", OVERFLOW="3.2.0"),
    _core("bitmaps & HLL", "PFADD", "2.8.9"),
    _core("bitmaps & HLL", "PFCOUNT", "2.8.9"),
    _core("bitmaps & HLL", "PFMERGE", "2.8.9"),
    # 10 geospatial
    _core("geo", "GEOADD", "3.2.0"),
    _core("geo", "GEODIST", "3.2.0"),
    _core("geo", "GEOPOS", "3.2.0"),
    _core("geo", "GEOHASH", "3.2.0"),
    _core("geo", "GEOSEARCH", "6.2.0", BYRADIUS="6.2.0", BYBOX="6.2.0", WITHDIST="6.2.0"),
    _core("geo", "GEOSEARCHSTORE", "6.2.0", STOREDIST="6.2.0"),
    _core("geo", "GEORADIUS", "3.2.0", replaced_by="GEOSEARCH key FROMLONLAT lon lat BYRADIUS r unit"),
    # 11 pub/sub
    _core("pub/sub", "PUBLISH", "2.0.0"),
    _core("pub/sub", "SUBSCRIBE", "2.0.0"),
    _core("pub/sub", "PSUBSCRIBE", "2.0.0"),
    _core("pub/sub", "UNSUBSCRIBE", "2.0.0"),
    _core("pub/sub", "PUBSUB|NUMSUB", "2.8.0"),
    _core("pub/sub", "PUBSUB|CHANNELS", "2.8.0"),
    _core("pub/sub", "PUBSUB|NUMPAT", "2.8.0"),
    # 12 probabilistic (RedisBloom)
    *_module("bf", "probabilistic", "1.0.0", "BF.RESERVE", "BF.ADD", "BF.MADD", "BF.EXISTS",
             "BF.MEXISTS", "BF.INFO", "BF.INSERT"),
    *_module("bf", "probabilistic", "2.4.4", "BF.CARD"),
    *_module("bf", "probabilistic", "1.0.0", "CF.RESERVE", "CF.ADD", "CF.ADDNX", "CF.INSERT", "CF.EXISTS",
             "CF.MEXISTS", "CF.DEL", "CF.COUNT"),
    *_module("bf", "probabilistic", "2.0.0", "CMS.INITBYPROB", "CMS.INCRBY", "CMS.QUERY", "CMS.INFO",
             "TOPK.RESERVE", "TOPK.ADD", "TOPK.LIST", "TOPK.QUERY"),
    # patterns: transactions, scripts (locks, rate limits), pipelines
    _core("patterns", "MULTI", "1.2.0"),
    _core("patterns", "EXEC", "1.2.0"),
    _core("patterns", "DISCARD", "2.0.0"),
    _core("patterns", "WATCH", "2.2.0"),
    _core("patterns", "UNWATCH", "2.2.0"),
    _core("patterns", "EVAL", "2.6.0"),
    _core("patterns", "EVALSHA", "2.6.0"),
    _core("patterns", "SCRIPT|LOAD", "2.6.0"),
    _core("patterns", "SCRIPT|EXISTS", "2.6.0"),
    _core("patterns", "TIME", "2.6.0"),
    # introspection
    _core("server", "PING", "1.0.0"),
    _core("server", "INFO", "1.0.0"),
    _core("server", "CONFIG|GET", "2.0.0"),
    _core("server", "CONFIG|SET", "2.0.0"),
    _core("server", "CLIENT|INFO", "6.2.0"),
    _core("server", "CLIENT|LIST", "2.4.0"),
    _core("server", "CLIENT|KILL", "2.4.0", ID="2.8.12"),
    _core("server", "OBJECT|ENCODING", "2.2.3"),
    _core("server", "OBJECT|REFCOUNT", "2.2.3"),
    _core("server", "MEMORY|USAGE", "4.0.0", SAMPLES="4.0.0"),
    _core("server", "CLIENT|SETNAME", "2.6.9"),
    _core("server", "CLIENT|SETINFO", "7.2.0"),
    _core("server", "CLIENT|ID", "5.0.0"),
    _core("server", "HELLO", "6.0.0"),
    _core("server", "COMMAND|DOCS", "7.0.0"),
)


# Options newer than their command whose version COMMAND DOCS (up to 8.2) does not record: it
# lists them as old as the command. The table keeps the true version (from the release notes).
UNDATED_IN_DOCS = frozenset({
    ("ZRANK", "WITHSCORE"), ("ZREVRANK", "WITHSCORE"), ("XADD", "ACKED"), ("XTRIM", "ACKED"),
    ("BITOP", "DIFF"), ("BITOP", "DIFF1"), ("BITOP", "ANDOR"), ("BITOP", "ONE"),
})


@dataclass(frozen=True)
class Mismatch:
    """A place where the table and the server's COMMAND DOCS disagree."""

    command: str
    what: str  # "since", "option GET", "module", "deprecated"
    table: str
    server: str

    def __str__(self) -> str:
        return f"{self.command} {self.what}: the table says {self.table}, the server says {self.server}"


def option_since(doc: Mapping[str, Any], option: str) -> str | None:
    """The version that added ``option`` (a token such as ``GET``, else an argument name such
    as ``count``) according to ``doc`` (one command's COMMAND DOCS); None if it has no such option.

    An argument without a ``since`` of its own is as old as the nearest enclosing one that has
    one (``EXPIRE``'s ``NX`` sits in a ``condition`` block added in 7.0.0), or as the command.
    """
    arguments = doc.get("arguments") or []
    since = str(doc.get("since", ""))
    # Tokens first: FLUSHDB's block of ASYNC|SYNC is itself *named* "async".
    for field_name in ("token", "name"):
        found = _find_option(arguments, field_name, option.upper(), since)
        if found is not None:
            return found
    return None


def _find_option(arguments: list[dict[str, Any]], field_name: str, option: str, inherited: str) -> str | None:
    for argument in arguments:
        since = str(argument.get("since") or inherited)
        if str(argument.get(field_name, "")).upper() == option:
            return since
        found = _find_option(argument.get("arguments") or [], field_name, option, since)
        if found is not None:
            return found
    return None


def mismatches(r: redis.Redis, commands: Iterable[Command] = COMMANDS) -> list[Mismatch]:
    """Every disagreement between ``commands`` and the server's COMMAND DOCS.

    Checked for each command the server documents: its ``since``, the ``since`` of each option
    the server knows (an option newer than the server is expected to be missing; one the
    server should have but does not document is reported), the module that provides it, and
    that a command the server marks deprecated says what replaces it.
    """
    commands = list(commands)
    docs = command_docs(r, *(c.display_name for c in commands))
    here = server_version(r)
    found: list[Mismatch] = []
    for command in commands:
        doc = docs[command.display_name]
        if not doc:  # unknown to this server
            continue
        server_module = str(doc.get("module") or "core")
        if server_module.lower() != (command.module or "core").lower():
            found.append(Mismatch(command.name, "module", command.module or "core", server_module))
        if "since" in doc and doc["since"] != command.since:
            found.append(Mismatch(command.name, "since", command.since, str(doc["since"])))
        if "deprecated" in (doc.get("doc_flags") or []) and command.replaced_by is None:
            found.append(Mismatch(command.name, "deprecated", "nothing replaces it",
                                  f"deprecated, use {doc.get('replaced_by')}"))
        if command.module is not None:
            continue  # the table lists no options of module commands: their docs do not version them
        for option, added in command.options.items():
            server_added = option_since(doc, option)
            if server_added is None and version(added) <= here:
                found.append(Mismatch(command.name, f"option {option}", added, "no such option"))
            elif server_added is not None and server_added != added and not (
                (command.name, option) in UNDATED_IN_DOCS and server_added == command.since
            ):
                found.append(Mismatch(command.name, f"option {option}", added, server_added))
    return found


def is_available(r: redis.Redis, command: Command) -> bool:
    """True when this server can run ``command`` as the lessons use it (options included)."""
    return _available(r, command, server_version(r))


def version_table(r: redis.Redis, commands: Iterable[Command] = COMMANDS) -> pd.DataFrame:
    """The table as a DataFrame: command, since, options (with their versions), what the
    lessons' use needs, topic, what replaces it, and whether this server has it."""
    here = server_version(r)
    rows = []
    for command in commands:
        origin = f"{command.module} " if command.module else ""
        rows.append({
            "command": command.display_name,
            "since": origin + command.since,
            "options": _describe_options(command.options),
            "needs": origin + command.needs,
            "topic": command.topic,
            "replaced by": command.replaced_by or "",
            "available here": _available(r, command, here),
        })
    return pd.DataFrame(rows)


def _available(r: redis.Redis, command: Command, here: tuple[int, ...]) -> bool:
    # A module command is versioned by its module: present means usable as taught.
    if not has_command(r, command.name):
        return False
    return command.module is not None or version(command.needs) <= here


def _describe_options(options: Mapping[str, str]) -> str:
    """``{"NX": "7.0.0", "GT": "7.0.0"}`` -> ``"NX GT 7.0.0"``; groups by version, oldest first."""
    by_version: dict[str, list[str]] = {}
    for option, added in options.items():
        by_version.setdefault(added, []).append(option)
    return ", ".join(f"{' '.join(names)} {added}" for added, names in sorted(by_version.items(),
                                                                         key=lambda item: version(item[0])))
