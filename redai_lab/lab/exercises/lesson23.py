"""Lesson 23's exercises: persistence (which files of a multi-part AOF load, in which order; what a
crash-cut AOF replays; when a copy of the AOF directory is a consistent backup)."""

from __future__ import annotations

import redis

from redai_lab.lab.exercises import Case, Spec

# Exercise 1 ------------------------------------------------------------------------------------


def aof_files_to_load(r: redis.Redis, manifest_key: str) -> list[str]:
    """The string `manifest_key` holds an AOF manifest (appendonlydir/appendonly.aof.manifest):
    one line per file, `file NAME seq N type T` and maybe more `key value` pairs, where type `b` is
    the base, `i` an increment and `h` history (left from before a rewrite, about to be deleted).
    Return the names of the files Redis loads at startup, in the order it loads them: the base
    first, then the increments by increasing seq. History files are not loaded."""
    base, increments = [], []
    for line in r.get(manifest_key).splitlines():
        fields = line.split()
        entry = dict(zip(fields[0::2], fields[1::2]))  # file NAME seq N type T ...
        if entry.get("type") == "b":
            base.append(entry["file"])
        elif entry.get("type") == "i":
            increments.append((int(entry["seq"]), entry["file"]))
    return base + [name for _seq, name in sorted(increments)]


def aof_files_as_listed(r, manifest_key):
    return [line.split()[1] for line in r.get(manifest_key).splitlines() if line.strip()]


def aof_files_without_history_by_name(r, manifest_key):
    lines = [line.split() for line in r.get(manifest_key).splitlines() if line.strip()]
    return sorted(fields[1] for fields in lines if fields[5] != "h")  # "...10.incr" sorts before "...9.incr"


def aof_files_in_listed_order(r, manifest_key):
    lines = [line.split() for line in r.get(manifest_key).splitlines() if line.strip()]
    return [fields[1] for fields in lines if fields[5] != "h"]  # trusts the order of the lines


def _manifest(*lines: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        r.set(f"{prefix}manifest", "".join(f"{line}\n" for line in lines))
        return (f"{prefix}manifest",)

    return setup


# Exercise 2 ------------------------------------------------------------------------------------


def replay_aof(r: redis.Redis, aof_key: str) -> list[list[str]]:
    """The string `aof_key` holds an AOF increment file as a crash left it: commands in RESP, each
    `*<count>\\r\\n` then, per argument, `$<length>\\r\\n<argument>\\r\\n` (arguments may hold any
    character, \\r\\n included: only the lengths tell where they end; all are ASCII). Return the
    commands Redis applies when it loads the file, in order, each as a list of strings: a command
    the crash cut off at the end is dropped, and so is a MULTI ... EXEC transaction whose EXEC is
    missing; MULTI and EXEC themselves are not in the list."""
    text = r.get(aof_key) or ""
    applied: list[list[str]] = []
    transaction: list[list[str]] | None = None
    at = 0
    while at < len(text):
        try:
            end = text.index("\r\n", at)
            count, at = int(text[at + 1:end]), end + 2
            command = []
            for _ in range(count):
                end = text.index("\r\n", at)
                length, at = int(text[at + 1:end]), end + 2
                if at + length + 2 > len(text):
                    raise ValueError("argument cut off")
                command.append(text[at:at + length])
                at += length + 2
        except ValueError:  # the last command was cut off by the crash
            break
        name = command[0].upper()
        if name == "MULTI":
            transaction = []
        elif name == "EXEC":
            applied += transaction or []
            transaction = None
        elif transaction is not None:
            transaction.append(command)
        else:
            applied.append(command)
    return applied  # a transaction still open here never reached its EXEC: dropped


def replay_aof_by_lines(r, aof_key):
    lines = (r.get(aof_key) or "").split("\r\n")
    commands, at = [], 0
    while at < len(lines) and lines[at].startswith("*"):
        count = int(lines[at][1:])
        arguments = lines[at + 2:at + 2 + 2 * count:2]  # every other line: breaks on a \r\n inside a value
        if len(arguments) < count:
            break
        if arguments[0].upper() not in ("MULTI", "EXEC"):
            commands.append(arguments)
        at += 1 + 2 * count
    return commands


def replay_aof_keeps_open_transactions(r, aof_key):
    commands = []
    for command in _complete_commands(r.get(aof_key) or ""):
        if command[0].upper() not in ("MULTI", "EXEC"):
            commands.append(command)  # applies a transaction whose EXEC never made it to disk
    return commands


def _complete_commands(text: str) -> list[list[str]]:
    commands, at = [], 0
    while at < len(text):
        try:
            end = text.index("\r\n", at)
            count, at = int(text[at + 1:end]), end + 2
            command = []
            for _ in range(count):
                end = text.index("\r\n", at)
                length, at = int(text[at + 1:end]), end + 2
                if at + length + 2 > len(text):
                    return commands
                command.append(text[at:at + length])
                at += length + 2
        except ValueError:
            return commands
        commands.append(command)
    return commands


def _resp(*commands: tuple[str, ...], cut: int = 0):
    """An AOF of ``commands``, its last ``cut`` characters lost in the crash."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        text = "".join(
            f"*{len(command)}\r\n" + "".join(f"${len(arg)}\r\n{arg}\r\n" for arg in command) for command in commands
        )
        r.set(f"{prefix}aof", text[:len(text) - cut])
        return (f"{prefix}aof",)

    return setup


# Exercise 3 ------------------------------------------------------------------------------------


def safe_to_copy_aof(r: redis.Redis, state_key: str) -> bool:
    """Before copying a running server's appendonlydir as a backup, a script reads the server's
    state into the hash `state_key`: the fields of INFO persistence (`aof_enabled`,
    `aof_rewrite_in_progress`, `aof_rewrite_scheduled`, `rdb_bgsave_in_progress`, ...) and the
    setting `auto-aof-rewrite-percentage`, all as strings. Return True only when a copy made now
    is consistent: the AOF is on, no rewrite runs or is scheduled, and automatic rewrites are off
    (percentage 0), so that none starts and swaps the files during the copy."""
    state = r.hgetall(state_key)
    return (
        state.get("aof_enabled") == "1"
        and state.get("aof_rewrite_in_progress") == "0"
        and state.get("aof_rewrite_scheduled") == "0"
        and state.get("auto-aof-rewrite-percentage") == "0"
    )


def safe_to_copy_aof_when_no_rewrite_runs(r, state_key):
    return r.hget(state_key, "aof_rewrite_in_progress") == "0"  # one may start during the copy


def safe_to_copy_aof_ignoring_scheduled(r, state_key):
    state = r.hgetall(state_key)
    return state.get("aof_enabled") == "1" and state.get("aof_rewrite_in_progress") == "0" \
        and state.get("auto-aof-rewrite-percentage") == "0"


def safe_to_copy_aof_when_no_bgsave_runs(r, state_key):
    state = r.hgetall(state_key)
    return state.get("aof_enabled") == "1" and state.get("rdb_bgsave_in_progress") == "0" \
        and state.get("auto-aof-rewrite-percentage") == "0"


def _state(**changes: str):
    quiet = {"aof_enabled": "1", "aof_rewrite_in_progress": "0", "aof_rewrite_scheduled": "0",
             "rdb_bgsave_in_progress": "0", "auto-aof-rewrite-percentage": "0"}

    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        r.hset(f"{prefix}state", mapping={**quiet, **changes})
        return (f"{prefix}state",)

    return setup


AUTO_REWRITE = "auto-aof-rewrite-percentage"

EXERCISES = (
    Spec(
        number=1,
        title="the AOF files a restart loads",
        reference=aof_files_to_load,
        cases=(
            Case("a fresh server's manifest", _manifest(
                "file appendonly.aof.1.base.rdb seq 1 type b",
                "file appendonly.aof.1.incr.aof seq 1 type i startoffset 0",
            )),
            Case("just after a rewrite (history not yet deleted)", _manifest(
                "file appendonly.aof.2.base.rdb seq 2 type b",
                "file appendonly.aof.1.base.rdb seq 1 type h",
                "file appendonly.aof.1.incr.aof seq 1 type h",
                "file appendonly.aof.2.incr.aof seq 2 type i",
            )),
            Case("two increments (seq 9 and 10) listed out of order", _manifest(
                "file appendonly.aof.10.incr.aof seq 10 type i",
                "file appendonly.aof.8.base.rdb seq 8 type b",
                "file appendonly.aof.9.incr.aof seq 9 type i",
            )),
        ),
        hint="Split each line into `key value` pairs; keep type b, then type i sorted by int(seq).",
        wrong=(aof_files_as_listed, aof_files_without_history_by_name, aof_files_in_listed_order),
    ),
    Spec(
        number=2,
        title="replay a crash-cut AOF",
        reference=replay_aof,
        cases=(
            Case("two whole commands", _resp(("SELECT", "0"), ("INCR", "visits"))),
            Case("a value holding \\r\\n", _resp(("SET", "note", "line 1\r\nline 2"), ("INCR", "visits"))),
            Case("the last command cut in its value", _resp(("INCR", "visits"), ("SET", "greeting", "hello"), cut=4)),
            Case("a whole transaction", _resp(("MULTI",), ("DECRBY", "a", "5"), ("INCRBY", "b", "5"), ("EXEC",))),
            Case("a transaction cut before its EXEC", _resp(
                ("INCR", "visits"), ("MULTI",), ("DECRBY", "a", "5"), ("INCRBY", "b", "5"), ("EXEC",), cut=14,
            )),
        ),
        hint="Read `*count`, then each `$length` and exactly that many characters; on a cut, stop; buffer the "
             "commands after MULTI and apply them at EXEC.",
        wrong=(replay_aof_by_lines, replay_aof_keeps_open_transactions),
    ),
    Spec(
        number=3,
        title="when a copy of the AOF is a backup",
        reference=safe_to_copy_aof,
        cases=(
            Case("a quiet server with automatic rewrites off", _state()),
            Case("a rewrite running", _state(aof_rewrite_in_progress="1")),
            Case("a rewrite scheduled (waiting for a BGSAVE)", _state(aof_rewrite_scheduled="1",
                                                                       rdb_bgsave_in_progress="1")),
            Case("automatic rewrites on (the default, 100)", _state(**{AUTO_REWRITE: "100"})),
            Case("a BGSAVE running, rewrites off", _state(rdb_bgsave_in_progress="1")),
            Case("the AOF off", _state(aof_enabled="0")),
        ),
        hint="Four fields must all be right: aof_enabled 1, aof_rewrite_in_progress 0, aof_rewrite_scheduled 0, "
             "auto-aof-rewrite-percentage 0. A BGSAVE does not touch appendonlydir.",
        wrong=(safe_to_copy_aof_when_no_rewrite_runs, safe_to_copy_aof_ignoring_scheduled,
               safe_to_copy_aof_when_no_bgsave_runs),
    ),
)
