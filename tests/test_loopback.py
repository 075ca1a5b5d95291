"""The lab's throwaway server listens on the loopback address only, as the kernel sees it.

``test_server.py`` reads ``CONFIG GET bind`` from the server itself; this reads the kernel's
table of listening sockets (Linux's ``/proc/net/tcp*``), so a server that says one thing and
binds another, or a bind left out (Redis then listens on every address), fails here too. No
packet leaves the machine: the check only reads a file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from redai_lab.lab import server as lab

LISTEN = "0A"  # the state column of a listening TCP socket


def listening_addresses(port: int) -> list[str]:
    """The local addresses (hex, as the kernel prints them) of sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.rsplit(":", 1)
            if state == LISTEN and int(hexport, 16) == port:
                found.append(address)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/net/tcp")
def test_a_throwaway_server_listens_on_127_0_0_1_and_nowhere_else() -> None:
    with lab.start_local(modules=[]) as server:
        port = urlparse(server.url).port
        assert port is not None
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, little-endian; no 0.0.0.0, no ::


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/net/tcp")
def test_the_test_sessions_own_server_listens_on_loopback_only(lab_server: lab.RedisServer) -> None:
    if lab_server.kind != "local":
        pytest.skip(f"the session's server is {lab_server.kind}, not a local process")
    port = urlparse(lab_server.url).port
    assert port is not None
    assert listening_addresses(port) == ["0100007F"]
