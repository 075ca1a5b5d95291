"""commands_table: since and deprecation from the server's COMMAND DOCS, complexity as given."""

from __future__ import annotations

import pytest

from redai_lab.lab.commanddocs import command_docs, commands_table


@pytest.mark.usefixtures("redis_docs")
def test_commands_table_reads_since_and_deprecation_from_the_server(r, lab_server) -> None:
    table = commands_table(r, {"SADD": "O(1) per member", "ZREVRANGE": "O(log N + M)", "XGROUP CREATE": "O(1)",
                               "NO.SUCH": "?"})
    assert table.to_dict("index") == {
        "SADD": {"since": "1.0.0", "complexity": "O(1) per member", "deprecated": ""},
        "ZREVRANGE": {"since": "1.2.0", "complexity": "O(log N + M)",
                      "deprecated": "since 6.2.0: ZRANGE with the REV argument"},
        "XGROUP CREATE": {"since": "5.0.0", "complexity": "O(1)", "deprecated": ""},
        "NO.SUCH": {"since": "missing", "complexity": "?", "deprecated": ""},
    }
    getset = commands_table(r, {"GETSET": "O(1)"}).loc["GETSET", "deprecated"]
    assert getset == "since 6.2.0: SET with the GET argument"
    if lab_server.has_module("ReJSON"):
        assert commands_table(r, {"JSON.SET": "O(M+N)"}).loc["JSON.SET", "since"] == "module"


def test_command_docs_is_one_round_trip(round_trips, redis_url) -> None:
    client = round_trips.client(redis_url)
    with round_trips.measure() as trips:
        docs = command_docs(client, "SPOP", "XGROUP CREATE", "XGROUP NOSUCH", "NOSUCH")
    assert trips.count == 1
    assert docs["SPOP"]["since"] == "1.0.0" and docs["XGROUP CREATE"]["since"] == "5.0.0"
    assert docs["XGROUP NOSUCH"] == {} and docs["NOSUCH"] == {}
    assert command_docs(client) == {}
