"""The exam platform's small dataset, generated deterministically (lessons 30 and 31).

    questions()          # 384 questions: 8 subjects x 12 terms x 4 question forms
    exams()              # 32 exams (8 subjects x 4 years), each a JSON-ready dict of question ids
    probes()             # 96 labelled probes for the semantic cache: paraphrases and look-alikes
    all_texts()          # every text that has an embedding in data/exam_embeddings.npz, in order
    embeddings()         # {text: float32 vector (384 dims, unit length)} from that file

Everything is built from the tables below and a ``random.Random`` with a fixed seed, so two runs
(and two machines) get the same data; nothing is downloaded. The embeddings were computed once
with the sentence-transformers model all-MiniLM-L6-v2 by ``scripts/make_embeddings.py`` and
committed as float16: the default install needs no model, no PyTorch.

A probe asks a cached question again in other words (a **paraphrase**: the cached answer is
right for it) or asks something else that looks alike (a **look-alike**: the same form about
another term, "Explain UDP." against "Explain TCP.", or another form about the same term, "Give
an example of TCP."): a cache that answers it has served a wrong answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from ..errors import LabError

SEED = 14
YEARS = (2022, 2023, 2024, 2025)
DIMENSIONS = 384  # all-MiniLM-L6-v2's
EMBEDDINGS_FILE = "exam_embeddings.npz"

SUBJECTS: dict[str, tuple[str, ...]] = {
    "algorithms": ("binary search", "quicksort", "merge sort", "Dijkstra's algorithm", "dynamic programming",
                   "a hash table", "a binary heap", "breadth-first search", "depth-first search", "a trie",
                   "a B-tree", "memoization"),
    "databases": ("a secondary index", "a transaction", "a foreign key", "normalisation", "a join", "MVCC",
                  "a write-ahead log", "sharding", "replication", "a deadlock", "isolation levels",
                  "a materialised view"),
    "networking": ("TCP", "UDP", "DNS", "TLS", "HTTP/2", "a load balancer", "NAT", "BGP", "a subnet mask",
                   "a CDN", "QUIC", "ARP"),
    "biology": ("photosynthesis", "mitosis", "meiosis", "DNA replication", "an enzyme", "the Krebs cycle",
                "natural selection", "a ribosome", "osmosis", "the immune response", "a mitochondrion",
                "gene expression"),
    "physics": ("Newton's second law", "kinetic energy", "momentum", "entropy", "an electric field", "Ohm's law",
                "refraction", "a standing wave", "friction", "gravitational potential energy", "magnetic flux",
                "radioactive half-life"),
    "history": ("the French Revolution", "the Industrial Revolution", "the Cold War", "the Roman Republic",
                "the printing press", "the Renaissance", "the fall of the Berlin Wall", "the Magna Carta",
                "the Silk Road", "decolonisation", "the Reformation", "the Meiji Restoration"),
    "economics": ("inflation", "supply and demand", "opportunity cost", "comparative advantage", "a monopoly",
                  "interest rates", "GDP", "price elasticity", "a recession", "fiscal policy", "externalities",
                  "game theory"),
    "chemistry": ("a covalent bond", "an ionic bond", "pH", "a catalyst", "oxidation", "an isotope",
                  "electronegativity", "a buffer solution", "chemical equilibrium", "a polymer",
                  "the ideal gas law", "titration"),
}

# Each question form: its tag, how a question is written, and two other wordings of it (the
# paraphrases a learner might type).
FORMS: dict[str, tuple[str, str, str]] = {
    "explain": ("Explain {term}.", "Can you describe how {term} works?", "Walk me through {term}, please."),
    "why": ("What is {term} and why does it matter?", "Why is {term} important, and what is it?",
            "What does {term} mean, and why should I care about it?"),
    "example": ("Give an example of {term}.", "Show me a concrete instance of {term}.",
                "What is a real-world example of {term}?"),
    "limits": ("What are the limits of {term}?", "Where does {term} stop working well?",
               "When does {term} fall short?"),
}


class ExamDataError(LabError):
    """The committed embeddings file does not match the generator's texts."""


@dataclass(frozen=True)
class Question:
    """One exam question: ``id`` like ``q042``; ``form`` is a key of ``FORMS``."""

    id: str
    text: str
    subject: str
    term: str
    form: str
    difficulty: int  # 1 (easy) to 5
    points: int
    year: int

    def as_hash(self) -> dict[str, str | int]:
        """The fields as a Redis hash stores them (``term`` is the subject's term, for filters)."""
        return {"text": self.text, "subject": self.subject, "form": self.form, "term": self.term,
                "difficulty": self.difficulty, "points": self.points, "year": self.year}


@dataclass(frozen=True)
class Probe:
    """A question sent to a semantic cache whose entries are ``cached`` questions.

    ``paraphrase`` is the label: True when the cached answer is right for ``text``."""

    text: str
    cached: str
    paraphrase: bool


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


@cache
def questions() -> tuple[Question, ...]:
    """Every question, in a fixed order: subject, term, form."""
    rng = random.Random(SEED)
    made: list[Question] = []
    for subject, terms in SUBJECTS.items():
        for term in terms:
            for form, (wording, _, _) in FORMS.items():
                difficulty = rng.randint(1, 5)
                made.append(Question(
                    id=f"q{len(made):03d}", text=_capitalised(wording.format(term=term)), subject=subject,
                    term=term, form=form, difficulty=difficulty, points=difficulty * 2 + rng.randint(0, 2),
                    year=rng.choice(YEARS),
                ))
    return tuple(made)


def exams() -> tuple[dict[str, object], ...]:
    """One exam per subject and year: the subject's questions of that year (JSON-ready dicts,
    new ones each call: a caller may change them)."""
    made: list[dict[str, object]] = []
    for subject in SUBJECTS:
        for year in YEARS:
            chosen = [q for q in questions() if q.subject == subject and q.year == year]
            made.append({
                "id": f"e{len(made):02d}",
                "title": f"{subject.capitalize()} final {year}",
                "subject": subject,
                "year": year,
                "duration_minutes": 30 + 15 * len(chosen) // 4,
                "questions": [{"id": q.id, "points": q.points} for q in chosen],
                "total_points": sum(q.points for q in chosen),
            })
    return tuple(made)


@cache
def probes() -> tuple[Probe, ...]:
    """96 labelled probes: for each of 48 cached questions, one paraphrase and one look-alike.

    Cached: the first three terms of each subject in every form, every other one (6 per subject). Look-alikes alternate: the same form about the subject's next term,
    or the next form about the same term.
    """
    rng = random.Random(SEED + 1)
    by_key = {(q.subject, q.term, q.form): q for q in questions()}
    forms = list(FORMS)
    made: list[Probe] = []
    for subject, terms in SUBJECTS.items():
        for t, term in enumerate(terms[:3]):
            for f, form in enumerate(forms):
                if (t + f) % 2:
                    continue
                cached = by_key[(subject, term, form)].text
                wording = FORMS[form][1 + rng.randint(0, 1)]
                made.append(Probe(_capitalised(wording.format(term=term)), cached, paraphrase=True))
                if (t + f) % 4 == 0:
                    other = by_key[(subject, terms[t + 3], form)]  # same form, another term
                else:
                    other = by_key[(subject, term, forms[(f + 1) % len(forms)])]  # same term, another form
                made.append(Probe(other.text, cached, paraphrase=False))
    return tuple(made)


def cached_questions() -> tuple[str, ...]:
    """The questions a semantic cache holds for the probes, each once, in probe order."""
    return tuple(dict.fromkeys(p.cached for p in probes()))


def all_texts() -> tuple[str, ...]:
    """Every text with an embedding: the questions, then the probes that are not questions."""
    texts = [q.text for q in questions()]
    return tuple(dict.fromkeys(texts + [p.text for p in probes()]))


def embeddings() -> dict[str, np.ndarray]:
    """Each of ``all_texts()`` -> its all-MiniLM-L6-v2 embedding (float32, unit length).

    A new dict each call; the vectors are shared and read-only (``v /= 2`` raises rather than
    changing every later caller's). ``ExamDataError`` when the committed file does not match the
    generator (run ``scripts/make_embeddings.py`` again after changing the tables above).
    """
    return dict(_embeddings())


@cache
def _embeddings() -> dict[str, np.ndarray]:
    with resources.files("redai_lab.lab.data").joinpath(EMBEDDINGS_FILE).open("rb") as stream:
        data = np.load(stream, allow_pickle=False)  # the file holds arrays only: never unpickle
        texts, vectors = [str(t) for t in data["texts"]], data["vectors"].astype(np.float32)
    if tuple(texts) != all_texts() or vectors.shape != (len(texts), DIMENSIONS):
        raise ExamDataError(
            f"redai_lab/lab/data/{EMBEDDINGS_FILE} does not match redai_lab/lab/exam_data.py's texts: run "
            f"scripts/make_embeddings.py (it needs the optional extra: pip install -e '.[embeddings]')."
        )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # float16 rounding moved them off 1
    vectors.flags.writeable = False  # the rows below are views of it: read-only too
    return dict(zip(texts, vectors))
