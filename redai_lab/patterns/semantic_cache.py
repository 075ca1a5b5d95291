"""A semantic cache: answers found by the meaning of the question, not its exact text.

    cache = SemanticCache(r, "answers", embed=model.encode, distance_threshold=0.2, ttl=3600)
    cache.store("Explain TCP.", "TCP is a reliable, ordered byte stream ...")
    hit = cache.lookup("Can you describe how TCP works?")   # SemanticHit(answer=..., distance=0.09)
    cache.lookup("Explain UDP.")       # None with a strict threshold; a *wrong* answer with a loose one
    cache.invalidate("Explain TCP.")   # the answer changed: gone, with its vector
    cache.invalidate_similar("Explain TCP.", within=0.3)   # and every wording of it
    cache.clear()

Layout, all under ``<name>:``:

* ``<name>:vectors``: a **vector set** (Redis 8): one element per cached question, named by a
  digest of the question's text, holding its embedding (cosine similarity; ``Q8`` quantisation
  by default, the server's default too).
* ``<name>:entry:<digest>``: a hash, ``question`` and ``answer``, with the entry's TTL.

A vector set has no TTL per element, so the answer's hash carries it: when Redis expires the
hash, the element is left behind and the next lookup that meets it removes it (``VREM``) and
takes the next candidate. A hit does not extend the answer's TTL (redisvl's cache does): an
answer popular for a day is still recomputed once a day. ``lookup`` is one ``VSIM`` (the ``candidates`` nearest, with scores)
and, when one is within the threshold, one pipelined read of their hashes: two round trips for a
hit, one for a miss.

Distances are **cosine distances**, ``1 - cos``, 0 (same direction) to 2 (opposite), the unit
redisvl's ``SemanticCache`` and the query engine's ``COSINE`` use. ``VSIM`` answers a similarity
``(1 + cos) / 2`` instead; ``distance = 2 * (1 - similarity)``.

The embedding function is the caller's: the cache never loads a model. It must return the same
number of dimensions every time (the vector set fixes them at its first element). Vectors travel as float32 bytes (``FP32``), not
as text.

Commands: VADD O(log n) (HNSW insertion), VSIM O(log n), VREM O(log n), HSET/HMGET O(1) per
field, DEL/UNLINK O(1) per key. Data written by someone else under the cache's keys (another
type, a hash without an answer, vectors of another dimension) gives ``SemanticCacheDataError``,
one line; a server without vector sets ``MissingFeatureError``. The client may decode responses
or not.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from ..errors import (
    InvalidArgument,
    InvalidArgumentType,
    LabError,
    MissingFeatureError,
    check_count,
    check_seconds,
    foreign_data,
)

QUANTISATIONS = ("NOQUANT", "Q8", "BIN")
MAX_DISTANCE = 2.0  # cosine distance between opposite vectors
MAX_FLOAT32 = 3.4028234663852886e38  # the largest finite float32: vectors travel as FP32
GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})  # SCAN MATCH's metacharacters


class SemanticCacheDataError(LabError):
    """The cache's keys hold data the cache did not write."""


@dataclass(frozen=True)
class SemanticHit:
    """A cached answer, the question it was stored for, and how far that question is (cosine)."""

    answer: str
    question: str
    distance: float


Embed = Callable[[str], Sequence[float]]


class SemanticCache:
    """Answers looked up by the similarity of the question's embedding, within ``distance_threshold``.

    ``ttl``: seconds an answer lives (None: until invalidated). ``quantisation``: how the vector
    set stores vectors (``Q8``: one byte per dimension; ``NOQUANT``: float32; ``BIN``: one bit),
    fixed when its first element is added. ``candidates``: how many neighbours one lookup reads,
    so that expired answers met on the way do not hide a live one behind them.
    """

    def __init__(
        self,
        r: redis.Redis,
        name: str,
        *,
        embed: Embed,
        distance_threshold: float = 0.2,
        ttl: float | None = None,
        quantisation: str = "Q8",
        candidates: int = 4,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentType(f"name is the cache's key prefix, a non-empty string, not {name!r}.")
        if not callable(embed):
            raise InvalidArgumentType(f"embed turns a question into its vector: a function, not {embed!r}.")
        if quantisation not in QUANTISATIONS:
            raise InvalidArgument(f"quantisation must be one of {', '.join(QUANTISATIONS)}, not {quantisation!r}.")
        self.r, self.name, self.embed = r, name, embed
        self.distance_threshold = _check_distance("distance_threshold", distance_threshold)
        self.ttl = None if ttl is None else check_seconds("ttl", ttl)
        self.quantisation = quantisation
        self.candidates = check_count("candidates", candidates, maximum=1000)
        self.vectors_key = f"{name}:vectors"

    def entry_key(self, question: str) -> str:
        """The hash holding ``question``'s answer."""
        return f"{self.name}:entry:{_element(question)}"

    def store(self, question: str, answer: str, *, ttl: float | None = None) -> None:
        """Cache ``answer`` for ``question`` (replacing an answer stored for the same text).

        ``ttl`` overrides the cache's for this entry. The hash and the vector are written in one
        transaction: a reader never finds a vector whose answer was not written yet.
        """
        _check_text("question", question)
        _check_text("answer", answer)
        seconds = self.ttl if ttl is None else check_seconds("ttl", ttl)
        vector = self._vector(question)
        entry = self.entry_key(question)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(entry)  # a hash from an earlier store: its TTL must not outlive this one's
        pipe.hset(entry, mapping={"question": question, "answer": answer})
        if seconds is not None:
            pipe.pexpire(entry, max(1, round(seconds * 1000)))
        pipe.execute_command("VADD", self.vectors_key, "FP32", _float32(vector), _element(question),
                             self.quantisation)
        with self._own_data():
            pipe.execute()

    def lookup(self, question: str, *, distance_threshold: float | None = None) -> SemanticHit | None:
        """The answer cached for the nearest question within the threshold, else None.

        ``distance_threshold`` overrides the cache's for this call (a measurement sweeps it).
        """
        _check_text("question", question)
        threshold = self.distance_threshold if distance_threshold is None else _check_distance(
            "distance_threshold", distance_threshold)
        near = [(element, distance) for element, distance in self._nearest(self._vector(question), self.candidates)
                if distance <= threshold]
        if not near:
            return None
        pipe = self.r.pipeline(transaction=False)
        for element, _ in near:
            pipe.hmget(f"{self.name}:entry:{element}", "question", "answer")
        with self._own_data():
            entries = pipe.execute()
        expired = [element for (element, _), (cached, answer) in zip(near, entries) if cached is None and answer is None]
        if expired:  # their hashes expired or were deleted: the vectors go too
            self._remove_elements(expired)
        for (element, distance), (cached, answer) in zip(near, entries):
            if cached is None and answer is None:
                continue
            if cached is None or answer is None:  # the cache writes both fields in one HSET
                missing = "question" if cached is None else "answer"
                raise SemanticCacheDataError(
                    f"{self.name}:entry:{element} has no {missing} field: the cache did not write it. Delete it, "
                    f"or give the cache a name of its own.")
            with self._own_data():  # a client without decode_responses: bytes, which must be UTF-8
                return SemanticHit(answer=_text(answer), question=_text(cached), distance=distance)
        return None

    def invalidate(self, question: str) -> bool:
        """Forget the answer stored for exactly ``question``; True when there was one."""
        _check_text("question", question)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.entry_key(question))
        pipe.execute_command("VREM", self.vectors_key, _element(question))
        with self._own_data():
            deleted = pipe.execute()[0]
        return bool(deleted)

    def invalidate_similar(self, question: str, *, within: float, limit: int = 100) -> int:
        """Forget every answer whose question is within ``within`` of ``question`` (at most
        ``limit`` of them): after the facts behind an answer changed, every wording of it must
        go. How many answers were removed."""
        _check_text("question", question)
        radius = _check_distance("within", within)
        elements = [element for element, distance in self._nearest(self._vector(question),
                                                                     check_count("limit", limit))
                    if distance <= radius]
        if not elements:
            return 0
        deleted = int(self.r.delete(*(f"{self.name}:entry:{e}" for e in elements)))  # type: ignore[arg-type]
        self._remove_elements(elements)
        return deleted

    def clear(self) -> int:
        """Delete every entry and the vector set; how many keys were removed."""
        # The name escaped: a cache named "a*" must not match cache "ab"'s keys.
        keys = [self.vectors_key, *self.r.scan_iter(match=f"{self.name.translate(GLOB_SPECIAL)}:entry:*", count=1000)]
        return sum(int(self.r.unlink(*keys[i:i + 1000])) for i in range(0, len(keys), 1000))  # type: ignore[misc]

    def __len__(self) -> int:
        """How many vectors the set holds (expired answers' included until a lookup meets them)."""
        with self._own_data():
            return int(self.r.execute_command("VCARD", self.vectors_key))

    def _vector(self, question: str) -> list[float]:
        try:
            vector = [float(x) for x in self.embed(question)]
        except (TypeError, ValueError):
            raise InvalidArgumentType(f"embed({question!r}) must return a sequence of numbers.") from None
        if not vector or not all(math.isfinite(x) for x in vector) or not any(vector):
            raise InvalidArgument(f"embed({question!r}) returned an empty, zero or non-finite vector: no direction "
                                  f"to compare by cosine.")
        if any(abs(x) > MAX_FLOAT32 for x in vector):
            raise InvalidArgument(f"embed({question!r}) returned a number beyond float32's range: normalise the "
                                  f"vector (cosine ignores its length).")
        return vector

    def _nearest(self, vector: list[float], count: int) -> list[tuple[str, float]]:
        """Up to ``count`` (element, cosine distance), nearest first."""
        with self._own_data():
            reply = self.r.execute_command("VSIM", self.vectors_key, "FP32", _float32(vector),
                                           "WITHSCORES", "COUNT", count)
        if isinstance(reply, dict):  # RESP3
            pairs = list(reply.items())
        else:
            pairs = list(zip(reply[::2], reply[1::2]))
        with self._own_data():
            return [(_text(element), max(0.0, 2 * (1 - float(similarity)))) for element, similarity in pairs]

    def _remove_elements(self, elements: list[str]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for element in elements:  # VREM takes one element
            pipe.execute_command("VREM", self.vectors_key, element)
        pipe.execute()

    @contextmanager
    def _own_data(self) -> Iterator[None]:
        """The cache's errors about data: another type under its keys, vectors of another size."""
        try:
            with foreign_data(lambda problem: SemanticCacheDataError(
                    f"A key of semantic cache {self.name!r} holds {problem}: the cache did not write it. Delete "
                    f"{self.vectors_key} and {self.name}:entry:*, or give the cache a name of its own.")):
                yield
        except redis.ResponseError as exc:
            detail = str(exc).rpartition(" of pipeline caused error: ")[2].strip()  # not the vector's bytes
            if "dimension mismatch" in detail:
                raise SemanticCacheDataError(
                    f"Semantic cache {self.name!r} holds vectors of another size ({detail}): embed with the model "
                    f"that filled it, or clear() it first.") from None
            if detail.removeprefix("ERR ").startswith("unknown command"):
                raise MissingFeatureError(
                    "This server has no vector sets (VADD, VSIM: Redis 8 or the vectorset module): the semantic "
                    "cache needs them.") from None
            if "quantization mismatch" in detail:
                raise SemanticCacheDataError(
                    f"Semantic cache {self.name!r} holds vectors quantised otherwise than {self.quantisation} "
                    f"({detail}): open it with the quantisation it was filled with, or clear() it first.") from None
            raise


def _float32(vector: list[float]) -> bytes:
    """The vector as the server's FP32 blob: 4 bytes a number, little-endian, never parsed as text."""
    return struct.pack(f"<{len(vector)}f", *vector)


def _element(question: str) -> str:
    """The vector set's element for ``question``: a digest, so any text makes a short, safe name."""
    return hashlib.sha256(question.encode()).hexdigest()[:32]


def _text(value: str | bytes) -> str:
    """A reply as text, whether or not the client decodes responses (UnicodeDecodeError if not UTF-8)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_text(label: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{label} is text (str), not {value!r}.")
    return value


def _check_distance(label: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidArgumentType(f"{label} is a cosine distance (a number from 0 to 2), not {value!r}.")
    if not 0 <= float(value) <= MAX_DISTANCE:
        raise InvalidArgument(f"{label} is a cosine distance from 0 to 2 (0: the same direction), not {value!r}.")
    return float(value)
