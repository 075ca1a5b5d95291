"""Isolation: every lesson works in a logical database of its own, from a clean slate.

Lesson ``NN_topic`` uses database ``NN`` (its advanced part ``NNb_topic`` database ``NN + 32``;
modulo the server's database count), so its teaching
snippets keep natural key names such as ``user:1000`` and it can be rerun any number of times
with identical outputs. Tests use the last database.

* On a throwaway server (one the lab started) the database is simply emptied at start and at
  ``finish()``.
* On a server the lab did not start (``REDIS_URL``) the lab never empties a database holding
  data it did not create. A lesson may start in an empty database, which it then *claims*: the
  claim (server run id and database) is written to a small file under the user's cache
  directory, so a rerun after a crash may empty what the lab wrote; ``finish()`` releases it,
  so data written there later is never the lab's to empty. A non-empty, unclaimed
  database is refused with ``RefusedToFlushError`` unless the user opts in with
  ``allow_flush=True`` or ``REDAI_LAB_ALLOW_FLUSH=1``.

Pub/Sub channels are not per database: lessons name their channels after themselves.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from .connection import connect, database_url
from .errors import RefusedToFlushError
from .exercises import Exercise, spec
from .server import LAB_DATABASES, RedisServer, lab_server, redact

ALLOW_FLUSH_ENV = "REDAI_LAB_ALLOW_FLUSH"
TESTS_DB = LAB_DATABASES - 1
ADVANCED_OFFSET = 32  # lesson NNb uses database NN + 32


@dataclass
class Lesson:
    """A lesson's slice of the lab's server: one logical database and a client bound to it."""

    name: str
    db: int
    server: RedisServer
    client: redis.Redis

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

    def finish(self) -> int:
        """Empty the lesson's database, release its claim, and return how many keys it removed."""
        removed = int(self.client.dbsize())
        self.client.flushdb()
        if not self.server.throwaway:
            _Claims().remove(str(self.client.info("server")["run_id"]), self.db)
        return removed


_current_lesson: str | None = None


def current_lesson() -> str | None:
    """The name of the lesson this process started last (``"03_hashes"``), if any."""
    return _current_lesson


def start_lesson(name: str, *, server: RedisServer | None = None, allow_flush: bool | None = None) -> Lesson:
    """Claim lesson ``name``'s database (``"03_hashes"`` -> db 3), emptied, and connect to it."""
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
    """Connect to database ``db`` and make it an empty slate the lab owns, or refuse."""
    if allow_flush is None:
        allow_flush = os.environ.get(ALLOW_FLUSH_ENV, "") not in ("", "0")
    client = connect(server.url, db=db)
    if not server.throwaway:
        run_id = str(client.info("server")["run_id"])
        claims = _Claims()
        if client.dbsize() and not allow_flush and not claims.holds(run_id, db):
            keys = client.dbsize()
            client.close()
            raise RefusedToFlushError(
                f"Database {db} of {redact(server.url)} holds {keys} keys that redai-lab did not create; "
                f"lesson {name} needs it empty. Point REDIS_URL at another server, or let the lab "
                f"empty it with {ALLOW_FLUSH_ENV}=1."
            )
        claims.add(run_id, db)
    client.flushdb()
    return Lesson(name=name, db=db, server=server, client=client)


def redis_cli(url: str, command: str) -> str:
    """``redis-cli``'s formatted reply to ``command`` (split like a shell line) at ``url``."""
    binary = shutil.which("redis-cli")
    if binary is None:
        return "(redis-cli is not installed here: `apt install redis-tools`; the Python above is the same command)"
    result = subprocess.run(
        [binary, "-u", url, "--no-auth-warning", "--no-raw", *shlex.split(command)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )
    return (result.stdout + result.stderr).rstrip("\n")


def database_count(client: redis.Redis) -> int:
    """How many logical databases the server has (16 when CONFIG is not allowed)."""
    try:
        return int(str(client.config_get("databases")["databases"]))
    except (redis.ResponseError, KeyError):  # managed services often disable CONFIG
        return 16


class _Claims:
    """Databases of servers not started by the lab that the lab found empty and claimed."""

    def __init__(self) -> None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.path = cache / "redai-lab" / "claimed-databases.json"

    def _load(self) -> list[str]:
        try:
            return list(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return []

    def holds(self, run_id: str, db: int) -> bool:
        return f"{run_id}/{db}" in self._load()

    def add(self, run_id: str, db: int) -> None:
        entries = self._load()
        if f"{run_id}/{db}" not in entries:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(entries + [f"{run_id}/{db}"]))

    def remove(self, run_id: str, db: int) -> None:
        entries = self._load()
        if f"{run_id}/{db}" in entries:
            self.path.write_text(json.dumps([e for e in entries if e != f"{run_id}/{db}"]))
