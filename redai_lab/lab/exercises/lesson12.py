"""Lesson 12's exercises: Bloom, Cuckoo and Count-Min, graded on fresh data.

They need the RedisBloom module (``bf``): the lesson runs their checks only where the server has
it (``HAS_BLOOM``), and says so in one line where it has not. Every function gets ``r``
(``decode_responses=True``) and key names under the case's prefix.
"""

from __future__ import annotations

from typing import Any

import redis

from . import Case, Spec, unless_none

# ---------------------------------------------------------------------------------------------
# 1. A Bloom filter sized on first use, kept as it is afterwards.


def remember(r, key: str, articles: list[str], capacity: int, error_rate: float) -> list[bool]:
    """Add `articles` to the Bloom filter `key` and return, for each, whether it was new (True) or
    probably seen before (False). When `key` does not exist yet, it must be created for
    `capacity` items at `error_rate`; an existing filter is kept as it is (its size, its items).
    An empty `articles` changes nothing."""
    if not articles:
        return []
    # BF.INSERT creates the filter with these parameters only if it is missing: one atomic command.
    return [bool(added) for added in r.bf().insert(key, articles, capacity=capacity, error=error_rate)]


OLD_ARTICLES = ("article:1", "article:2")
PROBES = ("article:1", "article:2", "article:3", "article:4", "article:5")


def _articles_case(articles: list[str], capacity: int, error_rate: float, *, existing: int | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[str], int, float]:
        if existing is not None:
            r.bf().reserve(f"{prefix}seen", 0.01, existing)
            r.bf().madd(f"{prefix}seen", *OLD_ARTICLES)
        return f"{prefix}seen", articles, capacity, error_rate

    return setup


def _filter(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, the filter's BF.INFO (None if missing) and which probes it holds."""
    key = f"{prefix}seen"
    if not r.exists(key):
        return result, None, []
    info: Any = r.bf().info(key)
    described = {"capacity": info.capacity, "size": info.size, "filters": info.filterNum,
                 "inserted": info.insertedNum}
    return result, described, r.bf().mexists(key, *PROBES)


def remember_without_reserve(r, key, articles, capacity, error_rate):
    if not articles:
        return []
    return [bool(added) for added in r.bf().madd(key, *articles)]  # a missing key gets capacity 100, 1%


def remember_reserve_always(r, key, articles, capacity, error_rate):
    if not articles:
        return []
    r.bf().reserve(key, error_rate, capacity)  # an error when the filter exists
    return [bool(added) for added in r.bf().madd(key, *articles)]


def remember_recreated(r, key, articles, capacity, error_rate):
    if not articles:
        return []
    r.delete(key)  # forgets every article seen before
    r.bf().reserve(key, error_rate, capacity)
    return [bool(added) for added in r.bf().madd(key, *articles)]


def remember_seen_before(r, key, articles, capacity, error_rate):
    if not articles:
        return []
    if not r.exists(key):
        r.bf().reserve(key, error_rate, capacity)
    seen = r.bf().mexists(key, *articles)  # asked before adding: misses a duplicate within the list
    r.bf().madd(key, *articles)
    return [not s for s in seen]


# ---------------------------------------------------------------------------------------------
# 2. Who is online: membership that has to forget.


def online_after(r, key: str, events: list[tuple[str, str]], users: list[str]) -> list[bool]:
    """Keep who is online in the Cuckoo filter `key` (create it for 1,000 users if it does not
    exist; an existing one already holds users who logged in earlier). Apply `events`, in order:
    ("login", user) or ("logout", user). Logging in twice and out once leaves a user offline.
    Return, for each of `users`, whether the filter says they are online afterwards."""
    if not r.exists(key):
        r.cf().reserve(key, 1_000)
    for action, user in events:
        if action == "login":
            r.cf().addnx(key, user)  # a second login must not need a second logout
        else:
            r.cf().delete(key, user)
    return [bool(online) for online in r.cf().mexists(key, *users)]


def _online_case(events: list[tuple[str, str]], users: list[str], *, earlier: tuple[str, ...] = ()):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[tuple[str, str]], list[str]]:
        if earlier:
            r.cf().reserve(f"{prefix}online", 1_000)
            for user in earlier:
                r.cf().addnx(f"{prefix}online", user)
        return f"{prefix}online", events, users

    return setup


def _filter_type(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and the type of the filter's key."""
    return result, r.type(f"{prefix}online")


def online_after_add(r, key, events, users):
    if not r.exists(key):
        r.cf().reserve(key, 1_000)
    for action, user in events:
        if action == "login":
            r.cf().add(key, user)  # two logins, two fingerprints: one logout leaves one
        else:
            r.cf().delete(key, user)
    return [bool(online) for online in r.cf().mexists(key, *users)]


def online_after_bloom(r, key, events, users):
    for action, user in events:
        if action == "login":
            r.bf().add(key, user)  # a Bloom filter cannot delete: logouts are lost
    return [bool(online) for online in r.bf().mexists(key, *users)]


def online_after_reserve_always(r, key, events, users):
    r.cf().reserve(key, 1_000)  # an error when the filter exists
    for action, user in events:
        if action == "login":
            r.cf().addnx(key, user)
        else:
            r.cf().delete(key, user)
    return [bool(online) for online in r.cf().mexists(key, *users)]


# ---------------------------------------------------------------------------------------------
# 3. Word counts in a Count-Min sketch.


def word_counts(r, key: str, text: str, words: list[str]) -> list[int]:
    """Count the words of `text` (split on whitespace) in the Count-Min sketch `key`, created with
    error 0.001 and probability 0.01 if it does not exist (an existing sketch keeps its counts and
    adds these), and return the sketch's counts for `words`."""
    from collections import Counter

    if not r.exists(key):
        r.cms().initbyprob(key, 0.001, 0.01)
    counts = Counter(text.split())
    if counts:  # CMS.INCRBY needs at least one item
        r.cms().incrby(key, list(counts), list(counts.values()))
    return r.cms().query(key, *words)


def _words_case(text: str, words: list[str], *, earlier: str = ""):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, list[str]]:
        if earlier:
            r.cms().initbyprob(f"{prefix}words", 0.001, 0.01)
            for word in earlier.split():
                r.cms().incrby(f"{prefix}words", [word], [1])
        return f"{prefix}words", text, words

    return setup


def _sketch(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and the sketch's width, depth and total count."""
    key = f"{prefix}words"
    if not r.exists(key):
        return result, None
    info: Any = r.cms().info(key)
    return result, {"width": info.width, "depth": info.depth, "count": info.count}


def word_counts_init_always(r, key, text, words):
    from collections import Counter

    r.cms().initbyprob(key, 0.001, 0.01)  # an error when the sketch exists
    counts = Counter(text.split())
    if counts:
        r.cms().incrby(key, list(counts), list(counts.values()))
    return r.cms().query(key, *words)


def word_counts_distinct(r, key, text, words):
    if not r.exists(key):
        r.cms().initbyprob(key, 0.001, 0.01)
    distinct = sorted(set(text.split()))
    if distinct:
        r.cms().incrby(key, distinct, [1] * len(distinct))  # each word once, however often it comes
    return r.cms().query(key, *words)


def word_counts_in_python(r, key, text, words):
    from collections import Counter

    counts = Counter(text.split())  # exact, but the sketch never sees them
    return [counts[word] for word in words]


def word_counts_empty_text_fails(r, key, text, words):
    from collections import Counter

    if not r.exists(key):
        r.cms().initbyprob(key, 0.001, 0.01)
    counts = Counter(text.split())
    r.cms().incrby(key, list(counts), list(counts.values()))  # an error with no words
    return r.cms().query(key, *words)


EXERCISES = (
    Spec(
        number=1,
        title="a Bloom filter sized on first use",
        reference=remember,
        outcome=unless_none(_filter),
        cases=(
            Case("a new filter for 1,000 articles at 0.1%, one article twice",
                 _articles_case(["article:3", "article:4", "article:3", "article:5"], 1_000, 0.001)),
            Case("an existing filter (200 items at 1%) that holds article:1 and article:2",
                 _articles_case(["article:2", "article:3"], 1_000, 0.001, existing=200)),
            Case("no articles, no filter yet", _articles_case([], 1_000, 0.001)),
            Case("150 new articles for a filter of 500",
                 _articles_case([f"article:{i}" for i in range(3, 153)], 500, 0.01)),
        ),
        hint="One of the BF commands creates the filter with your capacity and error rate only when it "
             "is missing, and adds the items in the same call.",
        wrong=(remember_without_reserve, remember_reserve_always, remember_recreated, remember_seen_before),
    ),
    Spec(
        number=2,
        title="who is online, in a Cuckoo filter",
        reference=online_after,
        outcome=unless_none(_filter_type),
        cases=(
            Case("ann, bob and cat log in; bob logs out",
                 _online_case([("login", "ann"), ("login", "bob"), ("login", "cat"), ("logout", "bob")],
                              ["ann", "bob", "cat"])),
            Case("dan logs in twice, then out once", _online_case([("login", "dan"), ("login", "dan"),
                                                                   ("logout", "dan")], ["dan"])),
            Case("eve, who never logged in, logs out", _online_case([("login", "ann"), ("logout", "eve")],
                                                                    ["ann", "eve"])),
            Case("a filter that already holds ann", _online_case([("login", "bob")], ["ann", "bob"],
                                                                 earlier=("ann",))),
            Case("no events and no filter yet", _online_case([], ["ann"])),
        ),
        hint="A Bloom filter cannot forget; a Cuckoo filter can, once per fingerprint added, and has an "
             "add that does nothing when the item seems present.",
        wrong=(online_after_add, online_after_bloom, online_after_reserve_always),
    ),
    Spec(
        number=3,
        title="word counts in a Count-Min sketch",
        reference=word_counts,
        outcome=unless_none(_sketch),
        cases=(
            Case("'the cat and the dog and the bird'",
                 _words_case("the cat and the dog and the bird", ["the", "and", "fish"])),
            Case("a sketch that already counted 'the cat'",
                 _words_case("the dog", ["the", "cat", "dog"], earlier="the cat")),
            Case("an empty text and no sketch yet", _words_case("", ["the"])),
            Case("one word 1,000 times", _words_case(" ".join(["spam"] * 1_000), ["spam", "eggs"])),
        ),
        hint="CMS.INCRBY takes items and increments together, so count the words first; the sketch "
             "must exist before you add to it or query it.",
        wrong=(word_counts_init_always, word_counts_distinct, word_counts_in_python, word_counts_empty_text_fails),
    ),
)
