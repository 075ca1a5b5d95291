"""Lesson 13's exercises: cache-aside with TTLs and a negative cache, invalidation after a write,
a batch of lookups in two round trips. Also the helper that sets up races for lessons 13b to 16."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec

# Races, set up deterministically ---------------------------------------------------------------
#
# A non-atomic answer (read, decide in Python, then write) is wrong only when another client acts
# between its commands. A check cannot wait for that to happen by chance, so a racing case makes
# it happen every time: ``race(r, prefix, key, action)`` makes the client the function receives
# run ``action(r)`` (what another client does) right after the function's first command that
# names ``key`` (with ``after``: the first such command of one of those names). An atomic step,
# a script or a MULTI transaction, cannot be split: the other client's action lands after it, as
# it would on a real server. A function that sends nothing through the client object itself (a
# pipeline, a WATCH transaction) gets the action when the case's outcome is read (``settle``).
# The hook is one-shot, lives only on that client object, and also goes when the check clears
# its keys (the SCAN of ``prefix*``), so a function that raised leaves nothing behind.

_RACE = "_redai_exercise_race"


def race(r: redis.Redis, prefix: str, key: str, action: Callable[[redis.Redis], None],
         after: Iterable[str] | None = None) -> None:
    """Arm ``action`` (another client's commands) to run right after the next command on ``key``."""
    calm(r)
    names = None if after is None else {name.upper() for name in after}
    send = type(r).execute_command  # the class's method: the hook never calls itself

    def execute_command(*args: Any, **options: Any) -> Any:
        result = send(r, *args, **options)
        command = str(args[0]).upper() if args else ""
        if command == "SCAN" and f"{prefix}*" in args:  # the check clears its keys: the case is over
            calm(r)
        elif key in args[1:] and (names is None or command in names):
            calm(r)
            action(r)
        return result

    r.execute_command = execute_command  # type: ignore[method-assign]  # this object only
    setattr(r, _RACE, action)


def calm(r: redis.Redis) -> Callable[[redis.Redis], None] | None:
    """Disarm a pending race; returns its action if it has not run."""
    r.__dict__.pop("execute_command", None)
    return r.__dict__.pop(_RACE, None)


def settle(r: redis.Redis) -> None:
    """Before an outcome is read: the other client acts now if the function gave it no opening."""
    action = calm(r)
    if action is not None:
        action(r)


def ttl_bucket(r: redis.Redis, key: str) -> str:
    """A key's TTL as a check compares it: rounded up to 10 s, so runs a few ms apart agree."""
    milliseconds = r.pttl(key)
    if milliseconds < 0:
        return {-1: "no expiry", -2: "gone"}[milliseconds]
    return f"expires within {-(-milliseconds // 10_000) * 10} s"


# Exercise 1 ------------------------------------------------------------------------------------


def get_or_load(r: redis.Redis, key: str, loader: Callable[[], Any], ttl: int, negative_ttl: int) -> Any:
    """Cache-aside in front of a slow query. `loader()` runs the query and returns plain JSON data,
    or None when there is nothing to find. Return the value for `key`: from the cache when it
    holds one (without calling `loader` and without changing the entry's TTL), else from
    `loader()`, caching the result as JSON for `ttl` seconds. A None ("not found") is cached too,
    for `negative_ttl` seconds, and a later call returns it from the cache; so are falsy values
    like 0 and []. The value returned is the same whether it came from the cache or not."""
    cached = r.get(key)
    if cached is not None:  # a cached None is the text "null", not a missing key
        return json.loads(cached)
    value = loader()
    r.set(key, json.dumps(value), ex=negative_ttl if value is None else ttl)
    return value


def get_or_load_never_caches_none(r, key, loader, ttl, negative_ttl):
    cached = r.get(key)
    if cached:
        return json.loads(cached)
    value = loader()
    if value is not None:
        r.set(key, json.dumps(value), ex=ttl)
    return value


def get_or_load_one_ttl(r, key, loader, ttl, negative_ttl):
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    value = loader()
    r.set(key, json.dumps(value), ex=ttl)
    return value


def get_or_load_reloads_falsy(r, key, loader, ttl, negative_ttl):
    cached = r.get(key)
    if cached is not None and json.loads(cached):
        return json.loads(cached)
    value = loader()
    r.set(key, json.dumps(value), ex=negative_ttl if value is None else ttl)
    return value


def get_or_load_slides(r, key, loader, ttl, negative_ttl):
    cached = r.getex(key, ex=ttl)  # every hit pushes the expiry back
    if cached is not None:
        return json.loads(cached)
    value = loader()
    r.set(key, json.dumps(value), ex=negative_ttl if value is None else ttl)
    return value


def get_or_load_returns_text(r, key, loader, ttl, negative_ttl):
    cached = r.get(key)
    if cached is not None:
        return cached
    value = loader()
    r.set(key, json.dumps(value), ex=negative_ttl if value is None else ttl)
    return value


def _query(r: redis.Redis, prefix: str, result: Any) -> Callable[[], Any]:
    """A loader standing for the slow query: counts its runs in ``{prefix}queries``."""

    def loader() -> Any:
        r.incr(f"{prefix}queries")
        return result

    return loader


_MISSING = object()


def _lookup(cached: Any = _MISSING, left: int | None = None, found: Any = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, Callable[[], Any], int, int]:
        key = f"{prefix}exam:7"
        if cached is not _MISSING:
            r.set(key, json.dumps(cached), ex=left)
        return key, _query(r, prefix, found), 300, 30

    return setup


def _lookup_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    key = f"{prefix}exam:7"
    cached = r.get(key)
    return {
        "returned": result,
        "queries run": int(r.get(f"{prefix}queries") or 0),
        "cached": "nothing" if cached is None else json.loads(cached),
        "entry": ttl_bucket(r, key),
    }


STATS_7 = {"exam": 7, "average": 70.18}


# Exercise 2 ------------------------------------------------------------------------------------


class ExamDatabase:
    """A small exams database (SQLite, in memory, seeded): the source of truth behind the cache.

    ``stats(exam_id)`` reads an exam's statistics; ``rescore(exam_id, bonus)`` adds ``bonus``
    points to each of its answers (at most 100). ``during_write``, when set, runs at the start of
    every write: a request that reads meanwhile sees the data as it was before the write.
    """

    def __init__(self, exams: int = 20, answers: int = 2000, seed: int = 13) -> None:
        rng = random.Random(seed)
        self._db = sqlite3.connect(":memory:")
        self._db.execute("CREATE TABLE answers (student_id INTEGER, exam_id INTEGER, score REAL)")
        self._db.executemany(
            "INSERT INTO answers VALUES (?, ?, ?)",
            [(rng.randint(1, 500), rng.randint(1, exams), round(min(100.0, max(0.0, rng.gauss(70, 12))), 1))
             for _ in range(answers)],
        )
        self.during_write: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return "ExamDatabase()"

    def stats(self, exam_id: int) -> dict[str, Any] | None:
        count, average, best = self._db.execute(
            "SELECT COUNT(*), AVG(score), MAX(score) FROM answers WHERE exam_id = ?", (exam_id,)).fetchone()
        if count == 0:
            return None
        return {"exam_id": exam_id, "answers": count, "average": round(average, 2), "best": best}

    def rescore(self, exam_id: int, bonus: float) -> None:
        if self.during_write is not None:
            self.during_write()
        with self._db:
            self._db.execute("UPDATE answers SET score = MIN(100, score + ?) WHERE exam_id = ?", (bonus, exam_id))

    def close(self) -> None:
        self._db.close()


_databases: dict[str, tuple[ExamDatabase, int, Any]] = {}  # prefix -> (db, exam id, stats before)


def rescore_exam(r: redis.Redis, db: "ExamDatabase", key: str, exam_id: int, bonus: float) -> None:
    """`db` is the exams database: `db.rescore(exam_id, bonus)` adds `bonus` points to every answer
    of the exam, `db.stats(exam_id)` reads the exam's stats. The cache entry `key` holds those
    stats as JSON; other requests read it cache-aside (on a miss they read `db` and cache what they
    read, for 300 s). Apply the bonus to the exam, and make sure that no request can be served
    the old stats from the cache afterwards, not even one that missed and read the database
    while this write was in progress. Anything left in the cache must expire."""
    db.rescore(exam_id, bonus)  # the database first: it is the source of truth
    r.delete(key)  # then invalidate: a reader that cached the old value meanwhile is undone


def rescore_exam_invalidates_first(r, db, key, exam_id, bonus):
    r.delete(key)  # a reader can refill the entry with the old stats before the update lands
    db.rescore(exam_id, bonus)


def rescore_exam_cache_untouched(r, db, key, exam_id, bonus):
    db.rescore(exam_id, bonus)


def rescore_exam_writes_through_what_it_read(r, db, key, exam_id, bonus):
    before = db.stats(exam_id)
    db.rescore(exam_id, bonus)
    r.set(key, json.dumps(before), ex=300)


def rescore_exam_writes_through_for_ever(r, db, key, exam_id, bonus):
    db.rescore(exam_id, bonus)
    r.set(key, json.dumps(db.stats(exam_id)))


def _reader(r: redis.Redis, db: ExamDatabase, key: str, exam_id: int) -> Callable[[], None]:
    """Another request, cache-aside: on a miss it reads the database and caches what it read."""

    def read() -> None:
        if r.get(key) is None:
            r.set(key, json.dumps(db.stats(exam_id)), ex=300)

    return read


def _rescore(exam_id: int, cached: bool, reader: bool, bonus: float = 5.0):
    def setup(r: redis.Redis, prefix: str) -> tuple[ExamDatabase, str, int, float]:
        previous = _databases.pop(prefix, None)
        if previous:
            previous[0].close()
        db = ExamDatabase()
        key = f"{prefix}exam:{exam_id}"
        if cached:
            r.set(key, json.dumps(db.stats(exam_id)), ex=300)
        if reader:
            db.during_write = _reader(r, db, key, exam_id)
        _databases[prefix] = (db, exam_id, db.stats(exam_id))
        return db, key, exam_id, bonus

    return setup


def _rescore_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    db, exam_id, before = _databases[prefix]
    now = db.stats(exam_id)
    key = f"{prefix}exam:{exam_id}"
    cached = r.get(key)
    served = now if cached is None else json.loads(cached)  # what the next request gets
    return {
        "database rescored": now != before,
        "the next request gets": "the new stats" if served == now else "the old stats",
        "a cache entry without expiry": cached is not None and r.ttl(key) == -1,
    }


# Exercise 3 ------------------------------------------------------------------------------------


def get_many(r: redis.Redis, keys: list[str], load_many: Callable[[list[str]], dict[str, Any]],
             ttl: int) -> list[Any]:
    """The values of many cache entries at once (JSON), in the order of `keys`. Read them all in one
    round trip; load the missing ones with a single call `load_many(missing)` (each missing key
    once, in the order of `keys`; no call when nothing is missing), which returns a dict of the
    values it found; a key it does not return has the value None. Cache every loaded value,
    None included, each for `ttl` seconds, and leave the TTLs of the entries that were cached
    alone. An entry that holds JSON null is a cached None, not a miss."""
    if not keys:
        return []  # MGET needs at least one key
    texts = r.mget(keys)  # one round trip for every entry
    missing = list(dict.fromkeys(key for key, text in zip(keys, texts) if text is None))
    loaded = load_many(missing) if missing else {}
    if missing:
        pipe = r.pipeline(transaction=False)  # MSET sets no TTL: a SET ... EX per key, one round trip
        for key in missing:
            pipe.set(key, json.dumps(loaded.get(key)), ex=ttl)
        pipe.execute()
    return [loaded.get(key) if text is None else json.loads(text) for key, text in zip(keys, texts)]


def get_many_with_mset(r, keys, load_many, ttl):
    if not keys:
        return []
    texts = r.mget(keys)
    missing = list(dict.fromkeys(key for key, text in zip(keys, texts) if text is None))
    loaded = load_many(missing) if missing else {}
    if missing:
        r.mset({key: json.dumps(loaded.get(key)) for key in missing})  # MSET has no EX option
    return [loaded.get(key) if text is None else json.loads(text) for key, text in zip(keys, texts)]


def get_many_one_load_per_key(r, keys, load_many, ttl):
    if not keys:
        return []
    values = []
    for key, text in zip(keys, r.mget(keys)):
        if text is None:
            value = load_many([key]).get(key)
            r.set(key, json.dumps(value), ex=ttl)
        else:
            value = json.loads(text)
        values.append(value)
    return values


def get_many_reloads_cached_none(r, keys, load_many, ttl):
    if not keys:
        return []
    cached = [None if text is None else json.loads(text) for text in r.mget(keys)]
    missing = list(dict.fromkeys(key for key, value in zip(keys, cached) if value is None))
    loaded = load_many(missing) if missing else {}
    pipe = r.pipeline(transaction=False)
    for key in missing:
        pipe.set(key, json.dumps(loaded.get(key)), ex=ttl)
    pipe.execute()
    return [loaded.get(key) if value is None else value for key, value in zip(keys, cached)]


def get_many_reloads_all_on_a_miss(r, keys, load_many, ttl):
    texts = r.mget(keys) if keys else []
    if all(text is not None for text in texts):
        return [json.loads(text) for text in texts]
    unique = list(dict.fromkeys(keys))
    loaded = load_many(unique)  # the cached ones too: their TTLs start again
    pipe = r.pipeline(transaction=False)
    for key in unique:
        pipe.set(key, json.dumps(loaded.get(key)), ex=ttl)
    pipe.execute()
    return [loaded.get(key) for key in keys]


EXAMS = {exam: round(64 + exam * 0.37, 2) for exam in range(1, 13)}  # the database: exam -> average


def _batch(asked: list[int], cached: dict[int, tuple[Any, int]] | None = None):
    """Exams `asked` (ids; 404 is not in the database); `cached`: id -> (value, seconds left)."""

    def setup(r: redis.Redis, prefix: str) -> tuple[list[str], Callable[[list[str]], dict[str, Any]], int]:
        for exam, (value, left) in (cached or {}).items():
            r.set(f"{prefix}exam:{exam}", json.dumps(value), ex=left)

        def load_many(missing: list[str]) -> dict[str, Any]:
            r.rpush(f"{prefix}calls", json.dumps([key.removeprefix(prefix) for key in missing]))
            ids = [int(key.rsplit(":", 1)[1]) for key in missing]
            return {key: EXAMS[exam] for key, exam in zip(missing, ids) if exam in EXAMS}

        return [f"{prefix}exam:{exam}" for exam in asked], load_many, 300

    return setup


def _batch_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    entries = sorted(r.scan_iter(match=f"{prefix}exam:*"))
    return {
        "returned": result,
        "load_many calls": [json.loads(call) for call in r.lrange(f"{prefix}calls", 0, -1)],
        "cache": {key.removeprefix(prefix): (json.loads(r.get(key)), ttl_bucket(r, key)) for key in entries},
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="cache-aside with a negative cache",
        reference=get_or_load,
        cases=(
            Case("a miss (nothing cached)", _lookup(found=STATS_7)),
            Case("a hit with 100 s left", _lookup(cached=STATS_7, left=100, found=STATS_7)),
            Case("a miss for an exam nobody took (the query finds nothing)", _lookup(found=None)),
            Case("a cached 'not found' with 20 s left", _lookup(cached=None, left=20, found=None)),
            Case("a miss whose result is 0 (falsy)", _lookup(found=0)),
            Case("a cached empty list with 100 s left", _lookup(cached=[], left=100, found=[])),
        ),
        outcome=_lookup_outcome,
        hint="A cached None must be something GET can return (JSON has a word for it), and SET has "
             "an option for the expiry; pick the TTL from what the query found.",
        wrong=(get_or_load_never_caches_none, get_or_load_one_ttl, get_or_load_reloads_falsy,
               get_or_load_slides, get_or_load_returns_text),
    ),
    Spec(
        number=2,
        title="invalidate after a write",
        reference=rescore_exam,
        cases=(
            Case("exam 7 cached, rescored by 5 points", _rescore(7, cached=True, reader=False)),
            Case("exam 7 not cached; a request misses and reads the database during the write",
                 _rescore(7, cached=False, reader=True)),
            Case("exam 7 cached; a request reads it during the write", _rescore(7, cached=True, reader=True)),
            Case("exam 3 cached, rescored by 2.5 points", _rescore(3, cached=True, reader=False, bonus=2.5)),
        ),
        outcome=_rescore_outcome,
        hint="Think of a request that misses while the update is on its way: which order of the two "
             "steps leaves the cache holding what it read?",
        wrong=(rescore_exam_invalidates_first, rescore_exam_cache_untouched,
               rescore_exam_writes_through_what_it_read, rescore_exam_writes_through_for_ever),
    ),
    Spec(
        number=3,
        title="many lookups in two round trips",
        reference=get_many,
        cases=(
            Case("exams 3, 1, 2, none cached", _batch([3, 1, 2])),
            Case("exams 1 to 4, exams 2 and 4 cached with 100 s left",
                 _batch([1, 2, 3, 4], {2: (EXAMS[2], 100), 4: (EXAMS[4], 100)})),
            Case("exams 5 and 404, 404 cached as not found with 20 s left", _batch([5, 404], {404: (None, 20)})),
            Case("exams 404 and 6, nothing cached (404 is not in the database)", _batch([404, 6])),
            Case("exam 8 asked twice, and exam 9", _batch([8, 9, 8])),
            Case("no exams at all", _batch([])),
        ),
        outcome=_batch_outcome,
        hint="One command reads many keys at once; the one that writes many keys has no expiry "
             "option, so look at what a pipeline can send in one round trip.",
        wrong=(get_many_with_mset, get_many_one_load_per_key, get_many_reloads_cached_none,
               get_many_reloads_all_on_a_miss),
    ),
)
