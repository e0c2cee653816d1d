#!/usr/bin/env python
"""Benchmark: forward throughput of the corpus-scale study (`--represent last|mean`) against
transformers, and against the floor the matrix products set.

    python scripts/bench_scale_forward.py                     # GPT-2-small-shaped random model
    python scripts/bench_scale_forward.py --batches 4 --reps 7 --threads 2

Both sides turn batches of 20-token sequences (Cheng et al.'s windows) into one row per sequence
at the 13 residual-stream sites (the embeddings and every block's output), as numpy arrays:
* gpt2np as the study runs it: geostudy.scale.forward.represent_batch (run_with_cache keeping
  only those sites, no unembedding), one batch per worker thread, `--threads` workers, each with
  one BLAS thread (geostudy's ThreadExecutor under blas_single_thread);
* transformers as it is usually run: GPT2Model (eager attention, no LM head), one batch after
  the other on `--threads` intra-op threads (torch.set_num_threads), output_hidden_states=True,
  under torch.inference_mode, then the same reduction (its 13th state has ln_f applied: the same
  work plus one LayerNorm).
Same weights (one model folder, built with transformers as scripts/bench_study.py does), float32,
the same number of cores. The two alternate within each repetition (which goes first alternates
too); medians are reported. With `--threads 1` both run one batch at a time on one thread.

The floor: the multiply-adds of the products, per block 12·D² per position (c_attn 3·D², attn
c_proj D², mlp c_fc 4·D², mlp c_proj 4·D²) plus attention's 2·T·D per position (q·k and pattern·v,
counted in full), divided by the float32 GEMM rate this machine reaches on the same four shapes
with np.matmul on `--threads` cores, measured in the same run: the better of one product on
`--threads` BLAS threads and `--threads` single-threaded products side by side. Targets:
gpt2np / transformers <= 0.8 and gpt2np / floor <= 1.3.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def gemm_shapes(rows: int, d: int, d_mlp: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of the four products of one block on `rows` positions."""
    return [(rows, d, 3 * d), (rows, d, d), (rows, d, d_mlp), (rows, d_mlp, d)]


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _gemm_operands(cfg, rows: int):
    rng = np.random.default_rng(0)
    for m, k, n in gemm_shapes(rows, cfg.d_model, cfg.d_mlp):
        yield (rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32),
               np.empty((m, n), np.float32))


def floor_meter(cfg, batch: int, seq: int, threads: int):
    """A function that measures, now, the floor of one batch: (seconds, GEMM rate in GFLOP/s).
    Measured in every repetition beside the two forwards, since this shared machine's speed
    drifts by a factor of two within minutes."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    rows = batch * seq
    each = [list(_gemm_operands(cfg, rows)) for _ in range(threads)]
    flops = sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in each[0])
    attention = 2.0 * 2 * rows * seq * cfg.d_model  # q·k and pattern·v, full T x T
    pool = ThreadPoolExecutor(threads)

    def products(ops) -> None:
        for a, b, out in ops:
            np.matmul(a, b, out=out)

    def side_by_side() -> None:
        with threadpool_limits(1, user_api="blas"):
            list(pool.map(products, each))

    products(each[0])  # warm

    def measure() -> tuple[float, float]:
        rates = [flops / median_time(lambda: products(each[0]), 3)]  # one product at a time, every BLAS thread
        if threads > 1:  # `threads` single-threaded products side by side
            rates.append(threads * flops / median_time(side_by_side, 3))
        rate = max(rates)
        return cfg.n_layer * (flops + attention) / rate, rate / 1e9

    return measure


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=None, help="a model folder (default: build a random GPT-2 small)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per batch (the study's default)")
    p.add_argument("--seq", type=int, default=20, help="tokens per sequence")
    p.add_argument("--batches", type=int, default=None, help="batches per timed repetition (default: one per thread)")
    p.add_argument("--reps", type=int, default=5, help="repetitions (medians are reported)")
    p.add_argument("--threads", type=int, default=None, help="threads for both (default: every core)")
    args = p.parse_args()

    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from bench_study import build_model  # this script's own folder is on the path when it is run
    from threadpoolctl import threadpool_limits
    from transformers import GPT2Model

    import gpt2np
    from geostudy.scale.forward import default_sites, represent_batch

    threads = args.threads or len(os.sched_getaffinity(0))
    args.batches = args.batches or threads
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench-scale-forward-") as tmp, threadpool_limits(threads):
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "gpt2-small-random"
            print("building a random-weight GPT-2 small ...", flush=True)
            build_model(model_dir)
        ours = gpt2np.load_model(model_dir, dtype="float32")
        theirs = GPT2Model.from_pretrained(model_dir, attn_implementation="eager").float().eval()
        cfg = ours.cfg
        sites = default_sites(cfg)
        rng = np.random.default_rng(0)
        batches = [rng.integers(0, cfg.d_vocab, (args.batch_size, args.seq)) for _ in range(args.batches)]
        lengths = np.full(args.batch_size, args.seq)
        tensors = [torch.from_numpy(ids) for ids in batches]

        pool = ThreadPoolExecutor(threads)

        def run_ours(represent: str) -> list[dict]:
            with threadpool_limits(1, user_api="blas"):
                return list(pool.map(lambda ids: represent_batch(ours, ids, lengths, sites, represent), batches))

        def run_theirs(represent: str) -> list[dict]:
            out = []
            with torch.inference_mode():
                for ids in tensors:
                    states = theirs(ids, output_hidden_states=True).hidden_states
                    reduce = (lambda h: h[:, -1]) if represent == "last" else (lambda h: h.mean(dim=1))
                    out.append({s: reduce(h).numpy() for s, h in zip(sites, states)})
            return out

        # the same numbers (all but the 13th state, which transformers gives after ln_f)
        a, b = run_ours("last")[0], run_theirs("last")[0]
        worst = max(float(np.abs(a[s] - b[s]).max() / np.abs(b[s]).max()) for s in sites[:-1])
        print(f"gpt2np vs transformers, largest relative difference over the first 12 sites: {worst:.1e}")

        measure_floor = floor_meter(cfg, args.batch_size, args.seq, threads)
        print(f"{threads} threads; batches of {args.batch_size} x {args.seq} tokens; {args.batches} batches per timing")
        ok = True
        for represent in ("last", "mean"):
            times: dict[str, list[float]] = {"gpt2np": [], "transformers": [], "floor": []}
            rates = []

            def floor_once(_represent: str, times=times, rates=rates) -> None:
                seconds, rate = measure_floor()
                times["floor"].append(seconds)
                rates.append(rate)

            steps = [("gpt2np", run_ours), ("transformers", run_theirs), ("floor", floor_once)]
            for rep in range(args.reps):
                for name, fn in steps[rep % 3:] + steps[:rep % 3]:  # every one goes first in turn
                    t0 = time.perf_counter()
                    fn(represent)
                    if name != "floor":
                        times[name].append((time.perf_counter() - t0) / args.batches)
            mine, ref, floor = (np.array(times[k]) for k in ("gpt2np", "transformers", "floor"))
            ratio, over = float(np.median(mine / ref)), float(np.median(mine / floor))
            ok &= ratio <= 0.8 and over <= 1.3
            print(f"--represent {represent}: gpt2np {np.median(mine) * 1e3:.0f} ms/batch ({args.batch_size / np.median(mine):.1f} seq/s), "
                  f"transformers {np.median(ref) * 1e3:.0f} ms/batch, floor {np.median(floor) * 1e3:.0f} ms/batch "
                  f"(GEMM {np.median(rates):.0f} GFLOP/s)")
            print(f"   median per repetition: gpt2np / transformers {ratio:.2f} (target <= 0.8), gpt2np / floor {over:.2f} (target <= 1.3)")
            for k, v in times.items():
                print(f"   {k:>12s} ms/batch:", " ".join(f"{t * 1e3:.0f}" for t in v))
        print("targets:", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
