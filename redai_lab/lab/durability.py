"""What a crash loses: acknowledged writes counted after a real kill, for each persistence setting.

A trial starts a throwaway server (``server.start_local``) on a data directory of its own with one
persistence setting, has a client send ``INCR`` after ``INCR`` (each one acknowledged before the
next), kills the server with SIGKILL while the client writes, restarts a server on the same data
directory and reads the counter back: every acknowledged write the restarted server does not
have is lost. Two kinds of crash:

- ``PROCESS_CRASH``: a plain SIGKILL. The kernel's page cache survives the process, so whatever
  Redis wrote to its files survives, fsynced or not.
- ``POWER_LOSS``: the same SIGKILL of a server run under ``powerloss.c`` (an ``LD_PRELOAD`` shim,
  compiled here on first use with the system C compiler): writes to the data directory stay in the
  server's own memory until ``fsync``/``fdatasync``, so the kill loses exactly what losing the
  machine loses. The C file says what the model covers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from ..errors import LabError
from .server import RedisServer, ServerBinary, start_local

SHIM_SOURCE = Path(__file__).with_name("powerloss.c")
# The directory whose files the shim watches (read by powerloss.c).
WATCHED_DIR_ENV = "REDAI_LAB_POWERLOSS_DIR"
CACHE_ENV = "REDAI_LAB_CACHE"  # where the compiled shim goes; default ~/.cache/redai-lab
COUNTER = "durability:counter"

PROCESS_CRASH = "process crash"
POWER_LOSS = "power loss"
CRASHES = (PROCESS_CRASH, POWER_LOSS)


class PowerLossUnavailableError(LabError):
    """Power loss cannot be simulated here: not Linux, or no C compiler to build the shim."""


@dataclass(frozen=True)
class Persistence:
    """A persistence setting: its name in tables, and the ``redis-server`` arguments that make it."""

    name: str
    config: tuple[str, ...]
    # A trial of this setting writes for at least this long: everysec fsyncs once a second, and a
    # shorter run would only show it losing everything, as "no" does.
    min_seconds: float = 0.0


# Redis's default snapshot points: none of them fires within a trial of a few seconds.
DEFAULT_SAVE_POINTS = "3600 1 300 100 60 10000"
RDB_ONLY = Persistence("RDB only", ("--appendonly", "no", "--save", DEFAULT_SAVE_POINTS))
AOF_NO = Persistence("AOF appendfsync no", ("--appendonly", "yes", "--appendfsync", "no"))
AOF_EVERYSEC = Persistence(
    "AOF appendfsync everysec", ("--appendonly", "yes", "--appendfsync", "everysec"), min_seconds=1.5
)
AOF_ALWAYS = Persistence("AOF appendfsync always", ("--appendonly", "yes", "--appendfsync", "always"))
SETTINGS = (RDB_ONLY, AOF_NO, AOF_EVERYSEC, AOF_ALWAYS)


def cache_dir() -> Path:
    """Where the lab keeps what it builds: ``REDAI_LAB_CACHE``, else ``~/.cache/redai-lab``."""
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "redai-lab"


def powerloss_shim() -> Path:
    """The compiled shim, built from ``powerloss.c`` with the system C compiler on first use.

    The file is named after a hash of the source, so an edited source is built anew. Raises a
    one-line ``PowerLossUnavailableError`` when no compiler is here, or off Linux (the shim needs
    ``LD_PRELOAD`` and ``/proc/self/fd``).
    """
    if not sys.platform.startswith("linux"):
        raise PowerLossUnavailableError(
            f"Simulating a power loss needs Linux (LD_PRELOAD, /proc), not {sys.platform}: "
            "run the lab in a Linux container or VM; process crashes run anywhere."
        )
    source = SHIM_SOURCE.read_bytes()
    target = cache_dir() / f"powerloss-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.is_file():
        return target
    wanted = os.environ.get("CC")  # a compiler the user chose, else the system's
    compiler = shutil.which(wanted) if wanted else shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        missing = f"CC={wanted} is not a program on PATH" if wanted else "No C compiler (cc) here"
        raise PowerLossUnavailableError(
            f"{missing} to build the power-loss shim: install one (`apt install gcc`) or fix CC; "
            "process crashes need none."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_suffix(f".{os.getpid()}.tmp")
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(building), str(SHIM_SOURCE), "-ldl", "-pthread"]
    built = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        building.unlink(missing_ok=True)
        first = (built.stderr.strip().splitlines() or ["no message"])[0]
        raise PowerLossUnavailableError(f"{compiler} could not build {SHIM_SOURCE.name}: {first}")
    os.replace(building, target)  # atomic: a parallel build never leaves half a library in place
    return target


def powerloss_env(data_dir: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process whose writes under ``data_dir`` last only once fsynced."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(powerloss_shim()), env.get("LD_PRELOAD", "")]))
    env[WATCHED_DIR_ENV] = data_dir
    return env


@dataclass(frozen=True)
class Trial:
    """One kill: how many INCRs were acknowledged before it, how many a restart found."""

    setting: str
    crash: str
    acknowledged: int
    recovered: int
    seconds: float  # from the first INCR to the last acknowledgement

    @property
    def lost(self) -> int:
        """Acknowledged writes the restarted server does not have. (The write in flight at the
        kill may survive without having been acknowledged: then ``recovered`` is one more.)"""
        return max(0, self.acknowledged - self.recovered)

    @property
    def writes_per_second(self) -> float:
        return self.acknowledged / self.seconds if self.seconds > 0 else 0.0


def process_id(server: RedisServer) -> int:
    """The server's pid, as the server itself reports it."""
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def start_server(
    config: Iterable[str], data_dir: str, *, crash: str = PROCESS_CRASH, binary: ServerBinary | None = None
) -> RedisServer:
    """A throwaway server (no modules: it starts faster) persisting to ``data_dir`` with ``config``
    (``redis-server`` arguments); with ``crash=POWER_LOSS``, under the shim, so that a kill loses
    what was never fsynced."""
    if crash not in CRASHES:
        raise ValueError(f"crash must be one of {', '.join(CRASHES)}, got {crash!r}.")
    env = powerloss_env(data_dir) if crash == POWER_LOSS else None
    return start_local(binary, modules=[], data_dir=data_dir, config=list(config), env=env)


def kill(server: RedisServer) -> None:
    """SIGKILL the server: no shutdown, no last fsync, no save."""
    os.kill(process_id(server), signal.SIGKILL)
    server.stop()  # reaps the process and removes its working directory (not the data directory)


def write_until_killed(server: RedisServer, seconds: float) -> tuple[int, float]:
    """INCR ``COUNTER`` one acknowledged write after another, SIGKILL the server after ``seconds``;
    return the last acknowledged value and the seconds from the first INCR to it."""
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    acknowledged = [0, 0.0]  # value, time of its acknowledgement
    started = threading.Event()

    def write() -> None:
        try:
            client.ping()  # connected before the clock starts
            start = time.perf_counter()
            started.set()
            while True:
                value = client.incr(COUNTER)
                acknowledged[:] = [value, time.perf_counter() - start]
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # the server died: the loop ends with its last acknowledged write
        finally:
            started.set()

    writer = threading.Thread(target=write, name="durability-writer", daemon=True)
    writer.start()
    started.wait(10)
    time.sleep(seconds)
    kill(server)
    writer.join(10)
    client.close()
    return int(acknowledged[0]), float(acknowledged[1])


def read_counter(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url, socket_timeout=10)
    try:
        return int(client.get(COUNTER) or 0)
    finally:
        client.close()


def run_trial(
    setting: Persistence, crash: str, *, seconds: float = 1.0, binary: ServerBinary | None = None
) -> Trial:
    """Write for ``seconds`` (at least the setting's ``min_seconds``), kill the server the way
    ``crash`` says, restart it, count the loss."""
    data_dir = tempfile.mkdtemp(prefix="redai-lab-durability-")
    try:
        server = start_server(setting.config, data_dir, crash=crash, binary=binary)
        try:
            acknowledged, elapsed = write_until_killed(server, max(seconds, setting.min_seconds))
        finally:
            server.stop()
        with start_server(setting.config, data_dir, binary=binary) as restarted:
            recovered = read_counter(restarted)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return Trial(setting.name, crash, acknowledged, recovered, elapsed)


def run_experiment(
    settings: Iterable[Persistence] = SETTINGS,
    crashes: Iterable[str] = CRASHES,
    *,
    kills: int = 2,
    seconds: float = 1.0,
    binary: ServerBinary | None = None,
) -> list[Trial]:
    """``kills`` trials of every setting under every kind of crash. The kinds of crash of one
    setting run side by side (two servers, two writers: half the time), and the settings take
    turns round by round, so that a slow moment of the machine hits them all alike."""
    settings, crashes = tuple(settings), tuple(crashes)
    trials = []
    with ThreadPoolExecutor(max_workers=len(crashes), thread_name_prefix="durability-trial") as pool:
        for _round in range(kills):
            for setting in settings:
                trials += pool.map(partial(run_trial, setting, seconds=seconds, binary=binary), crashes)
    return trials


def summary(trials: Iterable[Trial]) -> list[dict[str, object]]:
    """One row per (setting, crash): the writes lost at each kill, acknowledged and lost in total,
    and the median write rate; in the order the trials came."""
    groups: dict[tuple[str, str], list[Trial]] = {}
    for trial in trials:
        groups.setdefault((trial.setting, trial.crash), []).append(trial)
    return [
        {
            "setting": setting,
            "crash": crash,
            "lost at each kill": [t.lost for t in group],
            "acknowledged": sum(t.acknowledged for t in group),
            "lost": sum(t.lost for t in group),
            "writes/s (median)": statistics.median(t.writes_per_second for t in group),
        }
        for (setting, crash), group in groups.items()
    ]
