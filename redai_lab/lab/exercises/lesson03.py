"""Lesson 03's exercises: hashes (fields, counters, HSCAN, field expiration)."""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec


def _hashes(r: redis.Redis, prefix: str) -> dict[str, dict[str, str]]:
    """Every hash under ``prefix``, by key name without the prefix: what a call left in Redis."""
    keys = sorted(r.scan_iter(match=f"{prefix}*"))
    return {key.removeprefix(prefix): dict(sorted(r.hgetall(key).items())) for key in keys}


def _ttl(milliseconds: int) -> str:
    """A TTL as a check compares it: rounded up to 10 s, so runs a few ms apart agree."""
    if milliseconds < 0:
        return {-1: "no expiry", -2: "gone"}[milliseconds]
    return f"expires within {-(-milliseconds // 10_000) * 10} s"


# Exercise 1 ------------------------------------------------------------------------------------


def birthday(r: redis.Redis, user: str) -> int | None:
    """Hash `user` is a profile whose `age` field holds a number (as text, like every hash value).
    Add one year to it atomically (other clients update profiles at the same time) and return
    the new age as an `int`. A user that does not exist stays missing: write nothing, return None."""
    if not r.exists(user):
        return None
    # HINCRBY alone would create a missing user with age 1. EXISTS and HINCRBY are two commands:
    # a user deleted between them would come back; lesson 15's scripts close that gap.
    return r.hincrby(user, "age", 1)  # an int, computed and stored by the server in one step


def birthday_creates_missing_users(r, user):
    return r.hincrby(user, "age", 1)


def birthday_returns_text(r, user):
    if not r.exists(user):
        return None
    r.hincrby(user, "age", 1)
    return r.hget(user, "age")


def birthday_returns_the_old_age(r, user):
    if not r.exists(user):
        return None
    age = int(r.hget(user, "age"))
    r.hincrby(user, "age", 1)
    return age


def _profile(mapping: dict[str, Any] | None, name: str = "user:2000"):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        if mapping:
            r.hset(f"{prefix}{name}", mapping=mapping)
        r.hset(f"{prefix}user:2001", mapping={"name": "Alan", "age": 41})  # another user: untouched
        return (f"{prefix}{name}",)

    return setup


# Exercise 2 ------------------------------------------------------------------------------------


def add_to_cart(r: redis.Redis, cart: str, product: str, n: int) -> int:
    """Hash `cart` maps product ids to quantities. Change `product`'s quantity by `n` (a negative
    `n` takes some out) atomically; when the quantity drops to 0 or below, remove the product
    from the cart. Return the quantity of `product` now in the cart (0 once removed)."""
    quantity = r.hincrby(cart, product, n)  # atomic on the server; a missing field starts at 0
    if quantity <= 0:
        # Two commands: a client adding the product between them would lose its add. A Lua
        # script (lesson 15) makes the pair one atomic step.
        r.hdel(cart, product)  # the cart's key goes with its last field
        return 0
    return quantity


def add_to_cart_removes_below_zero_only(r, cart, product, n):
    quantity = r.hincrby(cart, product, n)
    if quantity < 0:
        r.hdel(cart, product)
        return 0
    return quantity


def add_to_cart_never_removes(r, cart, product, n):
    return r.hincrby(cart, product, n)


def add_to_cart_returns_the_negative_quantity(r, cart, product, n):
    quantity = r.hincrby(cart, product, n)
    if quantity <= 0:
        r.hdel(cart, product)
    return quantity


def add_to_cart_overwrites(r, cart, product, n):
    if n <= 0:
        r.hdel(cart, product)
        return 0
    r.hset(cart, product, n)
    return n


def _cart(contents: dict[str, int], product: str, n: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        if contents:
            r.hset(f"{prefix}cart:7", mapping=contents)
        return f"{prefix}cart:7", product, n

    return setup


def _cart_outcome(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, dict[str, dict[str, str]]]:
    return result, _hashes(r, prefix)


# Exercise 3 ------------------------------------------------------------------------------------


def count_fields(r: redis.Redis, key: str, pattern: str) -> int:
    """Count the fields of hash `key` whose names match the glob-style `pattern` (such as
    `feature:42*`), without HGETALL, HKEYS or HVALS: the hash may hold millions of fields. A missing
    key has no fields."""
    # HSCAN walks the hash a batch per call; hscan_iter loops until the cursor comes back to 0.
    # A field can come back twice (a rehash during the walk): count distinct names.
    return len({field for field, _ in r.hscan_iter(key, match=pattern, count=1000)})


def count_fields_in_one_hscan_call(r, key, pattern):
    _cursor, fields = r.hscan(key, 0, match=pattern, count=1000)  # the first batch only
    return len(fields)


def count_fields_with_hlen(r, key, pattern):
    return r.hlen(key)


def count_fields_with_scan(r, key, pattern):
    return len(list(r.scan_iter(match=pattern)))  # SCAN walks key names, not a hash's fields


def _flags(count: int, name: str, pattern: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        if count:
            r.hset(f"{prefix}{name}", mapping={f"feature:{i}": "on" for i in range(count)})
        return f"{prefix}{name}", pattern

    return setup


# Exercise 4 ------------------------------------------------------------------------------------


def issue_code(r: redis.Redis, session: str, code: str, seconds: int) -> None:
    """Session hash `session` expires 30 minutes after login (a TTL on its key). Store the one-time
    code `code` in its field `otp` so that the code expires `seconds` seconds from now, while the
    other fields, their expiries and the session's own TTL stay as they are. A code issued again
    replaces the old one and its expiry. The code must never exist without an expiry, not even
    for an instant between two commands."""
    # A field's own TTL (not EXPIRE, which would shorten the whole session), written with the
    # value in one command (HSET then HEXPIRE leaves an instant without one): HSETEX, Redis 8.0.
    r.hsetex(session, "otp", code, ex=seconds)


def issue_code_expiring_the_session(r, session, code, seconds):
    r.hset(session, "otp", code)
    r.expire(session, seconds)


def issue_code_without_expiry(r, session, code, seconds):
    r.hset(session, "otp", code)


def issue_code_expiry_before_value(r, session, code, seconds):
    r.hexpire(session, seconds, "otp")  # then HSET drops the field's TTL (or there was no field yet)
    r.hset(session, "otp", code)


def issue_code_in_milliseconds(r, session, code, seconds):
    r.hsetex(session, "otp", code, px=seconds)


def _session(fields: dict[str, str], field_ttls: dict[str, int], code: str, seconds: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        key = f"{prefix}session:1"
        r.hset(key, mapping=fields)
        r.expire(key, 1800)
        for field, ttl in field_ttls.items():
            r.hexpire(key, ttl, field)
        return key, code, seconds

    return setup


def _session_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    key = f"{prefix}session:1"
    fields = sorted(r.hkeys(key))
    return {
        "fields": dict(sorted(r.hgetall(key).items())),
        "field TTLs": dict(zip(fields, map(_ttl, r.hpttl(key, *fields)))) if fields else {},
        "session TTL": _ttl(r.pttl(key)),
    }


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a birthday",
        reference=birthday,
        cases=(
            Case("Grace, 36", _profile({"name": "Grace", "age": 36, "city": "Arlington"})),
            Case("a user who does not exist", _profile(None)),
            Case("Linus, 9 (one digit becomes two)", _profile({"name": "Linus", "age": 9})),
        ),
        outcome=lambda r, prefix, result: (result, _hashes(r, prefix)),
        hint="One hash command adds to a number field on the server and returns the new value as an "
             "integer; it also creates what is missing, so look before you add.",
        wrong=(birthday_creates_missing_users, birthday_returns_text, birthday_returns_the_old_age),
    ),
    Spec(
        number=2,
        title="a shopping cart",
        reference=add_to_cart,
        cases=(
            Case("2 mugs into an empty cart", _cart({}, "mug", 2)),
            Case("1 more mug into a cart with 2 mugs and a tee", _cart({"mug": 2, "tee": 1}, "mug", 1)),
            Case("taking out the only tee (exactly 0)", _cart({"mug": 2, "tee": 1}, "tee", -1)),
            Case("taking out 5 of 2 mugs (below 0)", _cart({"mug": 2, "tee": 1}, "mug", -5)),
            Case("taking out a product that is not in the cart", _cart({"mug": 2}, "cap", -1)),
            Case("taking out the cart's last product", _cart({"mug": 1}, "mug", -1)),
        ),
        outcome=_cart_outcome,
        hint="Let the server do the arithmetic (it starts a missing field at 0), then look at the "
             "number it gives back.",
        wrong=(add_to_cart_removes_below_zero_only, add_to_cart_never_removes,
               add_to_cart_returns_the_negative_quantity, add_to_cart_overwrites),
    ),
    Spec(
        number=3,
        title="find fields in a big hash",
        reference=count_fields,
        cases=(
            Case("5,000 flags, fields feature:42* (42, 420-429, 4200-4299)",
                 _flags(5000, "flags", "feature:42*")),
            Case("5,000 flags, fields feature:4? (40-49)", _flags(5000, "flags", "feature:4?")),
            Case("a small hash of 20 fields (a listpack), feature:1*", _flags(20, "flags", "feature:1*")),
            Case("a pattern no field matches", _flags(5000, "flags", "feature:x*")),
            Case("a missing key", _flags(0, "flags", "feature:*")),
        ),
        hint="The hash's own cursor-based walk takes a MATCH pattern; a walk is over only when the "
             "cursor comes back to 0.",
        wrong=(count_fields_in_one_hscan_call, count_fields_with_hlen, count_fields_with_scan),
    ),
    Spec(
        number=4,
        title="a one-time code that expires (Redis 8.0+)",
        reference=issue_code,
        cases=(
            Case("a session without a code, code for 300 s",
                 _session({"user": "ada", "role": "student"}, {}, "493817", 300)),
            Case("a new code while the old one has 10 s left",
                 _session({"user": "ada", "otp": "111111"}, {"otp": 10}, "493817", 300)),
            Case("an old code without expiry, and a CSRF token expiring in 600 s",
                 _session({"user": "ada", "otp": "111111", "csrf": "x1"}, {"csrf": 600}, "493817", 30)),
        ),
        outcome=_session_outcome,
        hint="EXPIRE is for a whole key; since Redis 7.4 a hash field can carry its own TTL, and "
             "Redis 8.0 has one command that writes fields together with it.",
        wrong=(issue_code_expiring_the_session, issue_code_without_expiry, issue_code_expiry_before_value,
               issue_code_in_milliseconds),
        requires=("HSETEX",),
    ),
)
