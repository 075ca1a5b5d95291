"""Lesson 09's exercises: bitmaps, HyperLogLog and BITFIELD, graded on fresh data.

Every function gets ``r`` (``decode_responses=True``) and key names under the case's prefix.
The references run on every server of the lab (Redis 7.0+, Valkey): none of them needs
Redis 8.2's ``BITOP DIFF``, though a learner's answer may use it there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis

from . import Case, Spec, unless_none

# ---------------------------------------------------------------------------------------------
# 1. Active users in a range of ids: BITCOUNT counts bytes unless told BIT.


def active_between(r, key: str, first_id: int, last_id: int) -> int:
    """How many users with an id from `first_id` to `last_id` (both included) have their bit set
    in the bitmap `key` (bit n is user n)? A missing key has no active users."""
    return r.bitcount(key, first_id, last_id, mode="BIT")


def _bitmap(r: redis.Redis, key: str, users: Iterable[int]) -> None:
    for user in users:
        r.setbit(key, user, 1)


def _range_case(users: Iterable[int], first_id: int, last_id: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, int]:
        _bitmap(r, f"{prefix}active", users)
        return f"{prefix}active", first_id, last_id

    return setup


ACTIVE = (1, 3, 7, 8, 12, 13)


def active_between_bytes(r, key, first_id, last_id):
    return r.bitcount(key, first_id, last_id)  # BITCOUNT's range is in bytes by default


def active_between_end_excluded(r, key, first_id, last_id):
    return r.bitcount(key, first_id, last_id - 1, mode="BIT")


def active_between_whole_bytes(r, key, first_id, last_id):
    return r.bitcount(key, first_id // 8, last_id // 8)  # the bytes holding the range, whole


def active_between_everyone(r, key, first_id, last_id):
    return r.bitcount(key)


# ---------------------------------------------------------------------------------------------
# 2. Churn: in the first bitmap, not in the second, without BITOP NOT's trap.


def churned(r, first: str, second: str) -> int:
    """How many users have their bit set in bitmap `first` and not in bitmap `second`?

    The two bitmaps may have different lengths, and either may be missing (no users). If you need
    a temporary key, name it after `first` (for example f"{first}:tmp") and delete it: the call
    must leave `first` and `second` as they were and nothing else behind."""
    both = f"{first}:and"
    pipe = r.pipeline()  # MULTI/EXEC: one round trip, and the temporary key never outlives the call
    pipe.bitcount(first)
    pipe.bitop("AND", both, first, second)  # AND pads the shorter bitmap with zeros: right here
    pipe.bitcount(both)
    pipe.delete(both)
    total, _, in_both, _ = pipe.execute()
    return total - in_both  # |first - second| = |first| - |first AND second|


def _churn_case(first: Iterable[int], second: Iterable[int]):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str]:
        _bitmap(r, f"{prefix}mon", first)
        _bitmap(r, f"{prefix}sun", second)
        return f"{prefix}mon", f"{prefix}sun"

    return setup


def _bitmaps_left(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and every key under the prefix: its type and how many bits it has set."""
    keys = sorted(r.scan_iter(match=f"{prefix}*"))
    return result, [(key, r.type(key), r.bitcount(key)) for key in keys]


def churned_not_and(r, first, second):
    r.bitop("NOT", f"{first}:not", second)  # flips only the bytes `second` has
    r.bitop("AND", f"{first}:tmp", first, f"{first}:not")
    count = r.bitcount(f"{first}:tmp")
    r.delete(f"{first}:not", f"{first}:tmp")
    return count


def churned_xor(r, first, second):
    r.bitop("XOR", f"{first}:tmp", first, second)  # also counts users of `second` only
    count = r.bitcount(f"{first}:tmp")
    r.delete(f"{first}:tmp")
    return count


def churned_difference_of_counts(r, first, second):
    return r.bitcount(first) - r.bitcount(second)


def churned_temporary_key_left(r, first, second):
    r.bitop("AND", f"{first}:and", first, second)
    return r.bitcount(first) - r.bitcount(f"{first}:and")  # and f"{first}:and" stays


# ---------------------------------------------------------------------------------------------
# 3. Weekend uniques: PFMERGE into a key that may already hold last weekend's visitors.


def weekend_uniques(r, saturday: str, sunday: str, weekend: str) -> int:
    """Store in `weekend` a HyperLogLog of the visitors of both days (the HyperLogLogs `saturday`
    and `sunday`, either of which may be missing) and return its estimated count.

    `weekend` may still hold an older weekend's visitors: replace them. Leave `saturday` and
    `sunday` unchanged."""
    pipe = r.pipeline()  # MULTI/EXEC: nobody ever reads a half-built `weekend`
    pipe.delete(weekend)  # PFMERGE merges into what the destination already holds
    pipe.pfmerge(weekend, saturday, sunday)
    pipe.pfcount(weekend)
    return pipe.execute()[-1]


def _visitors(r: redis.Redis, key: str, visitors: list[str]) -> None:
    for start in range(0, len(visitors), 1_000):
        r.pfadd(key, *visitors[start:start + 1_000])


def _weekend_case(saturday: list[str], sunday: list[str], stale: Sequence[str] = ()):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, str]:
        _visitors(r, f"{prefix}sat", saturday)
        _visitors(r, f"{prefix}sun", sunday)
        _visitors(r, f"{prefix}weekend", list(stale))
        return f"{prefix}sat", f"{prefix}sun", f"{prefix}weekend"

    return setup


def _hll_counts(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and each of the three keys: its type and its PFCOUNT."""
    keys = [f"{prefix}sat", f"{prefix}sun", f"{prefix}weekend"]
    return result, [(key, r.type(key), r.pfcount(key) if r.exists(key) else None) for key in keys]


def weekend_sum_of_days(r, saturday, sunday, weekend):
    r.pfmerge(weekend, saturday, sunday)
    return r.pfcount(saturday) + r.pfcount(sunday)  # counts twice who came both days


def weekend_merged_into_stale_key(r, saturday, sunday, weekend):
    r.pfmerge(weekend, saturday, sunday)  # keeps whatever `weekend` held before
    return r.pfcount(weekend)


def weekend_not_stored(r, saturday, sunday, weekend):
    return r.pfcount(saturday, sunday)  # the right number, but `weekend` is never written


def weekend_merged_into_saturday(r, saturday, sunday, weekend):
    r.pfmerge(saturday, sunday)
    return r.pfcount(saturday)


# ---------------------------------------------------------------------------------------------
# 4. Four saturating 4-bit counters in one string, updated and read in one command.


def add_to_counter(r, key: str, counter: int, amount: int) -> list[int]:
    """The string `key` (missing: all zeros) packs four unsigned 4-bit counters, numbered 0 to 3.
    Add `amount` (it may be negative) to counter number `counter`, so that it stops at 15 going
    up and at 0 going down instead of wrapping around, and return the four counters after the
    change, all in one command."""
    fields = r.bitfield(key).overflow("SAT").incrby("u4", f"#{counter}", amount)
    for number in range(4):
        fields.get("u4", f"#{number}")
    return fields.execute()[1:]


def _counters_case(values: list[int], counter: int, amount: int):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, int, int]:
        if values:
            fields = r.bitfield(f"{prefix}quota")
            for number, value in enumerate(values):
                fields.set("u4", f"#{number}", value)
            fields.execute()
        return f"{prefix}quota", counter, amount

    return setup


def _counters(r: redis.Redis, prefix: str, result: object) -> Any:
    """What the call returned, and the four counters as Redis holds them afterwards."""
    fields = r.bitfield(f"{prefix}quota")
    for number in range(4):
        fields.get("u4", f"#{number}")
    return result, fields.execute()


def add_to_counter_wrapping(r, key, counter, amount):
    fields = r.bitfield(key).incrby("u4", f"#{counter}", amount)  # OVERFLOW WRAP, the default
    for number in range(4):
        fields.get("u4", f"#{number}")
    return fields.execute()[1:]


def add_to_counter_fail(r, key, counter, amount):
    fields = r.bitfield(key).overflow("FAIL").incrby("u4", f"#{counter}", amount)  # no change at all
    for number in range(4):
        fields.get("u4", f"#{number}")
    return fields.execute()[1:]


def add_to_counter_bit_offset(r, key, counter, amount):
    fields = r.bitfield(key).overflow("SAT").incrby("u4", counter, amount)  # bit `counter`, not field
    for number in range(4):
        fields.get("u4", f"#{number}")
    return fields.execute()[1:]


def add_to_counter_signed(r, key, counter, amount):
    fields = r.bitfield(key).overflow("SAT").incrby("i4", f"#{counter}", amount)  # -8..7
    for number in range(4):
        fields.get("i4", f"#{number}")
    return fields.execute()[1:]


EXERCISES = (
    Spec(
        number=1,
        title="active users in a range of ids",
        reference=active_between,
        cases=(
            Case("users 3 to 12 of {1, 3, 7, 8, 12, 13}", _range_case(ACTIVE, 3, 12)),
            Case("users 1 to 6, inside the first byte", _range_case(ACTIVE, 1, 6)),
            Case("one user, 12 to 12", _range_case(ACTIVE, 12, 12)),
            Case("users 10 to 1,000, past the end of the bitmap", _range_case(ACTIVE, 10, 1_000)),
            Case("a missing key", _range_case((), 0, 100)),
        ),
        hint="BITCOUNT's start and end are byte offsets unless you say which unit you mean (Redis 7.0).",
        wrong=(active_between_bytes, active_between_end_excluded, active_between_whole_bytes,
               active_between_everyone),
    ),
    Spec(
        number=2,
        title="churn: active on one day, not on the other",
        reference=churned,
        outcome=unless_none(_bitmaps_left),
        cases=(
            Case("{1, 5, 9, 12, 30} then {5, 9}: the second bitmap is shorter",
                 _churn_case((1, 5, 9, 12, 30), (5, 9))),
            Case("{2, 3} then {3, 100}: the second bitmap is longer", _churn_case((2, 3), (3, 100))),
            Case("a missing second bitmap", _churn_case((0, 7, 8), ())),
            Case("a missing first bitmap", _churn_case((), (4,))),
            Case("the same users both days", _churn_case((2, 40), (2, 40))),
        ),
        hint="Users in the first and not the second are the first's count minus those in both; "
             "BITOP AND pads a shorter bitmap with zeros, BITOP NOT flips only the bytes a key has.",
        wrong=(churned_not_and, churned_xor, churned_difference_of_counts, churned_temporary_key_left),
    ),
    Spec(
        number=3,
        title="weekend uniques with a HyperLogLog",
        reference=weekend_uniques,
        outcome=unless_none(_hll_counts),
        cases=(
            Case("a, b, c on saturday; b, c, d, e on sunday", _weekend_case(list("abc"), list("bcde"))),
            Case("last weekend's x, y, z still in the weekend key",
                 _weekend_case(list("abc"), list("cd"), stale=list("xyz"))),
            Case("nobody on sunday (no key)", _weekend_case(list("abc"), [])),
            Case("no visitors at all (neither key)", _weekend_case([], [])),
            Case("2,000 visitors each day, 1,000 of them both days",
                 _weekend_case([f"user:{i}" for i in range(2_000)], [f"user:{i}" for i in range(1_000, 3_000)])),
        ),
        hint="PFMERGE reads the destination as one of its sources; and the count of a union is not "
             "the sum of the counts.",
        wrong=(weekend_sum_of_days, weekend_merged_into_stale_key, weekend_not_stored,
               weekend_merged_into_saturday),
    ),
    Spec(
        number=4,
        title="saturating 4-bit counters",
        reference=add_to_counter,
        outcome=unless_none(_counters),
        cases=(
            Case("a missing key: add 10 to counter 1", _counters_case([], 1, 10)),
            Case("counter 1 at 10, add 10: it stops at 15", _counters_case([3, 10, 0, 7], 1, 10)),
            Case("counter 3 at 2, subtract 5: it stops at 0", _counters_case([3, 10, 0, 2], 3, -5)),
            Case("counter 3 from 5 to exactly 15", _counters_case([1, 2, 3, 5], 3, 10)),
            Case("counter 0 from 14, add 1", _counters_case([14, 0, 0, 0], 0, 1)),
        ),
        hint="BITFIELD's OVERFLOW sub-command decides what INCRBY does past a field's range, and "
             "`#n` as the offset means the n-th field of that width.",
        wrong=(add_to_counter_wrapping, add_to_counter_fail, add_to_counter_bit_offset, add_to_counter_signed),
    ),
)
