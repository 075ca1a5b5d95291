"""The handbook's website (``./lab docs``): built once per session from the committed notebooks, then
checked in a real headless Chromium (Debian's ``chromium``, driven by Playwright) page by page.

Every page loads with no console error and nothing fetched from outside; lessons link to the
previous and next in the course map's order; no internal link or anchor is broken; every image is
loaded; a phone-sized viewport has no horizontal scroll; the search finds a term of a late lesson;
exercise pages show the task and no solution. Screenshots of the home page
and of a lesson with a plot go to ``build/site-screenshots/``. Broken sources fail the build with
one line (checked on small repositories made here, without a browser).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest

pytest.importorskip("mkdocs_jupyter", reason="the website's tools need Python 3.11+ and the docs extra")

from redai_lab import site  # noqa: E402
from redai_lab.lab import exercises  # noqa: E402
from redai_lab.lab.server import chosen_server  # noqa: E402

if chosen_server() != "redis8":  # CI's runs on redis7 and valkey9 would check the same pages again
    pytest.skip("the website does not depend on the server: it is checked on the default server's run",
                allow_module_level=True)

# Building (about 30 s on an idle machine) and visiting about 60 pages: generous, but bounded.
pytestmark = pytest.mark.timeout(600)

SCREENSHOTS = site.ROOT / "build" / "site-screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PAGE_TIMEOUT_MS = 30_000
Capture = pytest.CaptureFixture[str]


def chromium_path() -> str | None:
    """REDAI_LAB_CHROMIUM, else Debian's chromium, else the Chrome of GitHub's Ubuntu runners."""
    names = ("chromium", "chromium-browser", "google-chrome")
    return os.environ.get("REDAI_LAB_CHROMIUM") or next(filter(None, map(shutil.which, names)), None)


# -- the build, without a browser: small repositories made here ---------------------------------


def code_cell(
    source: str, count: int | None, outputs: list | None = None, tags: list[str] | None = None
) -> dict:
    return {
        "cell_type": "code",
        "execution_count": count,
        "id": f"c{count}{len(source)}",
        "metadata": {"tags": tags or []},
        "outputs": outputs or [],
        "source": source,
    }


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def write_notebook(path: Path, cells: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    markdown = {
        "cell_type": "markdown",
        "id": "title",
        "metadata": {},
        "source": "# A lesson\n\nSee the [home page](../README.md), and the formula $e^{-x}$.\n",
    }
    notebook = {
        "cells": [markdown, *cells],
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    }
    path.write_text(json.dumps(notebook), encoding="utf-8")


def small_repository(root: Path, cells: list[dict]) -> Path:
    """A repository with a README course map of one lesson, whose notebook has ``cells``."""
    (root / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(
        textwrap.dedent("""\
        # A handbook

        | part | # | lesson | time |
        | --- | --- | --- | --- |
        | Basics | 01 | [a lesson](notebooks/01_a.ipynb) | 5 min |
        """),
        encoding="utf-8",
    )
    write_notebook(root / "notebooks" / "01_a.ipynb", cells)
    return root


def build_fails(root: Path, capsys: Capture) -> str:
    """Runs ``./lab docs --build``'s command on ``root``; returns its output, which must be one line."""
    assert site.main(["--build", "--root", str(root), "--out", str(root / "out")]) == 1
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_every_layer_has_api_pages_and_no_exercise_module_has_one() -> None:
    modules = site.api_modules(site.ROOT)
    assert {"redai_lab", "redai_lab.errors", "redai_lab.patterns", "redai_lab.patterns.cache", "redai_lab.lab.server",
            "redai_lab.lab.exercises", "redai_lab.bench.harness"} <= set(modules)
    assert not [module for module in modules if module.startswith("redai_lab.lab.exercises.")]  # the solutions


def test_a_notebook_without_outputs_fails_the_build_in_one_line(tmp_path: Path, capsys: Capture) -> None:
    root = small_repository(tmp_path, [code_cell("x = 1", 1), code_cell("print(x)", None)])
    line = build_fails(root, capsys)
    assert line.startswith("site: notebooks/01_a.ipynb has no outputs (cell 3 was never run)"), line
    assert "jupyter nbconvert --to notebook --execute --inplace notebooks/01_a.ipynb" in line


def test_a_notebook_run_out_of_order_or_with_an_error_fails_the_build(
    tmp_path: Path, capsys: Capture
) -> None:
    root = small_repository(
        tmp_path / "order", [code_cell("x = 1", 2), code_cell("print(x)", 1, [stream("1\n")])]
    )
    assert "was not executed top to bottom (cell 3 ran as [1])" in build_fails(root, capsys)
    error = {
        "output_type": "error",
        "ename": "NameError",
        "evalue": "name 'y' is not defined",
        "traceback": [],
    }
    root = small_repository(tmp_path / "error", [code_cell("y", 1, [error])])
    assert "recorded an error in cell 2 (NameError: name 'y' is not defined)" in build_fails(root, capsys)


def test_a_broken_notebook_a_missing_lesson_or_a_broken_link_fails_the_build(
    tmp_path: Path, capsys: Capture
) -> None:
    root = small_repository(tmp_path / "broken", [code_cell("x = 1", 1)])
    (root / "notebooks" / "01_a.ipynb").write_text('{"cells": [', encoding="utf-8")
    assert build_fails(root, capsys).startswith("site: notebooks/01_a.ipynb is not a readable notebook (")
    root = small_repository(tmp_path / "missing", [code_cell("x = 1", 1)])
    (root / "notebooks" / "01_a.ipynb").unlink()
    assert build_fails(root, capsys) == (
        "site: README.md's course map links notebooks/01_a.ipynb, which does not exist: fix the row"
    )
    root = small_repository(tmp_path / "link", [code_cell("x = 1", 1)])
    with (root / "notebooks" / "01_a.ipynb").open("r+", encoding="utf-8") as file:
        text = file.read().replace("../README.md", "02_gone.ipynb")
        file.seek(0), file.truncate(), file.write(text)
    assert build_fails(root, capsys) == (
        "site: notebooks/01_a.ipynb links 02_gone.ipynb, which is not a page of the site: fix the link"
    )
    root = small_repository(tmp_path / "math", [code_cell("x = 1", 1)])
    with (root / "notebooks" / "01_a.ipynb").open("r+", encoding="utf-8") as file:
        text = file.read().replace("$e^{-x}$", "$e^$")
        file.seek(0), file.truncate(), file.write(text)
    assert build_fails(root, capsys).startswith(
        "site: notebooks/01_a.ipynb has math that cannot be drawn ($e^$: MissingSuperScriptOrSubscriptError"
    )
    root = small_repository(tmp_path / "readme", [code_cell("x = 1", 1)])
    with (root / "README.md").open("a", encoding="utf-8") as readme:
        readme.write("\nStart the server with [compose](docker-compose.yml).\n")
    assert build_fails(root, capsys) == (  # MkDocs's own check (strict), in one line too
        "site: the site did not build: Doc file 'README.md' contains a link 'docker-compose.yml', "
        "but the target is not found among documentation files."
    )


def test_hidden_cells_links_math_and_new_lessons_on_a_small_site(tmp_path: Path) -> None:
    root = small_repository(
        tmp_path,
        [
            code_cell("print('shown')", 1, [stream("visible output\n")]),
            code_cell("print('SECRET-CELL')", 2, [stream("SECRET-CELL-OUTPUT\n")], tags=["remove-cell"]),
            code_cell("print('SECRET-INPUT')", 3, [stream("kept output\n")], tags=["hide-input"]),
            code_cell("print('kept input')", 4, [stream("SECRET-OUTPUT\n")], tags=["remove-output"]),
        ],
    )
    # A lesson the course map does not list yet still gets a page.
    write_notebook(root / "notebooks" / "02_new.ipynb", [code_cell("1 + 1", 1)])
    out = site.build(root, tmp_path / "out")
    page = (out / "notebooks" / "01_a.html").read_text(encoding="utf-8")
    assert "visible output" in page and "kept output" in page and "kept input" in page
    assert "SECRET" not in page
    assert 'href="../index.html"' in page  # ../README.md, as written in the notebook
    assert "<math" in page and "$e^" not in page  # drawn by the browser, no script
    assert (out / "notebooks" / "02_new.html").is_file()
    assert "02 new" in (out / "index.html").read_text(encoding="utf-8")  # in the nav, "More lessons"


def _as_background_job() -> None:
    """What a non-interactive shell does to a job started with `&`: SIGINT ignored, inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("start_as", [None, _as_background_job], ids=["foreground", "background-job"])
def test_docs_serves_on_loopback_until_ctrl_c(tmp_path: Path, start_as) -> None:
    root = small_repository(tmp_path, [code_cell("print('hello')", 1, [stream("hello\n")])])
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "redai_lab.site",
            "--root",
            str(root),
            "--out",
            str(root / "out"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=site.ROOT,
        preexec_fn=start_as,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:\d+/index\.html", line)
        assert url, line + server.stderr.read()  # type: ignore[union-attr]
        with urllib.request.urlopen(
            url.group(0).replace("index.html", "notebooks/01_a.html"), timeout=10
        ) as reply:
            assert b"hello" in reply.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0
    finally:
        server.kill()
        server.wait()


# -- the real site in a real browser -------------------------------------------------------------


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return site.build(site.ROOT, tmp_path_factory.mktemp("site") / "site")


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> Iterator[str]:
    server = site.start_server(site_dir)
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no chromium: the browser tests need Debian's chromium (apt-get install chromium; "
            "./lab test installs it with root or sudo -n)"
        )
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright missing: ./lab installs it"
    )
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, timeout=PAGE_TIMEOUT_MS
        )
        yield browser
        browser.close()


@dataclass
class Visit:
    """What one page showed: problems, its links, its anchors, its text."""

    errors: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    phone_overflow: int = 0
    previous: str | None = None
    next: str | None = None
    text: str = ""


def open_page(browser, site_url: str, viewport: dict[str, int] = DESKTOP):
    """A page that records console errors, uncaught exceptions, failed requests and error replies,
    and refuses (and records) every request that leaves the site."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.problems = []
    page.on(
        "console",
        lambda message: message.type == "error" and page.problems.append(f"console: {message.text}"),
    )
    page.on("pageerror", lambda error: page.problems.append(f"exception: {error}"))
    page.on(
        "response", lambda reply: reply.status >= 400 and page.problems.append(f"{reply.status}: {reply.url}")
    )
    # Leaving a page aborts what it still loads (its favicon, the search worker): not a failure.
    page.on(
        "requestfailed",
        lambda request: (
            request.failure != "net::ERR_ABORTED"
            and page.problems.append(f"failed request ({request.failure}): {request.url[:120]}")
        ),
    )

    def outside(route) -> None:
        page.problems.append(f"request outside the site: {route.request.url[:120]}")
        route.abort()

    page.route(lambda url: not url.startswith(site_url) and not url.startswith("data:"), outside)
    return page


@pytest.fixture(scope="session")
def visits(browser, site_url: str, site_dir: Path) -> dict[str, Visit]:
    """Every page of the site, visited once, at phone size (its checks but the width do not depend
    on the size; a resize per page would double the time)."""
    page = open_page(browser, site_url, PHONE)
    visited: dict[str, Visit] = {}
    for path in sorted(site_dir.rglob("*.html")):
        name = path.relative_to(site_dir).as_posix()
        if name == "404.html":  # served for missing paths, with links for the site's root
            continue
        page.problems = []
        page.goto(site_url + name, wait_until="load")
        found = page.evaluate("""() => ({
            links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
            ids: Array.from(document.querySelectorAll('[id], a[name]'), e => e.id || e.getAttribute('name')),
            images: document.images.length,
            broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                         .map(i => (i.getAttribute('alt') || '') + ' ' + i.src.slice(0, 60)),
            previous: document.querySelector('a.md-footer__link--prev')?.href ?? null,
            next: document.querySelector('a.md-footer__link--next')?.href ?? null,
            overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            text: location.pathname.includes('/notebooks/') ? document.body.innerText : '',
        })""")
        visited[name] = Visit(
            list(page.problems),
            found["links"],
            set(found["ids"]),
            found["images"],
            found["broken"],
            found["overflow"],
            found["previous"],
            found["next"],
            found["text"],
        )
    page.close()
    return visited


def test_every_page_loads_without_console_errors(visits: dict[str, Visit], site_dir: Path) -> None:
    lessons = {f"notebooks/{Path(name).stem}.html" for name in site.notebook_names(site.ROOT)}
    assert lessons <= visits.keys()  # every lesson has a page
    assert {"index.html", "docs/compatibility.html", "api/redai_lab.patterns.cache.html"} <= visits.keys()
    problems = {name: visit.errors for name, visit in visits.items() if visit.errors}
    assert not problems


def test_lessons_link_to_the_previous_and_next_in_course_map_order(
    visits: dict[str, Visit], site_url: str
) -> None:
    lessons = [
        f"notebooks/{Path(lesson.notebook).stem}.html"
        for lesson in site.course_map((site.ROOT / "README.md").read_text(encoding="utf-8"))
    ]
    assert len(lessons) >= 2
    for before, after in itertools.pairwise(lessons):
        assert visits[before].next == site_url + after, before
        assert visits[after].previous == site_url + before, after
    assert visits["index.html"].next == site_url + lessons[0]


def test_no_broken_internal_link_or_anchor(visits: dict[str, Visit], site_url: str, site_dir: Path) -> None:
    assert sum(len(visit.links) for visit in visits.values()) > 100
    broken = []
    for name, visit in visits.items():
        for link in visit.links:
            if not link.startswith(site_url):
                continue
            target, anchor = urldefrag(link)
            target_name = unquote(target[len(site_url) :]) or "index.html"
            if not (site_dir / target_name).is_file():
                broken.append(f"{name} -> {target_name}")
            elif anchor and target_name in visits and unquote(anchor) not in visits[target_name].ids:
                broken.append(f"{name} -> {target_name}#{anchor}")
    assert not broken, f"{len(broken)} broken: {broken[:20]}"


def test_every_image_is_loaded(visits: dict[str, Visit]) -> None:
    for name in site.notebook_names(site.ROOT):  # every plot of a lesson is an image on its page
        plots = sum(
            "image/png" in output.get("data", {})
            for cell in json.loads((site.ROOT / name).read_text())["cells"]
            for output in cell.get("outputs", [])
        )
        assert visits[f"notebooks/{Path(name).stem}.html"].images >= plots, name
    assert not {name: visit.broken_images for name, visit in visits.items() if visit.broken_images}


def test_a_phone_viewport_has_no_horizontal_scroll(visits: dict[str, Visit]) -> None:
    assert not {
        name: f"{visit.phone_overflow} px too wide"
        for name, visit in visits.items()
        if visit.phone_overflow > 0
    }


def test_exercise_pages_show_the_task_and_no_solution(visits: dict[str, Visit]) -> None:
    def flat(text: str) -> str:
        return " ".join(text.split())

    checked = 0
    for notebook in site.notebook_names(site.ROOT):
        lesson = Path(notebook).stem
        page = flat(visits[f"notebooks/{lesson}.html"].text)
        for spec in exercises.specs(lesson):
            starter = spec.starter()
            assert flat(starter.splitlines()[0]) in page, (
                f"{lesson}: the task of exercise {spec.number} is not shown"
            )
            body = spec.solution_source().split('"""')[-1]
            assert flat(body) not in page, f"{lesson}: the solution of exercise {spec.number} is visible"
            checked += 1
    assert checked >= 1


def test_the_search_finds_a_term_of_a_late_lesson(browser, site_url: str) -> None:
    term = "XFetch"
    teaching = [
        Path(name).stem
        for name in site.notebook_names(site.ROOT)
        if any(
            term in "".join(cell["source"])
            for cell in json.loads((site.ROOT / name).read_text())["cells"]
            if cell["cell_type"] == "markdown"
        )
    ]
    assert teaching, f"no lesson mentions {term} any more: pick another term of a late lesson"
    page = open_page(browser, site_url)
    page.goto(site_url + "index.html", wait_until="load")
    page.fill("input.md-search__input", term)
    page.wait_for_function(
        """([names]) => Array.from(document.querySelectorAll('.md-search-result__item a'))
                         .some(a => names.some(name => a.href.includes('notebooks/' + name + '.html')))""",
        arg=[teaching],
    )
    assert page.problems == []
    page.close()


def test_screenshots_of_the_home_page_and_a_lesson_with_a_plot(
    browser, site_url: str, visits: dict[str, Visit]
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, site_url)
    page.goto(site_url + "index.html", wait_until="load")
    page.locator("#the-course").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "home.png"))
    with_plot = next(
        name
        for name in sorted(visits)
        if name.startswith("notebooks/")
        and (site.ROOT / name.replace(".html", ".ipynb")).read_text().count('"image/png"')
    )
    page.goto(site_url + with_plot, wait_until="load")
    plot = page.locator(".jp-OutputArea-output img").first
    plot.scroll_into_view_if_needed()
    assert plot.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(SCREENSHOTS / "lesson.png"))
    assert page.problems == []
    page.close()
    assert (SCREENSHOTS / "home.png").stat().st_size > 0 and (SCREENSHOTS / "lesson.png").stat().st_size > 0
