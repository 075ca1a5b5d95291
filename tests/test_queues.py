"""ReliableQueue and the lab's Celery app, against the real server, with real processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from celery.exceptions import ImproperlyConfigured
from topologies import connect_to

from redai_lab.celery_demo import demo_app, start_worker
from redai_lab.errors import LabError
from redai_lab.lab.connection import connect
from redai_lab.lab.faults import ReplyCutter
from redai_lab.lab.roundtrips import RoundTripCounter
from redai_lab.patterns.queues import ReliableQueue, celery_config, make_celery

pytestmark = pytest.mark.cluster_too

# The seed's "Celery Configuration" section, word for word but for the URLs.
SEED_SETTINGS = {
    "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1",
    "CELERY_TASK_SERIALIZER": "json",
    "CELERY_RESULT_SERIALIZER": "json",
    "CELERY_ACCEPT_CONTENT": ["json"],
    "CELERY_RESULT_EXPIRES": 3600,
    "BROKER_POOL_LIMIT": 10,
    "BROKER_CONNECTION_MAX_RETRIES": 10,
    "CELERY_REDIS_MAX_CONNECTIONS": 50,
}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` (a bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- the seed's LPUSH + BRPOP ------------------------------------------------------------------


@pytest.mark.server_only  # the seed queue: a plain client
def test_seed_queue_loses_the_task_of_a_consumer_killed_after_brpop(r: redis.Redis, redis_url: str) -> None:
    r.lpush("queue:tasks", "task-1")
    consumer = (
        "import os, signal, redis\n"
        f"r = redis.Redis.from_url({redis_url!r})\n"
        "print(r.brpop('queue:tasks', timeout=5), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", consumer], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.strip() == "(b'queue:tasks', b'task-1')"  # a (key, value) pair, not the task
    assert r.dbsize() == 0  # nowhere in Redis any more: lost


# --- ReliableQueue -----------------------------------------------------------------------------


@pytest.mark.server_only  # counts one connection's round trips
def test_push_claim_ack_is_fifo_with_one_round_trip_each(redis_url: str, round_trips: RoundTripCounter) -> None:
    q = ReliableQueue(round_trips.client(redis_url), "{jobs}", consumer="c1")
    with round_trips.measure() as push:
        assert q.push("t1", "t2", "t3") == 3
    with round_trips.measure() as claim:
        assert q.claim() == "t1"
    assert q.depth() == {"pending": 2, "processing": 1}
    with round_trips.measure() as ack:
        assert q.ack("t1") is True
    assert [q.claim(block=0.5), q.claim()] == ["t2", "t3"]
    assert (push.count, claim.count, ack.count) == (1, 1, 1)
    assert q.client.lrange("{jobs}:processing:c1", 0, -1) == ["t3", "t2"]
    assert q.client.smembers("{jobs}:consumers") == {"c1"}
    assert 0 < q.client.pttl("{jobs}:alive:c1") <= 10_000


def test_claim_on_an_empty_queue_returns_none(r: redis.Redis) -> None:
    q = ReliableQueue(r, "{jobs}", consumer="c1")
    assert q.claim() is None
    assert q.claim(block=0.1) is None
    assert q.ack("never-claimed") is False


def test_a_name_without_hash_tag_gets_one_on_a_cluster_client(r: redis.Redis, topology: str) -> None:
    q = ReliableQueue(r, "jobs", consumer="c1")
    prefix = "{jobs}" if topology == "cluster" else "jobs"  # one slot for every key of the queue
    assert (q.pending, q.processing, q.alive_key("c1"), q.consumers) == (
        f"{prefix}:pending", f"{prefix}:processing:c1", f"{prefix}:alive:c1", f"{prefix}:consumers")
    q.push("t1")
    assert q.claim() == "t1" and q.ack("t1")


def test_bad_arguments_get_one_line_errors(r: redis.Redis, redis_url: str) -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        ReliableQueue(r, "")
    with pytest.raises(ValueError, match="heartbeat_ttl must be > 0"):
        ReliableQueue(r, "{jobs}", heartbeat_ttl=0)
    q = ReliableQueue(r, "{jobs}", heartbeat_ttl=2)
    with pytest.raises(ValueError, match="block must be > 0"):
        q.claim(block=0)
    with pytest.raises(ValueError, match="shorter than heartbeat_ttl"):
        q.claim(block=2)
    with pytest.raises(ValueError, match="at least one task"):
        q.push()
    impatient = ReliableQueue(connect_to(redis_url, socket_timeout=0.5), "{jobs}", heartbeat_ttl=10)
    with pytest.raises(ValueError, match="socket_timeout=0.5s"):
        impatient.claim(block=1)
    assert r.dbsize() == 0  # refused before touching Redis


def test_reap_requeues_only_dead_consumers_tasks_at_the_head_in_order(r: redis.Redis) -> None:
    dying = ReliableQueue(r, "{jobs}", consumer="dying", heartbeat_ttl=0.2)
    alive = ReliableQueue(r, "{jobs}", consumer="alive", heartbeat_ttl=30)
    alive.push("t1", "t2", "t3", "t4", "t5")
    assert [dying.claim(), dying.claim(), alive.claim()] == ["t1", "t2", "t3"]
    assert alive.reap() == {}  # both heartbeats are fresh
    wait_for(lambda: not r.exists("{jobs}:alive:dying"), "the dying consumer's heartbeat to expire", 10)
    assert alive.reap() == {"dying": 2}
    assert r.lrange("{jobs}:pending", 0, -1) == ["t5", "t4", "t2", "t1"]  # t1 comes out first
    assert r.smembers("{jobs}:consumers") == {"alive"}
    assert r.lrange("{jobs}:processing:alive", 0, -1) == ["t3"]
    assert dying.ack("t1") is False  # too late: it was given back and will run again
    assert alive.reap() == {}


def test_the_reaper_never_takes_from_a_consumer_whose_heartbeat_came_back(r: redis.Redis) -> None:
    """reap() reads the heartbeats, then moves a dead consumer's tasks in a script. A heartbeat
    renewed in between must win: the script checks it again. Run that script as reap() would
    right after it saw the consumer dead, with the heartbeat back meanwhile."""
    back = ReliableQueue(r, "{jobs}", consumer="back", heartbeat_ttl=30)
    back.push("t1", "t2")
    assert back.claim() == "t1"
    reaper = ReliableQueue(r, "{jobs}", consumer="reaper", heartbeat_ttl=30)
    assert reaper._reap_one("back") == -1
    assert r.lrange("{jobs}:processing:back", 0, -1) == ["t1"] and r.lrange("{jobs}:pending", 0, -1) == ["t2"]
    r.delete("{jobs}:alive:back")  # now it is dead: the same script takes its task back
    assert reaper._reap_one("back") == 1 and r.lrange("{jobs}:pending", 0, -1) == ["t2", "t1"]  # t1 first out


def test_a_task_that_comes_late_in_a_blocking_claim_gets_a_full_heartbeat(r: redis.Redis) -> None:
    q = ReliableQueue(r, "{jobs}", consumer="c1", heartbeat_ttl=2)
    threading.Timer(1.2, q.push, args=("t1",)).start()
    assert q.claim(block=1.9) == "t1"
    # Not the 0.8 s the wait left of the TTL: a reaper would requeue a task that just started.
    assert r.pttl("{jobs}:alive:c1") > 1000


def test_a_client_without_decode_responses_works_too(redis_url: str) -> None:
    raw = connect_to(redis_url, decode_responses=False)
    alive, dying = (ReliableQueue(raw, "{jobs}", consumer=name, heartbeat_ttl=ttl) for name, ttl in
                    (("alive", 30), ("dying", 0.1)))
    alive.push("t1", "t2")
    assert dying.claim() == b"t1" and alive.claim() == b"t2"
    wait_for(lambda: not raw.exists("{jobs}:alive:dying"), "the dying consumer's heartbeat to expire", 10)
    assert alive.reap() == {"dying": 1}
    assert alive.depth() == {"pending": 1, "processing": 1}
    raw.close()


@pytest.mark.server_only  # counts one connection's round trips
def test_reap_costs_two_round_trips_when_everyone_is_alive(redis_url: str, round_trips: RoundTripCounter) -> None:
    client = round_trips.client(redis_url)
    for name in ("c1", "c2", "c3"):
        ReliableQueue(client, "{jobs}", consumer=name).heartbeat()
    with round_trips.measure() as trips:
        assert ReliableQueue(client, "{jobs}", consumer="c1").reap() == {}
    assert trips.count == 2


def test_work_handles_everything_then_returns_when_the_queue_is_empty(r: redis.Redis) -> None:
    q = ReliableQueue(r, "{jobs}", consumer="c1")
    q.push("t1", "t2", "t3")
    seen: list[str] = []
    assert q.work(seen.append, block=0.1) == 3
    assert seen == ["t1", "t2", "t3"]
    assert r.keys("{jobs}:p*") == []


def test_a_failing_handler_keeps_its_task_for_redelivery(r: redis.Redis) -> None:
    q = ReliableQueue(r, "{jobs}", consumer="c1")
    q.push("t1", "t2")

    def handle(task: str) -> None:
        raise RuntimeError(f"cannot handle {task}")

    with pytest.raises(RuntimeError, match="cannot handle t1"):
        q.work(handle, block=0.1)
    assert r.lrange("{jobs}:processing:c1", 0, -1) == ["t1"]
    assert q.release() == 1 and r.lrange("{jobs}:pending", 0, -1) == ["t2", "t1"]


def test_release_gives_unfinished_tasks_back(r: redis.Redis) -> None:
    q = ReliableQueue(r, "{jobs}", consumer="c1")
    q.push("t1", "t2", "t3")
    assert [q.claim(), q.claim()] == ["t1", "t2"]
    assert q.release() == 2
    assert r.lrange("{jobs}:pending", 0, -1) == ["t3", "t2", "t1"]
    assert not r.exists("{jobs}:alive:c1", "{jobs}:processing:c1")
    assert r.smembers("{jobs}:consumers") == set()


# --- lost connections: a proxy drops a reply after the server ran the command -------------------


def work_in_thread(q: ReliableQueue, handle: Callable[[str], object], **options: object) -> dict[str, object]:
    """Run ``q.work`` in a thread; fail (not hang) if it has not returned within 30 s."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["handled"] = q.work(handle, **options)  # type: ignore[arg-type]
        except Exception as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        pytest.fail(f"work() is stuck: {q.depth()} tasks pending/held, held by it: {q.held()}")
    return outcome


@pytest.fixture
def cutter(redis_url: str) -> Iterator[ReplyCutter]:
    with ReplyCutter(redis_url) as proxy:
        yield proxy


@pytest.mark.server_only  # a proxy in front of one server
def test_a_claim_whose_reply_was_lost_leaves_the_task_held_and_work_handles_it_once(
    r: redis.Redis, cutter: ReplyCutter
) -> None:
    q = ReliableQueue(connect(cutter.url), "{jobs}", consumer="c1")
    q.push("t1", "t2")
    cutter.cut_next_reply()
    with pytest.raises(redis.ConnectionError, match="may or may not have been applied"):
        q.claim()
    assert q.held() == ["t1"]  # the BLMOVE ran; its reply was lost
    seen: list[str] = []
    assert work_in_thread(q, seen.append, block=0.1) == {"handled": 2}
    assert seen == ["t1", "t2"]
    assert q.stats.recovered == 1 and r.keys("{jobs}:p*") == []


@pytest.mark.server_only  # a proxy in front of one server
def test_work_recovers_a_claim_lost_mid_run_and_repeats_a_lost_ack(r: redis.Redis, cutter: ReplyCutter) -> None:
    q = ReliableQueue(connect(cutter.url), "{jobs}", consumer="c1")
    q.push("t1", "t2", "t3")
    seen: list[str] = []

    def handle(task: str) -> None:
        seen.append(task)
        if task == "t1":
            cutter.cut_next_reply(skip=1)  # t1's ack answered, the claim of t2 cut after BLMOVE ran
        if task == "t2":
            cutter.cut_next_reply()  # t2's ack cut after LREM ran

    assert work_in_thread(q, handle, block=0.1) == {"handled": 3}
    assert seen == ["t1", "t2", "t3"]  # each once, in order
    assert (q.stats.recovered, q.stats.lost_acks, q.stats.late_acks) == (1, 1, 0)
    assert q.stats.connection_errors == 2 and cutter.cuts == 2
    assert r.keys("{jobs}:p*") == []


@pytest.mark.server_only  # a proxy in front of one server
def test_an_ack_that_never_reached_the_server_is_sent_again_not_the_task(
    r: redis.Redis, cutter: ReplyCutter
) -> None:
    q = ReliableQueue(connect(cutter.url), "{jobs}", consumer="c1")
    q.push("t1", "t2")
    seen: list[str] = []

    def handle(task: str) -> None:
        seen.append(task)
        if task == "t1":
            cutter.cut_next_request()  # t1's LREM never arrives

    assert work_in_thread(q, handle, block=0.1) == {"handled": 2}
    assert seen == ["t1", "t2"]  # not t1 again: the repeated ack removed it
    assert (q.stats.lost_acks, q.stats.recovered, cutter.cuts) == (1, 0, 1)


def test_a_consumer_restarted_under_its_name_handles_what_it_held_oldest_first(r: redis.Redis) -> None:
    before = ReliableQueue(r, "{jobs}", consumer="worker-1", heartbeat_ttl=30)
    before.push("t1", "t2", "t3")
    assert [before.claim(), before.claim()] == ["t1", "t2"]  # then the process dies
    after = ReliableQueue(r, "{jobs}", consumer="worker-1", heartbeat_ttl=30)  # its fresh heartbeat hides them from reapers
    assert after.held() == ["t1", "t2"]
    seen: list[str] = []
    assert work_in_thread(after, seen.append, block=0.1) == {"handled": 3}
    assert seen == ["t1", "t2", "t3"] and after.stats.recovered == 2


def test_a_consumer_back_after_its_heartbeat_expired_beats_before_it_handles_what_it_held(r: redis.Redis) -> None:
    before = ReliableQueue(r, "{jobs}", consumer="c1", heartbeat_ttl=0.3)
    before.push("t1")
    assert before.claim() == "t1"
    wait_for(lambda: not r.exists("{jobs}:alive:c1"), "c1's heartbeat to expire", 10)
    after = ReliableQueue(r, "{jobs}", consumer="c1", heartbeat_ttl=0.3)
    reaper = ReliableQueue(r, "{jobs}", consumer="reaper")

    def handle(task: str) -> None:
        assert reaper.reap() == {}  # c1 is alive again: its task stays with it

    assert work_in_thread(after, handle, block=0.1) == {"handled": 1}
    assert (after.stats.recovered, after.stats.late_acks) == (1, 0)


@pytest.mark.server_only  # a proxy in front of one server
def test_a_claim_repeated_by_a_retrying_client_strands_no_task(r: redis.Redis, cutter: ReplyCutter) -> None:
    # redis-py's default client sends the lost claim's pipeline again: a second BLMOVE takes t3,
    # t2 stays in this live consumer's processing list, where no reaper looks.
    db = int(urlsplit(cutter.url).path[1:])
    default = redis.Redis(host="127.0.0.1", port=cutter.port, db=db, decode_responses=True)
    q = ReliableQueue(default, "{jobs}", consumer="c1")
    q.push("t1", "t2", "t3")
    seen: list[str] = []

    def handle(task: str) -> None:
        seen.append(task)
        if task == "t1":
            cutter.cut_next_reply(skip=1)

    assert work_in_thread(q, handle, block=0.1) == {"handled": 3}
    assert seen == ["t1", "t3", "t2"]  # t2 found held when the queue went idle
    assert q.stats.recovered == 1 and q.stats.connection_errors == 0 and cutter.cuts == 1
    assert r.keys("{jobs}:p*") == []


def test_a_consumer_presumed_dead_acks_late_and_the_duplicate_is_counted(r: redis.Redis, redis_url: str) -> None:
    slow = ReliableQueue(connect_to(redis_url), "{jobs}", consumer="slow", heartbeat_ttl=0.3)
    reaper = ReliableQueue(r, "{jobs}", consumer="reaper", heartbeat_ttl=30)
    slow.push("t1")
    seen: list[str] = []

    def handle(task: str) -> None:
        seen.append(task)
        if len(seen) == 1:  # outlive the heartbeat: a reaper gives t1 back while it runs
            wait_for(lambda: not r.exists("{jobs}:alive:slow"), "the slow consumer's heartbeat to expire", 10)
            assert reaper.reap() == {"slow": 1}

    assert work_in_thread(slow, handle, block=0.1) == {"handled": 2}
    assert seen == ["t1", "t1"]  # at least once: twice, and counted
    assert (slow.stats.late_acks, slow.stats.lost_acks) == (1, 0)


@pytest.mark.server_only  # a proxy in front of one server
def test_work_gives_up_only_after_reconnect_within(r: redis.Redis, cutter: ReplyCutter) -> None:
    q = ReliableQueue(connect(cutter.url), "{jobs}", consumer="c1")
    q.push("t1", "t2")
    outcome = work_in_thread(q, lambda task: cutter.close(), block=0.1, reconnect_within=0.5)
    assert isinstance(outcome["error"], redis.ConnectionError)  # the server is gone for good
    assert q.stats.lost_acks == 1 and q.stats.connection_errors >= 2
    assert r.lrange("{jobs}:processing:c1", 0, -1) == ["t1"]  # held: back to the queue once its heartbeat expires
    with pytest.raises(ValueError, match="reconnect_within must be > 0"):
        q.work(print, reconnect_within=float("nan"))


# Real processes: producers push, consumers work, two consumers are SIGKILLed mid-task.
QUEUE, TTL = "{chaos}", 1.0


def produce(url: str, first: int, count: int) -> None:
    q = ReliableQueue(connect_to(url), QUEUE, consumer="producer")
    for start in range(first, first + count, 10):
        q.push(*(f"task-{i}" for i in range(start, min(start + 10, first + count))))


def consume(url: str, consumer: str, victim: bool) -> None:
    q = ReliableQueue(connect_to(url), QUEUE, consumer=consumer, heartbeat_ttl=TTL)
    handled: list[str] = []

    def handle(task: str) -> None:
        if victim and len(handled) == 2:
            q.client.rpush("victims-busy", consumer)
            time.sleep(60)  # killed here, holding ``task``
        q.client.hincrby("done", task, 1)
        handled.append(task)

    q.work(handle, block=0.2, until=lambda: bool(q.client.exists("producers-done")) and not any(q.depth().values()))


def test_no_task_is_lost_when_consumers_are_killed_mid_task(r: redis.Redis, redis_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    consumers = {
        f"c{i}": spawn.Process(target=consume, args=(redis_url, f"c{i}", i < 2)) for i in range(4)
    }
    producers = [spawn.Process(target=produce, args=(redis_url, n * 150, 150)) for n in range(2)]
    try:
        for process in consumers.values():
            process.start()
        wait_for(lambda: r.scard(f"{QUEUE}:consumers") == 4, "4 consumers to register")
        for process in producers:
            process.start()
        held = {}
        for _ in range(2):
            # Polled: a BLPOP longer than the client's socket timeout could lose its reply.
            wait_for(lambda: r.llen("victims-busy"), "a victim consumer to get its third task")
            victim = r.lpop("victims-busy")
            held[victim] = r.lrange(f"{QUEUE}:processing:{victim}", 0, -1)
            os.kill(consumers[victim].pid, signal.SIGKILL)
        for process in producers:
            process.join(30)
        r.set("producers-done", 1)
        for process in consumers.values():
            process.join(60)
    finally:
        for process in [*consumers.values(), *producers]:
            if process.is_alive():
                process.kill()
                process.join()
    assert [consumers[v].exitcode for v in sorted(held)] == [-signal.SIGKILL] * 2
    assert all(p.exitcode == 0 for name, p in consumers.items() if name not in held)
    assert all(len(tasks) == 1 for tasks in held.values())  # each died holding one task
    done = {task: int(n) for task, n in r.hgetall("done").items()}
    assert set(done) == {f"task-{i}" for i in range(300)}  # every task processed: none lost
    assert all(n >= 1 for n in done.values())
    assert all(done[tasks[0]] >= 1 for tasks in held.values())  # the killed ones' tasks, too
    assert r.keys(f"{QUEUE}:p*") == []  # no pending list, no processing list left


# --- Celery configuration ----------------------------------------------------------------------


def configured(settings: dict[str, object], **kwargs: str) -> Celery:
    app = Celery("seed")
    app.config_from_object(settings, **kwargs)
    return app


def test_seed_settings_without_namespace_lose_the_broker_and_result_expiry() -> None:
    conf = configured(SEED_SETTINGS).conf
    assert conf.broker_url is None  # CELERY_BROKER_URL is not an old-style name: ignored
    assert configured(SEED_SETTINGS).connection_for_write().as_uri() == "amqp://guest:**@localhost:5672//"
    assert conf.result_expires.total_seconds() == 86400  # CELERY_RESULT_EXPIRES ignored (old name:
    assert conf.result_backend == "redis://127.0.0.1:1/1"  # CELERY_TASK_RESULT_EXPIRES), the rest kept
    assert (conf.broker_pool_limit, conf.redis_max_connections) == (10, 50)


def test_seed_settings_with_namespace_work_but_are_deprecated() -> None:
    conf = configured(SEED_SETTINGS, namespace="CELERY").conf
    assert (conf.broker_url, conf.result_expires) == ("redis://127.0.0.1:1/0", 3600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert conf.maybe_warn_deprecated_settings()
    assert any("'BROKER_POOL_LIMIT' setting is deprecated" in str(w.message) for w in caught)


def test_mixing_old_and_new_names_is_refused_unless_both_name_one_setting() -> None:
    lab = celery_config("redis://127.0.0.1:1/0")
    app = configured({**lab, "BROKER_CONNECTION_MAX_RETRIES": 3})
    with pytest.raises(ImproperlyConfigured, match="BROKER_CONNECTION_MAX_RETRIES +-> broker_connection_max_retries"):
        _ = app.conf.broker_url
    # An old name next to its new one is not an error: it is silently ignored.
    conf = configured({**lab, "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/9"}).conf
    assert conf.result_backend == "redis://127.0.0.1:1/0"


def test_lab_config_is_all_new_names() -> None:
    app = make_celery("redis://127.0.0.1:1/5", visibility_timeout=30)
    conf = app.conf
    assert not conf.deprecated_settings
    assert (conf.broker_url, conf.result_backend) == ("redis://127.0.0.1:1/5",) * 2
    assert conf.broker_transport_options == {"visibility_timeout": 30}
    assert (conf.task_acks_late, conf.worker_prefetch_multiplier, conf.result_expires) == (True, 1, 3600)


# --- a real worker -----------------------------------------------------------------------------


@pytest.mark.server_only  # Celery's Redis broker needs one server
def test_worker_runs_tasks_retries_and_stores_expiring_results(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = demo_app(redis_url)
    with monkeypatch.context() as env:
        # Celery lets this variable beat broker_url: the lab's worker must not inherit it.
        env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
        worker = start_worker(redis_url, name="w1")
    with worker:
        added = app.tasks["demo.add"].delay(2, 3)
        assert added.get(timeout=30) == 5
        assert app.tasks["demo.flaky"].delay(2).get(timeout=30) == 2
        meta = json.loads(r.get(f"celery-task-meta-{added.id}"))
        assert (meta["status"], meta["result"]) == ("SUCCESS", 5)
        assert 0 < r.ttl(f"celery-task-meta-{added.id}") <= 600
        assert worker.log().count("retry: Retry in 1s") == 2
    assert worker.process.returncode == 0
    app.close()


@pytest.mark.server_only  # Celery's Redis broker needs one server
def test_acks_late_task_of_a_killed_worker_runs_on_another(r: redis.Redis, redis_url: str) -> None:
    app = demo_app(redis_url)
    first = start_worker(redis_url, name="first")
    try:
        result = app.tasks["demo.slow"].delay("job", 1.0)
        wait_for(lambda: r.llen("job:started"), "the first worker to start the task")
        assert first.kill() == -signal.SIGKILL
        assert r.hlen("unacked") == 1 and r.llen("celery") == 0  # held for redelivery, not lost
        # A worker killed while it looked for expired deliveries leaves kombu's lock on them held.
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            mutex = channel.client.lock(channel.unacked_mutex_key, timeout=channel.unacked_mutex_expire)
            assert mutex.acquire()
        with start_worker(redis_url, name="second"):
            assert result.get(timeout=30) == "second@redai-lab"
    finally:
        first.stop()
    assert r.lrange("job:started", 0, -1) == ["first@redai-lab", "second@redai-lab"]
    assert r.lrange("job:done", 0, -1) == ["second@redai-lab"]
    app.close()


@pytest.mark.server_only  # Celery's Redis broker needs one server
def test_start_worker_errors(redis_url: str) -> None:
    with pytest.raises(ValueError, match="pool must be"):
        start_worker(redis_url, pool="gevent")
    with pytest.raises(ValueError, match="needs a Redis URL"):
        make_celery("amqp://guest@localhost//")
    with pytest.raises(LabError, match="did not start: .*needs a Redis URL"):
        start_worker("amqp://guest@localhost//", name="nowhere")
