#!/usr/bin/env python
"""Benchmark: the corpus-scale study's forward stage on a Dask LocalCluster of 1 and 2 worker
processes against the in-process path on one thread (not a test; it takes minutes).

    python scripts/bench_cluster_forward.py                    # 2,048 sequences of 20 tokens, 3 repetitions
    python scripts/bench_cluster_forward.py --sequences 1024 --reps 1 --model-dir /tmp/gpt2-small

A random-weight GPT-2 small (built with transformers as scripts/bench_study.py does, or
--model-dir) turns a generated corpus (scripts/bench_scale_study.py's) into `--represent last`
rows at the 13 residual sites, in shards of `--shard-rows` sequences (one task each). Timed: the
"forward passes" stage of geostudy.scale.execute_scale (shard tasks, the weights loaded on each
worker, the rows written into activations.zarr), three ways, alternating within each repetition:
in process with one worker thread (the study's own path, one BLAS thread), and on a LocalCluster
of 1 and of 2 single-threaded worker processes (started before the timing: a study starts its
cluster once). Every run gets a fresh run folder; the stores must hold the same bytes. Prints the
medians, the scaling efficiency t1 / (2 t2) (target >= 0.85) and the overhead t1 / t_in - 1 at one
worker (target <= 10%).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
from pathlib import Path

from bench_scale_study import WINDOW, common_words, write_corpus  # noqa: E402
from bench_study import build_model, copy_vocab  # noqa: E402

STAGE = "forward passes (trained)"


def store_digest(store: Path) -> str:
    """sha256 over the store's chunk files (names and bytes), in name order."""
    h = hashlib.sha256()
    for f in sorted(p for p in store.rglob("*") if p.is_file() and "/c/" in p.as_posix()):
        h.update(f.relative_to(store).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def forward_seconds(model_dir: Path, corpus: Path, out: Path, args, executor) -> tuple[float, str]:
    from geostudy import execute_scale, prepare_scale_study

    plan = prepare_scale_study(str(model_dir), str(corpus), out, represent="last", window=WINDOW,
                               max_sequences=args.sequences, partitions=2, partition_size=args.sequences // 4,
                               shard_rows=args.shard_rows, workers=1, plots=False, report=False, progress=False)
    execute_scale(plan, executor)
    return plan.timer.seconds[STAGE], store_digest(out / "activations.zarr")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=2048, help="sequences of 20 tokens (default 2048)")
    ap.add_argument("--shard-rows", type=int, default=256, help="sequences per shard task (default 256)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--model-dir", type=Path, default=None, help="a model folder (model.safetensors + config.json)")
    args = ap.parse_args()

    from geostudy.cluster import DaskExecutor, connect

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or work / "model"
        if args.model_dir is None:
            build_model(model_dir)
        copy_vocab(model_dir)
        corpus = work / "corpus.jsonl"
        write_corpus(corpus, common_words(model_dir), args.sequences)
        times: dict[str, list[float]] = {"in process, 1 thread": [], "cluster, 1 worker": [], "cluster, 2 workers": []}
        digests = set()
        with connect("local:1") as one, connect("local:2") as two:
            engines = {"in process, 1 thread": None, "cluster, 1 worker": DaskExecutor(one.client),
                       "cluster, 2 workers": DaskExecutor(two.client)}
            for rep in range(args.reps):
                order = list(engines) if rep % 2 == 0 else list(reversed(engines))
                for name in order:
                    seconds, digest = forward_seconds(model_dir, corpus, work / f"run-{rep}-{list(engines).index(name)}",
                                                      args, engines[name])
                    times[name].append(seconds)
                    digests.add(digest)
                    print(f"rep {rep}: {name:<22s} {seconds:7.1f} s", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    t_in, t1, t2 = med["in process, 1 thread"], med["cluster, 1 worker"], med["cluster, 2 workers"]
    print(f"\n{args.sequences} sequences x {WINDOW} tokens, shards of {args.shard_rows}; medians of {args.reps}:")
    for name, t in med.items():
        print(f"  {name:<22s} {t:7.1f} s")
    print(f"stores identical: {len(digests) == 1}")
    print(f"scaling efficiency t1 / (2 t2) = {t1 / (2 * t2):.2f} (target >= 0.85)")
    print(f"cluster overhead at 1 worker: t1 / t_in - 1 = {100 * (t1 / t_in - 1):+.1f}% (target <= 10%)")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
