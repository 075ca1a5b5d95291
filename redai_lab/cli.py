"""``redai-lab``: start the lab, run a throwaway server, describe the server in use.

Every error a user can cause ends the command with one line and exit status 2: a ``LabError``
with its own message, an error from Redis explained by ``connection.explain``, a bad argument
with what to type instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import redis

from .errors import LabError
from .lab.connection import explain
from .lab.server import LAB_URL_ENV, USER_URL_ENV, find_or_start, stop_on_signals

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FIRST_LESSON = "00_getting_started.ipynb"
# overrides.json: JupyterLab's defaults for the lab (no "Jupyter news?" pop-up, no update check).
JUPYTER_SETTINGS = NOTEBOOKS.parent / "jupyter-settings"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) that says where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give a number from 1 to 65535")
    return int(text)


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number from {low} to {high}")
        return int(text)

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="redai-lab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="a throwaway Redis plus JupyterLab on notebooks/")
    start.add_argument("--no-browser", action="store_true", help="do not open a browser")
    start.add_argument("--port", type=_port, default=8888, help="JupyterLab's port (default 8888)")
    start.set_defaults(run=run_start)

    server = commands.add_parser("server", help="run a throwaway Redis until Ctrl-C and print its URL")
    server.set_defaults(run=run_server)

    sentinel = commands.add_parser(
        "sentinel", help="run a primary with replicas and Sentinels on loopback until Ctrl-C"
    )
    sentinel.add_argument("--replicas", type=_count(0, 5), default=2, help="replicas of the primary (default 2)")
    sentinel.add_argument("--sentinels", type=_count(1, 7), default=3, help="Sentinels (default 3)")
    sentinel.set_defaults(run=run_sentinel)

    cluster = commands.add_parser("cluster", help="run a Redis Cluster on loopback until Ctrl-C")
    cluster.add_argument("--primaries", type=_count(1, 9), default=3, help="primaries (default 3)")
    cluster.add_argument("--replicas", type=_count(0, 3), default=1, help="replicas per primary (default 1)")
    cluster.set_defaults(run=run_cluster)

    info = commands.add_parser("info", help="describe the server the lab would use")
    info.set_defaults(run=run_info)

    bench = commands.add_parser("bench", help="run a benchmark headless, print its table, optionally save it")
    bench.add_argument("benchmark", choices=BENCHMARK_NAMES, help="what to measure")
    bench.add_argument(
        "--quick", action="store_true",
        help="seconds instead of minutes, as in CI (default: $REDAI_LAB_BENCH_SCALE, else full)",
    )
    bench.add_argument("--out", metavar="FILE", help="also write the results to FILE (.csv or .json)")
    bench.set_defaults(run=run_bench)

    compat = commands.add_parser(
        "compat", help="build the compatibility matrix from test runs on each server (what `./lab compat` calls)"
    )
    compat.add_argument("runs", type=Path, help="folder with one NAME/junit.xml and NAME/gaps.jsonl per server")
    action = compat.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write docs/compatibility.* and the README's table")
    action.add_argument("--check", action="store_true", help="fail when the committed matrix says otherwise")
    compat.set_defaults(run=run_compat)

    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:  # Ctrl-C at any moment, not only while a command waits for it
        return 128 + signal.SIGINT
    except LabError as exc:
        print(f"redai-lab: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:  # permissions, a server that went away mid-run, ...
        print(f"redai-lab: {explain(exc, _server_url())}", file=sys.stderr)
        return 2


def _server_url() -> str:
    """The URL the command was using, for messages (the lab's own server when none was given)."""
    return os.environ.get(LAB_URL_ENV) or os.environ.get(USER_URL_ENV) or "the lab's throwaway server"


def run_start(args: argparse.Namespace) -> int:
    with stop_on_signals(), find_or_start() as server:
        print(f"redai-lab: {server.describe()}", flush=True)
        env = dict(os.environ)
        if server.throwaway:
            env[LAB_URL_ENV] = server.url  # kernels inherit it; lessons use this server
        token = secrets.token_hex(24)
        command = [
            sys.executable, "-m", "jupyter", "lab",
            f"--notebook-dir={NOTEBOOKS}", f"--port={args.port}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.default_url=/lab/tree/{FIRST_LESSON}", f"--IdentityProvider.token={token}",
            f"--LabApp.app_settings_dir={JUPYTER_SETTINGS}",
        ]
        if args.no_browser:
            command.append("--no-browser")
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI machines run as root
            command.append("--allow-root")
        jupyter = subprocess.Popen(command, env=env)
        # JupyterLab's own URLs open the launcher; this one opens the first lesson.
        print(f"redai-lab: open http://127.0.0.1:{args.port}/lab/tree/{FIRST_LESSON}?token={token}", flush=True)
        # Ctrl-C belongs to JupyterLab (it asks to confirm); the server stops when it exits.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return jupyter.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
            if jupyter.poll() is None:
                jupyter.terminate()
                jupyter.wait()


def run_server(args: argparse.Namespace) -> int:
    with stop_on_signals(), find_or_start() as server:
        print(server.describe())
        if server.throwaway:
            print(f"export {LAB_URL_ENV}={server.url}")
        _wait_for_ctrl_c()
    return 0


def run_sentinel(args: argparse.Namespace) -> int:
    from .lab.topology import start_sentinel_topology

    with stop_on_signals(), start_sentinel_topology(args.replicas, args.sentinels) as topology:
        assert topology.primary is not None
        print(f"{topology.primary.product}: a primary, {args.replicas} replicas and {args.sentinels} "
              f"Sentinels watching service {topology.service_name!r}")
        for role, servers in (("primary", [topology.primary]), ("replica", topology.replicas),
                              ("sentinel", topology.sentinels)):
            for server in servers:
                print(f"{role:8} {server.url}")
        sentinels = ",".join(f"{host}:{port}" for host, port in topology.sentinel_addresses())
        print(f"export {SENTINELS_ENV}={sentinels}")
        _wait_for_ctrl_c()
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    from .lab.topology import start_cluster

    with stop_on_signals(), start_cluster(args.primaries, args.replicas) as cluster:
        total = args.primaries * (1 + args.replicas)
        print(f"{cluster.nodes[0].product}: a Cluster of {total} nodes, {args.primaries} primaries "
              f"with {args.replicas} replica(s) each")
        for index, node in enumerate(cluster.nodes):
            print(f"{'primary' if index < args.primaries else 'replica':8} {node.url}")
        print(f"export {CLUSTER_URL_ENV}={cluster.nodes[0].url}")
        _wait_for_ctrl_c()
    return 0


SENTINELS_ENV = "REDAI_LAB_SENTINELS"  # host:port,host:port,... for redis.Sentinel
CLUSTER_URL_ENV = "REDAI_LAB_CLUSTER_URL"  # any node: redis.RedisCluster.from_url finds the rest


def _wait_for_ctrl_c() -> None:
    print("Ctrl-C stops it.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def run_info(args: argparse.Namespace) -> int:
    with find_or_start() as server:
        print(server.describe())
    return 0


BENCHMARK_NAMES = ("pipeline", "scan", "pool", "patterns")  # redai_lab.bench.benchmarks.BENCHMARKS, imported lazily


def run_bench(args: argparse.Namespace) -> int:
    from .bench import benchmarks, harness  # pandas and numpy load only when benchmarking

    scale = "quick" if args.quick else harness.scale_from_env(default="full")
    out = _writable(harness.check_format(args.out)) if args.out else None  # fails before measuring
    with stop_on_signals(), find_or_start() as server:
        lesson = benchmarks.bench_database(server)
        try:
            frame = benchmarks.run_benchmark(args.benchmark, lesson, scale)
        finally:
            # Best effort: when the server died mid-run, its error is the one to report.
            with contextlib.suppress(redis.RedisError):
                lesson.finish()
            lesson.client.close()
    env = frame.attrs["environment"]
    print(
        f"{args.benchmark} ({scale}): Redis {env['redis_server']}, redis-py {env['redis_py']} "
        f"(parser {env['parser']}), {env['transport']}, {env['cpu_count']} CPUs"
    )
    print(frame.to_string(index=False, float_format="{:,.1f}".format))
    if out is not None:
        print(f"wrote {harness.save(frame, out)}")
    return 0


def run_compat(args: argparse.Namespace) -> int:
    from .lab import compat

    matrix = compat.build(args.runs)
    if args.write:
        for path in compat.write(matrix):
            print(f"wrote {path}")
        return 0
    differences, notes = compat.check(matrix, compat.load_committed())
    for note in notes:
        print(f"redai-lab compat: {note}")
    if differences:
        print("redai-lab compat: the committed compatibility matrix is out of date (run `./lab compat` and "
              "commit docs/ and README.md): " + "; ".join(differences), file=sys.stderr)
        return 1
    print("redai-lab compat: the committed matrix matches these runs")
    return 0


def _writable(out: Path) -> Path:
    """``out`` when the results can be written there; a one-line BenchError otherwise."""
    from .bench.harness import BenchError

    if out.is_dir():
        raise BenchError(f"Cannot write {out}: it is a folder; name a file in it, e.g. {out / 'results.json'}.")
    if not out.parent.is_dir():
        raise BenchError(f"Cannot write {out}: the folder {out.parent} does not exist; create it first.")
    if not os.access(out if out.exists() else out.parent, os.W_OK):
        raise BenchError(f"Cannot write {out}: permission denied; choose a path you can write to.")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
