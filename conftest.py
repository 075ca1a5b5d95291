"""One Redis server for the whole test session, unit tests and notebooks alike.

nbval's notebook items get no fixtures, so the server is found or started in
``pytest_configure`` and its URL handed to every kernel through ``REDAI_LAB_REDIS_URL`` (or
``REDIS_URL`` is left as the user set it). Kernels inherit this process's environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from redai_lab.errors import LabError
from redai_lab.lab import exercises
from redai_lab.lab.lesson import missing_tools
from redai_lab.lab.server import LAB_URL_ENV, RedisServer, find_or_start

_server: RedisServer | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--solutions", action="store_true",
        help="fill every exercise cell (tagged exercise-N) with its reference solution; a check that "
             "does not pass fails the test, and every other cell is compared as usual",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("nbval_lax", False):
        _run_uncompared_where_tools_are_missing(config, items)
    if not config.getoption("solutions"):
        return
    for item in items:
        cell = getattr(item, "cell", None)  # nbval's notebook cells
        if cell is None:
            continue
        for tag in cell.metadata.get("tags", []):
            if match := re.fullmatch(r"exercise-(\d+)", tag):
                lesson = Path(str(item.fspath)).stem
                cell.source = exercises.spec(lesson, int(match.group(1))).solution_source()
        if _CHECK_CALL.search(cell.source):
            # Its committed output is the blank starter's "not yet": not compared here (a check
            # that does not pass raises instead); every other cell is compared as in any run.
            item.options["check"] = False  # type: ignore[attr-defined]


_CHECK_CALL = re.compile(r"^\s*ex\d+\.check\(\)", re.MULTILINE)


def _run_uncompared_where_tools_are_missing(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A lesson whose committed outputs need a tool that is not here (``missing_tools``) still runs
    every cell, asserts included, but its outputs are not compared; said once, after collection."""
    missing: dict[str, list[str]] = {}
    for item in items:
        if getattr(item, "cell", None) is None:
            continue
        lesson = Path(str(item.fspath)).stem
        if lesson not in missing:
            missing[lesson] = missing_tools(lesson)
        if missing[lesson]:
            item.options["check"] = False  # type: ignore[attr-defined]
    config.stash[_UNCOMPARED] = {lesson: tools for lesson, tools in missing.items() if tools}


_UNCOMPARED = pytest.StashKey[dict[str, list[str]]]()


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    uncompared = config.stash.get(_UNCOMPARED, {})
    by_tools: dict[str, list[str]] = {}
    for lesson, tools in uncompared.items():
        by_tools.setdefault("; ".join(tools), []).append(lesson)
    return [f"lessons run without comparing their outputs, for want of {tools}: {', '.join(lessons)}"
            for tools, lessons in by_tools.items()]


def pytest_configure(config: pytest.Config) -> None:
    global _server
    if config.getoption("solutions"):
        os.environ[exercises.STRICT_ENV] = "strict"  # kernels inherit it: a failing check raises
    try:
        _server = find_or_start()
    except LabError as exc:
        raise pytest.UsageError(str(exc)) from None
    if _server.throwaway:
        os.environ[LAB_URL_ENV] = _server.url
    # Keep notebook stderr empty and deterministic: no progress bars, no first-import
    # font-cache message from matplotlib inside a kernel.
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import matplotlib.font_manager  # noqa: F401  (builds the font cache once, here)


def pytest_report_header(config: pytest.Config) -> str:
    return f"redai-lab server: {_server.describe() if _server else 'none'}"


@pytest.fixture(scope="session")
def lab_server() -> RedisServer:
    """The server started (or found) for the whole test session."""
    assert _server is not None
    return _server


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
