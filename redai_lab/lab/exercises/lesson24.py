"""Lesson 24's exercises: transactions and scripting (a transfer that never overdraws, an order
reserved all or nothing, counters incremented in one step with the refused ones skipped)."""

from __future__ import annotations

import json
from typing import Any

import redis

from redai_lab.lab.exercises import Case, Spec
from redai_lab.lab.exercises.lesson13 import race, settle

READS = ("GET", "MGET", "HGET", "HMGET", "HGETALL", "EVAL", "EVALSHA", "FCALL")
# A racing case allows the outcome of either order: this function's step first, or the other
# client's. (A WATCH answer that reads through the client itself sees the other client act
# between its read and its EXEC, and retries: it ends as if the other client had gone first.)
EITHER_ORDER = "either order"
SERIAL = "as if one client ran after the other"


def _allow_either_order(r: redis.Redis, prefix: str, *outcomes: Any) -> None:
    r.set(f"{prefix}{EITHER_ORDER}", json.dumps(outcomes))


def _serial_or_actual(r: redis.Redis, prefix: str, outcome: Any) -> Any:
    """SERIAL when ``outcome`` is one the case allows, else ``outcome`` itself (to show)."""
    allowed = r.get(f"{prefix}{EITHER_ORDER}")
    if allowed is not None and json.loads(json.dumps(outcome)) in json.loads(allowed):
        return SERIAL
    return outcome


# Exercise 1 ------------------------------------------------------------------------------------


def transfer(r: redis.Redis, source: str, target: str, amount: int) -> bool:
    """Strings `source` and `target` hold whole-number balances (a missing key is 0). Move
    `amount` from `source` to `target` if `source` holds at least `amount`; otherwise change
    nothing. Return True if the money moved. Other clients move money at the same moment."""
    move = r.register_script('''
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if balance < tonumber(ARGV[1]) then return 0 end
redis.call('DECRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
return 1
''')
    return move(keys=[source, target], args=[amount]) == 1  # read, decide and write: one step


def transfer_read_then_multi(r, source, target, amount):
    if int(r.get(source) or 0) < amount:
        return False
    pipe = r.pipeline(transaction=True)  # atomic, but the balance read above may be stale
    pipe.decrby(source, amount)
    pipe.incrby(target, amount)
    pipe.execute()
    return True


def transfer_without_check(r, source, target, amount):
    pipe = r.pipeline(transaction=True)
    pipe.decrby(source, amount)
    pipe.incrby(target, amount)
    pipe.execute()
    return True


def transfer_needs_more_than_amount(r, source, target, amount):
    move = r.register_script('''
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if balance <= tonumber(ARGV[1]) then return 0 end
redis.call('DECRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
return 1
''')
    return move(keys=[source, target], args=[amount]) == 1


def transfer_compares_text(r, source, target, amount):
    move = r.register_script('''
local balance = redis.call('GET', KEYS[1]) or '0'
if balance < ARGV[1] then return 0 end
redis.call('DECRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
return 1
''')
    return move(keys=[source, target], args=[amount]) == 1


def _accounts(source: int | None, amount: int, spent_meanwhile: int = 0):
    """Alice holds `source` (None: no account) and sends Bob `amount`; `spent_meanwhile`: right
    after the transfer reads her balance, another client moves that much of it to a shop (with
    `amount`, more than she has: only one of the two can succeed)."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str, str, int]:
        alice, bob = f"{prefix}{{bank}}:alice", f"{prefix}{{bank}}:bob"
        if source is not None:
            r.set(alice, source)
        r.set(bob, 50)
        if spent_meanwhile and source is not None:
            shop = f"{prefix}{{bank}}:shop"

            def other_client_pays(r: redis.Redis) -> None:
                transfer(r, alice, shop, spent_meanwhile)

            race(r, prefix, alice, other_client_pays, after=READS)
            _allow_either_order(
                r, prefix,
                [True, {"alice": str(source - amount), "bob": str(50 + amount), "shop": None}],
                [False, {"alice": str(source - spent_meanwhile), "bob": "50", "shop": str(spent_meanwhile)}],
            )
        return alice, bob, amount

    return setup


def _balances(r: redis.Redis, prefix: str, result: Any) -> Any:
    settle(r)
    names = ("alice", "bob", "shop")
    balances = dict(zip(names, r.mget([f"{prefix}{{bank}}:{name}" for name in names])))
    return _serial_or_actual(r, prefix, (result, balances))


# Exercise 2 ------------------------------------------------------------------------------------


def reserve(r: redis.Redis, stock: str, quantities: dict[str, int]) -> bool:
    """The hash `stock` holds a whole-number stock per product (a missing field is 0).
    `quantities` maps products to how many an order takes. Take them all if every product has
    enough, and nothing otherwise. Return True if the order was reserved. Other orders arrive at
    the same moment."""
    take = r.register_script('''
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') < tonumber(ARGV[i + 1]) then return 0 end
end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])) end
return 1
''')  # every check before the first write: nothing to undo
    args = [part for product, quantity in quantities.items() for part in (product, quantity)]
    return take(keys=[stock], args=args) == 1


def reserve_in_multi(r, stock, quantities):
    pipe = r.pipeline(transaction=True)
    for product, quantity in quantities.items():
        pipe.hincrby(stock, product, -quantity)  # nothing checks the stock
    return all(left >= 0 for left in pipe.execute())


def reserve_one_by_one(r, stock, quantities):
    take = r.register_script('''
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') < tonumber(ARGV[i + 1]) then return 0 end
  redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1]))
end
return 1
''')  # stops at the first short product, after taking the ones before it
    args = [part for product, quantity in quantities.items() for part in (product, quantity)]
    return take(keys=[stock], args=args) == 1


def reserve_check_then_multi(r, stock, quantities):
    levels = r.hmget(stock, list(quantities))
    if any(int(level or 0) < quantity for level, quantity in zip(levels, quantities.values())):
        return False
    pipe = r.pipeline(transaction=True)  # the levels read above may be stale
    for product, quantity in quantities.items():
        pipe.hincrby(stock, product, -quantity)
    pipe.execute()
    return True


def _stock(levels: dict[str, int], order: dict[str, int], taken_meanwhile: dict[str, int] | None = None):
    def setup(r: redis.Redis, prefix: str) -> tuple[str, dict[str, int]]:
        stock = f"{prefix}stock"
        for product, level in levels.items():
            r.hset(stock, product, level)
        if taken_meanwhile:
            def other_order(r: redis.Redis) -> None:
                r.set(f"{prefix}other order", str(reserve(r, stock, taken_meanwhile)))

            race(r, prefix, stock, other_order, after=READS)
            _allow_either_order(
                r, prefix,
                {"returned": True, "stock": _minus(levels, order), "the other order reserved": "False"},
                {"returned": False, "stock": _minus(levels, taken_meanwhile), "the other order reserved": "True"},
            )
        return stock, order

    return setup


def _minus(levels: dict[str, int], order: dict[str, int]) -> dict[str, str]:
    """The stock hash after `order` was taken (as HGETALL returns it)."""
    return {product: str(level - order.get(product, 0)) for product, level in levels.items()}


def _stock_outcome(r: redis.Redis, prefix: str, result: Any) -> Any:
    settle(r)
    outcome = {"returned": result, "stock": r.hgetall(f"{prefix}stock")}
    if (other := r.get(f"{prefix}other order")) is not None:
        outcome["the other order reserved"] = other
    return _serial_or_actual(r, prefix, outcome)


# Exercise 3 ------------------------------------------------------------------------------------


def increment_all(r: redis.Redis, counters: list[str]) -> list[int | None]:
    """Add 1 to each key of `counters` (a missing key counts from 0), all in one atomic step:
    no other client may see some incremented and others not. A key that holds something INCR
    refuses (text, another type) is skipped and left as it is. Return the new values, with
    None for each skipped key."""
    pipe = r.pipeline(transaction=True)  # MULTI/EXEC: a refused INCR fails alone, the rest run
    for key in counters:
        pipe.incr(key)
    return [None if isinstance(reply, redis.ResponseError) else reply
            for reply in pipe.execute(raise_on_error=False)]


def increment_all_one_by_one(r, counters):
    values = []
    for key in counters:  # another client can read between two INCRs
        try:
            values.append(r.incr(key))
        except redis.ResponseError:
            values.append(None)
    return values


def increment_all_with_call(r, counters):
    bump = r.register_script('''
local values = {}
for i, key in ipairs(KEYS) do values[i] = redis.call('INCR', key) end
return values
''')
    return bump(keys=counters)


def increment_all_raising(r, counters):
    pipe = r.pipeline(transaction=True)
    for key in counters:
        pipe.incr(key)
    return pipe.execute()  # raises the first refused INCR's error, after every INCR ran


def increment_all_returns_errors(r, counters):
    pipe = r.pipeline(transaction=True)
    for key in counters:
        pipe.incr(key)
    return pipe.execute(raise_on_error=False)


def increment_all_existing_only(r, counters):
    bump = r.register_script('''
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = false
  if redis.call('EXISTS', key) == 1 then
    local reply = redis.pcall('INCR', key)
    if type(reply) == 'number' then values[i] = reply end
  end
end
return values
''')
    return bump(keys=counters)


COUNTERS = ("page:home", "page:about", "page:blog")


def _counters(values: dict[str, Any], watched: bool = False):
    """Counters under the prefix, set from `values` (a dict value: a hash); `watched`: right after
    this function's first command on the first counter, another client reads them all."""

    def setup(r: redis.Redis, prefix: str) -> tuple[list[str]]:
        names = [f"{prefix}{name}" for name in COUNTERS]
        for name, value in values.items():
            if isinstance(value, dict):
                r.hset(f"{prefix}{name}", mapping=value)
            else:
                r.set(f"{prefix}{name}", value)
        if watched:
            def reader(r: redis.Redis) -> None:
                seen = [r.get(name) if r.type(name) == "string" else "a hash" for name in names]
                r.set(f"{prefix}seen by another client", json.dumps(seen))
            race(r, prefix, names[0], reader)
        return (names,)

    return setup


def _counters_outcome(r: redis.Redis, prefix: str, result: Any) -> dict[str, Any]:
    settle(r)
    outcome = {"returned": result}
    for name in COUNTERS:
        key = f"{prefix}{name}"
        outcome[name] = r.hgetall(key) if r.type(key) == "hash" else r.get(key)
    if (seen := r.get(f"{prefix}seen by another client")) is not None:
        outcome["seen by another client"] = json.loads(seen)
    return outcome


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a transfer that never overdraws",
        reference=transfer,
        cases=(
            Case("Alice has 100 and sends 30", _accounts(100, 30)),
            Case("Alice has 20 and sends 30", _accounts(20, 30)),
            Case("Alice has exactly 30 and sends 30", _accounts(30, 30)),
            Case("Alice has no account", _accounts(None, 30)),
            Case("Alice has 100 and sends 60; right after the transfer reads her balance, another "
                 "client moves 80 of it", _accounts(100, 60, spent_meanwhile=80)),
        ),
        outcome=_balances,
        hint="The balance must not change between reading it and writing: WATCH it (redis-py's "
             "transaction()), or read, compare as numbers and write in one Lua script.",
        wrong=(transfer_read_then_multi, transfer_without_check, transfer_needs_more_than_amount,
               transfer_compares_text),
    ),
    Spec(
        number=2,
        title="an order reserved all or nothing",
        reference=reserve,
        cases=(
            Case("enough of everything", _stock({"apple": 5, "pear": 3}, {"apple": 2, "pear": 3})),
            Case("enough apples, too few pears", _stock({"apple": 5, "pear": 3}, {"apple": 2, "pear": 4})),
            Case("too few apples, enough pears", _stock({"apple": 1, "pear": 3}, {"apple": 2, "pear": 1})),
            Case("a product never stocked", _stock({"apple": 5}, {"apple": 1, "plum": 1})),
            Case("enough of everything; right after this order reads the stock, another order takes "
                 "every pear", _stock({"apple": 5, "pear": 3}, {"apple": 2, "pear": 2}, {"pear": 3})),
        ),
        outcome=_stock_outcome,
        hint="Nothing is rolled back, in MULTI or in a script: check every product first, then "
             "write, in one Lua script (or WATCH the hash).",
        wrong=(reserve_in_multi, reserve_one_by_one, reserve_check_then_multi),
    ),
    Spec(
        number=3,
        title="counters incremented in one step",
        reference=increment_all,
        cases=(
            Case("three counters", _counters({"page:home": 7, "page:about": 2, "page:blog": 0})),
            Case("one counter holds text", _counters({"page:home": 7, "page:about": "n/a", "page:blog": 4})),
            Case("one key is a hash", _counters({"page:home": 7, "page:about": 2, "page:blog": {"views": 9}})),
            Case("two counters do not exist yet", _counters({"page:about": 2})),
            Case("three counters; another client reads them right after your first command on the first",
                 _counters({"page:home": 7, "page:about": 2, "page:blog": 0}, watched=True)),
        ),
        outcome=_counters_outcome,
        hint="A failed command inside MULTI/EXEC fails alone (execute(raise_on_error=False) hands "
             "back its error in place); in Lua, redis.pcall returns the error instead of raising.",
        wrong=(increment_all_one_by_one, increment_all_with_call, increment_all_raising,
               increment_all_returns_errors, increment_all_existing_only),
    ),
)
