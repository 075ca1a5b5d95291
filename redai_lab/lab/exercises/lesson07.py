"""Lesson 07's exercises: one value out of a JSONPath reply, a document changed in place and
atomically, and one path read from many documents. Each needs the JSON module (``requires``): on a
server without it, the check says so in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from . import Case, Spec, unless_none

# --- 1. The cheat sheet's theme, fixed ---------------------------------------------------------


def theme_of(r: redis.Redis, key: str) -> str | None:
    """The theme of the user document `key`, the string at `settings.theme`, as a plain Python
    string ("dark", not '["dark"]' nor ["dark"]). None when there is no such document, or it has no
    `settings.theme`. Other `theme` fields elsewhere in the document are not the user's theme."""
    matches = r.json().get(key, "$.settings.theme")
    return matches[0] if matches else None


def theme_of_match_list(r, key):
    return r.json().get(key, "$.settings.theme")


def theme_of_legacy_path(r, key):
    return r.json().get(key, ".settings.theme")


def theme_of_recursive(r, key):
    matches = r.json().get(key, "$..theme")
    return matches[0] if matches else None


def theme_of_cheat_sheet(r, key):
    return json.loads(r.execute_command("JSON.GET", key, "$.settings.theme"))[0]


def _document(
    doc: dict | None, *args: Any, key: str = "user:1000"
) -> Callable[[redis.Redis, str], tuple[Any, ...]]:
    """A case's setup: the JSON document `<prefix><key>` (none when ``doc`` is None); the function
    gets the key and ``args``."""

    def setup(r: redis.Redis, prefix: str) -> tuple[Any, ...]:
        if doc is not None:
            r.json().set(f"{prefix}{key}", "$", doc)
        return (f"{prefix}{key}", *args)

    return setup


CART = "cart:7"
ONE_ITEM = {"items": [{"sku": "A1", "price": 30}], "total": 30}
USER = {"name": "John Doe", "email": "john@example.com", "settings": {"theme": "dark", "notifications": True}}

# --- 2. A cart, changed in place ---------------------------------------------------------------


def add_to_cart(r: redis.Redis, cart: str, sku: str, price: float) -> float:
    """Add the item {"sku": sku, "price": price} at the end of the `items` array of the JSON
    document `cart`, and `price` to its `total`; return the new total. The cart may not exist yet:
    it then starts as {"items": [], "total": 0}; an existing cart keeps its items. Other clients
    update the same cart at the same time: never read the document and write it back whole, and
    let no client ever see the item without the total (or the reverse)."""
    pipe = r.json().pipeline()  # MULTI/EXEC: the three changes apply together
    pipe.set(cart, "$", {"items": [], "total": 0}, nx=True)  # only when the cart does not exist
    pipe.arrappend(cart, "$.items", {"sku": sku, "price": price})
    pipe.numincrby(cart, "$.total", price)
    return pipe.execute()[-1][0]


def add_to_cart_recreates(r, cart, sku, price):
    pipe = r.json().pipeline()
    pipe.set(cart, "$", {"items": [], "total": 0})
    pipe.arrappend(cart, "$.items", {"sku": sku, "price": price})
    pipe.numincrby(cart, "$.total", price)
    return pipe.execute()[-1][0]


def add_to_cart_assumes_it_exists(r, cart, sku, price):
    pipe = r.json().pipeline()
    pipe.arrappend(cart, "$.items", {"sku": sku, "price": price})
    pipe.numincrby(cart, "$.total", price)
    return pipe.execute()[-1][0]


def add_to_cart_forgets_the_total(r, cart, sku, price):
    r.json().set(cart, "$", {"items": [], "total": 0}, nx=True)
    r.json().arrappend(cart, "$.items", {"sku": sku, "price": price})
    return r.json().get(cart, "$.total")[0]


def add_to_cart_returns_the_matches(r, cart, sku, price):
    pipe = r.json().pipeline()
    pipe.set(cart, "$", {"items": [], "total": 0}, nx=True)
    pipe.arrappend(cart, "$.items", {"sku": sku, "price": price})
    pipe.numincrby(cart, "$.total", price)
    return pipe.execute()[-1]


def _cart_after(r: redis.Redis, prefix: str, result: Any) -> tuple[Any, Any]:
    """What a call returned, and the whole cart after it."""
    return result, r.json().get(f"{prefix}{CART}")


# --- 3. One field of many documents ----------------------------------------------------------


def emails_of(r: redis.Redis, keys: list[str]) -> list[str | None]:
    """The `email` of each user document in `keys`, in the same order, read in one round trip;
    None for a key that does not exist or a document without an `email`. No keys, no emails."""
    if not keys:
        return []
    return [matches[0] if matches else None for matches in r.json().mget(keys, "$.email")]


def emails_of_match_lists(r, keys):
    return r.json().mget(keys, "$.email") if keys else []


def emails_of_first_match_unguarded(r, keys):
    if not keys:
        return []
    return [None if matches is None else matches[0] for matches in r.json().mget(keys, "$.email")]


def emails_of_forgets_no_keys(r, keys):
    return [matches[0] if matches else None for matches in r.json().mget(keys, "$.email")]


def _users(docs: dict[str, dict | None]) -> Callable[[redis.Redis, str], tuple[list[str]]]:
    """A case's setup: one JSON document per name (none for None); the function gets their keys."""

    def setup(r: redis.Redis, prefix: str) -> tuple[list[str]]:
        for name, doc in docs.items():
            if doc is not None:
                r.json().set(f"{prefix}user:{name}", "$", doc)
        return ([f"{prefix}user:{name}" for name in docs],)

    return setup


ANN = {"name": "Ann", "email": "ann@example.com", "age": 31}
BOB = {"name": "Bob", "email": "bob@example.com", "settings": {"email": "digest"}}

EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="the theme as a plain string",
        reference=theme_of,
        requires=("JSON.SET",),  # elsewhere the check says so in one line
        cases=(
            Case("a user with a theme", _document(USER)),
            Case("a document with a top-level theme too", _document({"theme": "retro", **USER})),
            Case("settings without a theme",
                 _document({"name": "Ann", "settings": {"notifications": False}})),
            Case("a document without settings", _document({"name": "Bob"})),
            Case("no such document", _document(None)),
        ),
        hint="A $ path answers a list of every match (empty when nothing matches); name the path exactly.",
        wrong=(theme_of_match_list, theme_of_legacy_path, theme_of_recursive, theme_of_cheat_sheet),
    ),
    Spec(
        number=2,
        title="a cart changed in place",
        reference=add_to_cart,
        requires=("JSON.SET",),
        cases=(
            Case("a cart that does not exist yet", _document(None, "A1", 30, key=CART)),
            Case("a cart with items", _document(ONE_ITEM, "B2", 12, key=CART)),
            Case("a price with cents", _document(ONE_ITEM, "C3", 12.5, key=CART)),
            Case("an empty cart", _document({"items": [], "total": 0}, "D4", 7, key=CART)),
        ),
        outcome=unless_none(_cart_after),
        hint="JSON.SET has an option that writes only when nothing is there; a transaction applies several "
             "JSON commands as one.",
        wrong=(add_to_cart_recreates, add_to_cart_assumes_it_exists, add_to_cart_forgets_the_total,
               add_to_cart_returns_the_matches),
    ),
    Spec(
        number=3,
        title="one field of many documents",
        reference=emails_of,
        requires=("JSON.SET",),
        cases=(
            Case("two users", _users({"ann": ANN, "bob": BOB})),
            Case("a user who does not exist", _users({"ann": ANN, "zed": None, "bob": BOB})),
            Case("a user without an email", _users({"cat": {"name": "Cat"}, "ann": ANN})),
            Case("no keys", _users({})),
        ),
        hint="JSON.MGET reads one path from many keys; look at what it gives for a missing key and for a "
             "path that matches nothing.",
        wrong=(emails_of_match_lists, emails_of_first_match_unguarded, emails_of_forgets_no_keys),
    ),
)
