"""The lab's exceptions, and the checks the pattern modules share to raise them.

Each error carries one line that says what went wrong and what to do. Callers (the CLI,
notebooks) print ``str(error)`` and stop; they never need the traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from numbers import Integral, Real
from urllib.parse import unquote_plus

import redis
import redis.asyncio


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class NoRedisServerError(LabError):
    """No server was given, no Docker engine answers and no ``redis-server`` binary was found."""


class ServerStartError(LabError):
    """A throwaway server was found but would not start."""


class LabConnectionError(LabError):
    """The server could not be reached, or refused the credentials."""


class RefusedToFlushError(LabError):
    """The lab was asked to empty a database holding data it did not create."""


class MissingFeatureError(LabError):
    """The running server lacks a command or module a lesson needs."""


class InvalidArgument(LabError, ValueError):
    """A parameter out of its range: a TTL that is zero, negative, NaN or infinite, a limit < 1."""


class InvalidArgumentType(LabError, TypeError):
    """A parameter of a kind the helper cannot use: ``None`` or an object as an identity, a str TTL."""


# The longest duration a pattern accepts: a century. Its microseconds (3.2e15) are still exact in
# a Lua number (a double, exact to 2^53), and PX/PEXPIRE accept its milliseconds.
MAX_SECONDS = 100 * 365 * 86400

# The patterns' Lua scripts stop with ``error({err = CORRUPT .. ' what is wrong'})`` when a key
# holds state they did not write; ``data_problem`` recognises it.
CORRUPT = "CORRUPT"


def check_seconds(label: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a duration in seconds, or a one-line ``InvalidArgument``/``InvalidArgumentType``.

    A real number (True is no duration), finite, > 0 (>= 0 with ``zero``) and at most a century.
    """
    if not isinstance(value, Real):
        raise InvalidArgumentType(f"{label} is a number of seconds, not {value!r}.")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float, 10**400
        seconds = math.inf
    if isinstance(value, bool) or not (0 <= seconds if zero else 0 < seconds) or not seconds <= MAX_SECONDS:
        least = ">= 0" if zero else "> 0"
        raise InvalidArgument(f"{label} must be finite seconds {least}, at most a century, not {value!r}.")
    return seconds


def check_count(label: str, value: object, *, minimum: int = 1, maximum: int = 2**53) -> int:
    """``value`` as a whole number in ``[minimum, maximum]``, or a one-line error.

    A number that is not whole (2.5, NaN, True) is an ``InvalidArgument``; anything that is no
    number at all (None, "5") an ``InvalidArgumentType``.
    """
    if not isinstance(value, Real):
        raise InvalidArgumentType(f"{label} is a whole number, not {value!r}.")
    if isinstance(value, bool) or not isinstance(value, Integral) or not minimum <= int(value):
        raise InvalidArgument(f"{label} must be a whole number >= {minimum}, not {value!r}.")
    if int(value) > maximum:
        raise InvalidArgument(f"{label} must be a whole number <= {maximum}, not {value!r}.")
    return int(value)


def check_client(owner: str, r: object, *, asynchronous: bool) -> None:
    """A one-line ``InvalidArgumentType`` when ``r`` is a client of the other kind: a sync client
    would answer an ``await`` with a TypeError, an async one a sync call with an unawaited coroutine."""
    other = (redis.Redis, redis.RedisCluster) if asynchronous else (redis.asyncio.Redis, redis.asyncio.RedisCluster)
    if isinstance(r, other):
        wanted, instead = ("redis.asyncio", "Async") if asynchronous else ("redis", "the class without Async")
        raise InvalidArgumentType(
            f"{owner} needs a {wanted}.Redis client, not a {type(r).__module__}.{type(r).__name__}: pass one, "
            f"or use {instead}.")


def data_problem(exc: redis.ResponseError) -> str | None:
    """What is wrong with the data, when a command or script failed because of what a key holds.

    None for any other error (no permission, out of memory, a read-only replica): those are
    about the server, not the data, and are not this function's to explain.
    """
    # A pipeline's error starts "Command # 1 (LPUSH key ...) of pipeline caused error: ", and
    # the arguments shown may hold any text: the server's own words follow the last marker.
    text = str(exc).rpartition(" of pipeline caused error: ")[2]
    if text.startswith("WRONGTYPE"):
        return "a value of another Redis type"
    if text.startswith(CORRUPT + " "):
        return text[len(CORRUPT) + 1:].split(" script:")[0]
    return None


@contextmanager
def foreign_data(error: Callable[[str], LabError]) -> Iterator[None]:
    """Turn a failure caused by what a key holds into ``error(what is wrong)``, one line.

    Wrong types, state a script refused, and bytes that are not UTF-8 text (a pickle, say,
    read by a client that decodes responses: it is never unpickled) become the helper's own
    error; every other error passes unchanged.
    """
    try:
        yield
    except redis.ResponseError as exc:
        problem = data_problem(exc)
        if problem is None:
            raise
        raise error(problem) from None
    except UnicodeDecodeError:
        raise error("bytes that are not UTF-8 text (binary data, a pickle: never unpickled)") from None


def redact(url: str) -> str:
    """The URL with every password replaced by ``***``, for messages and logs.

    Both places redis-py reads a password from are hidden: the user part (``:PASSWORD@``,
    ``USER:PASSWORD@``) and query parameters (``?password=``, ``ssl_password=``). A password
    that holds an unescaped ``/``, ``?`` or ``#`` splits the URL before its ``@``: then everything
    up to the last ``@`` is hidden. Works on any string, even one that is not a valid URL.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, rest = rest.rpartition("@")
    if at:
        if any(mark in userinfo for mark in "/?#"):
            userinfo = "***"
        elif ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        rest = f"{userinfo}@{rest}"
    address, question, query = rest.partition("?")
    if question:
        query, hash_mark, fragment = query.partition("#")
        pairs = [
            f"{name}=***" if equals and "password" in unquote_plus(name).lower() else f"{name}{equals}{value}"
            for name, equals, value in (pair.partition("=") for pair in query.split("&"))
        ]
        rest = f"{address}?{'&'.join(pairs)}{hash_mark}{fragment}"
    return f"{scheme}{separator}{rest}"
