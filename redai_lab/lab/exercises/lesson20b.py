"""Lesson 20b's exercises: a Celery 5 configuration that avoids the cheat sheet's pitfalls
(graded on the app's configuration object; no worker starts), kombu's stale deliveries found in
its `unacked_index`, and a restore mutex that cannot outlive a killed sweeper."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery

from . import Case, Spec, unless_none
from ._observed import Observed, ObservedSpec

# --- 1. A Celery 5 app, configured ----------------------------------------------------------------


def make_app(r: redis.Redis, url: str, longest_task: float, longest_countdown: float) -> Celery:
    """A Celery app (Celery 5 lowercase settings, none of the old uppercase names) whose broker
    and result backend are both `url`; JSON only (tasks, results, and the only content accepted);
    tasks acknowledged after they ran; one task reserved per worker process; results kept one
    hour (3600 s); and a visibility timeout (a broker transport option, in seconds) longer than
    both the longest task and the longest countdown, so that no task is handed to a second
    worker while the first still has it."""
    app = Celery("tasks")
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        result_expires=3600,
        broker_transport_options={"visibility_timeout": 2 * max(longest_task, longest_countdown)},
    )
    return app


def make_app_cheat_sheet_names(r, url, longest_task, longest_countdown):
    app = Celery("tasks")
    app.config_from_object({
        "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url, "CELERY_TASK_SERIALIZER": "json",
        "CELERY_RESULT_SERIALIZER": "json", "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_RESULT_EXPIRES": 3600, "CELERY_ACKS_LATE": True, "CELERYD_PREFETCH_MULTIPLIER": 1,
        "BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 2 * max(longest_task, longest_countdown)},
    })
    return app


def make_app_early_ack(r, url, longest_task, longest_countdown):
    app = make_app(r, url, longest_task, longest_countdown)
    app.conf.task_acks_late = False
    return app


def make_app_tasks_only(r, url, longest_task, longest_countdown):
    app = make_app(r, url, longest_task, longest_countdown)
    app.conf.broker_transport_options = {"visibility_timeout": 2 * longest_task}
    return app


def make_app_accepts_pickle(r, url, longest_task, longest_countdown):
    app = make_app(r, url, longest_task, longest_countdown)
    app.conf.accept_content = ["json", "pickle"]
    return app


def make_app_default_prefetch(r, url, longest_task, longest_countdown):
    app = make_app(r, url, longest_task, longest_countdown)
    app.conf.worker_prefetch_multiplier = 4
    app.conf.result_expires = None
    return app


def _url(longest_task: float, longest_countdown: float):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        kwargs = r.connection_pool.connection_kwargs
        return (f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}",
                longest_task, longest_countdown)

    return setup


def _app_outcome(r: redis.Redis, prefix: str, app: Any) -> tuple[Any, ...]:
    """The settings that matter, as Celery reads them (no worker, no connection)."""
    try:
        conf = app.conf
        kwargs = r.connection_pool.connection_kwargs
        url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
        expires = conf.result_expires
        expires = expires.total_seconds() if hasattr(expires, "total_seconds") else expires
        options = conf.broker_transport_options or {}
        longest = float(r.get(f"{prefix}longest") or 0)
        return {
            "broker is the url": conf.broker_url == url,
            "results in the url": conf.result_backend == url,
            "serializers": (conf.task_serializer, conf.result_serializer, sorted(conf.accept_content)),
            "acks late": bool(conf.task_acks_late),
            "prefetch": conf.worker_prefetch_multiplier,
            "results expire (s)": expires,
            "visibility timeout long enough": options.get("visibility_timeout", 3600) > longest,
        }
    finally:
        app.close()


def _url_and_longest(longest_task: float, longest_countdown: float):
    inner = _url(longest_task, longest_countdown)

    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        r.set(f"{prefix}longest", max(longest_task, longest_countdown))
        return inner(r, prefix)

    return setup


# --- 2. Deliveries past their visibility timeout ----------------------------------------------------


def stale_deliveries(r: redis.Redis, index: str, visibility_timeout: float, now: float) -> list[str]:
    """Kombu's sorted set `index` (its `unacked_index`) scores each delivery tag by the time it
    was delivered (Unix seconds). Return the tags whose delivery is at least `visibility_timeout`
    seconds before `now` (exactly that old counts), oldest first, with no deprecated command."""
    return r.zrange(index, "-inf", now - visibility_timeout, byscore=True)


def stale_deliveries_exclusive(r, index, visibility_timeout, now):
    return r.zrange(index, "-inf", f"({now - visibility_timeout}", byscore=True)


def stale_deliveries_newest_first(r, index, visibility_timeout, now):
    return r.zrange(index, now - visibility_timeout, "-inf", byscore=True, desc=True)


def stale_deliveries_fresh_ones(r, index, visibility_timeout, now):
    return r.zrange(index, now - visibility_timeout, "+inf", byscore=True)


def stale_deliveries_deprecated(r, index, visibility_timeout, now):
    return r.zrangebyscore(index, "-inf", now - visibility_timeout)


def _index(deliveries: dict[str, float], visibility_timeout: float, now: float):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        if deliveries:
            r.zadd(f"{prefix}unacked_index", deliveries)
        return (f"{prefix}unacked_index", visibility_timeout, now)

    return setup


def _stale_outcome(r: redis.Redis, prefix: str, seen: Observed) -> tuple[Any, ...]:
    return seen.result, seen.calls.get("zrangebyscore", 0)


NOW = 1_700_000_000.0

# --- 3. The restore mutex --------------------------------------------------------------------------


def take_restore_mutex(r: redis.Redis, mutex: str, token: str, expire: int) -> bool:
    """Take the sweep lock: set key `mutex` to `token` only when nobody holds it, in one command,
    and let it expire after `expire` seconds, so that a sweeper killed mid-sweep blocks the
    others for `expire` seconds at most. Return True when taken, False when someone holds it
    (leave their lock as it is)."""
    return bool(r.set(mutex, token, nx=True, ex=expire))


def take_restore_mutex_forever(r, mutex, token, expire):
    return bool(r.setnx(mutex, token))


def take_restore_mutex_overwrites(r, mutex, token, expire):
    return bool(r.set(mutex, token, ex=expire))


def take_restore_mutex_in_ms(r, mutex, token, expire):
    return bool(r.set(mutex, token, nx=True, px=expire))


def take_restore_mutex_renews(r, mutex, token, expire):
    taken = bool(r.set(mutex, token, nx=True, ex=expire))
    r.expire(mutex, expire)
    return taken


def _mutex(holder: str | None, holder_ttl: int | None, expire: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        if holder is not None:
            r.set(f"{prefix}unacked_mutex", holder, ex=holder_ttl)
        # The longest the lock may now last: the holder's own TTL, else the new expiry.
        r.set(f"{prefix}bound", holder_ttl if holder is not None and holder_ttl else expire)
        return (f"{prefix}unacked_mutex", "sweeper-2", expire)

    return setup


def _mutex_outcome(r: redis.Redis, prefix: str, taken: Any) -> tuple[Any, ...]:
    """What the call returned, who holds the lock, and how long it may still last."""
    bound = int(r.get(f"{prefix}bound"))
    ttl = r.ttl(f"{prefix}unacked_mutex")
    lasts = {-1: "forever", -2: "gone"}.get(ttl, f"at most {bound} s" if 0 < ttl <= bound else "too long or too short")
    if 0 < ttl <= bound and ttl < bound - 2:
        lasts = "far less than asked"
    return taken, r.get(f"{prefix}unacked_mutex"), lasts


EXERCISES = (
    ObservedSpec(
        number=2,
        title="deliveries past their visibility timeout",
        reference=stale_deliveries,
        cases=(
            Case("three deliveries, one stale",
                 _index({"a": NOW - 100, "b": NOW - 10, "c": NOW - 1}, 60, NOW)),
            Case("one exactly as old as the timeout",
                 _index({"a": NOW - 3_600, "b": NOW - 3_599.5, "c": NOW - 7_200}, 3_600, NOW)),
            Case("nothing delivered", _index({}, 60, NOW)),
            Case("all stale", _index({"x": NOW - 500, "y": NOW - 400, "z": NOW - 300}, 60, NOW)),
        ),
        outcome=_stale_outcome,
        hint="ZRANGE reads by score with BYSCORE; a bound is inclusive unless written with '('.",
        wrong=(stale_deliveries_exclusive, stale_deliveries_newest_first, stale_deliveries_fresh_ones,
               stale_deliveries_deprecated),
    ),
)

EXERCISES = (
    Spec(  # the outcome reads the app's configuration
        number=1,
        title="a Celery 5 app without the cheat sheet's pitfalls",
        reference=make_app,
        cases=(
            Case("tasks up to 60 s, countdowns up to 10 min", _url_and_longest(60, 600)),
            Case("tasks up to 2 h, no countdown", _url_and_longest(7_200, 0)),
            Case("tasks up to 5 min, countdowns up to 5 min", _url_and_longest(300, 300)),
        ),
        outcome=unless_none(_app_outcome),
        hint="Lowercase names through app.conf.update(...); the visibility timeout lives in "
             "broker_transport_options, and a countdown waits unacknowledged too.",
        wrong=(make_app_cheat_sheet_names, make_app_early_ack, make_app_tasks_only,
               make_app_accepts_pickle, make_app_default_prefetch),
    ),
    *EXERCISES,
    Spec(
        number=3,
        title="a restore mutex a killed sweeper cannot keep",
        reference=take_restore_mutex,
        cases=(
            Case("nobody holds it, 10 s", _mutex(None, None, 10)),
            Case("another sweeper holds it", _mutex("sweeper-1", 8, 10)),
            Case("a lock left without expiry", _mutex("sweeper-1", None, 5)),
            Case("nobody holds it, 300 s", _mutex(None, None, 300)),
        ),
        outcome=unless_none(_mutex_outcome),
        hint="SET has options both to write only when the key is absent and to set its expiry "
             "in seconds, in the same command.",
        wrong=(take_restore_mutex_forever, take_restore_mutex_overwrites, take_restore_mutex_in_ms,
               take_restore_mutex_renews),
    ),
)
