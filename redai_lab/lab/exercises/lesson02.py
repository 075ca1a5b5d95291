"""Lesson 02, strings and counters: INCR and MGET, GETDEL, GETEX, a fixed-window counter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis

from . import Case, Spec, ttl_seconds


def _keys_under(r: redis.Redis, prefix: str) -> dict[str, str]:
    """Every string key the case left under `prefix`, with its value, without the prefix."""
    return {key.removeprefix(prefix): r.get(key) for key in sorted(r.scan_iter(match=f"{prefix}*", count=1000))}


# 1. Page views: INCR, then one MGET ------------------------------------------------------------


def count_page_views(r: redis.Redis, namespace: str, visits: list[str], pages: list[str]) -> list[int]:
    """Count each visit in `visits` (page names) with one counter per page, `<namespace>:<page>`.

    Counters may already hold counts from earlier visits: add to them, atomically, never reset
    them. Then read the counts of `pages` back in one command and return them in the order of
    `pages`, as ints (0 for a page never visited)."""
    for page in visits:
        r.incr(f"{namespace}:{page}")
    counts = r.mget([f"{namespace}:{page}" for page in pages])
    return [int(count or 0) for count in counts]


def _views_case(visits: Sequence[str], pages: Sequence[str], earlier: dict[str, int] | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[str], list[str]]:
        for page, count in (earlier or {}).items():
            r.set(f"{prefix}views:{page}", count)
        return f"{prefix}views", list(visits), list(pages)

    return setup


def _views_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    return {"returned": result, "counters": _keys_under(r, prefix)}


def count_page_views_set_from_python(r, namespace, visits, pages):
    if visits:
        r.mset({f"{namespace}:{page}": n for page, n in Counter(visits).items()})
    return [int(n or 0) for n in r.mget([f"{namespace}:{page}" for page in pages])]  # earlier counts lost


def count_page_views_strings(r, namespace, visits, pages):
    for page in visits:
        r.incr(f"{namespace}:{page}")
    return r.mget([f"{namespace}:{page}" for page in pages])  # '3', not 3; None, not 0


def count_page_views_no_default(r, namespace, visits, pages):
    for page in visits:
        r.incr(f"{namespace}:{page}")
    return [int(n) for n in r.mget([f"{namespace}:{page}" for page in pages])]  # int(None) raises


def count_page_views_once_per_page(r, namespace, visits, pages):
    for page in set(visits):  # one INCR per distinct page, not per visit
        r.incr(f"{namespace}:{page}")
    return [int(n or 0) for n in r.mget([f"{namespace}:{page}" for page in pages])]


# 2. A one-time download link: GETDEL -----------------------------------------------------------


def redeem(r: redis.Redis, key: str) -> str | None:
    """Redeem the one-time download link stored at `key` (its value is a file name).

    Return the file name and make sure the link cannot be redeemed again: even two clients
    redeeming at the same moment must not both get it, so read and remove in one command.
    A link that does not exist (never issued, expired or already used) returns None."""
    return r.getdel(key)


def _redeem_case(links: dict[str, tuple[str, int | None]], token: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        for name, (value, ttl) in links.items():
            r.set(f"{prefix}download:{name}", value, ex=ttl)
        return (f"{prefix}download:{token}",)

    return setup


def _redeem_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    return {"returned": result, "keys left": _keys_under(r, prefix)}


def redeem_get_only(r, key):
    return r.get(key)  # the link can be redeemed again and again


def redeem_delete(r, key):
    return r.delete(key)  # 1 or 0, not the file name


def redeem_marks_used(r, key):
    return r.set(key, "", get=True)  # a used link stays behind (as ''), and a missing one is created


# 3. A sliding session: GETEX ------------------------------------------------------------------


def touch(r: redis.Redis, key: str, ms: int) -> str | None:
    """Read session `key` and reset its time to live to `ms` milliseconds, in one command.

    Return the session's value. The new TTL is exactly `ms`, whatever the session had before
    (more time, less time, or no expiry at all). A missing session returns None and stays missing."""
    return r.getex(key, px=ms)


def _touch_case(ttl_ms: int | None, ms: int, *, exists: bool = True):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        if exists:
            r.set(f"{prefix}session:42", "user:42", px=ttl_ms)
        return f"{prefix}session:42", ms

    return setup


def _touch_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    return {"returned": result, "ttl": ttl_seconds(r, f"{prefix}session:42")}


def touch_get_only(r, key, ms):
    return r.get(key)  # the TTL keeps running down


def touch_seconds(r, key, ms):
    return r.getex(key, ex=ms)  # EX is seconds: 1000 times too long


def touch_never_shortens(r, key, ms):
    value = r.get(key)
    r.pexpire(key, ms, gt=True)  # GT: an hour left stays an hour, no TTL stays none
    return value


def touch_sets_again(r, key, ms):
    value = r.get(key)
    r.set(key, value, px=ms)  # a missing session: SET of None raises
    return value


# 4. A per-window request counter: INCR + EXPIRE NX, atomically ----------------------------------


def count_request(r: redis.Redis, key: str, window: int) -> int:
    """Count one request in the fixed-window counter `key` and return the new count.

    The first request of a window starts a TTL of `window` seconds; later requests never move
    it (the window must end on time). A counter found without a TTL (left by older code) gets
    one. A crash between commands must never leave a counter without a TTL: send the commands
    as one atomic unit."""
    with r.pipeline(transaction=True) as pipe:
        count, _ = pipe.incr(key).expire(key, window, nx=True).execute()
    return count


def _request_case(count: int | None, ttl: int | None, window: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int]:
        if count is not None:
            r.set(f"{prefix}requests:user:42", count, ex=ttl)
        return f"{prefix}requests:user:42", window

    return setup


def _request_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    if result is None:
        return None
    return {"returned": result, "ttl": ttl_seconds(r, f"{prefix}requests:user:42")}


def count_request_resets_window(r, key, window):
    with r.pipeline(transaction=True) as pipe:
        count, _ = pipe.incr(key).expire(key, window).execute()  # every request pushes the end back
    return count


def count_request_no_ttl(r, key, window):
    return r.incr(key)  # the counter never expires


def count_request_first_only(r, key, window):
    count = r.incr(key)
    if count == 1:  # two commands; and a counter found without a TTL never gets one
        r.expire(key, window)
    return count


def count_request_get_set(r, key, window):
    count = int(r.get(key) or 0) + 1  # read-modify-write: loses updates, and resets the window
    r.set(key, count, ex=window)
    return count


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="page views with counters",
        reference=count_page_views,
        cases=(
            Case("the lesson's visits", _views_case(
                ["home", "pricing", "home", "docs", "home", "pricing"], ["home", "pricing", "docs", "blog"])),
            Case("counters that already hold counts", _views_case(
                ["home", "docs"], ["docs", "home", "pricing"], earlier={"home": 10, "pricing": 4})),
            Case("no visits at all", _views_case([], ["home", "blog"])),
            Case("no page asked", _views_case(["home"], [])),
        ),
        hint="INCR creates a missing counter at 0 and adds 1; MGET reads many keys in one command, None for a missing one.",
        outcome=_views_outcome,
        wrong=(count_page_views_set_from_python, count_page_views_strings, count_page_views_no_default,
               count_page_views_once_per_page),
    ),
    Spec(
        number=2,
        title="a one-time download link",
        reference=redeem,
        cases=(
            Case("a link issued for 10 minutes", _redeem_case({"7f3a": ("report.pdf", 600)}, "7f3a")),
            Case("a link already used", _redeem_case({}, "7f3a")),
            Case("two links, one redeemed", _redeem_case(
                {"7f3a": ("report.pdf", 600), "c41d": ("slides.pdf", None)}, "c41d")),
        ),
        hint="Since Redis 6.2 one command returns a string's value and deletes the key.",
        outcome=_redeem_outcome,
        wrong=(redeem_get_only, redeem_delete, redeem_marks_used),
    ),
    Spec(
        number=3,
        title="a sliding session",
        reference=touch,
        cases=(
            Case("a session with 2 s left, reset to 5 s", _touch_case(2_000, 5_000)),
            Case("a session with an hour left, reset to 5 s", _touch_case(3_600_000, 5_000)),
            Case("a session without expiry", _touch_case(None, 5_000)),
            Case("no session", _touch_case(None, 5_000, exists=False)),
            Case("a session with 2 s left, reset to 30 s", _touch_case(2_000, 30_000)),
        ),
        hint="Since Redis 6.2, GET has a sibling that also sets the expiry (EX, PX, EXAT, PXAT or PERSIST).",
        outcome=_touch_outcome,
        wrong=(touch_get_only, touch_seconds, touch_never_shortens, touch_sets_again),
    ),
    Spec(
        number=4,
        title="a per-window request counter",
        reference=count_request,
        cases=(
            Case("the first request", _request_case(None, None, 60)),
            Case("a window half over (count 5, 30 s left)", _request_case(5, 30, 60)),
            Case("a counter left without a TTL", _request_case(3, None, 60)),
            Case("the first request of a 10 s window", _request_case(None, None, 10)),
        ),
        hint="INCR keeps a counter's TTL; one of EXPIRE's options (7.0+) never replaces an existing TTL, "
             "and MULTI/EXEC makes several commands one unit.",
        outcome=_request_outcome,
        wrong=(count_request_resets_window, count_request_no_ttl, count_request_first_only, count_request_get_set),
    ),
)
