"""Isolation: every lesson works in a logical database of its own, from a clean slate.

Lesson ``NN_topic`` uses database ``NN`` (its advanced part ``NNb_topic`` database ``NN + 32``;
modulo the server's database count), so its teaching
snippets keep natural key names such as ``user:1000`` and it can be rerun any number of times
with identical outputs. Tests use the last database.

* On a throwaway server (one the lab started) the database is simply emptied at start and at
  ``finish()``.
* On a server the lab did not start (``REDIS_URL``) the lab never deletes data it did not write.
  A lesson starts only in an empty database, or in one that holds nothing but keys under the
  lab's own prefix ``redai-lab:`` (a benchmark killed mid-way leaves those; they are deleted, one
  by one, never with FLUSHDB). Anything else is refused with ``RefusedToFlushError`` unless the
  user opts in with ``allow_flush=True`` or ``REDAI_LAB_ALLOW_FLUSH=1`` (or ``yes``, ``true``,
  ``on``). While the lesson runs it *holds* its database (``DatabaseClaim``): a connection of its
  own, named and subscribed to a channel ``redai-lab:claim:db<N>:<lesson>:<pid>:<token>``.
  Another lab process that finds such a channel refuses the database; the hold ends with
  ``finish()`` or with the connection, so with the process however it dies: a stale hold cannot
  exist. ``finish()`` empties the database through that connection, so only while the hold is
  live. A lesson stopped before ``finish()`` leaves its keys, and the next start refuses them like
  any other data: the lab cannot tell them from data written since.

Pub/Sub channels are not per database: lessons name their channels after themselves.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from ..errors import RefusedToFlushError, redact
from .connection import connect, database_url, explain
from .exercises import Exercise, spec
from .server import LAB_DATABASES, RedisServer, lab_server

ALLOW_FLUSH_ENV = "REDAI_LAB_ALLOW_FLUSH"
ALLOW_FLUSH_YES = ("1", "yes", "true", "on")
ALLOW_FLUSH_NO = ("", "0", "no", "false", "off")
TESTS_DB = LAB_DATABASES - 1
ADVANCED_OFFSET = 32  # lesson NNb uses database NN + 32
# Keys the lab writes on servers it did not start (benchmarks): it may delete these, and only these.
LAB_KEY_PREFIX = "redai-lab:"
CLAIM_CHANNEL_PREFIX = "redai-lab:claim:"
# Keys named as examples in a refusal, and how much of each name.
EXAMPLE_KEYS, EXAMPLE_LENGTH = 3, 40


class DatabaseClaim:
    """A lesson's hold on database ``db`` of a server the lab did not start.

    The hold is a connection of its own (RESP3, so that it may run any command while
    subscribed), named after, and subscribed to, the channel ``redai-lab:claim:db<N>:...``. A
    subscribed connection is also exempt from the server's idle ``timeout``, so a notebook left
    open for an hour keeps its hold. Commands that empty the database go through this connection
    only, and it is never reconnected: once it is closed (``release()``, a server restart, CLIENT
    KILL, the process's death) nothing the lab sends can empty the database.
    """

    def __init__(self, url: str, db: int, lesson: str) -> None:
        self.url, self.db = url, db
        holder = re.sub(r"[^A-Za-z0-9_.-]", "_", lesson)
        self.channel = f"{claim_channel_prefix(db)}{holder}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lost = ""  # why the hold ended, once it has
        pool = redis.ConnectionPool.from_url(url)
        # After the URL's own options: its /db, ?db= or ?protocol= must not win here.
        pool.connection_kwargs.update(
            db=db, protocol=3, client_name=self.channel, retry=Retry(NoBackoff(), 0),
            socket_timeout=60, health_check_interval=0,
        )
        connection = pool.make_connection()
        try:
            connection.connect()
            connection.send_command("SUBSCRIBE", self.channel)
            connection.read_response(push_request=True)
        except redis.RedisError as exc:
            connection.disconnect()
            raise RefusedToFlushError(_cannot_hold(url, db, exc)) from None
        self._connection: redis.connection.ConnectionInterface | None = connection

    def execute(self, *args: str | int | bytes) -> Any:
        """Run one command on the hold's connection; ``ClaimLostError`` once the hold has ended."""
        if self._connection is None:
            raise ClaimLostError(self.lost)
        try:
            self._connection.send_command(*args)
            return self._connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._close(f"its connection was closed ({' '.join(str(exc).split()).rstrip('.')})")
            raise ClaimLostError(self.lost) from None
        except redis.ResponseError as exc:  # an ACL that denies the command, for example
            raise RefusedToFlushError(
                f"Redis refused {args[0]!s} on database {self.db} ({redact(database_url(self.url, self.db))}): "
                f"{' '.join(str(exc).split())}. Let the lab's user run it, or point REDIS_URL at another server."
            ) from None

    def scan(self, match: str | None = None) -> Iterator[list[bytes]]:
        """The database's key names, a SCAN page at a time (bytes: names may be any bytes)."""
        cursor = b"0"
        while True:
            args: list[str | bytes] = ["SCAN", cursor, "COUNT", "1000"]
            if match is not None:
                args += ["MATCH", match]
            cursor, keys = self.execute(*args)
            yield list(keys)
            if cursor in (b"0", 0):
                return

    def empty(self) -> int:
        """Delete every key through the hold, so only while it is live; how many there were.

        SCAN and UNLINK, never FLUSHDB (see ``empty_database``).
        """
        removed = 0
        for page in self.scan():
            if page:
                removed += int(self.execute("UNLINK", *page))
        return removed

    def holders(self) -> list[str]:
        """The channels of every live hold on this database, this one's included."""
        channels = self.execute("PUBSUB", "CHANNELS", f"{claim_channel_prefix(self.db)}*")
        return [channel.decode(errors="replace") for channel in channels]

    def release(self) -> None:
        """End the hold (idempotent)."""
        self._close("it was released")

    def _close(self, why: str) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self.lost = why
            _held.pop(self.channel, None)
            connection.disconnect()


class ClaimLostError(Exception):
    """The hold's connection is gone; the message says why."""


# This process's live holds, by channel: a lesson started again in the same process (a
# notebook's first cell run twice) takes over its own database instead of refusing it.
_held: dict[str, DatabaseClaim] = {}


def claim_channel_prefix(db: int) -> str:
    return f"{CLAIM_CHANNEL_PREFIX}db{db}:"


@dataclass
class Lesson:
    """A lesson's slice of the lab's server: one logical database and a client bound to it."""

    name: str
    db: int
    server: RedisServer
    client: redis.Redis
    hold: DatabaseClaim | None = None  # on a server the lab did not start
    # What finish() undoes beyond the lesson's database (the query engine's keys in database 0).
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The server URL pointing at this lesson's database (for subprocesses, Celery, redis-cli)."""
        return database_url(self.server.url, self.db)

    def cli(self, command: str) -> None:
        """Run ``command`` through ``redis-cli`` against this lesson's database and print the reply.

        The output is redis-cli's interactive format (``(integer) 1``), shown after a
        ``redis>`` prompt, so a reader sees exactly what they would type and get.
        """
        print(f"redis> {command}\n{redis_cli(self.url, command)}")

    def exercise(self, number: int) -> Exercise:
        """Exercise ``number`` of this lesson, checked in this lesson's database."""
        exercise = Exercise(spec(self.name, number), self.client)
        print(exercise)
        return exercise

    def on_finish(self, cleanup: Callable[[], object]) -> None:
        """Have ``finish()`` call ``cleanup()`` first: for what a lesson writes outside its database."""
        self.cleanups.append(cleanup)

    def finish(self) -> int:
        """Empty the lesson's database, end its hold, and return how many keys it removed.

        On a server the lab did not start, only while the hold is live; otherwise the keys stay
        and ``RefusedToFlushError`` says so. The ``on_finish`` cleanups run first.
        """
        while self.cleanups:
            self.cleanups.pop()()
        if self.hold is None:
            return empty_database(self.client)
        try:
            return self.hold.empty()
        except ClaimLostError as lost:
            raise RefusedToFlushError(
                f"Lesson {self.name} no longer holds database {self.db} ({redact(self.url)}) because {lost}, so "
                f"the lab leaves its keys there: delete them yourself, or run the lesson again with "
                f"{ALLOW_FLUSH_ENV}=1 and finish it."
            ) from None
        finally:
            self.hold.release()


_current_lesson: str | None = None


def current_lesson() -> str | None:
    """The name of the lesson this process started last (``"03_hashes"``), if any."""
    return _current_lesson


def start_lesson(name: str, *, server: RedisServer | None = None, allow_flush: bool | None = None) -> Lesson:
    """Lesson ``name``'s database (``"03_hashes"`` -> db 3), empty, and a client on it."""
    global _current_lesson
    _current_lesson = name
    server = server or lab_server()
    match = re.match(r"(\d+)(b?)_", name)
    # An advanced part ("13b_caching_advanced") gets a database of its own, beside its core part's.
    number = int(match.group(1)) + (ADVANCED_OFFSET if match.group(2) else 0) if match else TESTS_DB
    client = connect(server.url, check=True)
    databases = database_count(client)
    db = number % databases if match else databases - 1
    client.close()
    return claim(name, db, server, allow_flush=allow_flush)


def claim(name: str, db: int, server: RedisServer, *, allow_flush: bool | None = None) -> Lesson:
    """Connect to database ``db`` and make it an empty slate for lesson ``name``, or refuse.

    ``allow_flush`` (default: ``REDAI_LAB_ALLOW_FLUSH``) lets the lab empty a database of a
    server it did not start that holds data it did not write.
    """
    if server.throwaway:
        client = connect(server.url, db=db)
        empty_database(client)
        return Lesson(name=name, db=db, server=server, client=client)
    if allow_flush is None:
        allow_flush = allow_flush_from_env()
    hold = DatabaseClaim(server.url, db, name)
    try:
        if _take_over(hold, name):  # what is there was written by this process's earlier start
            hold.empty()
        else:
            _make_room(hold, name, allow_flush=allow_flush)
        client = connect(server.url, db=db)
    except ClaimLostError as lost:
        raise RefusedToFlushError(
            f"Lesson {name} lost its hold on database {db} ({redact(database_url(server.url, db))}) while "
            f"starting because {lost}: start it again."
        ) from None
    except BaseException:
        hold.release()
        raise
    _held[hold.channel] = hold
    return Lesson(name=name, db=db, server=server, client=client, hold=hold)


def empty_database(client: redis.Redis) -> int:
    """Delete every key of ``client``'s database by SCAN and UNLINK; how many there were.

    Never FLUSHDB: with the query engine loaded, a FLUSHDB in *any* database drops every search
    index on the server (lesson 30's, a user's), not only that database's keys.
    """
    removed, cursor = 0, 0
    while True:
        cursor, keys = client.scan(cursor, count=1000)
        if keys:
            removed += int(client.unlink(*keys))
        if not cursor:
            return removed


def allow_flush_from_env() -> bool:
    """``REDAI_LAB_ALLOW_FLUSH``: True for 1, yes, true or on; False when unset or 0, no, false, off."""
    value = os.environ.get(ALLOW_FLUSH_ENV, "")
    if (answer := value.strip().lower()) in ALLOW_FLUSH_YES:
        return True
    if answer in ALLOW_FLUSH_NO:
        return False
    raise RefusedToFlushError(
        f"{ALLOW_FLUSH_ENV}={value!r} is neither yes nor no: set it to {', '.join(ALLOW_FLUSH_YES)} to let the "
        f"lab empty a database of a server it did not start, or unset it (or {', '.join(ALLOW_FLUSH_NO[1:])})."
    )


def _take_over(hold: DatabaseClaim, name: str) -> bool:
    """Refuse when another process holds ``hold``'s database; True when this process did.

    Checked after subscribing, so of two processes that both subscribe, the later check sees
    the other's hold: at most one of them goes on (when both check late, neither does).
    """
    others = [channel for channel in hold.holders() if channel != hold.channel]
    foreign = [channel for channel in others if channel not in _held]
    if foreign:
        raise RefusedToFlushError(
            f"Database {hold.db} ({redact(database_url(hold.url, hold.db))}) is held by "
            f"{_describe_holder(foreign[0])}: finish or stop "
            f"that lesson first (lesson.finish(), or restart its kernel), then start lesson {name} again."
        )
    for channel in others:  # holds of this very process: this start takes over their database
        _held[channel]._close(f"lesson {name} was started again in this process and took the database over")
    return bool(others)


def _describe_holder(channel: str) -> str:
    """``lesson 05_sets in another redai-lab process (pid 1234)``, from a hold's channel."""
    fields = channel[len(CLAIM_CHANNEL_PREFIX):].split(":")  # db<N>, lesson, pid, token
    if len(fields) == 4 and fields[2].isdigit():
        return f"lesson {fields[1]} in another redai-lab process (pid {fields[2]})"
    return f"the subscriber of channel {channel!r}"


def _make_room(hold: DatabaseClaim, name: str, *, allow_flush: bool) -> None:
    """Empty the held database where the lab may: its own keys always, anything with ``allow_flush``.

    The lab's own keys go by UNLINK, never FLUSHDB: a key someone writes meanwhile stays.
    """
    if not int(hold.execute("DBSIZE")):
        return
    examples = _keys_not_the_labs(hold)
    if not examples:
        for page in hold.scan(match=f"{LAB_KEY_PREFIX}*"):
            if page:
                hold.execute("UNLINK", *page)
        return
    if allow_flush:
        hold.empty()
        return
    keys = int(hold.execute("DBSIZE"))
    raise RefusedToFlushError(
        f"Database {hold.db} ({redact(database_url(hold.url, hold.db))}) holds {keys} key{'s' * (keys != 1)} "
        f"the lab cannot tell from yours "
        f"(for example {', '.join(examples)}): lesson {name} needs it empty, and the lab never deletes data it "
        f"did not write. Delete them yourself, point REDIS_URL at another server, or let the lab empty "
        f"database {hold.db} with {ALLOW_FLUSH_ENV}=1 (a lesson stopped before lesson.finish() leaves its keys too)."
    )


def _keys_not_the_labs(hold: DatabaseClaim) -> list[str]:
    """Up to ``EXAMPLE_KEYS`` names (shortened, quoted) of keys outside ``LAB_KEY_PREFIX``."""
    examples: list[str] = []
    for keys in hold.scan():
        for key in keys:
            if not key.startswith(LAB_KEY_PREFIX.encode()):
                text = key.decode(errors="replace")
                examples.append(repr(text if len(text) <= EXAMPLE_LENGTH else text[:EXAMPLE_LENGTH] + "..."))
                if len(examples) == EXAMPLE_KEYS:
                    return examples
    return examples


def _cannot_hold(url: str, db: int, exc: redis.RedisError) -> str:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(exc, redis.AuthenticationError):
        return explain(exc, url)
    return (
        f"The lab cannot hold database {db} ({redact(database_url(url, db))}) for a lesson ({str(exc).strip()}): it needs a "
        f"connection of its own subscribed to a {CLAIM_CHANNEL_PREFIX}* channel (Redis 6 or later; with ACLs, "
        f"+subscribe +pubsub|channels +client|setname &{CLAIM_CHANNEL_PREFIX}*), or point REDIS_URL at another server."
    )


# The committed outputs were recorded with tools that `./lab` installs with apt, which needs root.
# Without one, a lesson says so in one line and goes on, so its outputs differ from the committed
# ones: the tests then run the lesson without comparing them (see conftest.py).
CLI_TOOLS = ("redis-cli", "redis-benchmark")


def missing_tools(lesson_name: str) -> list[str]:
    """What ``lesson_name``'s committed outputs were recorded with that is not here, one line each
    saying how to install it (empty when everything is here)."""
    missing = [f"{tool} (apt install redis-tools)" for tool in CLI_TOOLS if shutil.which(tool) is None]
    if lesson_name.startswith("23_"):
        from .durability import PowerLossUnavailableError, powerloss_shim

        try:
            powerloss_shim()  # compiled once, then cached
        except PowerLossUnavailableError:
            missing.append("a C compiler for the power-loss shim (apt install gcc)")
    if lesson_name.startswith("25_"):
        from .tls import tls_binary

        if tls_binary() is None:
            missing.append("a Redis server built with TLS (apt install redis-server)")
    return missing


def redis_cli(url: str, command: str) -> str:
    """``redis-cli``'s formatted reply to ``command`` (split like a shell line) at ``url``."""
    binary = shutil.which("redis-cli")
    if binary is None:
        return "(redis-cli is not installed here: `apt install redis-tools`; the Python above is the same command)"
    options = CliOptions.from_url(url)
    result = subprocess.run(
        [binary, *options.args, "-n", str(options.db), "--no-raw", *shlex.split(command)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False, env=options.env,
    )
    return (result.stdout + result.stderr).rstrip("\n")


@dataclass(frozen=True)
class CliOptions:
    """How redis-cli (and redis-benchmark) reach the server of a URL, as redis-py reads the URL.

    ``args`` name the server, user and TLS, never the password, which goes to redis-cli in
    the environment (``REDISCLI_AUTH``), so it never shows in ``ps``. Not ``-u URL``: besides
    showing the password, redis-cli 7.0 reads ``redis://:PASSWORD@`` as the empty user name, and
    the server refuses that.
    """

    args: tuple[str, ...]
    db: int
    password: str | None
    env: dict[str, str]

    @classmethod
    def from_url(cls, url: str) -> CliOptions:
        options = parse_url(url)  # redis-py's own reading: the user part, ?password=, ?db=, unix://
        if "path" in options:
            args = ["-s", str(options["path"])]
        else:
            host = str(options.get("host", "localhost"))
            args = ["-h", host, "-p", str(options.get("port", 6379))]
            if options.get("connection_class") is redis.SSLConnection:
                args += ["--tls", "--sni", host]
                files = {"--cacert": "ssl_ca_certs", "--cert": "ssl_certfile", "--key": "ssl_keyfile"}
                args += [arg for flag, key in files.items() if options.get(key) for arg in (flag, str(options[key]))]
                if str(options.get("ssl_cert_reqs", "")).lower() in ("none", "cert_none"):
                    args.append("--insecure")
        if options.get("username"):
            args += ["--user", str(options["username"])]
        password = str(options["password"]) if options.get("password") else None
        env = {key: value for key, value in os.environ.items() if key != "REDISCLI_AUTH"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        return cls(tuple(args), int(options.get("db", 0)), password, env)


def database_count(client: redis.Redis) -> int:
    """How many logical databases the server has (16 when CONFIG is not allowed)."""
    try:
        return int(str(client.config_get("databases")["databases"]))
    except (redis.ResponseError, KeyError):  # managed services often disable CONFIG
        return 16
