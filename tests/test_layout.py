"""The package's layers point one way: what each folder of ``redai_lab`` may import of the others.

- ``patterns/``: what a service imports; only redis-py (and its peers, such as celery), the
  lab's ``errors`` and each other, so a service can take a module as it is.
- ``lab/``: servers, connections, lessons, faults; no pattern and no benchmark. Its
  ``exercises/`` grade a learner's code at the lesson's level, so they may use the patterns.
- ``bench/``: the lab and the patterns, never the CLI, the website or the demo apps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "redai_lab"
TOP = {"errors", "cli", "site", "service", "celery_demo"}
ALLOWED = {  # folder -> the parts of redai_lab it may import
    "patterns": {"errors", "patterns"},
    "lab": {"errors", "lab"},
    "lab/exercises": {"errors", "lab", "patterns"},
    "bench": {"errors", "lab", "patterns", "bench"},
}


def _imported(path: Path) -> set[str]:
    """The parts of redai_lab (``errors``, ``lab``, ...) a module imports, relative or absolute."""
    return _parts_imported(path.read_text(), path.relative_to(PACKAGE.parent).parent.parts)


def _parts_imported(source: str, package: tuple[str, ...]) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(source)):
        names: list[tuple[str, ...]] = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            target = (*base, *(node.module.split(".") if node.module else ()))
            names = [target] if node.module else [(*target, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [tuple(alias.name.split(".")) for alias in node.names]
        parts |= {name[1] for name in names if len(name) > 1 and name[0] == "redai_lab"}
    return parts


def _folder(path: Path) -> str:
    relative = path.relative_to(PACKAGE).parent.as_posix()
    return "lab/exercises" if relative.startswith("lab/exercises") else relative


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if _folder(p) in ALLOWED),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_each_folder_imports_only_the_layers_below_it(path: Path) -> None:
    beyond = _imported(path) - ALLOWED[_folder(path)]
    assert not beyond, f"{path.relative_to(PACKAGE)} imports redai_lab.{{{', '.join(sorted(beyond))}}}"


def test_the_top_level_holds_only_the_entry_points_and_the_errors() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == TOP
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == {"patterns", "lab", "bench"}


@pytest.mark.parametrize(("source", "parts"), [
    ("from ..lab.server import start_local", {"lab"}),
    ("from .cache import hash_tag\nfrom ..errors import LabError", {"patterns", "errors"}),
    ("import redai_lab.bench.harness", {"bench"}),
    ("from .. import service", {"service"}),
    ("def f():\n    from ..bench import peers", {"bench"}),  # a lazy import counts too
])
def test_the_check_sees_what_a_pattern_imports(source: str, parts: set[str]) -> None:
    assert _parts_imported(source, ("redai_lab", "patterns")) == parts
