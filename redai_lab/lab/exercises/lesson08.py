"""Lesson 08's exercises: a window of a stream's history, an exactly capped stream, a consumer
group created safely, and dead letters moved atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from . import Case, Spec, unless_none

T = 1_700_000_000_000  # a fixed instant in ms: explicit ids make every case deterministic


def _stream(r: redis.Redis, key: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
    for entry_id, fields in entries:
        r.xadd(key, fields, id=entry_id)


# --- 1. A window of history --------------------------------------------------------------------


def users_between(r: redis.Redis, stream: str, after: str, until_ms: int) -> list[str]:
    """The `user` field of every entry of `stream` whose id is strictly after the id `after`
    ("<ms>-<seq>") and at most the millisecond `until_ms` (every sequence number of that
    millisecond included), oldest first, with one command. A stream that does not exist has no
    entries."""
    return [fields["user"] for _, fields in r.xrange(stream, f"({after}", until_ms)]


def users_between_inclusive_start(r, stream, after, until_ms):
    return [fields["user"] for _, fields in r.xrange(stream, after, until_ms)]


def users_between_end_at_sequence_0(r, stream, after, until_ms):
    return [fields["user"] for _, fields in r.xrange(stream, f"({after}", f"{until_ms}-0")]


def users_between_newest_first(r, stream, after, until_ms):
    return [fields["user"] for _, fields in r.xrevrange(stream, until_ms, f"({after}")]


ORDERS = [(f"{T + i * 1000}-0", {"user": user}) for i, user in enumerate(["ann", "bob", "cat", "dan", "eve"])]
ORDERS += [(f"{T + 4000}-1", {"user": "fay"}), (f"{T + 5000}-0", {"user": "gus"})]


def _orders(after: str, until_ms: int, entries: Sequence = ORDERS) -> Callable[[redis.Redis, str], tuple]:
    def setup(r: redis.Redis, prefix: str) -> tuple:
        _stream(r, f"{prefix}orders", entries)
        return (f"{prefix}orders", after, until_ms)

    return setup


# --- 2. A stream capped exactly ----------------------------------------------------------------


def add_capped(r: redis.Redis, stream: str, fields: dict[str, str], keep: int) -> str:
    """Append an entry with `fields` to `stream` (created if needed), with an id the server gives,
    and leave exactly the `keep` newest entries in it (the new one included: never more, even for
    a moment another client could see). Return the new entry's id."""
    return r.xadd(stream, fields, maxlen=keep, approximate=False)


def add_capped_approximate(r, stream, fields, keep):
    return r.xadd(stream, fields, maxlen=keep)


def add_capped_trims_first(r, stream, fields, keep):
    r.xtrim(stream, maxlen=keep, approximate=False)
    return r.xadd(stream, fields)


def add_capped_never_trims(r, stream, fields, keep):
    return r.xadd(stream, fields)


def _log(entries: int, keep: int) -> Callable[[redis.Redis, str], tuple]:
    def setup(r: redis.Redis, prefix: str) -> tuple:
        if entries:
            pipe = r.pipeline(transaction=False)
            for i in range(entries):
                pipe.xadd(f"{prefix}log", {"i": str(i)}, id=f"{T + i}-0")
            pipe.execute()
        return (f"{prefix}log", {"i": "new"}, keep)

    return setup


def _log_after(r: redis.Redis, prefix: str, result: Any) -> tuple[bool, int, str | None, str | None]:
    """Whether the call returned the id of the stream's last entry, the stream's length, and the
    `i` of its oldest and newest entries."""
    stream = f"{prefix}log"
    oldest, newest = r.xrange(stream, count=1), r.xrevrange(stream, count=1)
    return (bool(newest) and result == newest[0][0], r.xlen(stream),
            oldest[0][1]["i"] if oldest else None, newest[0][1]["i"] if newest else None)


# --- 3. A consumer group, created safely -------------------------------------------------------


def ensure_group(r: redis.Redis, stream: str, group: str, history: bool) -> bool:
    """Make sure consumer group `group` exists on `stream`, creating the stream when it does not
    exist. A new group reads every entry already in the stream when `history` is True, only
    entries added from now on when it is False. A group that already exists is left exactly as it
    is (its position and pending entries kept), and that is not an error. Return True when the call
    created the group, False when it was already there."""
    try:
        r.xgroup_create(stream, group, id="0" if history else "$", mkstream=True)
    except redis.ResponseError as error:
        if not str(error).startswith("BUSYGROUP"):
            raise
        return False
    return True


def ensure_group_always_from_now(r, stream, group, history):
    try:
        r.xgroup_create(stream, group, id="$", mkstream=True)
    except redis.ResponseError:
        return False
    return True


def ensure_group_without_mkstream(r, stream, group, history):
    try:
        r.xgroup_create(stream, group, id="0" if history else "$")
    except redis.ResponseError as error:
        if not str(error).startswith("BUSYGROUP"):
            raise
        return False
    return True


def ensure_group_busygroup_raises(r, stream, group, history):
    r.xgroup_create(stream, group, id="0" if history else "$", mkstream=True)
    return True


def ensure_group_recreates(r, stream, group, history):
    existed = r.exists(stream) and any(g["name"] == group for g in r.xinfo_groups(stream))
    if existed:
        r.xgroup_destroy(stream, group)
    r.xgroup_create(stream, group, id="0" if history else "$", mkstream=True)
    return not existed


TASKS = [(f"{T + n}-0", {"job": f"resize-{n}"}) for n in range(1, 5)]


def _tasks(group: str, history: bool, *, groups: dict[str, int] | None = None,
           entries: Sequence = TASKS) -> Callable[[redis.Redis, str], tuple]:
    """A case's setup: stream `<prefix>tasks` with ``entries`` (none: no stream), and ``groups``
    that already exist, each having delivered its first n entries to a consumer."""

    def setup(r: redis.Redis, prefix: str) -> tuple:
        stream = f"{prefix}tasks"
        _stream(r, stream, entries)
        for name, read in (groups or {}).items():
            r.xgroup_create(stream, name, id="0")
            if read:
                r.xreadgroup(name, "c1", {stream: ">"}, count=read)
        return (stream, group, history)

    return setup


def _groups_after(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, dict[str, tuple] | None]:
    """What a call returned, and each group of the stream: its position and pending count."""
    stream = f"{prefix}tasks"
    if not r.exists(stream):
        return result, None
    return result, {g["name"]: (g["last-delivered-id"], g["pending"]) for g in r.xinfo_groups(stream)}


# --- 4. Dead letters ---------------------------------------------------------------------------


def dead_letter(r: redis.Redis, stream: str, group: str, dead: str, max_deliveries: int) -> list[str]:
    """Move each entry pending in consumer group `group` of `stream` that has been delivered at
    least `max_deliveries` times (to any consumer) to the stream `dead`: append its fields plus
    `original_id` (its id in `stream`) to `dead` with an id the server gives, and acknowledge it in
    `group`, both at once (a crash never leaves it written but still pending, nor acknowledged but
    not written). An entry pending that often but no longer in `stream` (deleted) is acknowledged
    and not written. Return the ids written to `dead`, oldest first. The group may have any number
    of pending entries."""
    moved = []
    start = "-"
    while page := r.xpending_range(stream, group, start, "+", 100):
        for entry in page:
            if entry["times_delivered"] < max_deliveries:
                continue
            entry_id = entry["message_id"]
            found = r.xrange(stream, entry_id, entry_id)
            pipe = r.pipeline()  # MULTI/EXEC: written and acknowledged together
            if found:
                pipe.xadd(dead, {**found[0][1], "original_id": entry_id})
                moved.append(entry_id)
            pipe.xack(stream, group, entry_id)
            pipe.execute()
        start = "(" + page[-1]["message_id"]
    return moved


def dead_letter_more_than(r, stream, group, dead, max_deliveries):
    moved = []
    for entry in r.xpending_range(stream, group, "-", "+", 1000):
        if entry["times_delivered"] > max_deliveries:
            entry_id = entry["message_id"]
            found = r.xrange(stream, entry_id, entry_id)
            pipe = r.pipeline()
            if found:
                pipe.xadd(dead, {**found[0][1], "original_id": entry_id})
                moved.append(entry_id)
            pipe.xack(stream, group, entry_id)
            pipe.execute()
    return moved


def dead_letter_never_acknowledges(r, stream, group, dead, max_deliveries):
    moved = []
    for entry in r.xpending_range(stream, group, "-", "+", 1000):
        if entry["times_delivered"] >= max_deliveries:
            entry_id = entry["message_id"]
            for _, fields in r.xrange(stream, entry_id, entry_id):
                r.xadd(dead, {**fields, "original_id": entry_id})
                moved.append(entry_id)
    return moved


def dead_letter_first_page_only(r, stream, group, dead, max_deliveries):
    moved = []
    for entry in r.xpending_range(stream, group, "-", "+", 10):
        if entry["times_delivered"] >= max_deliveries:
            entry_id = entry["message_id"]
            found = r.xrange(stream, entry_id, entry_id)
            pipe = r.pipeline()
            if found:
                pipe.xadd(dead, {**found[0][1], "original_id": entry_id})
                moved.append(entry_id)
            pipe.xack(stream, group, entry_id)
            pipe.execute()
    return moved


def dead_letter_assumes_the_entry_exists(r, stream, group, dead, max_deliveries):
    moved = []
    for entry in r.xpending_range(stream, group, "-", "+", 1000):
        if entry["times_delivered"] >= max_deliveries:
            entry_id = entry["message_id"]
            [(_, fields)] = r.xrange(stream, entry_id, entry_id)
            pipe = r.pipeline()
            pipe.xadd(dead, {**fields, "original_id": entry_id})
            pipe.xack(stream, group, entry_id)
            pipe.execute()
            moved.append(entry_id)
    return moved


def _deliveries(counts: Sequence[int], max_deliveries: int, *, deleted: Sequence[int] = (),
                letters: int = 0) -> Callable[[redis.Redis, str], tuple]:
    """A case's setup: stream `<prefix>tasks`, one entry per count, all read by group `workers`
    and then redelivered until each has been delivered that many times (``XCLAIM ... RETRYCOUNT``);
    entries at the positions ``deleted`` removed from the stream since; `<prefix>dead` holding
    ``letters`` earlier dead letters."""

    def setup(r: redis.Redis, prefix: str) -> tuple:
        stream, dead = f"{prefix}tasks", f"{prefix}dead"
        ids = [f"{T + n}-0" for n in range(1, len(counts) + 1)]
        _stream(r, stream, [(entry_id, {"job": f"resize-{n}"}) for n, entry_id in enumerate(ids, 1)])
        r.xgroup_create(stream, "workers", id="0")
        r.xreadgroup("workers", "w1", {stream: ">"})
        for entry_id, count in zip(ids, counts):
            if count > 1:
                r.xclaim(stream, "workers", "w2", 0, [entry_id], retrycount=count, justid=True)
        if deleted:
            r.xdel(stream, *[ids[i] for i in deleted])
        for n in range(letters):
            r.xadd(dead, {"job": f"old-{n}", "original_id": f"{T - 100 + n}-0"})
        return (stream, "workers", dead, max_deliveries)

    return setup


def _dead_after(
    r: redis.Redis, prefix: str, result: Any
) -> tuple[Any, list[dict[str, str]], list[str]]:
    """What a call returned, the dead letters' fields (their ids are the server's clock), and the
    ids still pending in the group."""
    letters = [fields for _, fields in r.xrange(f"{prefix}dead")]
    pending = [entry["message_id"] for entry in r.xpending_range(f"{prefix}tasks", "workers", "-", "+", 1000)]
    return result, letters, pending


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a window of history",
        reference=users_between,
        cases=(
            Case("after dan, up to the millisecond of eve and fay", _orders(f"{T + 3000}-0", T + 4000)),
            Case("an id between two entries, up to gus", _orders(f"{T + 1500}-0", T + 5000)),
            Case("a window before the first entry", _orders(f"{T - 5000}-0", T)),
            Case("nothing in the window", _orders(f"{T + 5000}-0", T + 9000)),
            Case("a stream that does not exist", _orders(f"{T}-0", T + 9000, entries=())),
        ),
        hint="XRANGE's bounds are inclusive unless marked; an id without its sequence number means a "
             "whole millisecond.",
        wrong=(users_between_inclusive_start, users_between_end_at_sequence_0, users_between_newest_first),
    ),
    Spec(
        number=2,
        title="a stream capped exactly",
        reference=add_capped,
        cases=(
            Case("150 entries, keep 10", _log(150, 10)),
            Case("exactly 5 entries, keep 5", _log(5, 5)),
            Case("fewer entries than keep", _log(3, 10)),
            Case("a stream that does not exist", _log(0, 4)),
        ),
        outcome=unless_none(_log_after),
        hint="XADD can trim in the same command; look at what redis-py's maxlen= sends by default.",
        wrong=(add_capped_approximate, add_capped_trims_first, add_capped_never_trims),
    ),
    Spec(
        number=3,
        title="a consumer group, created safely",
        reference=ensure_group,
        cases=(
            Case("a stream with history, read it all", _tasks("audit", True)),
            Case("a stream with history, only new entries", _tasks("audit", False)),
            Case("no stream yet", _tasks("audit", True, entries=())),
            Case("the group exists and has read 2 entries", _tasks("audit", True, groups={"audit": 2})),
            Case("another group exists", _tasks("audit", True, groups={"workers": 3})),
        ),
        outcome=unless_none(_groups_after),
        hint="XGROUP CREATE's id decides where a new group starts; one option creates the stream; an "
             "existing group makes it fail with an error you can recognise.",
        wrong=(ensure_group_always_from_now, ensure_group_without_mkstream, ensure_group_busygroup_raises,
               ensure_group_recreates),
    ),
    Spec(
        number=4,
        title="dead letters",
        reference=dead_letter,
        cases=(
            Case("deliveries 1, 3, 5, 2, 3, at least 3", _deliveries([1, 3, 5, 2, 3], 3)),
            Case("none delivered that often", _deliveries([1, 2, 1], 3)),
            Case("a dead-letter stream that already has letters", _deliveries([4, 1], 2, letters=2)),
            Case("12 entries over the limit", _deliveries([3] * 12, 2)),
            Case("an entry deleted from the stream", _deliveries([2, 2, 1], 2, deleted=[0])),
        ),
        outcome=unless_none(_dead_after),
        hint="XPENDING with a range lists each pending entry's delivery count, a page at a time; MULTI/EXEC "
             "makes the write and the XACK one.",
        wrong=(dead_letter_more_than, dead_letter_never_acknowledges, dead_letter_first_page_only,
               dead_letter_assumes_the_entry_exists),
    ),
)
