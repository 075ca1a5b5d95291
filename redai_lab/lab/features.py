"""What the running server can do: its version, modules and commands, said out loud.

A lesson never skips silently: ``require(...)`` returns False *and prints why* when the server
lacks a command or module, so the notebook's output says what was not shown and how to get it.
With ``REDAI_LAB_COMPAT_LOG`` set, each such gap is also appended to that file as a JSON line
(lesson, command, server): the compatibility matrix is built from these (``redai_lab.lab.compat``).
"""

from __future__ import annotations

import json
import os

import redis

from ..errors import MissingFeatureError

COMPAT_LOG_ENV = "REDAI_LAB_COMPAT_LOG"


def server_version(r: redis.Redis) -> tuple[int, ...]:
    """The server's version as a tuple, e.g. ``(7, 0, 15)``."""
    return tuple(int(part) for part in str(r.info("server")["redis_version"]).split("."))


def has_command(r: redis.Redis, command: str) -> bool:
    """True when the server knows ``command`` (``"HEXPIRE"``, ``"JSON.SET"``, ``"OBJECT|FREQ"``)."""
    name, _, sub = command.lower().partition("|")
    # COMMAND LIST answers an unknown name with an empty list (COMMAND INFO with a nil that
    # redis-py cannot parse); module commands are listed too.
    if not r.command_list(pattern=name):
        return False
    if not sub:
        return True
    subcommands = r.execute_command("COMMAND", "INFO", name)[name]["subcommands"]
    names = (entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0]) for entry in subcommands)
    return any(found.lower() == f"{name}|{sub}" for found in names)  # a client without decode_responses too


def require(r: redis.Redis, command: str, *, why: str = "") -> bool:
    """True when the server has ``command``; otherwise print what is missing and return False."""
    if has_command(r, command):
        return True
    product = server_product(r)
    print(
        f"This server ({product}) has no {command.upper()}"
        + (f", needed {why}" if why else "")
        + ". The lesson goes on without it; "
        + (
            "a server with its module loaded shows it (the lab's default server, Redis 8.2, loads JSON, Bloom "
            "and Search)."
            if "." in command  # module commands are namespaced: JSON.SET, BF.ADD, ...
            else "the lab's default server (Redis 8.2: unset REDAI_LAB_SERVER) shows it."
        )
    )
    _log_gap(command, product)
    return False


def server_product(r: redis.Redis) -> str:
    """``"Redis 8.2.3"`` or ``"Valkey 9.1.2"``: what the server is, as its INFO says."""
    info = r.info("server")
    if valkey := info.get("valkey_version"):
        return f"Valkey {valkey}"
    return f"Redis {info['redis_version']}"


def _log_gap(command: str, product: str) -> None:
    path = os.environ.get(COMPAT_LOG_ENV)
    if not path:
        return
    from .lesson import current_lesson  # the lesson this kernel started, if any

    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"lesson": current_lesson(), "missing": command.upper(), "server": product}) + "\n")


def ensure(r: redis.Redis, command: str, *, hint: str) -> None:
    """Raise ``MissingFeatureError`` with ``hint`` when the server lacks ``command``."""
    if not has_command(r, command):
        raise MissingFeatureError(f"The server has no {command.upper()}: {hint}")
