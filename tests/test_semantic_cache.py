"""The semantic cache (``redai_lab.patterns.semantic_cache``) and the query engine's lesson space
(``redai_lab.lab.search``), against the real server: vector sets (Redis 8) and the RediSearch module.

Vectors are unit vectors in the plane at known angles, stored unquantised, so every distance is
known exactly: 1 - cos(angle between them)."""

from __future__ import annotations

import math
import time

import pytest
import redis

from redai_lab.errors import InvalidArgument, InvalidArgumentType
from redai_lab.lab.features import has_command
from redai_lab.lab.lesson import start_lesson
from redai_lab.lab.search import search_space
from redai_lab.patterns.semantic_cache import SemanticCache, SemanticCacheDataError, SemanticHit

# question -> angle in degrees
ANGLES = {"Explain TCP.": 0, "Walk me through TCP.": 20, "Explain UDP.": 40, "Explain DNS.": 90,
          "Explain NTP.": 180, "Zero": None}


def embed(question: str) -> list[float]:
    angle = ANGLES[question]
    if angle is None:
        return [0.0, 0.0]
    return [math.cos(math.radians(angle)), math.sin(math.radians(angle))]


def distance(degrees: float) -> float:
    return 1 - math.cos(math.radians(degrees))


@pytest.fixture
def vr(r: redis.Redis) -> redis.Redis:
    if not has_command(r, "VADD"):
        pytest.skip("this server has no vector sets (VADD): Redis 8 has them")
    return r


def make(r: redis.Redis, **options) -> SemanticCache:
    return SemanticCache(r, "sc", embed=embed, quantisation="NOQUANT", **options)


def test_a_near_question_gets_the_answer_with_its_distance(vr) -> None:
    cache = make(vr, distance_threshold=0.1)
    cache.store("Explain TCP.", "a reliable byte stream")
    cache.store("Explain DNS.", "names to addresses")
    hit = cache.lookup("Walk me through TCP.")
    assert hit == SemanticHit("a reliable byte stream", "Explain TCP.", pytest.approx(distance(20), abs=1e-5))
    assert cache.lookup("Explain TCP.").distance == pytest.approx(0, abs=1e-6)


def test_the_threshold_decides_and_is_inclusive_of_what_is_nearer(vr) -> None:
    cache = make(vr, distance_threshold=distance(20) - 0.001)
    cache.store("Explain TCP.", "tcp")
    assert cache.lookup("Walk me through TCP.") is None
    assert cache.lookup("Walk me through TCP.", distance_threshold=distance(20) + 0.001).answer == "tcp"
    assert cache.lookup("Explain UDP.", distance_threshold=distance(40) - 0.001) is None
    assert cache.lookup("Explain NTP.", distance_threshold=2.0).answer == "tcp"  # opposite: distance 2


def test_the_nearest_entry_wins(vr) -> None:
    cache = make(vr, distance_threshold=1.0)
    cache.store("Explain DNS.", "dns")  # stored first: order must not matter
    cache.store("Explain TCP.", "tcp")
    assert cache.lookup("Explain UDP.").answer == "tcp"  # 40 degrees from TCP, 50 from DNS
    cache.store("Explain UDP.", "udp")
    assert cache.lookup("Walk me through TCP.").distance == pytest.approx(distance(20), abs=1e-5)


def test_storing_the_same_question_again_replaces_answer_and_ttl(vr) -> None:
    cache = make(vr, distance_threshold=0.1, ttl=60)
    cache.store("Explain TCP.", "old", ttl=5)
    assert 0 < vr.pttl(cache.entry_key("Explain TCP.")) <= 5000
    cache.store("Explain TCP.", "new")
    assert cache.lookup("Explain TCP.").answer == "new"
    assert 5000 < vr.pttl(cache.entry_key("Explain TCP.")) <= 60000
    assert len(cache) == 1
    forever = make(vr)
    forever.store("Explain TCP.", "no ttl")
    assert vr.pttl(forever.entry_key("Explain TCP.")) == -1


def test_an_expired_answer_is_a_miss_and_its_vector_goes(vr) -> None:
    cache = make(vr, distance_threshold=0.5)
    cache.store("Explain TCP.", "short-lived", ttl=0.05)
    cache.store("Explain UDP.", "udp")
    time.sleep(0.15)
    # TCP's entry is the nearest but expired: the next live candidate within the threshold answers.
    assert cache.lookup("Walk me through TCP.").answer == "udp"
    assert len(cache) == 1
    assert cache.lookup("Explain TCP.", distance_threshold=0.01) is None


def test_invalidate_forgets_exactly_one_question(vr) -> None:
    cache = make(vr, distance_threshold=0.5)
    cache.store("Explain TCP.", "tcp")
    cache.store("Walk me through TCP.", "tcp again")
    assert cache.invalidate("Explain TCP.") is True
    assert cache.invalidate("Explain TCP.") is False
    assert len(cache) == 1 and not vr.exists(cache.entry_key("Explain TCP."))
    assert cache.lookup("Explain TCP.").answer == "tcp again"


def test_invalidate_similar_removes_what_is_within_and_nothing_else(vr) -> None:
    cache = make(vr)
    for question in ("Explain TCP.", "Walk me through TCP.", "Explain UDP.", "Explain DNS."):
        cache.store(question, question.lower())
    assert cache.invalidate_similar("Explain TCP.", within=distance(30)) == 2
    assert len(cache) == 2
    assert cache.lookup("Explain UDP.", distance_threshold=0.01).answer == "explain udp."
    assert cache.invalidate_similar("Explain NTP.", within=0.5) == 0
    cache.clear()
    cache.store("Explain TCP.", "tcp")
    assert cache.invalidate_similar("Explain NTP.", within=2.0) == 1  # inclusive: opposite is exactly 2


def test_clear_removes_the_cache_and_only_it(vr) -> None:
    vr.set("sc-other", "kept")
    vr.set("other:entry:x", "kept")
    cache = make(vr)
    for question in ("Explain TCP.", "Explain UDP.", "Explain DNS."):
        cache.store(question, "a")
    assert cache.clear() == 4  # three answers and the vector set
    assert sorted(vr.keys("*")) == ["other:entry:x", "sc-other"]
    assert cache.lookup("Explain TCP.") is None and len(cache) == 0


def test_a_hit_is_two_round_trips_and_a_miss_one(vr, redis_url, round_trips) -> None:
    cache = SemanticCache(round_trips.client(redis_url), "sc", embed=embed, distance_threshold=0.1,
                          quantisation="NOQUANT")
    cache.store("Explain TCP.", "tcp")
    with round_trips.measure() as trips:
        assert cache.lookup("Walk me through TCP.") is not None
    assert trips.count == 2
    with round_trips.measure() as trips:
        assert cache.lookup("Explain DNS.") is None
    assert trips.count == 1
    with round_trips.measure() as trips:
        cache.store("Explain UDP.", "udp", ttl=10)
    assert trips.count == 1  # one MULTI/EXEC


def test_quantised_vectors_keep_distances_close(vr) -> None:
    for quantisation in ("Q8", "BIN"):
        cache = SemanticCache(vr, f"sc-{quantisation}", embed=embed, quantisation=quantisation, distance_threshold=2)
        cache.store("Explain TCP.", "tcp")
        assert cache.lookup("Explain TCP.").distance == pytest.approx(0, abs=0.02)
        assert vr.vset().vinfo(cache.vectors_key)["quant-type"] == {"Q8": "int8", "BIN": "bin"}[quantisation]


@pytest.mark.parametrize(("options", "error"), [
    ({"distance_threshold": 2.5}, InvalidArgument), ({"distance_threshold": -0.1}, InvalidArgument),
    ({"distance_threshold": "0.2"}, InvalidArgumentType), ({"distance_threshold": True}, InvalidArgumentType),
    ({"ttl": 0}, InvalidArgument), ({"ttl": "60"}, InvalidArgumentType), ({"quantisation": "Q4"}, InvalidArgument),
    ({"candidates": 0}, InvalidArgument), ({"embed": "model"}, InvalidArgumentType), ({"name": ""}, InvalidArgumentType),
])
def test_bad_parameters_are_one_line_errors(r, options, error) -> None:
    arguments = {"name": "sc", "embed": embed} | options
    name = arguments.pop("name")
    with pytest.raises(error) as raised:
        SemanticCache(r, name, **arguments)
    assert "\n" not in str(raised.value)


def test_bad_questions_and_vectors_are_one_line_errors(vr) -> None:
    cache = make(vr)
    with pytest.raises(InvalidArgumentType):
        cache.store(None, "answer")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType):
        cache.store("Explain TCP.", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="zero"):
        cache.store("Zero", "no direction")
    strange = SemanticCache(vr, "sc", embed=lambda q: ["x", "y"])
    with pytest.raises(InvalidArgumentType, match="sequence of numbers"):
        strange.lookup("anything")
    assert not vr.keys("*")


def test_foreign_data_under_its_keys_is_its_own_clear_error(vr) -> None:
    cache = make(vr)
    vr.set(cache.vectors_key, "not a vector set")
    for action in (lambda: cache.lookup("Explain TCP."), lambda: cache.store("Explain TCP.", "x"), lambda: len(cache)):
        with pytest.raises(SemanticCacheDataError, match="another Redis type") as raised:
            action()
        assert "\n" not in str(raised.value)
    vr.delete(cache.vectors_key)

    cache.store("Explain TCP.", "tcp")
    vr.hdel(cache.entry_key("Explain TCP."), "answer")
    with pytest.raises(SemanticCacheDataError, match="no answer field"):
        cache.lookup("Explain TCP.")


def test_vectors_of_another_size_are_a_clear_error(vr) -> None:
    make(vr).store("Explain TCP.", "2 dimensions")
    wider = SemanticCache(vr, "sc", embed=lambda q: [1.0, 0.0, 0.0], quantisation="NOQUANT")
    for action in (lambda: wider.lookup("Explain TCP."), lambda: wider.store("Explain UDP.", "3 dimensions")):
        with pytest.raises(SemanticCacheDataError, match="another size") as raised:
            action()
        assert "got 3 but set has 2" in str(raised.value) and "\n" not in str(raised.value)


def test_another_quantisation_is_a_clear_error(vr) -> None:
    make(vr).store("Explain TCP.", "unquantised")
    with pytest.raises(SemanticCacheDataError, match="quantised otherwise than Q8") as raised:
        SemanticCache(vr, "sc", embed=embed, quantisation="Q8").store("Explain UDP.", "int8")
    assert "\n" not in str(raised.value)


# --- the query engine's lesson space ---------------------------------------------------------


@pytest.fixture
def search_lesson(lesson):
    if not has_command(lesson.client, "FT.CREATE"):
        pytest.skip("this server has no query engine (FT.CREATE)")
    return lesson


def test_a_search_space_drops_its_own_indexes_and_keys_only(search_lesson) -> None:
    space = search_space(search_lesson)
    assert search_lesson.cleanups == [space.clear]  # lesson.finish() runs it
    r0 = space.client
    other_index, other_key = "redai-lab:other-lesson:idx:x", "redai-lab:other-lesson:doc:1"
    r0.execute_command("FT.CREATE", other_index, "ON", "HASH", "PREFIX", 1, "redai-lab:other-lesson:doc:",
                       "SCHEMA", "t", "TEXT")
    try:
        r0.hset(other_key, "t", "kept")
        r0.execute_command("FT.CREATE", space.index("mine"), "ON", "HASH", "PREFIX", 1, space.key("doc:"),
                           "SCHEMA", "t", "TEXT")
        r0.hset(space.key("doc:1"), "t", "mine")
        r0.hset(space.key("doc:2"), "t", "mine too")
        assert space.clear() == 2
        indexes = r0.execute_command("FT._LIST")
        assert space.index("mine") not in indexes and other_index in indexes
        assert not r0.keys(space.key("*")) and r0.hget(other_key, "t") == "kept"
        assert space.clear() == 0  # idempotent
    finally:
        r0.execute_command("FT.DROPINDEX", other_index)
        r0.delete(other_key)


def test_flushdb_in_any_database_drops_every_index(search_lesson) -> None:
    """What lesson 30 warns of: the module drops all its indexes on a flush of any database (the
    documents in database 0 stay)."""
    space = search_space(search_lesson)
    r0 = space.client
    r0.execute_command("FT.CREATE", space.index("doomed"), "ON", "HASH", "PREFIX", 1, space.key("doc:"),
                       "SCHEMA", "t", "TEXT")
    r0.hset(space.key("doc:1"), "t", "stays")
    search_lesson.client.flushdb()  # the tests' own database, not 0
    assert space.index("doomed") not in r0.execute_command("FT._LIST")
    assert r0.hget(space.key("doc:1"), "t") == "stays"


def test_starting_and_finishing_lessons_keeps_every_index(search_lesson, lab_server) -> None:
    """So the lab empties a lesson's database with SCAN and UNLINK, never FLUSHDB."""
    space = search_space(search_lesson)
    r0 = space.client
    r0.execute_command("FT.CREATE", space.index("kept"), "ON", "HASH", "PREFIX", 1, space.key("doc:"),
                       "SCHEMA", "t", "TEXT")
    other = start_lesson("05_sets", server=lab_server)
    other.client.sadd("tags", "a", "b")
    assert other.finish() == 1
    assert space.index("kept") in r0.execute_command("FT._LIST")
    r0.execute_command("FT.DROPINDEX", space.index("kept"))


# --- the lessons' dataset ---------------------------------------------------------------------


def test_the_dataset_is_fixed_and_every_text_has_its_unit_embedding() -> None:
    from redai_lab.lab import exam_data

    questions, probes = exam_data.questions(), exam_data.probes()
    assert len(questions) == 384 and len({q.text for q in questions}) == 384
    assert (questions[13].id, questions[13].text, questions[13].difficulty) == (
        "q013", "What is Dijkstra's algorithm and why does it matter?", 5)
    assert sum(p.paraphrase for p in probes) == sum(not p.paraphrase for p in probes) == 48
    texts = {q.text for q in questions}
    assert all(p.cached in texts for p in probes)
    assert all(p.text in texts for p in probes if not p.paraphrase)  # look-alikes are other questions
    vectors = exam_data.embeddings()
    assert list(vectors) == list(exam_data.all_texts())
    assert all(v.shape == (exam_data.DIMENSIONS,) and abs(float(v @ v) - 1) < 1e-5 for v in vectors.values())
    # The model's meaning, not chance: every paraphrase is nearer its cached question than a random pair is.
    paraphrases = [1 - float(vectors[p.text] @ vectors[p.cached]) for p in probes if p.paraphrase]
    assert max(paraphrases) < 0.5 < 1 - float(vectors[questions[0].text] @ vectors[questions[200].text])


def test_what_the_dataset_hands_out_cannot_change_what_the_next_caller_gets() -> None:
    from redai_lab.lab import exam_data

    vectors = exam_data.embeddings()
    first = next(iter(vectors))
    with pytest.raises(ValueError, match="read-only"):
        vectors[first] *= 2  # a caller "normalising" in place
    vectors.clear()
    exams = exam_data.exams()
    exams[0]["title"] = "changed"
    assert len(exam_data.embeddings()) == len(exam_data.all_texts())
    assert abs(float(exam_data.embeddings()[first] @ exam_data.embeddings()[first]) - 1) < 1e-5
    assert exam_data.exams()[0]["title"] == "Algorithms final 2022"
