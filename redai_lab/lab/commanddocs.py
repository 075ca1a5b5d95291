"""What the running server says about commands (``COMMAND DOCS``, Redis 7.0+), as a lesson table.

A lesson lists the commands it teaches with their time complexity; ``commands_table`` adds, from
the server itself, the version that introduced each one and whether it is deprecated (and by
what), so the table is checked against the server rather than copied from a web page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import redis


def command_docs(r: redis.Redis, *commands: str) -> dict[str, dict[str, Any]]:
    """``COMMAND DOCS`` of each command (``"ZADD"``, ``"XGROUP CREATE"``), in one round trip.

    Keys are the commands as given; an unknown command maps to ``{}``. Module commands have
    docs without ``since``.
    """
    names = sorted({command.split()[0].lower() for command in commands})
    # "COMMAND DOCS" as one name: redis-py then parses the reply into dicts, not as COMMAND INFO.
    reply = r.execute_command("COMMAND DOCS", *names) if names else {}
    docs: dict[str, dict[str, Any]] = {}
    for command in commands:
        name, _, sub = command.lower().partition(" ")
        entry = reply.get(name) or {}
        if sub:
            entry = (entry.get("subcommands") or {}).get(f"{name}|{sub.strip()}") or {}
        docs[command] = entry
    return docs


def commands_table(r: redis.Redis, complexity: Mapping[str, str]) -> pd.DataFrame:
    """A DataFrame indexed by command: ``since`` and ``deprecated`` from the server, ``complexity``.

    ``complexity`` maps each command to its time complexity as the lesson explains it.
    ``since`` is ``"module"`` for a module's command and ``"missing"`` for a command this
    server does not have; ``deprecated`` names the replacement of a deprecated command.
    """
    docs = command_docs(r, *complexity)
    rows = []
    for command, cost in complexity.items():
        entry = docs[command]
        since = entry.get("since") or ("module" if entry else "missing")
        deprecated = ""
        if entry.get("deprecated_since"):
            # The docs mark up names as `ZRANGE` and tokens as `!GET`: keep plain text.
            replacement = entry.get("replaced_by", "").replace("`", "").replace("!", "")
            deprecated = f"since {entry['deprecated_since']}: {replacement}"
        rows.append({"command": command, "since": since, "complexity": cost, "deprecated": deprecated})
    return pd.DataFrame(rows).set_index("command")
