"""Synthetic corpora for the corpus-scale and cluster tests: JSONL documents of random words from
a small vocabulary, seeded (the same file every run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = "river stone light music number garden winter engine market theory ocean signal forest paper glass".split()


def write_word_documents(path: Path, *, seed: int, n_docs: int, words: tuple[int, int], vocabulary=WORDS) -> Path:
    """n_docs documents of words[0] to words[1] - 1 random words each, one JSON object per line."""
    rng = np.random.default_rng(seed)
    lines = [json.dumps({"text": " ".join(rng.choice(vocabulary, size=int(rng.integers(*words))))}) for _ in range(n_docs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
