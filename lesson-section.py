# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# <!-- For the lead: a section for lesson 20 (queues), to go after "Proof under fire" and before
# "## 4. The modern alternative". The first code cell only makes this file run on its own; leave
# it out when inserting (lesson 20 already has `lesson`, `r`, `connect`, `ReliableQueue`). -->

# %%
import threading

import redis

from redai_lab import connect, start_lesson
from redai_lab.queues import ReliableQueue

lesson = start_lesson("20_queues_with_celery")
r = lesson.client

# %% [markdown]
# ### A lost reply is not a lost command: never twice, never stranded
#
# When a connection breaks *after* Redis ran a command but *before* its reply arrived, the
# client sees the same `ConnectionError` as when the command never left: it cannot tell which
# happened. A client that simply sends the command again applies it **twice** whenever the
# first one had run. redis-py 8's `redis.Redis(host=..., port=...)` does exactly that: it
# retries every command, writes included, up to 10 times. (`redis.Redis.from_url(...)` retries
# nothing: the two constructors differ.)
#
# To show it deterministically, `redai_lab.faults.ReplyCutter` is a small TCP proxy in front of
# the lesson's server: `cut_next_reply()` lets Redis run the next command, then closes the
# client's connection instead of passing the reply on, as a network cut at the wrong moment
# would.

# %%
from redai_lab.faults import ReplyCutter

r.delete("visits")
with ReplyCutter(lesson.url) as proxy:
    default = redis.Redis(host="127.0.0.1", port=proxy.port, db=lesson.db, decode_responses=True)
    print("redis.Redis(host=..., port=...) retries:", default.get_retry().get_retries(), "times")
    default.ping()  # connected, through the proxy
    proxy.cut_next_reply()  # Redis runs the next command; its reply never arrives
    print("one INCR visits ->", default.incr("visits"), "| replies cut:", proxy.cuts)
    print("visits on the server:", r.get("visits"))
    default.close()
assert r.get("visits") == "2"  # one visit, counted twice

# %% [markdown]
# `redai_lab.connect()` decides per command what it may send again after a lost connection:
#
# | the command | after a lost connection |
# | --- | --- |
# | never left the client (the pool could not connect) | retried, with backoff: Redis never saw it |
# | a read (`GET`, `LRANGE`, `SCAN`, ...; `redai_lab.connection.REPEATABLE`, checked against `COMMAND INFO`'s `readonly` flag) | sent again: it changes nothing |
# | a write, a script, a blocking pop (`BRPOP`, `BLMOVE`) | **not** repeated: `OutcomeUnknownError`, one line saying it may or may not have been applied |
# | a pipeline or `MULTI`/`EXEC` | sent again if it holds only reads; otherwise `OutcomeUnknownError` (a transaction: all of it or none) |
#
# Even "idempotent" writes are not repeated: a second `SET` can land after another client's
# newer `SET`, a second `SET NX` answers "not acquired" for the lock the first one took, a
# second `LREM` answers 0. `OutcomeUnknownError` is a `redis.ConnectionError` (after a timeout,
# also a `redis.TimeoutError`), so existing `except` clauses still catch it.

# %%
from redai_lab.connection import OutcomeUnknownError

r.delete("visits")
with ReplyCutter(lesson.url) as proxy:
    client = connect(proxy.url)
    client.ping()
    proxy.cut_next_reply()
    try:
        client.incr("visits")
    except OutcomeUnknownError as error:
        print(f"{type(error).__name__}: {error}")
    print("visits on the server:", r.get("visits"), "(applied once, not repeated)")
    proxy.cut_next_reply()
    print("GET visits ->", client.get("visits"), "| a read, sent again after its reply was cut")
    client.connection_pool.disconnect()
    proxy.refuse_next_connections(2)  # a server restarting: two connection attempts fail
    print("INCR visits ->", client.incr("visits"), "| connections refused first:", proxy.refused)
assert r.get("visits") == "2"

# %% [markdown]
# What should the caller do with `OutcomeUnknownError`? Make the write safe to repeat, then
# repeat it. An **idempotency key**: the write and a marker of *this* operation, in one script.
# A repeat finds the marker and does nothing, so retrying is safe again:

# %%
COUNT_ONCE = """
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', 3600) then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


def count_visit(client: redis.Redis, visit_id: str, attempts: int = 3) -> None:
    """Count a visit once, however often the reply is lost (the marker lives an hour)."""
    for attempt in range(attempts):
        try:
            client.eval(COUNT_ONCE, 2, "visits", f"visits:counted:{visit_id}", 1)
            return
        except OutcomeUnknownError:
            if attempt == attempts - 1:
                raise


r.delete("visits")
with ReplyCutter(lesson.url) as proxy:
    client = connect(proxy.url)
    client.ping()
    proxy.cut_next_reply()  # the first EVAL runs; its reply is lost
    count_visit(client, "visit-42")
    print("replies cut:", proxy.cuts, "| visits on the server:", r.get("visits"))
assert r.get("visits") == "1"

# %% [markdown]
# **The same lost reply in the queue.** `claim()` sends its `BLMOVE` in a pipeline. If the reply
# is lost after the move, a retrying client moves a *second* task: the first one sits in this
# consumer's processing list, while the consumer believes it holds only the second. Its
# heartbeat stays fresh, so no reaper touches it; nothing pending, one task held forever, and a
# `work()` that waits for the queue to drain never returns.
#
# `ReliableQueue.work()` therefore looks at its own processing list (`held()`) before it claims:
# when it starts (what an earlier run under the same consumer name left), after a lost
# connection, and whenever the queue is idle. It survives lost connections (reconnecting with
# backoff; it gives up only when the server has not answered for `reconnect_within` seconds),
# sends again an ack whose reply was lost, and counts all of it in `q.stats`. First with
# redis-py's retrying client, which strands `t2`; `work()` finds it:

# %%
for key in r.keys("lost:*"):
    r.delete(key)
with ReplyCutter(lesson.url) as proxy:
    default = redis.Redis(host="127.0.0.1", port=proxy.port, db=lesson.db, decode_responses=True)
    lost = ReliableQueue(default, "lost", consumer="c1")
    lost.push("t1", "t2", "t3")
    handled = []

    def handle(task):
        handled.append(task)
        if task == "t1":  # t1's ack is answered; the reply to the claim after it is cut
            proxy.cut_next_reply(skip=1)

    lost.work(handle, block=0.1)
    print("handled:", handled, "| t2 was stranded by the repeated claim, then found held")
    print(lost.stats)
    default.close()
assert handled == ["t1", "t3", "t2"] and not r.keys("lost:p*")

# %% [markdown]
# And through `connect()`: the lost claim is not repeated, so the consumer finds `t2` in its
# processing list right away and the order is kept; a lost ack is sent again:

# %%
with ReplyCutter(lesson.url) as proxy:
    lost = ReliableQueue(connect(proxy.url), "lost", consumer="c1")
    lost.push("t1", "t2", "t3")
    handled = []

    def handle(task):
        handled.append(task)
        if task == "t1":
            proxy.cut_next_reply(skip=1)  # the claim of t2: moved, reply lost
        if task == "t2":
            proxy.cut_next_reply()  # t2's ack: applied, reply lost

    lost.work(handle, block=0.1)
    print("handled:", handled)
    print(lost.stats)
assert handled == ["t1", "t2", "t3"] and not r.keys("lost:p*")

# %% [markdown]
# Delivery stays **at least once**: a task runs twice only when its ack came too late (the
# consumer looked dead, a reaper requeued the task) or was lost while the consumer looked dead;
# `stats.late_acks` and `stats.lost_acks` count those acks, an upper bound on the duplicates.
#
# Under fire: four threads each send INCRs while a killer runs `CLIENT KILL` on their connections
# every 50 to 100 ms (`redai_lab.faults.ConnectionKiller`), once with redis-py's retrying client,
# once through `connect()`. Redis's count against what the clients were told (the numbers vary
# from run to run; `tests/test_fault_injection.py` does this with 20,000 INCRs, pipelines,
# transactions and a queue):

# %% tags=["nbval-ignore-output"]
from urllib.parse import urlsplit

import pandas as pd

from redai_lab.faults import ConnectionKiller


def incrs_under_kills(make_client, key: str, per_thread: int = 1_500) -> dict[str, int]:
    """4 threads x ``per_thread`` INCRs of ``key`` while their connections are killed."""
    clients = [make_client() for _ in range(4)]
    told = {"acknowledged": 0, "raised": 0}
    lock = threading.Lock()

    def run(client):
        for _ in range(per_thread):
            try:
                client.incr(key)
                outcome = "acknowledged"
            except (redis.ConnectionError, redis.TimeoutError):  # OutcomeUnknownError among them
                outcome = "raised"
            with lock:
                told[outcome] += 1

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    with ConnectionKiller(lesson.url, "lesson20-victim") as killer:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    for client in clients:
        client.close()
    applied = int(r.get(key) or 0)
    # Each raised INCR may or may not have run; anything beyond that ran twice.
    return {**told, "applied by Redis": applied, "applied twice": max(0, applied - told["acknowledged"] - told["raised"]),
            "connections killed": killer.kills}


host, port = urlsplit(lesson.url).hostname, urlsplit(lesson.url).port
r.delete("hits:default", "hits:lab")
results = {
    "redis.Redis(host=..., port=...)": incrs_under_kills(
        lambda: redis.Redis(host=host, port=port, db=lesson.db, client_name="lesson20-victim"), "hits:default"),
    "redai_lab.connect()": incrs_under_kills(
        lambda: connect(lesson.url, client_name="lesson20-victim"), "hits:lab"),
}
lab = results["redai_lab.connect()"]
assert lab["acknowledged"] <= lab["applied by Redis"] <= lab["acknowledged"] + lab["raised"]
pd.DataFrame(results).T

# %%
leftovers = ["visits", "hits:default", "hits:lab", *r.keys("visits:counted:*"), *r.keys("lost:*")]
print("section keys removed:", r.delete(*leftovers) > 0)
