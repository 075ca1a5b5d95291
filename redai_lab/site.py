"""The handbook as a static website, built from the committed notebooks and their CI-checked outputs.

    python -m redai_lab.site            # build into build/site, serve it on 127.0.0.1 (./lab docs)
    python -m redai_lab.site --build    # only build (./lab docs --build)

Nothing is executed: every lesson page shows exactly the outputs CI compared. The sources are
staged into a temporary folder laid out like the repository, so that the links the README and the
lessons already have work on the site:

* ``README.md`` becomes the home page; its course map (the table with the columns ``part``, ``#``
  and ``lesson``) gives the navigation, by part and lesson, in its order. A lesson in
  ``notebooks/`` that the map does not list yet still gets a page, under "More lessons".
* ``notebooks/*.ipynb``: each is checked first (readable, executed top to bottom, no error
  output): a notebook that is not fails the build with one line. In the staged copy the Markdown
  cells' links to other lessons, to ``README.md``, to ``docs/*.md`` and to ``redai_lab``'s modules point
  at those pages, and TeX math (``$...$``, ``$$...$$``) becomes MathML, which browsers draw without
  a script. Cells tagged ``remove-cell``/``hide-cell`` (and ``-input``, ``-output``) are left out
  from the staged copy; exercise cells hold only the task, as committed.
* ``docs/*.md`` (the compatibility table), ``docs/*.css``, ``CONTRIBUTING.md``, and one API page
  per ``redai_lab`` module, generated from its docstrings by mkdocstrings.

The build itself is MkDocs with Material, mkdocs-jupyter and mkdocstrings, configured in
``mkdocs.yml`` and run in strict mode: a broken link is a one-line failure too.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import pkgutil
import posixpath
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import latex2mathml.converter
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.pages import Page
from mkdocs.structure.toc import get_toc

from .errors import LabError
from .lab.server import stop_on_signals

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8800

# Tags that keep a cell, its input or its outputs off the site (Jupyter Book's names). Applied when
# staging: mkdocs-jupyter 0.26's remove_tag_config reads only the first tag of each list.
HIDE_CELL = frozenset({"remove-cell", "hide-cell"})
HIDE_INPUT = frozenset({"remove-input", "hide-input"})
HIDE_OUTPUT = frozenset({"remove-output", "hide-output"})


class SiteError(LabError):
    """The site cannot be built: a notebook without outputs, a broken link, a missing page."""


@dataclass(frozen=True)
class NavLesson:
    """One lesson in the navigation: its part, its label and its notebook (repository path)."""

    part: str
    label: str
    notebook: str


def course_map(readme: str) -> list[NavLesson]:
    """The lessons of README.md's course map, in order: the Markdown table whose header has the
    columns ``part``, ``#`` and ``lesson``; a blank part continues the one above."""
    lines = readme.splitlines()
    for start, line in enumerate(lines):
        header = _row_cells(line)
        if header and {"part", "#", "lesson"} <= set(header):
            break
    else:
        raise SiteError("README.md has no course map (a table with the columns part, #, lesson)")
    part_col, number_col, lesson_col = (header.index(name) for name in ("part", "#", "lesson"))
    lessons: list[NavLesson] = []
    part = ""
    for line in lines[start + 2 :]:  # after the header and its --- row
        cells = _row_cells(line)
        if not cells:
            break
        link = re.fullmatch(r"\[(.+?)\]\((notebooks/[^)\s]+\.ipynb)\)", cells[lesson_col])
        if link is None:
            raise SiteError(f"README.md's course map has a lesson without a notebook link: {line.strip()}")
        part = cells[part_col] or part
        title = link.group(1)[:1].upper() + link.group(1)[1:]
        lessons.append(NavLesson(part or "Lessons", f"{cells[number_col]} · {title}", link.group(2)))
    return lessons


def _row_cells(line: str) -> list[str]:
    """The cells of a Markdown table row, stripped; [] for a line that is not one."""
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")) or len(line) < 2:
        return []
    return [cell.strip() for cell in line[1:-1].split("|")]


def check_notebook(path: Path, name: str) -> dict:
    """The notebook at ``path`` as JSON, or a one-line SiteError saying why the site cannot show
    it: unreadable, not executed (no outputs), executed out of order, or an error recorded."""
    fix = (
        f"execute it top to bottom (jupyter nbconvert --to notebook --execute --inplace {name}) and commit it"
    )
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SiteError(
            f"{name} is not a readable notebook ({reason}): restore it from git or re-save it"
        ) from None
    last_count = 0
    for number, cell in enumerate(cells, start=1):
        if (
            not isinstance(cell, dict)
            or cell.get("cell_type") != "code"
            or not "".join(cell.get("source", "")).strip()
        ):
            continue
        count = cell.get("execution_count")
        if count is None:
            raise SiteError(f"{name} has no outputs (cell {number} was never run): {fix}")
        if not isinstance(count, int) or count <= last_count:
            raise SiteError(f"{name} was not executed top to bottom (cell {number} ran as [{count}]): {fix}")
        last_count = count
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                raise SiteError(
                    f"{name} recorded an error in cell {number} ({output.get('ename')}: "
                    f"{output.get('evalue')}): fix the lesson, then {fix}"
                )
    return notebook


# Fenced code blocks and code spans, whose text is never a link or math.
_CODE = re.compile(r"^(```+|~~~+)[^\n]*\n.*?^\1[ \t]*$|(`+).+?\2", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"(\]\()([^)\s#]*)(#[^)\s]*)?(\))")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
# Inline math as pandoc reads it: no space just inside the dollars, no digit right after the second.
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=[^\s\\])\$(?![\d$])")


def _outside_code(text: str, change: Callable[[str], str]) -> str:
    """``text`` with ``change`` applied to every part that is not a code block or code span."""
    parts, position = [], 0
    for match in _CODE.finditer(text):
        parts += [change(text[position : match.start()]), match.group(0)]
        position = match.end()
    return "".join(parts + [change(text[position:])])


def _math_to_mathml(text: str, name: str) -> str:
    def mathml(tex: str, display: str) -> str:
        try:
            return latex2mathml.converter.convert(tex.strip(), display=display)
        except Exception as exc:  # noqa: BLE001  (latex2mathml's errors share no base class)
            raise SiteError(f"{name} has math that cannot be drawn (${tex}$: {exc!r}): fix the TeX") from None

    text = _DISPLAY_MATH.sub(lambda m: mathml(m.group(1), "block"), text)
    return _INLINE_MATH.sub(lambda m: mathml(m.group(1), "inline"), text)


class _Pages:
    """Where each repository file that has a page ends up on the site (the staged layout mirrors the
    repository, so a page's site path is its repository path with .html)."""

    def __init__(self, sources: Sequence[str], modules: Sequence[str]) -> None:
        self.urls = {source: _html_path(source) for source in sources}
        self.urls["README.md"] = "index.html"
        for module in modules:
            source = module.replace(".", "/")
            for candidate in (f"{source}.py", f"{source}/__init__.py"):
                self.urls[candidate] = f"api/{module}.html"

    def relative_link(self, from_page: str, target: str) -> str | None:
        """The link from the page of ``from_page`` to the page of the repository path ``target``
        (relative to ``from_page``), or None when ``target`` has no page."""
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(from_page), target))
        url = self.urls.get(resolved)
        if url is None:
            return None
        return posixpath.relpath(url, posixpath.dirname(self.urls[from_page]) or ".")


def _html_path(source: str) -> str:
    return re.sub(r"\.(md|ipynb)$", ".html", source)


def _stage_markdown_cell(text: str, name: str, pages: _Pages) -> str:
    def links(part: str) -> str:
        def repoint(match: re.Match[str]) -> str:
            target = match.group(2)
            if not target or re.match(r"[a-z][a-z0-9+.-]*:", target):  # an anchor or an absolute URL
                return match.group(0)
            url = pages.relative_link(name, target)
            if url is None:
                raise SiteError(f"{name} links {target}, which is not a page of the site: fix the link")
            return f"{match.group(1)}{url}{match.group(3) or ''}{match.group(4)}"

        return _math_to_mathml(_LINK.sub(repoint, part), name)

    return _outside_code(text, links)


def _stage_cell(cell: dict, name: str, pages: _Pages) -> dict:
    tags = set(cell.get("metadata", {}).get("tags", []))
    if cell.get("cell_type") == "markdown":
        cell["source"] = _stage_markdown_cell("".join(cell["source"]), name, pages)
    if HIDE_INPUT & tags:
        cell["metadata"]["transient"] = {"remove_source": True}  # nbconvert's templates leave it out
    if HIDE_OUTPUT & tags:
        cell["outputs"] = []
    return cell


def api_modules(root: Path) -> list[str]:
    """The modules that get an API page: ``redai_lab``, its public modules and packages, and theirs
    one level down (``redai_lab.patterns.cache``); deeper modules are left out: the exercises'
    lessonNN modules hold the solutions."""
    package = root / "redai_lab"
    if not (package / "__init__.py").exists():
        return []
    names = []
    for info in pkgutil.iter_modules([str(package)]):
        if not info.name.startswith("_"):
            names.append(info.name)
            if info.ispkg:
                names += [f"{info.name}.{inner.name}" for inner in pkgutil.iter_modules([str(package / info.name)])
                          if not inner.name.startswith("_")]
    return ["redai_lab"] + [f"redai_lab.{name}" for name in sorted(names)]


def notebook_names(root: Path) -> list[str]:
    """Every lesson notebook, as repository paths, sorted."""
    return sorted(f"notebooks/{path.name}" for path in (root / "notebooks").glob("*.ipynb"))


def stage(root: Path, docs_dir: Path) -> list:
    """Write the site's sources into ``docs_dir`` and return MkDocs's nav for them."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    lessons = course_map(readme)
    notebooks = notebook_names(root)
    for lesson in lessons:
        if lesson.notebook not in notebooks:
            raise SiteError(
                f"README.md's course map links {lesson.notebook}, which does not exist: fix the row"
            )
    extra_docs = sorted(
        path.relative_to(root).as_posix()
        for pattern in ("docs/*.md", "docs/*.css")
        for path in root.glob(pattern)
    )
    contributing = ["CONTRIBUTING.md"] if (root / "CONTRIBUTING.md").exists() else []
    modules = api_modules(root)
    pages = _Pages(["README.md", *notebooks, *extra_docs, *contributing], modules)

    (docs_dir / "README.md").write_text(readme, encoding="utf-8")  # MkDocs makes it index.html
    for source in extra_docs + contributing:
        (docs_dir / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / source, docs_dir / source)
    (docs_dir / "notebooks").mkdir()
    for name in notebooks:
        notebook = check_notebook(root / name, name)
        notebook["cells"] = [
            _stage_cell(cell, name, pages)
            for cell in notebook["cells"]
            if not HIDE_CELL & set(cell.get("metadata", {}).get("tags", []))
        ]
        (docs_dir / name).write_text(json.dumps(notebook), encoding="utf-8")
    if modules:
        (docs_dir / "api").mkdir()
    for module in modules:
        (docs_dir / "api" / f"{module}.md").write_text(f"::: {module}\n", encoding="utf-8")

    nav: list = [{"Home": "README.md"}]
    parts: dict[str, list] = {}
    for lesson in lessons:
        parts.setdefault(lesson.part, []).append({lesson.label: lesson.notebook})
    mapped = {lesson.notebook for lesson in lessons}
    unmapped = [{Path(name).stem.replace("_", " "): name} for name in notebooks if name not in mapped]
    if unmapped:
        parts.setdefault("More lessons", []).extend(unmapped)
    nav += [{part: entries} for part, entries in parts.items()]
    nav += [
        {Path(source).stem.replace("_", " ").capitalize(): source}
        for source in extra_docs
        if source.endswith(".md")
    ]
    if modules:
        nav.append({"API reference": [{module: f"api/{module}.md"} for module in modules]})
    nav += [{"Contributing": source} for source in contributing]
    return nav


class _NotebookPages(BasePlugin):
    """Two things mkdocs-jupyter leaves to do on a notebook page.

    * Its table of contents comes from its own Markdown rendering, whose anchors differ from the
      ids of the headings on the page wherever a heading holds code (``## `SET` never returns
      False``): the contents are rebuilt from the page's headings.
    * The style sheets it inlines into every page (600 kB, the same on each) go into one file per
      sheet, linked from the pages: a site a fraction of the size, and a search index built
      without parsing them on every page.
    """

    _STYLE = re.compile(r'<style type="text/css">(.*?)</style>', re.DOTALL)
    _HEADING = re.compile(r'<h([1-6])\b[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', re.DOTALL)
    SHARED_FROM = 2000  # characters: the per-output styles (a DataFrame's) are smaller, and stay

    def __init__(self) -> None:
        self.sheets: dict[str, str] = {}

    def on_page_content(self, html: str, page: Page, **kwargs: object) -> str:
        if not page.file.src_uri.endswith(".ipynb"):
            return html
        page.toc = get_toc(self._toc_tokens(html))

        def share(match: re.Match[str]) -> str:
            css = match.group(1)
            if len(css) < self.SHARED_FROM:
                return match.group(0)
            name = f"assets/notebook-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css"
            self.sheets[name] = css
            href = posixpath.relpath(name, posixpath.dirname(page.file.url) or ".")
            return f'<link rel="stylesheet" href="{href}">'

        return self._STYLE.sub(share, html)

    def _toc_tokens(self, html: str) -> list[dict]:
        """The headings of ``html`` as Python-Markdown's nested toc tokens."""
        tokens: list[dict] = []
        open_headings: list[dict] = []
        for level, anchor, inner in self._HEADING.findall(html):
            title = re.sub(r"<a class=\"anchor-link\".*?</a>|<[^>]+>", "", inner, flags=re.DOTALL).strip()
            token = {"level": int(level), "id": anchor, "name": title, "children": []}
            while open_headings and open_headings[-1]["level"] >= token["level"]:
                open_headings.pop()
            (open_headings[-1]["children"] if open_headings else tokens).append(token)
            open_headings.append(token)
        return tokens

    def on_post_build(self, config: MkDocsConfig, **kwargs: object) -> None:
        for name, css in self.sheets.items():
            (Path(config.site_dir) / name).write_text(css, encoding="utf-8")


class _Warnings(logging.Handler):
    """Collects MkDocs's warnings and errors, so that a failed build can say why in one line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextmanager
def _mkdocs_logging() -> Iterator[_Warnings]:
    """MkDocs's log collected instead of printed (its INFO lines per page are noise here)."""
    logger = logging.getLogger("mkdocs")
    collected = _Warnings()
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers, logger.propagate = [collected], False
    logger.setLevel(logging.WARNING)
    try:
        yield collected
    finally:
        logger.handlers, logger.level, logger.propagate = saved


def build(root: Path = ROOT, out: Path | None = None) -> Path:
    """Build the site of the repository at ``root`` into ``out`` (default ``root/build/site``),
    replacing what was there; returns ``out``. A SiteError (one line) says what stops it."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    out = (out or root / "build" / "site").resolve()
    if not (root / "README.md").is_file():
        raise SiteError(f"{root} has no README.md: give the repository's folder")
    with tempfile.TemporaryDirectory(prefix="redai-lab-site-") as staging:
        docs_dir = Path(staging)
        nav = stage(root, docs_dir)
        with _mkdocs_logging() as warnings:
            try:
                config = load_config(
                    config_file=str(ROOT / "mkdocs.yml"), docs_dir=str(docs_dir), site_dir=str(out), nav=nav
                )
                config.plugins["mkdocs-jupyter"].config["cache"] = (
                    False  # every build shows the committed file
                )
                config.plugins["redai-lab-notebook-pages"] = _NotebookPages()
                mkdocs_build(config)
            except (MkDocsException, OSError) as exc:
                reason = warnings.messages[0] if warnings.messages else str(exc)
                more = f" (and {len(warnings.messages) - 1} more)" if len(warnings.messages) > 1 else ""
                raise SiteError(f"the site did not build: {reason}{more}") from None
    return out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No line per request: ``./lab docs`` prints its URL and nothing else."""


def start_server(site_dir: Path, port: int = 0) -> ThreadingHTTPServer:
    """Serve ``site_dir`` on 127.0.0.1:``port`` (0: a free port) from a daemon thread; the caller
    calls ``shutdown()`` and ``server_close()``."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise SiteError(
            f"cannot serve on 127.0.0.1:{port} ({exc.strerror}): choose another with --port"
        ) from None
    threading.Thread(target=server.serve_forever, name="redai-lab-site", daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./lab docs",
        description="Build the handbook's website from the committed notebooks and serve it.",
    )
    parser.add_argument("--build", action="store_true", help="only build (into build/site), do not serve")
    parser.add_argument("--out", type=Path, help="the folder to build into (default: build/site)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to build (default: this one)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the port to serve on (default {DEFAULT_PORT})"
    )
    args = parser.parse_args(argv)
    try:
        site_dir = build(args.root.resolve(), args.out)
        shown = site_dir.relative_to(Path.cwd()) if site_dir.is_relative_to(Path.cwd()) else site_dir
        print(f"site built in {shown}", file=sys.stderr)
        if args.build:
            return 0
        server = start_server(site_dir, args.port)
    except SiteError as exc:
        print(f"site: {exc}", file=sys.stderr)
        return 1
    print(f"the handbook: http://127.0.0.1:{server.server_address[1]}/index.html  (Ctrl-C stops)", flush=True)
    try:
        with stop_on_signals():
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
