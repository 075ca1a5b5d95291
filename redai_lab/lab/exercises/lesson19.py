"""Lesson 19's exercises: a client sized for its worker threads, a shared pool used from threads
without losing an increment or opening more connections than allowed, and what a full pool
does. Graded on behaviour and on the connections the server sees, never on time."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import redis

from . import Case, Spec, unless_none

# --- 1. A client sized for its workers ----------------------------------------------------------


def client_for_workers(r: redis.Redis, workers: int, wait: float) -> redis.Redis:
    """A new client for the same server and database as `r`, with decode_responses=True, for
    `workers` threads that share it: each thread may hold a connection at the same time, and a
    caller that finds every connection busy waits up to `wait` seconds for one to come back
    instead of failing at once."""
    pool = redis.BlockingConnectionPool(
        max_connections=workers, timeout=wait, **r.connection_pool.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)


def client_for_workers_not_blocking(r, workers, wait):
    pool = redis.ConnectionPool(max_connections=workers, **r.connection_pool.connection_kwargs)
    return redis.Redis(connection_pool=pool)


def client_for_workers_one_short(r, workers, wait):
    pool = redis.BlockingConnectionPool(
        max_connections=workers - 1, timeout=wait, **r.connection_pool.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)


def client_for_workers_waits_forever(r, workers, wait):
    pool = redis.BlockingConnectionPool(
        max_connections=workers, timeout=None, **r.connection_pool.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)


def client_for_workers_database_zero(r, workers, wait):
    kwargs = dict(r.connection_pool.connection_kwargs)
    kwargs.pop("db", None)
    pool = redis.BlockingConnectionPool(max_connections=workers, timeout=wait, **kwargs)
    return redis.Redis(connection_pool=pool)


def client_for_workers_bytes(r, workers, wait):
    kwargs = dict(r.connection_pool.connection_kwargs, decode_responses=False)
    pool = redis.BlockingConnectionPool(max_connections=workers, timeout=wait, **kwargs)
    return redis.Redis(connection_pool=pool)


def _marker(workers: int, wait: float):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        r.set(f"{prefix}marker", "here")
        return (workers, wait)

    return setup


def _client_outcome(r: redis.Redis, prefix: str, client: Any) -> tuple[Any, ...]:
    """The pool's kind, size and wait, and what the client reads from this database."""
    try:
        pool = client.connection_pool
        return (type(pool).__name__, pool.max_connections, getattr(pool, "timeout", "no wait"),
                client.get(f"{prefix}marker"))
    finally:
        client.close()
        client.connection_pool.disconnect()


# --- 2. One pool, many threads -------------------------------------------------------------------


def incr_in_threads(r: redis.Redis, key: str, threads: int, per_thread: int, connections: int,
                    name: str) -> redis.Redis:
    """Start `threads` threads that each run INCR `key` `per_thread` times, all through ONE
    client made for them (same server and database as `r`) whose connections are named `name`
    (CLIENT SETNAME) and are never more than `connections`, however many threads want one at
    once (a thread waits for a free connection rather than fail). Wait for every thread, lose no
    increment, and return that client with its connections still open (the check counts them
    on the server, then closes it)."""
    pool = redis.BlockingConnectionPool(
        max_connections=connections, timeout=20,
        **dict(r.connection_pool.connection_kwargs, client_name=name),
    )
    shared = redis.Redis(connection_pool=pool)

    def work() -> None:
        for _ in range(per_thread):
            shared.incr(key)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return shared


def incr_in_threads_client_per_thread(r, key, threads, per_thread, connections, name):
    clients = [redis.Redis(**dict(r.connection_pool.connection_kwargs, client_name=name))
               for _ in range(threads)]

    def work(client) -> None:
        for _ in range(per_thread):
            client.incr(key)

    workers = [threading.Thread(target=work, args=(client,)) for client in clients]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return clients[0]


def incr_in_threads_unnamed(r, key, threads, per_thread, connections, name):
    pool = redis.BlockingConnectionPool(max_connections=connections, timeout=20,
                                        **r.connection_pool.connection_kwargs)
    shared = redis.Redis(connection_pool=pool)
    workers = [threading.Thread(target=lambda: [shared.incr(key) for _ in range(per_thread)])
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return shared


def incr_in_threads_closed(r, key, threads, per_thread, connections, name):
    shared = incr_in_threads(r, key, threads, per_thread, connections, name)
    shared.connection_pool.disconnect()
    return shared


def incr_in_threads_once_each(r, key, threads, per_thread, connections, name):
    pool = redis.BlockingConnectionPool(
        max_connections=connections, timeout=20,
        **dict(r.connection_pool.connection_kwargs, client_name=name),
    )
    shared = redis.Redis(connection_pool=pool)
    workers = [threading.Thread(target=shared.incr, args=(key,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return shared


_runs = itertools.count(1)


def _threads(threads: int, per_thread: int, connections: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        # A new name for every run, so that a closing connection of the run before is not counted.
        name = f"{prefix.rstrip(':')}-pool-{next(_runs)}"
        r.set(f"{prefix}name", name)
        r.set(f"{prefix}cap", connections)
        return (f"{prefix}hits", threads, per_thread, connections, name)

    return setup


def _threads_outcome(r: redis.Redis, prefix: str, client: Any) -> tuple[Any, ...]:
    """The counter, and whether the server sees between 1 and `connections` connections named
    as asked."""
    try:
        name, cap = r.get(f"{prefix}name"), int(r.get(f"{prefix}cap"))
        named = sum(1 for c in r.client_list() if c.get("name") == name)
        return int(r.get(f"{prefix}hits") or 0), 1 <= named <= cap
    finally:
        client.close()
        client.connection_pool.disconnect()


# --- 3. A pool that is full -----------------------------------------------------------------------


def full_pool_error(r: redis.Redis, size: int) -> str:
    """Make a ConnectionPool of at most `size` connections to the same server and database as
    `r`, take every one of them (get_connection()), then run one more command through a client on
    that pool, and return the class name of the exception it raises. Give every connection back
    and disconnect the pool before returning."""
    pool = redis.ConnectionPool(max_connections=size, **r.connection_pool.connection_kwargs)
    taken = [pool.get_connection() for _ in range(size)]
    try:
        redis.Redis(connection_pool=pool).ping()
        raised = "nothing"
    except redis.ConnectionError as error:
        raised = type(error).__name__
    finally:
        for connection in taken:
            pool.release(connection)
        pool.disconnect()
    return raised


def full_pool_error_blocking(r, size):
    pool = redis.BlockingConnectionPool(max_connections=size, timeout=0.05,
                                        **r.connection_pool.connection_kwargs)
    taken = [pool.get_connection() for _ in range(size)]
    try:
        redis.Redis(connection_pool=pool).ping()
        raised = "nothing"
    except redis.ConnectionError as error:
        raised = type(error).__name__
    for connection in taken:
        pool.release(connection)
    pool.disconnect()
    return raised


def full_pool_error_one_short(r, size):
    pool = redis.ConnectionPool(max_connections=size, **r.connection_pool.connection_kwargs)
    taken = [pool.get_connection() for _ in range(size - 1)]
    try:
        redis.Redis(connection_pool=pool).ping()
        raised = "nothing"
    except redis.ConnectionError as error:
        raised = type(error).__name__
    for connection in taken:
        pool.release(connection)
    pool.disconnect()
    return raised


def full_pool_error_base_class(r, size):
    pool = redis.ConnectionPool(max_connections=size, **r.connection_pool.connection_kwargs)
    taken = [pool.get_connection() for _ in range(size)]
    try:
        redis.Redis(connection_pool=pool).ping()
        raised = "nothing"
    except redis.ConnectionError:
        raised = "ConnectionError"
    for connection in taken:
        pool.release(connection)
    pool.disconnect()
    return raised


def _size(size: int):
    return lambda r, prefix: (size,)


EXERCISES = (
    Spec(
        number=1,
        title="a client sized for its workers",
        reference=client_for_workers,
        cases=(
            Case("8 workers who may wait 2 s", _marker(8, 2.0)),
            Case("one worker who may wait 0.5 s", _marker(1, 0.5)),
            Case("50 workers who may wait 10 s", _marker(50, 10.0)),
        ),
        outcome=unless_none(_client_outcome),
        hint="Of redis-py's two pools, one makes a caller wait for a free connection; the options "
             "of r's own connections are in r.connection_pool.connection_kwargs.",
        wrong=(client_for_workers_not_blocking, client_for_workers_one_short,
               client_for_workers_waits_forever, client_for_workers_database_zero,
               client_for_workers_bytes),
    ),
    Spec(
        number=2,
        title="one pool shared by many threads",
        reference=incr_in_threads,
        cases=(
            Case("8 threads x 50 INCRs through 2 connections", _threads(8, 50, 2)),
            Case("4 threads x 25 INCRs through 1 connection", _threads(4, 25, 1)),
            Case("3 threads x 10 INCRs, 5 connections allowed", _threads(3, 10, 5)),
        ),
        outcome=unless_none(_threads_outcome),
        hint="One client and one BlockingConnectionPool for all the threads (client_name= names "
             "its connections); start every thread, then join every thread.",
        wrong=(incr_in_threads_client_per_thread, incr_in_threads_unnamed, incr_in_threads_closed,
               incr_in_threads_once_each),
    ),
    Spec(
        number=3,
        title="what a full pool does",
        reference=full_pool_error,
        cases=(Case("a pool of 3", _size(3)), Case("a pool of 1", _size(1))),
        hint="A plain ConnectionPool does not wait: the command after the last free connection "
             "fails at once, with a subclass of redis.ConnectionError.",
        wrong=(full_pool_error_blocking, full_pool_error_one_short, full_pool_error_base_class),
    ),
)
