"""Lesson 05's exercises: sets (membership, set algebra kept on the server, SPOP, a TTL per set)."""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec


def _ttl(r: redis.Redis, key: str) -> str:
    """A key's TTL as a check compares it: rounded up to 10 s, so runs a few ms apart agree."""
    milliseconds = r.pttl(key)
    if milliseconds < 0:
        return {-1: "no expiry", -2: "gone"}[milliseconds]
    return f"expires within {-(-milliseconds // 10_000) * 10} s"


def _sets(r: redis.Redis, prefix: str) -> dict[str, tuple[list[str], str]]:
    """Every set under ``prefix`` (members sorted, TTL), by key name without the prefix."""
    return {
        key.removeprefix(prefix): (sorted(r.smembers(key)), _ttl(r, key))
        for key in sorted(r.scan_iter(match=f"{prefix}*"))
    }


def _returned_and_sets(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, dict[str, Any]]:
    return result, _sets(r, prefix)


# Exercise 1 ------------------------------------------------------------------------------------


def online_among(r: redis.Redis, online: str, users: list[str]) -> list[str]:
    """Set `online` holds the users online now. Return the users of the list `users` who are
    online, in the order of `users`, asking Redis at most once however many users there are."""
    if not users:
        return []  # SMISMEMBER needs at least one member
    # SMISMEMBER (6.2): one answer per member, 1 or 0, in the order asked.
    return [user for user, here in zip(users, r.smismember(online, users)) if here]


def online_among_is_true(r, online, users):
    if not users:
        return []
    return [user for user, here in zip(users, r.smismember(online, users)) if here is True]


def online_among_sorted(r, online, users):
    return sorted(set(users) & r.smembers(online))


def online_among_no_users(r, online, users):
    return [user for user, here in zip(users, r.smismember(online, users)) if here]


def _online(members: list[str], users: list[str]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, list[str]]:
        if members:
            r.sadd(f"{prefix}online", *members)
        return f"{prefix}online", users

    return setup


# Exercise 2 ------------------------------------------------------------------------------------


def search_posts(r: redis.Redis, include: list[str], exclude: list[str], cache: str, ttl: int) -> list[str]:
    """Sets `tag:<name>` hold the ids of the posts with that tag. Find the posts in every set of
    `include` and in none of `exclude` (a list, possibly empty). Keep the result on the server as
    the set `cache`, replacing any earlier one and expiring `ttl` seconds from now (Redis keeps no
    empty set: an empty result leaves no `cache` key), and return the post ids sorted as numbers.
    Nobody may ever see `cache` without its expiry, and no other key is left behind."""
    pipe = r.pipeline(transaction=True)  # MULTI/EXEC: the result and its TTL appear together
    pipe.sinterstore(cache, include)  # replaces cache (and deletes it when the result is empty)
    if exclude:
        pipe.sdiffstore(cache, [cache, *exclude])
    pipe.expire(cache, ttl)
    pipe.smembers(cache)
    found = pipe.execute()[-1]
    return sorted(found, key=int)  # "10" after "9": members are strings


def search_posts_without_ttl(r, include, exclude, cache, ttl):
    r.sinterstore(cache, include)
    if exclude:
        r.sdiffstore(cache, [cache, *exclude])
    return sorted(r.smembers(cache), key=int)


def search_posts_sorted_as_text(r, include, exclude, cache, ttl):
    pipe = r.pipeline(transaction=True)
    pipe.sinterstore(cache, include)
    if exclude:
        pipe.sdiffstore(cache, [cache, *exclude])
    pipe.expire(cache, ttl)
    pipe.smembers(cache)
    return sorted(pipe.execute()[-1])


def search_posts_caches_before_excluding(r, include, exclude, cache, ttl):
    pipe = r.pipeline(transaction=True)
    pipe.sinterstore(cache, include)
    pipe.expire(cache, ttl)
    pipe.sdiff(cache, *exclude)
    return sorted(pipe.execute()[-1], key=int)


def search_posts_added_to_the_cache(r, include, exclude, cache, ttl):
    found = r.sinter(include) - (r.sunion(exclude) if exclude else set())
    if found:
        r.sadd(cache, *found)  # adds to an earlier result instead of replacing it
        r.expire(cache, ttl)
    return sorted(found, key=int)


TAGS = {"redis": [1, 2, 3, 4, 5, 8, 10], "python": [2, 3, 5, 7, 8, 10], "java": [3, 9], "go": [2, 4]}


def _tags(include: list[str], exclude: list[str], old_cache: list[str] | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[list[str], list[str], str, int]:
        for tag, posts in TAGS.items():
            r.sadd(f"{prefix}tag:{tag}", *posts)
        if old_cache:
            r.sadd(f"{prefix}search", *old_cache)  # an earlier search's result, without a TTL
        tags = [f"{prefix}tag:{t}" for t in include], [f"{prefix}tag:{t}" for t in exclude]
        return *tags, f"{prefix}search", 60

    return setup


def _search_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, dict[str, Any]]:
    cache = f"{prefix}search"
    return result, {
        "cache": sorted(r.smembers(cache), key=lambda post: (len(post), post)),  # numbers in order
        "cache TTL": _ttl(r, cache),
        "tag sets unchanged": all(
            r.smembers(f"{prefix}tag:{tag}") == set(map(str, posts)) for tag, posts in TAGS.items()),
        "other keys": sorted(key.removeprefix(prefix) for key in r.scan_iter(match=f"{prefix}*")
                             if key != cache and not key.startswith(f"{prefix}tag:")),
    }


# Exercise 3 ------------------------------------------------------------------------------------


def draw_winners(r: redis.Redis, entries: str, winners: str, n: int) -> list[str]:
    """Set `entries` holds the people in a raffle. Draw `n` distinct winners at random (everyone
    left, when fewer than `n` are), so that nobody can ever win twice, not even in a later draw;
    add them to the set `winners` (earlier draws' winners stay) and return them, in any order."""
    drawn = r.spop(entries, n)  # SPOP removes them: a later draw cannot pick them again
    if drawn:  # SADD needs at least one member
        r.sadd(winners, *drawn)
    return drawn


def draw_winners_left_in_the_raffle(r, entries, winners, n):
    drawn = r.srandmember(entries, n)  # random, but not removed
    if drawn:
        r.sadd(winners, *drawn)
    return drawn


def draw_winners_not_recorded(r, entries, winners, n):
    return r.spop(entries, n)


def draw_winners_one_at_a_time(r, entries, winners, n):
    drawn = [r.spop(entries) for _ in range(n)]
    r.sadd(winners, *drawn)
    return drawn


def draw_winners_from_an_empty_raffle(r, entries, winners, n):
    drawn = r.spop(entries, n)
    r.sadd(winners, *drawn)
    return drawn


def _raffle(people: int, earlier_winners: int, n: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        if people:
            r.sadd(f"{prefix}raffle:entries", *[f"person{i}" for i in range(people)])
        if earlier_winners:
            r.sadd(f"{prefix}raffle:winners", *[f"winner{i}" for i in range(earlier_winners)])
        return f"{prefix}raffle:entries", f"{prefix}raffle:winners", n

    return setup


def _draw_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any] | None:
    """What a random draw must get right, whoever is drawn."""
    if result is None:
        return None
    drawn = list(result)
    entries, winners = r.smembers(f"{prefix}raffle:entries"), r.smembers(f"{prefix}raffle:winners")
    return {
        "drawn": len(drawn),
        "distinct": len(set(drawn)),
        "drawn and now among the winners": len(set(drawn) & winners),
        "winners": len(winners),
        "left in the raffle": len(entries),
        "in the raffle and among the winners": len(entries & winners),
        "people in all": len(entries | winners),
    }


# Exercise 4 ------------------------------------------------------------------------------------


def count_visit(r: redis.Redis, day: str, user: str, ttl: int) -> bool:
    """Set `day` (such as `visits:2025-06-01`) holds the users who visited on that day. Record a
    visit of `user` and return True when it is their first visit that day. The set must expire
    `ttl` seconds after the day's first visit, however many visits follow: a later visit never
    pushes the expiry back."""
    pipe = r.pipeline(transaction=True)  # the set never exists without its TTL
    pipe.sadd(day, user)
    pipe.expire(day, ttl, nx=True)  # NX (7.0): only when the set has no expiry yet
    added, _ = pipe.execute()
    return added == 1


def count_visit_sliding(r, day, user, ttl):
    added = r.sadd(day, user)
    r.expire(day, ttl)
    return added == 1


def count_visit_without_ttl(r, day, user, ttl):
    return r.sadd(day, user) == 1


def count_visit_expiry_per_new_user(r, day, user, ttl):
    added = r.sadd(day, user)
    if added:
        r.expire(day, ttl)
    return added == 1


def count_visit_gt(r, day, user, ttl):
    added = r.sadd(day, user)
    r.expire(day, ttl, gt=True)  # GT: a key without expiry counts as infinite, so never set
    return added == 1


def _visits(visitors: list[str], ttl_left: int | None, user: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        day = f"{prefix}visits:2025-06-01"
        if visitors:
            r.sadd(day, *visitors)
        if ttl_left:
            r.expire(day, ttl_left)
        return day, user, 7 * 24 * 3600

    return setup


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="who is online",
        reference=online_among,
        cases=(
            Case("4 users asked, 2 online, not in alphabetical order",
                 _online(["ann", "bob", "dan", "eve"], ["zoe", "dan", "cat", "ann"])),
            Case("nobody online (no set)", _online([], ["ann", "bob"])),
            Case("an empty list of users", _online(["ann"], [])),
            Case("everyone online", _online(["ann", "bob"], ["bob", "ann"])),
        ),
        hint="One set command answers for several members at once, in the order asked; look at what "
             "its answers are, and at what it needs as arguments.",
        wrong=(online_among_is_true, online_among_sorted, online_among_no_users),
    ),
    Spec(
        number=2,
        title="a cached tag search",
        reference=search_posts,
        cases=(
            Case("redis and python, not java", _tags(["redis", "python"], ["java"])),
            Case("redis and python, not java or go, over an old cached result",
                 _tags(["redis", "python"], ["java", "go"], old_cache=["1", "99"])),
            Case("redis only, nothing excluded", _tags(["redis"], [])),
            Case("a tag nobody used (an empty result)", _tags(["redis", "rust"], [], old_cache=["1"])),
            Case("everything excluded", _tags(["java"], ["redis", "go", "python", "tag-none"])),
        ),
        outcome=_search_outcome,
        hint="The ...STORE forms keep a result on the server and replace the destination; a "
             "transaction lets the TTL arrive with it; and members are strings.",
        wrong=(search_posts_without_ttl, search_posts_sorted_as_text, search_posts_caches_before_excluding,
               search_posts_added_to_the_cache),
    ),
    Spec(
        number=3,
        title="a raffle",
        reference=draw_winners,
        cases=(
            Case("10 people, draw 3", _raffle(10, 0, 3)),
            Case("5 people and 2 earlier winners, draw 2", _raffle(5, 2, 2)),
            Case("2 people, draw 5", _raffle(2, 0, 5)),
            Case("an empty raffle with 1 earlier winner, draw 3", _raffle(0, 1, 3)),
        ),
        outcome=_draw_outcome,
        hint="Two commands pick random members; only one of them makes sure a member cannot be "
             "picked again.",
        wrong=(draw_winners_left_in_the_raffle, draw_winners_not_recorded, draw_winners_one_at_a_time,
               draw_winners_from_an_empty_raffle),
    ),
    Spec(
        number=4,
        title="unique visitors per day",
        reference=count_visit,
        cases=(
            Case("the day's first visit (no set yet)", _visits([], None, "ann")),
            Case("a new visitor, 100 s before the set expires", _visits(["ann"], 100, "bob")),
            Case("ann again, 100 s before the set expires", _visits(["ann", "bob"], 100, "ann")),
        ),
        outcome=_returned_and_sets,
        hint="SADD tells you whether the member was new; EXPIRE has options (Redis 7.0) that decide "
             "when it may change a TTL.",
        wrong=(count_visit_sliding, count_visit_without_ttl, count_visit_expiry_per_new_user, count_visit_gt),
    ),
)
