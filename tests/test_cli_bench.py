"""`redai-lab bench {pipeline,scan,pool} --quick --out FILE`: runs headless, prints a table, writes
a valid file, leaves no key behind. Quick mode keeps this file to seconds; nothing is timed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redai_lab import cli, connect
from redai_lab.bench import benchmarks, harness
from redai_lab.lab.lesson import database_count


@pytest.fixture
def bench_db(lab_server):
    """A client on the benchmarks' database, to check that they clean up."""
    client = connect(lab_server.url)
    client = connect(lab_server.url, db=database_count(client) - 2)
    yield client
    client.close()


def test_the_cli_offers_every_benchmark() -> None:
    assert cli.BENCHMARK_NAMES == tuple(benchmarks.BENCHMARKS)


@pytest.mark.parametrize(
    ("name", "out", "columns"),
    [
        ("pipeline", "pipeline.csv", {"op", "method", "batch", "p50_us", "p99_us", "ops_per_s"}),
        ("pool", "pool.json", {"strategy", "threads", "connections_opened", "p95_us", "ops_per_s"}),
    ],
)
def test_bench_runs_quick_and_writes_the_file(tmp_path, capsys, bench_db, name, out, columns) -> None:
    assert cli.main(["bench", name, "--quick", "--out", str(tmp_path / out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{name} (quick): Redis ") and f"wrote {tmp_path / out}" in printed
    frame = harness.load(tmp_path / out)
    assert columns <= set(frame.columns) and len(frame) > 0
    assert frame.attrs["environment"]["scale"] == "quick"
    assert frame["ops_per_s"].gt(0).all()
    if name == "pipeline":
        assert set(frame["method"]) == set(benchmarks.METHODS) and set(frame["op"]) == {"SET", "GET"}
        assert sorted(set(frame["batch"])) == list(benchmarks.PIPELINE_SCALES["quick"].batches)
    assert bench_db.dbsize() == 0


def test_bench_scan_through_the_installed_command(tmp_path, lab_server, bench_db) -> None:
    """The console script in a process of its own (the latency probe spawns another one)."""
    out = tmp_path / "scan.json"
    command = [os.path.join(os.path.dirname(sys.executable), "redai-lab"), "bench", "scan", "--quick", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    assert (result.returncode, result.stderr) == (0, "")
    assert "SCAN COUNT 100" in result.stdout
    document = json.loads(out.read_text())
    assert {"redis_server", "redis_py", "hiredis", "parser", "cpu_count", "transport"} <= set(document["environment"])
    measures = {(row["measure"], row["method"]) for row in document["results"]}
    assert {("enumerate", "KEYS"), ("enumerate", "SCAN"), ("concurrent GET", "idle"),
            ("concurrent GET", "KEYS"), ("concurrent GET", "SCAN COUNT 1000")} <= measures
    sizes = {row["keys"] for row in document["results"] if row["measure"] == "enumerate"}
    assert sizes == set(benchmarks.SCAN_SCALES["quick"].sizes)
    assert bench_db.dbsize() == 0


def test_a_bad_file_name_fails_before_measuring(tmp_path, capsys) -> None:
    assert cli.main(["bench", "pool", "--quick", "--out", str(tmp_path / "r.xlsx")]) == 2
    assert capsys.readouterr().err == "redai-lab: Cannot write 'r.xlsx': name the file *.csv or *.json.\n"


def test_a_missing_folder_fails_before_measuring(tmp_path, capsys) -> None:
    out = tmp_path / "no-such-folder" / "r.csv"
    assert cli.main(["bench", "pool", "--quick", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"redai-lab: Cannot write {out}: the folder {out.parent} does not exist; create it first.\n"
    )


def test_a_folder_or_an_unwritable_path_fails_before_measuring(tmp_path, capsys, monkeypatch) -> None:
    folder = tmp_path / "results.json"
    folder.mkdir()
    assert cli.main(["bench", "pool", "--quick", "--out", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"redai-lab: Cannot write {folder}: it is a folder; name a file in it, e.g. {folder / 'results.json'}.\n"
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # Root may write anywhere: ask the kernel's own answer for this process, as the CLI does.
    if not os.access(locked, os.W_OK):
        assert cli.main(["bench", "pool", "--quick", "--out", str(locked / "r.csv")]) == 2
        assert "permission denied" in capsys.readouterr().err
    monkeypatch.setattr(cli, "find_or_start", lambda: pytest.fail("measured before checking --out"))
    assert cli.main(["bench", "pool", "--quick", "--out", str(folder)]) == 2


def test_a_bad_scale_in_the_environment_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv(harness.SCALE_ENV, "tiny")
    assert cli.main(["bench", "pool"]) == 2
    assert "REDAI_LAB_BENCH_SCALE='tiny' is not a scale" in capsys.readouterr().err


def test_an_unknown_benchmark_is_refused_by_argparse(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "disk"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'disk'" in capsys.readouterr().err


# --- what a killed run leaves behind --------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def probe_of(pid: int) -> int | None:
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            if b"redai_lab.bench.benchmarks" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")

PROBE_SCRIPT = """
import sys, time
from redai_lab.bench.benchmarks import LatencyProbe
with LatencyProbe(sys.argv[1], "bench:probe"):
    print("probing", flush=True)
    time.sleep(120)
"""


@needs_proc
def test_the_latency_probe_dies_with_its_parent_and_leaves_no_process(redis_url, r) -> None:
    r.set("bench:probe", "x")
    parent = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, redis_url], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "probing\n"
        left = descendants(parent.pid)
        probe = probe_of(parent.pid)
        assert probe is not None and left == {probe}  # the probe, and no resource tracker beside it
        assert redis_url.encode() not in Path(f"/proc/{probe}/cmdline").read_bytes()  # what ps shows
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    assert wait_until(lambda: not any(alive(pid) for pid in left), timeout=30), left


@needs_proc
def test_bench_scan_killed_during_its_probe_leaves_nothing_the_next_run_does_not_remove(tmp_path) -> None:
    """SIGKILL mid-benchmark on a server the lab did not start: no process stays, and the next
    run deletes the keys left under the lab's prefix (and nothing else)."""
    from redai_lab.lab.lesson import ALLOW_FLUSH_ENV
    from redai_lab.lab.server import LAB_URL_ENV, USER_URL_ENV, start_local

    with start_local(modules=[]) as foreign:
        env = {key: value for key, value in os.environ.items() if key not in (LAB_URL_ENV, ALLOW_FLUSH_ENV)}
        env.update({USER_URL_ENV: foreign.url, "TQDM_DISABLE": "1"})
        command = os.path.join(os.path.dirname(sys.executable), "redai-lab")
        user = connect(foreign.url, db=0)
        user.set("precious", "the user's")
        bench_db = connect(foreign.url, db=database_count(user) - 2)
        run = subprocess.Popen([command, "bench", "scan", "--quick"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env)
        try:
            assert wait_until(lambda: probe_of(run.pid) is not None or run.poll() is not None, timeout=240)
            left = descendants(run.pid)
            assert probe_of(run.pid) in left, run.stderr.read() if run.stderr else ""
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        assert wait_until(lambda: not any(alive(pid) for pid in left), timeout=30), left
        leftovers = bench_db.keys("*")
        assert len(leftovers) > 10_000 and all(key.startswith(benchmarks.CLI_PREFIX) for key in leftovers)
        again = subprocess.run([command, "bench", "pool", "--quick"], capture_output=True, text=True, timeout=300,
                               env=env, check=False)
        assert (again.returncode, again.stderr) == (0, "")
        assert bench_db.dbsize() == 0 and user.get("precious") == "the user's"
