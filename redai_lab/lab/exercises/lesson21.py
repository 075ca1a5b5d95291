"""Lesson 21's exercises: ask the server what it has, instead of trusting a version number."""

from __future__ import annotations

import redis

from . import Case, Spec


def newest_since(r: redis.Redis, commands: list[str]) -> str | None:
    """The newest `since` version among `commands` (names such as "LMPOP" or "XGROUP CREATE"),
    read from this server's COMMAND DOCS, as a string such as "7.0.0". Commands the server does
    not know, or documents without a `since` (module commands), are left out; None when no command
    has one."""
    found = []
    for command in commands:
        name, _, sub = command.lower().partition(" ")
        doc = r.execute_command("COMMAND DOCS", name).get(name) or {}
        if sub:
            doc = (doc.get("subcommands") or {}).get(f"{name}|{sub}") or {}
        if "since" in doc:
            found.append(str(doc["since"]))
    return max(found, key=lambda v: tuple(int(part) for part in v.split(".")), default=None)


def newest_since_as_text(r, commands):
    versions = [str((r.execute_command("COMMAND DOCS", c.lower().split()[0]).get(c.lower().split()[0]) or {})
                    .get("since", "")) for c in commands]
    return max((v for v in versions if v), default=None)  # "10.0.0" < "6.2.0" as text


def newest_since_ignoring_subcommands(r, commands):
    found = []
    for command in commands:
        name = command.lower().split()[0]
        doc = r.execute_command("COMMAND DOCS", name).get(name) or {}
        if "since" in doc:
            found.append(str(doc["since"]))
    return max(found, key=lambda v: tuple(int(p) for p in v.split(".")), default=None)


def newest_since_first_only(r, commands):
    name = commands[0].lower().split()[0] if commands else ""
    doc = r.execute_command("COMMAND DOCS", name).get(name) or {} if name else {}
    return str(doc["since"]) if "since" in doc else None


def _commands(*names: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str]]:
        return (list(names),)

    return setup


def accepts_option(r: redis.Redis, command: str, option: str) -> bool:
    """True when this server's COMMAND DOCS for `command` (a name such as "SET" or "EXPIRE")
    list `option` (a token such as "GET" or "NX") anywhere among its arguments, nested blocks
    included; False for an unknown command or option."""
    name = command.lower()
    doc = r.execute_command("COMMAND DOCS", name).get(name) or {}

    def tokens(arguments: list[dict]) -> set[str]:  # the argument tree, nested blocks included
        found: set[str] = set()
        for argument in arguments:
            if "token" in argument:
                found.add(str(argument["token"]).upper())
            found |= tokens(argument.get("arguments") or [])
        return found

    return option.upper() in tokens(doc.get("arguments") or [])


def accepts_option_top_level_only(r, command, option):
    doc = r.execute_command("COMMAND DOCS", command.lower()).get(command.lower()) or {}
    return any(str(a.get("token", "")).upper() == option.upper() for a in doc.get("arguments") or [])


def accepts_option_by_name(r, command, option):
    doc = r.execute_command("COMMAND DOCS", command.lower()).get(command.lower()) or {}

    def names(arguments):
        return {str(a.get("name", "")).upper() for a in arguments} | {
            n for a in arguments for n in names(a.get("arguments") or [])}

    return option.upper() in names(doc.get("arguments") or [])


def accepts_option_by_version(r, command, option):
    return int(str(r.info("server")["redis_version"]).split(".")[0]) >= 7  # a version is not an answer


def _option(command: str, option: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        return command, option

    return setup


def replacements(r: redis.Redis, commands: list[str]) -> dict[str, str]:
    """For each of `commands` that this server's COMMAND DOCS mark deprecated, what replaces it
    (the doc's `replaced_by`, as the server writes it), keyed by the command as given. Commands
    that are not deprecated, or unknown, are not in the result."""
    result = {}
    for command in commands:
        doc = r.execute_command("COMMAND DOCS", command.lower()).get(command.lower()) or {}
        if "deprecated" in (doc.get("doc_flags") or []):
            result[command] = str(doc.get("replaced_by", ""))
    return result


def replacements_of_every_command(r, commands):
    result = {}
    for command in commands:
        doc = r.execute_command("COMMAND DOCS", command.lower()).get(command.lower()) or {}
        result[command] = str(doc.get("replaced_by", ""))
    return result


def replacements_from_a_list(r, commands):
    known = {"GETSET": "`SET` with the `!GET` argument", "HMSET": "`HSET` with multiple field-value pairs"}
    return {c: known[c] for c in commands if c in known}  # the server knows better than a copied list


def replacements_by_history(r, commands):
    result = {}
    for command in commands:
        doc = r.execute_command("COMMAND DOCS", command.lower()).get(command.lower()) or {}
        if doc.get("deprecated_since"):
            result[command] = "deprecated"
    return result


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="the newest command a list needs",
        reference=newest_since,
        cases=(
            Case("the lists lesson's newest commands", _commands("LPUSH", "LMOVE", "LMPOP")),
            Case("a subcommand newer than its container", _commands("XINFO STREAM", "XGROUP CREATECONSUMER")),
            Case("versions that sort differently as text (2.8.13 and 2.8.9)", _commands("COMMAND", "ZLEXCOUNT")),
            Case("an unknown command among known ones", _commands("NO.SUCH.COMMAND", "GET")),
            Case("nothing known", _commands("NO.SUCH.COMMAND")),
        ),
        hint="COMMAND DOCS gives a dict per command; subcommands sit under its 'subcommands' as "
             "'name|sub'; compare versions as tuples of numbers, not as text.",
        wrong=(newest_since_as_text, newest_since_ignoring_subcommands, newest_since_first_only),
    ),
    Spec(
        number=2,
        title="does this server accept an option?",
        reference=accepts_option,
        cases=(
            Case("SET GET (6.2)", _option("SET", "GET")),
            Case("EXPIRE NX, inside a condition block (7.0)", _option("EXPIRE", "NX")),
            Case("ZADD GT (6.2)", _option("ZADD", "GT")),
            Case("an option that does not exist", _option("ZADD", "NOSUCH")),
            Case("SET EX, whose argument is named 'seconds'", _option("SET", "EX")),
            Case("KEY: an argument's name, not an option", _option("SET", "KEY")),
            Case("LPOS's RANK", _option("LPOS", "RANK")),
            Case("an unknown command", _option("NOSUCHCOMMAND", "NX")),
        ),
        hint="Options are argument *tokens*, and many sit inside nested blocks (`arguments` of an "
             "argument): walk the whole tree.",
        wrong=(accepts_option_top_level_only, accepts_option_by_name, accepts_option_by_version),
    ),
    Spec(
        number=3,
        title="what replaces the cheat sheet's deprecated commands",
        reference=replacements,
        cases=(
            Case("the cheat sheet's old forms, and SLAVEOF", _commands("GETSET", "HMSET", "SETEX", "SET", "RPOPLPUSH", "SLAVEOF")),
            Case("nothing deprecated", _commands("GET", "HSET")),
            Case("an unknown command", _commands("NOSUCH", "ZREVRANGE")),
        ),
        hint="A deprecated command has 'deprecated' in its doc_flags and says what replaces it in "
             "replaced_by; read both from this server, do not copy a list.",
        wrong=(replacements_of_every_command, replacements_from_a_list, replacements_by_history),
    ),
)
