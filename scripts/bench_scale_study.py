#!/usr/bin/env python
"""Benchmark: the corpus-scale protocol at Cheng et al.'s size, end to end, on this machine.

    python scripts/bench_scale_study.py                     # 50,000 sequences x 20 tokens, 5 x 10,000
    python scripts/bench_scale_study.py --sequences 12000 --partition-size 2000   # a quicker look

A GPT-2-small-shaped model with random weights (timing does not depend on them) and the real GPT-2
vocabulary are built in a temporary folder; the corpus is generated: documents of English words
drawn (seeded) from the vocabulary's common whole-word tokens, enough of them for the requested
number of 20-token windows. The study runs in a child process (`python -m geostudy --represent
last --window 20`, the default sites: the embeddings and the 12 block outputs), so its peak
resident memory is measured alone. Prints the wall time per stage (from the run's timings.json)
and the peak RSS; the targets are the estimators and comparisons under 2 minutes and the peak
under 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_study import build_model, copy_vocab, machine_speed

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 20


def common_words(vocab_dir: Path, n: int = 5000) -> list[str]:
    """The n lowest-id whole-word tokens of the vocabulary ('Ġword': a space then letters),
    which are BPE's most frequent merges: ordinary English words."""
    encoder = json.loads((vocab_dir / "encoder.json").read_text(encoding="utf-8"))
    words = [(i, t[1:]) for t, i in encoder.items() if t.startswith("\u0120") and t[1:].isalpha() and t[1:].islower()]
    return [w for _, w in sorted(words)[:n]]


def write_corpus(path: Path, words: list[str], n_sequences: int, seed: int = 0) -> None:
    """JSONL documents of 60 to 120 words: about 3 to 6 windows of 20 tokens each, until the
    corpus gives n_sequences windows (with 10 % to spare for the remainders and duplicates)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(words)
    windows, lines = 0, []
    while windows < 1.1 * n_sequences:
        n = int(rng.integers(60, 121))
        lines.append(json.dumps({"text": " ".join(vocab[rng.integers(0, vocab.size, n)])}))
        windows += n // WINDOW
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=50_000, help="sequences of 20 tokens (default: 50000)")
    ap.add_argument("--partitions", type=int, default=5)
    ap.add_argument("--partition-size", type=int, default=10_000)
    ap.add_argument("--model-dir", type=Path, default=None, help="reuse a model folder (model.safetensors + config.json)")
    ap.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--untrained", action="store_true", help="also run the untrained control")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = args.model_dir or work / "model"
        if args.model_dir is None and not (model_dir / "model.safetensors").is_file():
            build_model(model_dir)
        copy_vocab(model_dir)
        corpus = work / "corpus.jsonl"
        write_corpus(corpus, common_words(model_dir), args.sequences)
        out = work / "run"
        cmd = [sys.executable, "-m", "geostudy", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
               "--represent", "last", "--window", str(WINDOW), "--max-sequences", str(args.sequences),
               "--partitions", str(args.partitions), "--partition-size", str(args.partition_size), "--quiet"]
        if args.untrained:
            cmd.append("--untrained")
        print("machine:", machine_speed())
        print("running:", " ".join(cmd[1:]))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        timings = json.loads((out / "timings.json").read_text())["wall_seconds"]
        man = json.loads((out / "manifest.json").read_text())
        print(f"\n{man['corpus']['n_documents']:,} documents -> {man['corpus']['n_sequences']:,} sequences of {WINDOW} tokens "
              f"({man['corpus']['n_duplicates']:,} duplicates removed); {man['options']['partition_note']}")
        for stage, sec in timings.items():
            print(f"  {stage:<36s} {sec:8.1f} s")
        analyses = timings.get("estimators per partition", 0.0) + timings.get("site x site comparisons", 0.0)
        print(f"  {'total (child process)':<36s} {wall:8.1f} s")
        print(f"analyses (estimators + comparisons): {analyses:.1f} s (target < 120 s); peak RSS {peak:.2f} GiB (target < 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
