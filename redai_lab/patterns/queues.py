"""Work queues on Redis: a reliable list queue, and Celery configured for Redis.

``LPUSH`` + ``BRPOP`` (the seed's queue) hands a task to a consumer and forgets it: a consumer
that dies after the pop takes the task with it. ``ReliableQueue`` moves the task atomically
into the consumer's own *processing* list instead (``BLMOVE``), removes it when the consumer
acknowledges it (``LREM``), and lets anyone ``reap()`` the processing lists of consumers whose
heartbeat key has expired, putting their tasks back at the head of the queue. Delivery is
at least once: a task whose consumer is presumed dead may run twice, never zero times, so
handlers must be idempotent.

A lost connection loses no task and strands none: ``work()`` reconnects, first handles what its
own processing list holds (a ``BLMOVE`` that ran although its reply was lost), repeats an ack
whose reply was lost, and never exits on a connection error while the server answers again
within ``reconnect_within``. A task runs twice only after an ack that was lost or came too late
(its consumer looked dead); ``ReliableQueue.stats`` counts those acks.

``make_celery`` builds a Celery 5 app with Redis as broker and result backend, configured with
the lowercase setting names (the seed's uppercase ones are partly ignored, see lesson 20). The
lessons' tasks and worker process are in ``redai_lab.celery_demo``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from celery import Celery  # type: ignore[import-untyped]

from ..errors import redact
from .cache import hash_tag

# A dead consumer's tasks go back to the *right* end of the pending list, where consumers take
# from, oldest first; the whole move is atomic and only happens if the heartbeat is gone.
_REAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
"""


# A connection lost (or never made): work() reconnects and goes on.
_LOST = (redis.ConnectionError, redis.TimeoutError)


@dataclass
class ConsumerStats:
    """What one consumer's ``work()`` went through. Only a task counted in ``lost_acks`` or
    ``late_acks`` (or found held at start, from an earlier run under the same name) can run twice."""

    connection_errors: int = 0
    """Connection losses survived."""
    recovered: int = 0
    """Tasks found in this consumer's processing list and handled: moved there by a claim whose
    reply was lost (or repeated by a retrying client), or left by an earlier run of this consumer."""
    lost_acks: int = 0
    """Acks whose reply was lost; repeated until answered."""
    late_acks: int = 0
    """Acks that found the task gone: a reaper had requeued it (this consumer looked dead)."""


class ReliableQueue:
    """A FIFO queue on Redis lists where no task is lost when a consumer dies.

    Keys (all prefixed with ``name``): ``:pending`` (list, producers ``LPUSH``, consumers take
    from the right), ``:processing:<consumer>`` (list, the tasks a consumer holds),
    ``:alive:<consumer>`` (the heartbeat, a string with a TTL) and ``:consumers`` (set of the
    consumers that may hold tasks, so ``reap`` needs no ``SCAN``). On Redis Cluster every key must
    live in one slot (``BLMOVE`` and the reap script move tasks between them): with a
    ``redis.RedisCluster`` client, a name without a hash tag is put in one (``"jobs"`` ->
    ``{jobs}:pending``...); a name with a tag (``"{jobs}"``, ``"app:{jobs}"``) is used as is
    everywhere. (So give a queue used from both kinds of client a tagged name.)

    One instance is one consumer: it handles one task at a time (``work``, or ``claim`` then
    ``ack``) and calls ``heartbeat`` during tasks that may outlast ``heartbeat_ttl``. Two live
    instances must not share a consumer name. ``stats`` counts what ``work`` survived.
    """

    def __init__(
        self, client: redis.Redis, name: str, *, consumer: str | None = None, heartbeat_ttl: float = 10.0
    ) -> None:
        if not name:
            raise ValueError("ReliableQueue needs a non-empty name, e.g. ReliableQueue(r, '20_queues:jobs').")
        if heartbeat_ttl <= 0:
            raise ValueError(f"heartbeat_ttl must be > 0 seconds, got {heartbeat_ttl!r}.")
        self.client = client
        self.name = name
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.heartbeat_ttl = heartbeat_ttl
        self.prefix = f"{{{name}}}" if isinstance(client, redis.RedisCluster) and hash_tag(name) is None else name
        self.pending = f"{self.prefix}:pending"
        self.consumers = f"{self.prefix}:consumers"
        self.processing = self.processing_key(self.consumer)
        self.stats = ConsumerStats()
        self._reap = client.register_script(_REAP)

    def processing_key(self, consumer: str) -> str:
        return f"{self.prefix}:processing:{consumer}"

    def alive_key(self, consumer: str) -> str:
        return f"{self.prefix}:alive:{consumer}"

    def push(self, *tasks: str) -> int:
        """Enqueue ``tasks`` (first one out first); return the queue's length. One round trip."""
        if not tasks:
            raise ValueError("push() needs at least one task.")
        return int(self.client.lpush(self.pending, *tasks))

    def claim(self, block: float | None = None) -> str | None:
        """Take the oldest task into this consumer's processing list, or None if there is none.

        ``block`` waits up to that many seconds for a task (``BLMOVE``); it must be shorter than
        the heartbeat TTL (else the consumer looks dead while it waits) and than the client's
        socket timeout (else the client gives up on a reply that may carry a task). One round
        trip: the heartbeat and the move go in one pipeline, and after a wait the heartbeat again.

        When the connection is lost before the reply (``redis.ConnectionError``, or
        ``OutcomeUnknownError`` from ``connect()``'s client), the move may have happened: the task
        is then in ``held()``. ``work()`` looks there itself.
        """
        if block is not None:
            self._check_block(block)
        pipe = self.client.pipeline(transaction=False)
        self._beat(pipe)
        if block is None:
            pipe.lmove(self.pending, self.processing, "RIGHT", "LEFT")
        else:
            pipe.blmove(self.pending, self.processing, block, "RIGHT", "LEFT")  # type: ignore[arg-type]
            # A task that came at the end of the wait gets a full heartbeat_ttl, not what is left.
            self._beat(pipe)
        task: str | None = pipe.execute()[2]
        return task

    def ack(self, task: str) -> bool:
        """Mark ``task`` done. False when it was no longer held (a reaper took it: it may run again).

        After a lost reply, repeating the ack is safe (it removes this consumer's copy, or finds
        it gone); ``work()`` does, and counts it in ``stats.lost_acks``.
        """
        return bool(self.client.lrem(self.processing, 1, task))

    def held(self) -> list[str]:
        """The tasks in this consumer's processing list, oldest first. One round trip."""
        newest_first = cast("list[str]", self.client.lrange(self.processing, 0, -1))
        return newest_first[::-1]

    def work(
        self,
        handle: Callable[[str], object],
        *,
        block: float = 1.0,
        until: Callable[[], bool] | None = None,
        reconnect_within: float = 30.0,
    ) -> int:
        """Claim, ``handle`` and ack tasks one by one; return how many were handled.

        Whenever the queue is idle, reap dead consumers, then return if ``until()`` is true
        (default: when no task is pending or held by anyone). A handler that raises leaves its
        task held: the exception propagates, and the task returns to the queue once this
        consumer's heartbeat expires (or on ``release()``).

        A lost connection is survived: this consumer reconnects (with backoff) and goes on; it
        raises the connection error only when no round trip succeeded for ``reconnect_within``
        seconds. Tasks found in its own processing list (at start, after a lost connection and
        whenever idle) are handled before the next claim; an ack whose reply was lost is repeated
        until answered. Both are counted in ``stats``.
        """
        self._check_block(block)
        if not reconnect_within > 0:
            raise ValueError(f"reconnect_within must be > 0 seconds, got {reconnect_within!r}.")
        handled = 0
        held: list[str] | None = None  # None: read the processing list before the next claim
        unacked: str | None = None  # handled, but the reply to its ack was lost
        check_idle = False  # after a lost connection: is the work done? (every claim may be cut)
        failing_since: float | None = None
        failures = 0

        def survive(error: Exception) -> None:
            nonlocal held, check_idle, failing_since, failures
            self.stats.connection_errors += 1
            held, check_idle = None, True  # a claim whose reply was lost may have moved a task there
            failures += 1
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since > reconnect_within:
                raise error
            time.sleep(min(1.0, 0.05 * 2 ** min(failures, 5)))

        while True:
            try:
                if unacked is not None:
                    self.ack(unacked)  # done either way: removed now, or gone already
                    unacked = None
                if held is None:
                    held = self._beat_and_read_held()
                failing_since, failures = None, 0  # the server answers
                if held:
                    task: str | None = held.pop(0)
                    self.stats.recovered += 1
                else:
                    task = None if check_idle else self.claim(block=block)
                if task is None:
                    held, check_idle = None, False  # a client that repeated a claim may have stranded a task
                    self.reap()
                    if until() if until else not any(self.depth().values()):
                        return handled
                    continue
            except _LOST as error:
                survive(error)
                continue
            handle(task)
            handled += 1
            try:
                if not self.ack(task):
                    self.stats.late_acks += 1
            except _LOST as error:
                self.stats.lost_acks += 1
                unacked = task
                survive(error)

    def heartbeat(self) -> None:
        """Tell reapers this consumer is alive for another ``heartbeat_ttl`` seconds."""
        pipe = self.client.pipeline(transaction=False)
        self._beat(pipe)
        pipe.execute()

    def release(self) -> int:
        """Give this consumer's unfinished tasks back to the queue (clean shutdown); return how many."""
        self.client.delete(self.alive_key(self.consumer))
        return max(0, self._reap_one(self.consumer))

    def reap(self) -> dict[str, int]:
        """Requeue the tasks of every consumer whose heartbeat expired; return {consumer: tasks}.

        Two round trips when every consumer is alive, plus one per dead consumer.
        """
        consumers = self._registered()
        if not consumers:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for consumer in consumers:
            pipe.exists(self.alive_key(consumer))
        alive = pipe.execute()
        reaped: dict[str, int] = {}
        for consumer, is_alive in zip(consumers, alive):
            # The script checks the heartbeat again: it may have come back since.
            if not is_alive and (moved := self._reap_one(consumer)) >= 0:
                reaped[consumer] = moved
        return reaped

    def depth(self) -> dict[str, int]:
        """Tasks waiting and tasks held by consumers (what a dashboard should show)."""
        consumers = self._registered()
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.pending)
        for consumer in consumers:
            pipe.llen(self.processing_key(consumer))
        pending, *held = pipe.execute()
        return {"pending": int(pending), "processing": int(sum(held))}

    def _registered(self) -> list[str]:
        # Consumer names build key names: decode them even for a client without decode_responses.
        members = self.client.smembers(self.consumers)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    def _beat_and_read_held(self) -> list[str]:
        # The heartbeat first: after an outage longer than heartbeat_ttl, a reaper must not take
        # these tasks away while this consumer handles them.
        pipe = self.client.pipeline(transaction=False)
        self._beat(pipe)
        pipe.lrange(self.processing, 0, -1)
        newest_first = cast("list[str]", pipe.execute()[2])
        return newest_first[::-1]

    def _beat(self, pipe: Any) -> None:
        pipe.set(self.alive_key(self.consumer), 1, px=int(self.heartbeat_ttl * 1000))
        pipe.sadd(self.consumers, self.consumer)

    def _reap_one(self, consumer: str) -> int:
        keys = [self.alive_key(consumer), self.processing_key(consumer), self.pending, self.consumers]
        return int(self._reap(keys=keys, args=[consumer]))

    def _check_block(self, block: float) -> None:
        client: Any = self.client
        kwargs = client.get_connection_kwargs() if isinstance(client, redis.RedisCluster) \
            else client.connection_pool.connection_kwargs
        socket_timeout = kwargs.get("socket_timeout")
        if block <= 0:
            raise ValueError(f"block must be > 0 seconds (or None for no wait), got {block!r}.")
        if block >= self.heartbeat_ttl:
            raise ValueError(
                f"block={block}s must be shorter than heartbeat_ttl={self.heartbeat_ttl}s, "
                f"or a waiting consumer looks dead to reapers."
            )
        if socket_timeout is not None and block >= socket_timeout:
            raise ValueError(
                f"block={block}s must be shorter than the client's socket_timeout={socket_timeout}s, "
                f"or the client abandons a reply that may carry a task."
            )


# --- Celery -----------------------------------------------------------------------------------

def celery_config(
    url: str,
    *,
    visibility_timeout: float = 3600,
    result_expires: int = 3600,
    transport_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Celery 5 settings (lowercase names) for Redis as broker and result backend at ``url``.

    ``visibility_timeout`` is how long a delivered but unacknowledged task waits before it is
    given to another worker: longer than the longest task *and* the longest countdown/ETA.
    """
    return {
        "broker_url": url,
        "result_backend": url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": result_expires,
        "broker_pool_limit": 10,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility_timeout, **(transport_options or {})},
        # Acknowledge after the task ran, so a worker killed mid-task does not lose it...
        "task_acks_late": True,
        # ...and reserve one task at a time, so a dead worker strands one task, not a batch.
        "worker_prefetch_multiplier": 1,
        # With acks_late a task survives a lost connection: cancel it rather than run it twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "redis_max_connections": 50,
    }


def make_celery(url: str, *, main: str = "redai_lab", **options: Any) -> Celery:
    """A Celery app on Redis at ``url`` configured by ``celery_config(url, **options)``."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"make_celery needs a Redis URL (redis://host:port/db, rediss://, unix://), got {redact(url)!r}.")
    app = Celery(main)
    app.config_from_object(celery_config(url, **options))
    return app
