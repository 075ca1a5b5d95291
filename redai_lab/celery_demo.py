"""The lessons' Celery demo: tasks, a real ``celery worker`` process, and its ``-A`` module.

``demo_app(url)`` is ``make_celery`` plus the lessons' tasks; ``start_worker(url)`` runs
``celery -A redai_lab.celery_demo worker`` on them in a process of its own, with the broker URL
in ``REDAI_LAB_CELERY_URL``, from which this module builds that worker's ``app``.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from celery import Celery, Task  # type: ignore[import-untyped]

from .errors import LabError
from .lab.connection import connect
from .lab.server import popen_tied_to_process
from .patterns.queues import make_celery

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

CELERY_URL_ENV = "REDAI_LAB_CELERY_URL"
# Celery reads these environment variables *before* its configuration: they would silently
# point a worker elsewhere, so the lab's worker never inherits them.
CELERY_ENV_OVERRIDES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_BROKER_READ_URL",
                        "CELERY_BROKER_WRITE_URL")


def demo_app(url: str) -> Celery:
    """The lesson's app: small timeouts so that a killed worker's task returns in seconds.

    Tasks: ``demo.add(x, y)``; ``demo.flaky(failures)``, which fails and retries (1 s
    countdown) ``failures`` times, then returns its retry count; ``demo.slow(key, seconds)``,
    which appends the worker's name to ``<key>:started``, sleeps, then to ``<key>:done``;
    ``demo.slow_early_ack``, the same acknowledged as it starts (Celery's default), not after.
    """
    app = make_celery(
        url,
        main="redai_lab.demo",
        visibility_timeout=3,
        result_expires=600,
        # kombu looks for expired deliveries every 10 s, acting on one look in 10: every second here.
        # Each look holds a lock (`unacked_mutex`) that outlives a worker killed during it, and
        # stops every other worker's looks, for 300 s by default: 1 s here.
        transport_options={
            "unacked_restore_interval": 1, "unacked_restore_throttle": 1, "unacked_mutex_expire": 1,
        },
    )
    # No remote control (`celery inspect`, `control`): the lesson's workers need no broadcast channel.
    app.conf.worker_enable_remote_control = False

    @functools.cache
    def client() -> redis.Redis:  # connected on first use, in the worker
        return connect(url)

    @app.task(name="demo.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="demo.flaky", bind=True, max_retries=5, shared=False)
    def flaky(self: Task, failures: int) -> int:
        if self.request.retries < failures:
            raise self.retry(exc=ConnectionError("upstream unavailable"), countdown=1)
        return int(self.request.retries)

    def slow(self: Task, key: str, seconds: float) -> str:
        worker = str(self.request.hostname)
        client().rpush(f"{key}:started", worker)
        time.sleep(seconds)
        client().rpush(f"{key}:done", worker)
        return worker

    app.task(name="demo.slow", bind=True, shared=False)(slow)
    # Celery's default: acknowledged as it starts, before it has done anything.
    app.task(name="demo.slow_early_ack", bind=True, shared=False, acks_late=False)(slow)
    return app


class CeleryWorker:
    """A running ``celery worker`` process of ``demo_app``; ``stop()`` it (or use ``with``)."""

    def __init__(self, process: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
        self.process = process
        self.name = name
        self.log_path = log_path
        self._final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the worker wrote so far (banner, log lines, tracebacks); all of it after ``stop()``."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> int:
        """SIGKILL: the worker dies at once, as in a crash or an OOM kill; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait()

    def stop(self, timeout: float = 15) -> int:
        """Warm shutdown (SIGTERM: finish the running task), SIGKILL after ``timeout``; idempotent.

        The log file is removed; ``log()`` keeps returning its text.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._final_log is None:
            self._final_log = self.log()
            self.log_path.unlink(missing_ok=True)
        return int(self.process.returncode)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_worker(
    url: str, *, name: str = "worker", pool: str = "solo", concurrency: int = 1, timeout: float = 30
) -> CeleryWorker:
    """Start ``celery -A redai_lab.celery_demo worker`` on ``url`` and wait until it consumes.

    Its hostname is ``<name>@redai-lab``. Output goes to a temporary log file (``.log()``),
    never to the caller's stdout/stderr.
    """
    if pool not in ("solo", "threads", "prefork"):
        raise ValueError(f"pool must be 'solo', 'threads' or 'prefork', got {pool!r}.")
    env = {key: value for key, value in os.environ.items() if key not in CELERY_ENV_OVERRIDES}
    env[CELERY_URL_ENV] = url
    log_fd, log_name = tempfile.mkstemp(prefix=f"redai-lab-celery-{name}-", suffix=".log")
    hostname = f"{name}@redai-lab"
    process = popen_tied_to_process(  # dies with this process, whichever thread started it
        args=[
            sys.executable, "-m", "celery", "-A", "redai_lab.celery_demo", "worker",
            f"--hostname={hostname}", f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO",
            # No broadcast traffic: the lesson's worker talks to its own queue only.
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )
    os.close(log_fd)
    worker = CeleryWorker(process, hostname, Path(log_name))
    atexit.register(worker.stop)  # a worker never outlives its caller, nor leaves its log behind
    deadline = time.monotonic() + timeout
    while f"{hostname} ready." not in worker.log():
        if process.poll() is not None or time.monotonic() > deadline:
            last = worker.log().strip().splitlines()[-3:]
            worker.stop(timeout=0)
            raise LabError(f"celery worker {hostname} did not start: {' | '.join(last) or 'no output'}")
        time.sleep(0.05)
    return worker


def __getattr__(name: str) -> Celery:
    # `celery -A redai_lab.celery_demo` looks for `app`: built at that look, from the URL
    # start_worker passes, so that importing this module's helpers needs no URL.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if CELERY_URL_ENV not in os.environ:
        raise LabError(f"Set {CELERY_URL_ENV}=redis://host:port/db (redai_lab.celery_demo.start_worker does).")
    app: Celery = demo_app(os.environ[CELERY_URL_ENV])
    globals()["app"] = app  # built once
    return app
