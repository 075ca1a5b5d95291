"""The session's local Cluster (``cluster_too`` modules) leaves no server process behind."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_test_session_on_the_cluster_stops_every_node_it_started() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_ratelimit.py",
         "-k", "test_works_with_bytes_replies and cluster and FixedWindow"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert finished.returncode == 0, finished.stdout[-2000:]
    match = re.search(r"local Cluster ports: ([\d ]+)", finished.stdout)
    assert match, finished.stdout[-2000:]
    ports = [int(port) for port in match.group(1).split()]
    assert len(ports) == 6
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"a node still listens on {port}"
    left = [line for line in _command_lines() if "redis" in line and any(f":{port}" in line or f" {port}" in line
                                                                         for port in ports)]
    assert left == []


def _command_lines() -> list[str]:
    """Every process's command line (Linux /proc)."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return lines


def test_connect_cluster_errors_are_one_line(lab_server) -> None:
    from redai_lab.errors import LabConnectionError
    from redai_lab.lab.connection import connect_cluster

    for url, expected in [(lab_server.url, "not in cluster mode"), ("redis://127.0.0.1:1/0", "Cannot reach Redis"),
                          ("http://x", "Not a Redis URL")]:
        try:
            connect_cluster(url)
        except LabConnectionError as error:
            assert expected in str(error) and "\n" not in str(error)
        else:
            raise AssertionError(f"connect_cluster({url!r}) did not fail")
