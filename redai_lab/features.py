"""What the running server can do: its version, modules and commands, said out loud.

A lesson never skips silently: ``require(...)`` returns False *and prints why* when the server
lacks a command or module, so the notebook's output says what was not shown and how to get it.
"""

from __future__ import annotations

import redis

from .errors import MissingFeatureError


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
    return any(str(entry[0]).lower() == f"{name}|{sub}" for entry in subcommands)


def require(r: redis.Redis, command: str, *, why: str = "") -> bool:
    """True when the server has ``command``; otherwise print what is missing and return False."""
    if has_command(r, command):
        return True
    version = ".".join(map(str, server_version(r)))
    print(
        f"This server (Redis {version}) has no {command.upper()}"
        + (f", needed {why}" if why else "")
        + ". The cells below say what they would show; "
        + (
            "a server with its module loaded runs them (the lab's own server loads JSON and Bloom)."
            if "." in command  # module commands are namespaced: JSON.SET, BF.ADD, ...
            else "a newer Redis runs them (Redis 8: `docker compose up -d`, or Debian 13's redis-server)."
        )
    )
    return False


def ensure(r: redis.Redis, command: str, *, hint: str) -> None:
    """Raise ``MissingFeatureError`` with ``hint`` when the server lacks ``command``."""
    if not has_command(r, command):
        raise MissingFeatureError(f"The server has no {command.upper()}: {hint}")
