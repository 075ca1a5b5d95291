"""What a key is made of: type, internal encoding, memory, length, TTL; as a table for lessons."""

from __future__ import annotations

from typing import Any

import pandas as pd
import redis

# The command that gives a key's number of elements, by TYPE.
_LENGTH_COMMAND = {
    "string": "STRLEN",
    "list": "LLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "hash": "HLEN",
    "stream": "XLEN",
}


def key_info(r: redis.Redis, key: str) -> dict[str, Any]:
    """TYPE, OBJECT ENCODING, MEMORY USAGE, length and TTL of ``key``, in two round trips
    (``TYPE`` first: it picks the command that gives the length)."""
    key_type = r.type(key)
    pipe = r.pipeline(transaction=False)
    pipe.object("encoding", key)
    pipe.memory_usage(key, samples=0)  # SAMPLES 0: measure every element, exact
    pipe.ttl(key)
    length_command = _LENGTH_COMMAND.get(str(key_type))
    if length_command:
        pipe.execute_command(length_command, key)
    replies = pipe.execute(raise_on_error=False)
    encoding, memory, ttl = (None if isinstance(v, Exception) else v for v in replies[:3])
    return {
        "key": key,
        "type": key_type,
        "encoding": encoding,
        "length": replies[3] if length_command else None,
        "memory_bytes": memory,
        "ttl": ttl,
    }


def keys_table(r: redis.Redis, *keys: str, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``key_info`` of several keys as a DataFrame indexed by key (optionally some columns only)."""
    table = pd.DataFrame([key_info(r, key) for key in keys]).set_index("key")
    # Nullable integers: a missing key's None must not turn a column of counts into floats.
    table = table.astype({"length": "Int64", "memory_bytes": "Int64", "ttl": "Int64"})
    return table[list(columns)] if columns else table
