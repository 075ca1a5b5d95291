"""Mutation testing of the pattern modules: does each module's own test file notice a bug?

    .venv/bin/python scripts/mutate.py                  # every pattern module
    .venv/bin/python scripts/mutate.py ratelimit locks  # some of them
    .venv/bin/python scripts/mutate.py --list cache     # the mutants, without running anything
    .venv/bin/python scripts/mutate.py --only ratelimit:241:57:0   # re-run chosen mutants

A mutant is the module with one realistic change: a comparison or arithmetic operator swapped
(``<`` for ``<=``, ``+`` for ``-``), ``and``/``or``, ``min``/``max``, ``floor``/``ceil``, a
``not`` dropped, a number off by one, a Lua ``if`` condition made ``true`` (an owner check gone),
or a Lua ``redis.call`` statement deleted (a PEXPIRE, a DEL). Most of this code's logic lives in
Lua scripts held in Python strings, so the Lua inside them is mutated too: that is why this is a
small script and not mutmut, which mutates only Python inside functions (its only change to a
string is to wrap it in ``XX``, which turns a script into a syntax error that any test kills).

Each mutant is written into a copy of the repository and the module's test files run there with
``-x`` against one throwaway server (``REDAI_LAB_REDIS_URL`` when set, else one started here),
in a child forked from a process that imported the heavy dependencies once, with a timeout: a
failing or hanging run kills the mutant. Mutants that do not compile are not
counted. Results go to ``build/mutation-results.json`` (``--out``); the score per module is killed /
(killed + survived). Not mutated: docstrings, messages, default values in signatures, and
module-level tuning constants (``BACKOFF_MAX = 0.1``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path

import tomllib  # Python 3.11+: a developer's tool, like the dev extra

ROOT = Path(__file__).resolve().parent.parent

# Each pattern module and the tests that guard it: pyproject.toml, [tool.redai-lab.mutation].
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["redai-lab"]["mutation"]
MODULES: dict[str, list[str]] = CONFIG["modules"]
SHARED_TESTS: list[str] = CONFIG["shared"]


def _dotted(module: str) -> str:
    """``cache`` is ``redai_lab.patterns.cache``; ``errors`` is at the package's top."""
    pattern = ROOT / "redai_lab" / "patterns" / f"{module}.py"
    return f"redai_lab.patterns.{module}" if pattern.exists() else f"redai_lab.{module}"


def _file(module: str) -> Path:
    """The module's source file, relative to the repository."""
    return Path(*_dotted(module).split(".")).with_suffix(".py")

PY_OPERATORS = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
    "+": "-", "-": "+", "*": "/", "/": "*", "//": "/", "%": "*", "+=": "-=", "-=": "+=",
}
PY_NAMES = {"and": "or", "or": "and", "True": "False", "False": "True", "min": "max", "max": "min",
            "break": "continue", "continue": "break"}
LUA_OPERATORS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "~=", "~=": "==",
                 "+": "-", "-": "+", "*": "/", "/": "*", "%": "*"}
LUA_WORDS = {"and": "or", "or": "and", "true": "false", "false": "true",
             "math.floor": "math.ceil", "math.ceil": "math.floor", "math.min": "math.max", "math.max": "math.min"}
# Lua, outside its strings and comments: the tokens a mutant may change, and those it skips.
LUA_TOKEN = re.compile(
    r"--[^\n]*|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|\.\.|"
    r"math\.(?:floor|ceil|min|max)\b|[A-Za-z_][A-Za-z0-9_.]*|\d+(?:\.\d+)?|<=|>=|==|~=|[<>+\-*/%]"
)
LUA_IF = re.compile(r"\bif (.+?) then\b")
LUA_CALL_STATEMENT = re.compile(r"^[ \t]*redis\.call\(.*\)[ \t]*$", re.MULTILINE)
CONSTANT_LINE = re.compile(r"^[A-Z_][A-Z0-9_]* *(?::[^=]+)?= ")


@dataclass
class Mutant:
    id: str  # module:line:column:n, stable while the module's source does not change
    module: str
    line: int
    before: str
    after: str
    status: str = "pending"  # killed, survived, timeout (killed by hanging)
    seconds: float = 0.0


def mutants_of(module: str) -> tuple[str, list[tuple[Mutant, str]]]:
    """The module's source and every mutant of it that compiles, with its mutated source."""
    source = (ROOT / _file(module)).read_text()
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for text in lines:
        offsets.append(offsets[-1] + len(text))
    changes: list[tuple[int, int, str]] = []  # (start offset, end offset, replacement)
    in_signature, depth = False, 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        (row, col), (end_row, end_col) = token.start, token.end
        if row > len(lines):  # ENDMARKER
            break
        start, end = offsets[row - 1] + col, offsets[end_row - 1] + end_col
        if token.type == tokenize.OP:
            depth += (token.string in "([{") - (token.string in ")]}")
        if token.type == tokenize.NAME and token.string == "def":
            in_signature = True
        elif in_signature and token.type == tokenize.OP and token.string == ":" and depth == 0:
            in_signature = False
        if in_signature or CONSTANT_LINE.match(lines[row - 1]):
            continue
        if token.type == tokenize.OP and token.string in PY_OPERATORS:
            changes.append((start, end, PY_OPERATORS[token.string]))
        elif token.type == tokenize.NAME and token.string in PY_NAMES:
            changes.append((start, end, PY_NAMES[token.string]))
        elif token.type == tokenize.NAME and token.string == "not":
            changes.append((start, end + 1, ""))  # `not x` -> `x`, `is not` -> `is`, `not in` -> `in`
        elif token.type == tokenize.NUMBER and re.fullmatch(r"\d+(\.\d+)?", token.string):
            changes.append((start, end, _plus_one(token.string)))
        elif token.type == tokenize.STRING and "redis.call" in token.string:
            changes += _lua_changes(token.string, start)
    mutants = []
    for n, (start, end, replacement) in enumerate(sorted(changes)):
        mutated = source[:start] + replacement + source[end:]
        try:
            compile(mutated, module, "exec")
        except SyntaxError:
            continue
        line = source.count("\n", 0, start) + 1
        column = start - offsets[line - 1]
        after = source[offsets[line - 1]:start] + replacement + source[end:offsets[line]]
        mutant = Mutant(f"{module}:{line}:{column}:{n}", module, line, lines[line - 1].strip(),
                        after.strip() or "(statement deleted)")
        mutants.append((mutant, mutated))
    return source, mutants


def _plus_one(number: str) -> str:
    return str(int(number) + 1) if number.isdigit() else repr(float(number) + 1)


def _lua_changes(literal: str, offset: int) -> list[tuple[int, int, str]]:
    """Changes to the Lua inside a Python string literal (offsets into the module's source)."""
    changes = []
    for match in LUA_TOKEN.finditer(literal):
        text, start, end = match.group(), offset + match.start(), offset + match.end()
        if text in LUA_OPERATORS and not (text == "-" and _unary(literal[:match.start()])):
            changes.append((start, end, LUA_OPERATORS[text]))
        elif text in LUA_WORDS:
            changes.append((start, end, LUA_WORDS[text]))
        elif text == "not":
            changes.append((start, end + 1, ""))
        elif text[0].isdigit():
            changes.append((start, end, _plus_one(text)))
    for match in LUA_IF.finditer(literal):
        if "--" not in literal[literal.rfind("\n", 0, match.start()) + 1:match.start()]:  # not in a comment
            changes.append((offset + match.start(1), offset + match.end(1), "true"))
    for match in LUA_CALL_STATEMENT.finditer(literal):
        changes.append((offset + match.start(), offset + match.end(), ""))
    return changes


def _unary(before: str) -> bool:
    """Whether a ``-`` after ``before`` is a sign (``+1`` is no Lua) rather than a subtraction."""
    stripped = before.rstrip()
    return not stripped or stripped[-1] in "(,={[<>~+-*/%" or stripped.endswith(
        ("return", " and", " or", " not", "then", "else", " do"))


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """``passed``, ``failed`` or ``timeout``, and the seconds it took.

    The tests run in a child forked from this process, which has imported pytest, redis-py,
    pandas and matplotlib once: the child drops every ``redai_lab`` module and the test
    modules, so it imports the (mutated) copy afresh, and starts in a second, not ten.
    """
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout ends what it started too
        code = 3
        try:
            os.setsid()
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            for name in [n for n in sys.modules if n.split(".")[0] in ("redai_lab", "conftest") or n.startswith("test_")]:
                del sys.modules[name]
            os.chdir(copy)
            import pytest

            code = int(pytest.main(["-o", "addopts=", "-p", "no:cacheprovider", "-x", "-q",
                                    "--timeout", str(int(timeout)), *tests]))
        finally:
            os._exit(code)
    deadline = started + timeout + 30
    while True:  # bounded: the deadline ends it
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return ("passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"), time.monotonic() - started
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started
        time.sleep(0.05)


def preload(copy: Path, url: str) -> None:
    """Import what every test run needs once, here, from the copy; children fork from this."""
    sys.dont_write_bytecode = True  # a mutant's source must be compiled afresh, never a stale .pyc
    os.environ.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy), REDAI_LAB_REDIS_URL=url, TQDM_DISABLE="1")
    sys.path.insert(0, str(copy))
    import matplotlib.font_manager  # noqa: F401  (the root conftest's slowest import)
    import pytest  # noqa: F401

    import redai_lab.bench.benchmarks
    import redai_lab.lab.exercises  # noqa: F401
    for module in MODULES:
        __import__(_dotted(module))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--only", default="", help="comma-separated mutant ids to run")
    parser.add_argument("--out", default="build/mutation-results.json", help="where results are written")
    parser.add_argument("--minutes", type=float, default=120, help="stop starting mutants after this")
    parser.add_argument("--resume", action="store_true",
                        help="keep the killed mutants of --out, run the others (survivors again: tests change)")
    options = parser.parse_args(argv)
    unknown = set(options.modules) - set(MODULES)
    if unknown:
        parser.error(f"no pattern module {', '.join(sorted(unknown))}; choose from {', '.join(MODULES)}")
    only = set(filter(None, options.only.split(",")))
    modules = options.modules or sorted({i.split(":")[0] for i in only}) or list(MODULES)

    work = [(module, *mutants_of(module)) for module in modules]
    if options.list:
        for _, _, mutants in work:
            for mutant, _ in mutants:
                print(f"{mutant.id}\n    - {mutant.before}\n    + {mutant.after}")
        return 0

    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[Mutant] = []
    if options.resume and out.exists():
        earlier = [Mutant(**m) for m in json.loads(out.read_text())["mutants"]]
        results = [m for m, _ in zip(earlier, identities(earlier)) if m.status in ("killed", "timeout")]
    done = set(identities(results))
    work = [(module, source, [(m, text) for (m, text), identity in zip(mutants, identities([m for m, _ in mutants]))
                              if identity not in done and (not only or m.id in only)])
            for module, source, mutants in work]
    deadline = time.monotonic() + 60 * options.minutes
    with tempfile.TemporaryDirectory(prefix="redai-mutate-") as tmp:
        copy = Path(tmp)
        for name in ("redai_lab", "tests"):
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("conftest.py", "pyproject.toml"):
            shutil.copy(ROOT / name, copy / name)
        sys.path.insert(0, str(copy))
        from redai_lab.lab.server import find_or_start

        server = find_or_start()
        try:
            preload(copy, server.url)
            for module, source, mutants in work:
                if not mutants or time.monotonic() > deadline:
                    continue
                tests = [t for t in (*MODULES[module], *SHARED_TESTS) if (copy / t).exists()]
                target = copy / _file(module)
                status, baseline = run_tests(copy, tests, 600)
                if status != "passed":
                    print(f"{module}: the tests fail without any mutation; fix them first", file=sys.stderr)
                    return 1
                timeout = max(60.0, 5 * baseline)
                for mutant, mutated in mutants:
                    if time.monotonic() > deadline:
                        break
                    target.write_text(mutated)
                    status, mutant.seconds = run_tests(copy, tests, timeout)
                    mutant.status = {"passed": "survived", "failed": "killed"}.get(status, status)
                    results.append(mutant)
                    write_results(out, results)  # after each one: a stopped run keeps what it did
                    print(f"{mutant.status:8} {mutant.id}  {mutant.after}", flush=True)
                target.write_text(source)
        finally:
            server.stop()
    for module, line in write_results(out, results).items():
        print(f"{module:12} {line}")
    return 0


def identities(mutants: list[Mutant]) -> list[tuple[str, str, str, int]]:
    """What a mutant is, whatever line it is on: module, line before and after, and which of the
    equal (before, after) pairs in the module it is. Edits elsewhere in a module keep it."""
    seen: dict[tuple[str, str, str], int] = {}
    keys = []
    for mutant in sorted(mutants, key=lambda m: (m.module, m.line, int(m.id.split(":")[2]))):
        pair = (mutant.module, mutant.before, mutant.after)
        seen[pair] = seen.get(pair, -1) + 1
        keys.append((*pair, seen[pair]))
    order = sorted(range(len(mutants)), key=lambda i: (mutants[i].module, mutants[i].line, int(mutants[i].id.split(":")[2])))
    result: list[tuple[str, str, str, int]] = [("", "", "", 0)] * len(mutants)
    for position, index in enumerate(order):
        result[index] = keys[position]
    return result


def write_results(out: Path, results: list[Mutant]) -> dict[str, str]:
    """Write the mutants and the score per module to ``out``; returns one line per module."""
    summary = {}
    for module in dict.fromkeys(m.module for m in results):
        mine = [m for m in results if m.module == module]
        killed = sum(m.status in ("killed", "timeout") for m in mine)
        survived = [m.id for m in mine if m.status == "survived"]
        summary[module] = f"{killed}/{len(mine)} killed ({100 * killed / len(mine):.0f}%); survived: {', '.join(survived) or 'none'}"
    out.write_text(json.dumps({"summary": summary, "mutants": [asdict(m) for m in results]}, indent=1))
    return summary


if __name__ == "__main__":
    sys.exit(main())
