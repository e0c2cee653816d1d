#!/usr/bin/env python
"""Benchmark: every corpus-scale analysis at Cheng et al.'s size, on this machine.

    python scripts/bench_scale_analyses.py                       # 13 sites x 5 partitions x 10,000 x 768
    python scripts/bench_scale_analyses.py --sites 4 --size 2000 # a quick look

Synthetic activations with a GPT-2-like structure, float32: one latent 12-D cloud shared by all
sites (so that sites have neighbours and CKA in common), each site a smooth nonlinear map of it
into 768 dimensions plus isotropic noise growing with depth and a few outlier dimensions with a
large scale (as GPT-2's residual stream has); site 0 is an embedding table read at
Zipf-distributed token ids, so that it has many identical rows, as the embeddings of sequences'
last tokens do. Each site is written to a .npy file in a temporary folder and every task reads
its partition's rows from it (as the study reads them from activations.zarr).

The analyses run as the study runs them: tasks on geostudy's ThreadExecutor (one Numba thread
per task, one BLAS thread in the process), longest first: the 5 CKA tasks (one site x site matrix
per partition), the 65 estimator tasks (TwoNN, MLE, GRIDE at every scale and the automatic one,
PCA, neighbour lists; one per site and partition), then the overlap matrices and the summary.
Printed: the wall time of the whole and of each phase, the seconds each stage took summed over
the worker threads, the process's CPU time, the peak RSS (ru_maxrss), and the machine's float32
and float64 GEMM rates per core with both cores busy, before and after (these virtual cores
drift). Target: the analyses under 2 minutes, peak under 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from geostudy.pipeline.executor import ThreadExecutor
from geostudy.runtime.malloc import keep_freed_memory
from geostudy.runtime.threads import blas_single_thread
from geostudy.scale.analyses import ScaleSettings, analyse_partition, summarise
from geostudy.scale.compare import cka_matrix, overlap_matrix
from geostudy.scale.partitions import draw_partitions, partition_rows, plan_partitions


def gemm_rates(seconds: float = 1.0) -> dict:
    """GFLOP/s per core of 1024 x 1024 products, two threads at once (one BLAS thread each)."""
    out = {}
    for dtype in (np.float32, np.float64):
        a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(dtype)
        counts = [0, 0]

        def spin(slot, a=a, counts=counts):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                a @ a
                counts[slot] += 1

        with blas_single_thread():
            a @ a
            threads = [threading.Thread(target=spin, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        out[np.dtype(dtype).name] = 2 * 1024**3 * sum(counts) / 2 / seconds / 1e9
    return out


def synthetic_sites(folder: Path, n_sites: int, n_rows: int, dim: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_rows, 12))
    paths = []
    for s in range(n_sites):
        if s == 0:
            table = rng.standard_normal((50_257, dim)).astype(np.float32) * 0.1
            tokens = np.minimum(rng.zipf(1.2, size=n_rows), 50_257) - 1
            X = table[tokens]
        else:
            hidden = np.tanh(latent @ rng.standard_normal((12, 64)) * (0.5 + 0.1 * s))
            X = (hidden @ rng.standard_normal((64, dim))).astype(np.float32)
            X += np.float32(0.05 * s) * rng.standard_normal((n_rows, dim), dtype=np.float32)
            X[:, :3] *= np.float32(20.0)  # a few outlier dimensions
        paths.append(folder / f"site{s}.npy")
        np.save(paths[-1], X)
        del X
    return paths


def read_rows(path: Path, rows: np.ndarray) -> np.ndarray:
    data = np.load(path, mmap_mode="r")
    try:
        return np.ascontiguousarray(data[rows])
    finally:
        del data


class StageClock:
    """Per stage, summed over the threads running it: wall seconds (perf_counter) and CPU seconds
    of that thread (thread_time; what the stage costs when it does not wait for a core)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.cpu = defaultdict(float)
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self, stage):
        t, c = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            with self.lock:
                self.seconds[stage] += time.perf_counter() - t
                self.cpu[stage] += time.thread_time() - c


def estimator_task(path, site, rows, settings, clock):
    with clock("read rows"):
        X = read_rows(path, rows)
    result = analyse_partition(X, settings, timer=clock)
    return site, result


def cka_task(paths, rows, dtype, clock):
    with clock(f"cka, {dtype} products (incl. reading)"):
        return cka_matrix([lambda p=p: read_rows(p, rows) for p in paths], dtype=dtype)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--sites", type=int, default=13)
    ap.add_argument("--partitions", type=int, default=5)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cka-dtype", default="float64", choices=("float64", "float32"), help="precision of the CKA products")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as the study's command line does

    before = gemm_rates()
    n_rows = args.partitions * args.size
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        t0 = time.perf_counter()
        paths = synthetic_sites(Path(tmp), args.sites, n_rows, args.dim, args.seed)
        t_gen = time.perf_counter() - t0
        plan = plan_partitions(n_rows, args.partitions, args.size)
        partition_of = draw_partitions(n_rows, plan, args.seed)
        rows = [partition_rows(partition_of, p) for p in range(plan.partitions)]
        settings, clock = ScaleSettings(), StageClock()
        cpu0, t0 = time.process_time(), time.perf_counter()
        with blas_single_thread(), ThreadExecutor(args.workers) as ex:
            cka_futures = [ex.submit(cka_task, paths, rows[p], args.cka_dtype, clock) for p in range(plan.partitions)]
            est_futures = [ex.submit(estimator_task, paths[s], s, rows[p], settings, clock)
                           for p in range(plan.partitions) for s in range(args.sites)]
            results = [f.result() for f in est_futures]
            t_est = time.perf_counter() - t0
            cka = [f.result() for f in cka_futures]
            t_cka = time.perf_counter() - t0
        t1 = time.perf_counter()
        with clock("overlap matrices"):
            overlaps = [overlap_matrix([results[p * args.sites + s][1].neighbours for s in range(args.sites)])
                        for p in range(plan.partitions)]
        with clock("summary"):
            summaries = [summarise([results[p * args.sites + s][1].items for p in range(plan.partitions)])
                         for s in range(args.sites)]
        t2 = time.perf_counter()
        t_all = t2 - t0
        cpu = time.process_time() - cpu0
    after = gemm_rates()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB

    print(f"{args.sites} sites x {plan.partitions} partitions x {plan.size:,} points x {args.dim} dims, float32, "
          f"{args.workers} workers; synthetic data written in {t_gen:.1f} s (not counted)")
    print(f"GEMM GFLOP/s per core, both busy: before float32 {before['float32']:.0f}, float64 {before['float64']:.0f}; "
          f"after float32 {after['float32']:.0f}, float64 {after['float64']:.0f}")
    print("| phase | wall (s) |\n|---|---|")
    print(f"| estimator tasks done | {t_est:.1f} |\n| CKA tasks done | {t_cka:.1f} |")
    print(f"| overlap matrices + summary, after both | {t2 - t1:.1f} |")
    print(f"| **all analyses** | **{t_all:.1f}** |")
    print(f"\nprocess CPU {cpu:.1f} s; peak RSS {peak:.2f} GiB")
    print("\n| stage (summed over worker threads) | wall s | CPU s |\n|---|---|---|")
    for stage, sec in sorted(clock.seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {sec:.1f} | {clock.cpu[stage]:.1f} |")
    first = results[0][1]
    auto = [(q, p, round(v, 2)) for q, p, v, _ in summaries[1] if q in ("id_gride_auto", "id_twonn")]
    print(f"\nchecks: site 0 partition 0 kept {first.n_points:,} of {first.n_rows:,} rows ({first.n_duplicates:,} duplicates); "
          f"site 1 mean {auto}; overlap(1,2) {overlaps[0][1, 2]:.3f}; CKA(1,2) {cka[0][1, 2]:.3f}")


if __name__ == "__main__":
    main()
