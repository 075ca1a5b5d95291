"""How values become text in Redis, for ``redai_lab.patterns.cache`` and ``redai_lab.patterns.sessions``.

A serializer turns a value into ``str`` and back. The default is JSON, *strict*: a value that
would not come back equal (a tuple comes back as a list, ``{1: "a"}`` as ``{"1": "a"}``, NaN
not equal to itself) is refused when written, so a cache hit never returns something other
than what the miss returned. Nothing here ever unpickles: data read from Redis is untrusted
(anyone who can write to the server can plant a payload), and ``pickle.loads`` of a planted
payload runs the planter's code.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..errors import InvalidArgumentType, LabError


class SerializationError(LabError, TypeError):
    """A value cannot be written losslessly, or text read from Redis cannot be decoded."""


class Serializer(Protocol):
    """Turns values into text and back. ``name`` is stored beside each value it wrote."""

    name: str

    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


class JsonSerializer:
    """JSON that refuses values it would not give back unchanged (``strict``, the default)."""

    name = "json"

    def __init__(self, *, strict: bool = True) -> None:
        if not isinstance(strict, bool):
            raise InvalidArgumentType(f"strict is True or False, not {strict!r}.")
        self.strict = strict

    def dumps(self, value: Any) -> str:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except RecursionError:
            raise SerializationError(
                f"{type(value).__name__} value is nested too deeply for JSON: store flatter data."
            ) from None
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"{type(value).__name__} value is not JSON ({exc}): store plain data "
                f"(dict, list, str, int, float, bool, None) or pass another serializer."
            ) from None
        # The check costs one parse per write; writes are the rare path of a cache.
        if self.strict and json.loads(text) != value:
            raise SerializationError(
                f"{type(value).__name__} value would not come back from JSON unchanged (tuples become "
                f"lists, non-str dict keys become str): store lists and str-keyed dicts, or pass "
                f"strict=False to accept the change."
            )
        return text

    def loads(self, text: str) -> Any:
        """The value ``text`` holds; ``SerializationError`` for anything ``dumps`` cannot have written.

        That includes NaN and Infinity (``dumps`` refuses them) and nesting deeper than Python's
        recursion limit: planted text never escapes as a raw ``ValueError`` or ``RecursionError``.
        """
        try:
            return json.loads(text, parse_constant=_no_constant)
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise SerializationError(f"Stored text is not JSON ({exc}); it was not written by this serializer.") from None
        except RecursionError:
            raise SerializationError(
                "Stored text is JSON nested too deeply; it was not written by this serializer."
            ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")


JSON = JsonSerializer()
