from __future__ import annotations

import pytest

from redai_lab.lab.commanddocs import command_docs
from redai_lab.lab.commands import (
    COMMANDS,
    Command,
    Mismatch,
    is_available,
    mismatches,
    option_since,
    version,
    version_table,
)
from redai_lab.lab.features import server_version


def test_table_is_well_formed() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names)) >= 100
    for command in COMMANDS:
        assert command.name == command.name.upper()
        assert (command.module is not None) == ("." in command.name), command.name
        for added in command.options.values():
            assert version(added) >= version(command.since), command.name


@pytest.mark.parametrize(
    ("name", "option", "needs"),
    [
        ("SET", "GET", "6.2.0"), ("EXPIRE", "NX", "7.0.0"), ("HEXPIRE", None, "7.4.0"),
        ("LMPOP", None, "7.0.0"), ("SINTERCARD", None, "7.0.0"), ("ZRANGE", "BYSCORE", "6.2.0"),
        ("ZRANGE", "REV", "6.2.0"), ("GETEX", None, "6.2.0"), ("GETDEL", None, "6.2.0"),
        ("XAUTOCLAIM", None, "6.2.0"), ("LPOS", None, "6.0.6"), ("BLMOVE", None, "6.2.0"),
    ],
)
def test_the_issues_examples(name: str, option: str | None, needs: str) -> None:
    command = next(c for c in COMMANDS if c.name == name)
    assert (command.options[option] if option else command.since) == needs


@pytest.mark.usefixtures("redis_docs")
def test_table_agrees_with_the_servers_command_docs(r) -> None:
    assert mismatches(r) == []
    # Not vacuous: the server documented (and so the check compared) every core command that
    # this server's version should have.
    docs = command_docs(r, *(c.display_name for c in COMMANDS))
    here = server_version(r)
    expected = {c.display_name for c in COMMANDS if c.module is None and version(c.since) <= here}
    assert expected <= {name for name, doc in docs.items() if "since" in doc}


def test_option_since_inherits_and_prefers_tokens(r) -> None:
    docs = command_docs(r, "EXPIRE", "FLUSHDB", "LPOP", "GET")
    assert option_since(docs["EXPIRE"], "GT") == "7.0.0"  # a token inside a block added in 7.0.0
    assert option_since(docs["FLUSHDB"], "ASYNC") == "4.0.0"  # not the block named "async"
    assert option_since(docs["LPOP"], "count") == "6.2.0"  # an argument without a token
    assert option_since(docs["GET"], "NX") is None


@pytest.mark.usefixtures("redis_docs")
def test_wrong_entries_are_reported(r) -> None:
    wrong = [
        Command("SET", "2.0.0", "keys", {"GET": "6.0.0", "EX": "1.0.0", "NOPE": "1.0.0", "FUTURE": "99.0.0"}),
        Command("GETSET", "1.0.0", "strings"),  # deprecated by the server, no replacement given
        Command("BF.ADD", "1.0.0", "probabilistic"),  # a module command listed as core
        Command("NO.SUCH", "1.0.0", "none", module="bf"),  # unknown to the server: skipped
    ]
    found = mismatches(r, wrong)
    assert [(m.command, m.what, m.table, m.server) for m in found] == [
        ("SET", "since", "2.0.0", "1.0.0"),
        ("SET", "option GET", "6.0.0", "6.2.0"),
        ("SET", "option EX", "1.0.0", "2.6.12"),
        ("SET", "option NOPE", "1.0.0", "no such option"),
        ("GETSET", "deprecated", "nothing replaces it", "deprecated, use `SET` with the `!GET` argument"),
        ("BF.ADD", "module", "core", "bf"),
    ]
    assert str(found[0]) == "SET since: the table says 2.0.0, the server says 1.0.0"
    assert isinstance(found[0], Mismatch)


def test_availability(r, lab_server) -> None:
    here = server_version(r)
    assert not is_available(r, Command("NO.SUCH", "1.0.0", "none"))
    assert not is_available(r, Command("SET", "1.0.0", "keys", {"FUTURE": "99.0.0"}))
    assert is_available(r, Command("SET", "1.0.0", "keys", {"GET": "6.2.0"}))
    hexpire = next(c for c in COMMANDS if c.name == "HEXPIRE")
    assert is_available(r, hexpire) == (here >= (7, 4))
    bf_add = next(c for c in COMMANDS if c.name == "BF.ADD")
    assert is_available(r, bf_add) == lab_server.has_module("bf")


def test_version_table(r) -> None:
    table = version_table(r)
    assert list(table.columns) == [
        "command", "since", "options", "needs", "topic", "replaced by", "available here",
    ]
    assert len(table) == len(COMMANDS)
    row = table.set_index("command").loc["EXPIRE"]
    assert (row["since"], row["options"], row["needs"], row["available here"]) == (
        "1.0.0", "NX XX GT LT 7.0.0", "7.0.0", True,
    )
    assert table.set_index("command").loc["SET", "options"] == "EX PX NX XX 2.6.12, KEEPTTL 6.0.0, GET EXAT 6.2.0"
    assert table.set_index("command").loc["BF.CARD", "since"] == "bf 2.4.4"
    # Whatever the server, everything Redis 7.0 (this handbook's floor) had is available.
    old = [c.display_name for c in COMMANDS if c.module is None and version(c.needs) <= (7, 0)]
    assert table.set_index("command").loc[old, "available here"].all()
