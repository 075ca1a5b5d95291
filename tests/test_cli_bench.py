"""`redai-lab bench {pipeline,scan,pool} --quick --out FILE`: runs headless, prints a table, writes
a valid file, leaves no key behind. Quick mode keeps this file to seconds; nothing is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from redai_lab import bench, benchmarks, cli, connect
from redai_lab.lesson import database_count


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
    frame = bench.load(tmp_path / out)
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
    monkeypatch.setenv(bench.SCALE_ENV, "tiny")
    assert cli.main(["bench", "pool"]) == 2
    assert "REDAI_LAB_BENCH_SCALE='tiny' is not a scale" in capsys.readouterr().err


def test_an_unknown_benchmark_is_refused_by_argparse(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "disk"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'disk'" in capsys.readouterr().err
