"""Benchmark: the exact neighbour search of a large cloud on a Dask LocalCluster against idest in
process (not a test; it takes minutes).

    python scripts/bench_cluster.py                      # 100,000 x 768 float32, k = 64
    python scripts/bench_cluster.py --n 50000 --k 10     # smaller

It writes a GPT-2-like cloud (a curved 5-dimensional manifold far from the origin, with a few
duplicates) into a Zarr store in a temporary folder, as the token study writes a pooled cloud for the
cluster (uncompressed chunks of 16 MiB), then times, one after another:

* in process: ``idest.neighborhoods(X, k)`` with one Numba and one BLAS thread (one core);
* the cluster path with 1 worker process (``geostudy.cluster.distributed_neighborhoods``:
  the client reads the store, each worker reads it too, row-block tasks, merge);
* the cluster path with 2 worker processes (one thread each);

in that order, then reversed, `--reps` times (medians). Cluster start-up is not timed (a study
starts its cluster once; both clusters are started first); everything after it is: the client's
and the workers' reads of the store, the tasks, the transfers, the merge. It checks that every
result is identical, array for array, and prints scaling efficiency t1 / (2 t2) (target >=
0.85) and the overhead t1 / t_in - 1 (target <= 10%), with the machine's float32 GEMM rate per
core before and after (these virtual cores drift).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import idest
from geostudy.cluster import ZarrCloud, connect, distributed_neighborhoods
from geostudy.cluster.pooled import write_cloud


def make_cloud(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 (n, d): a curved 5-dimensional manifold far from the origin, 0.1% exact repeats."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    X = (np.tanh(z @ rng.standard_normal((5, 24))) @ rng.standard_normal((24, d)) + 1000.0).astype(np.float32)
    copies = n // 1000
    X[n - copies :] = X[:copies]
    return X


def write_store(X: np.ndarray, folder: Path) -> ZarrCloud:
    """X as the token study hands a pooled cloud to the cluster (geostudy.cluster.pooled)."""
    return write_cloud(folder / "cloud.zarr", X)


def gemm_rate() -> float:
    """float32 GEMM GFLOP/s on one core (best of 5)."""
    a = np.random.default_rng(1).standard_normal((2048, 768)).astype(np.float32)
    b = a[:1024].T.copy()
    best = np.inf
    with threadpool_limits(1, user_api="blas"):
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 768 * 1024 / best / 1e9


def in_process(X: np.ndarray, k: int) -> tuple[float, float, idest.Neighborhoods]:
    """Wall-clock and CPU seconds of idest.neighborhoods on one core."""
    numba.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        t, cpu = time.perf_counter(), time.process_time()
        nb = idest.neighborhoods(X, k)
        return time.perf_counter() - t, time.process_time() - cpu, nb


def _cpu_seconds() -> float:
    """User + system CPU seconds of the calling process (run on every worker by client.run)."""
    times = os.times()
    return times.user + times.system


def on_cluster(client, source: ZarrCloud, k: int, block_rows: int | None) -> tuple[float, float, idest.Neighborhoods]:
    """Wall-clock seconds of the cluster path, and the CPU seconds of the client and of every
    worker process during it (on a machine shared with other work, CPU seconds show the
    overhead that wall-clock time blurs)."""
    before = client.run(_cpu_seconds)  # every worker up
    t, cpu = time.perf_counter(), time.process_time()
    nb = distributed_neighborhoods(client, source, k, block_rows=block_rows)
    wall, client_cpu = time.perf_counter() - t, time.process_time() - cpu
    after = client.run(_cpu_seconds)
    if set(after) != set(before):
        raise SystemExit("a worker was restarted during the benchmark; run it again")
    return wall, client_cpu + sum(after[w] - before[w] for w in after), nb


def same(a: idest.Neighborhoods, b: idest.Neighborhoods) -> bool:
    arrays = ("distances", "indices", "points", "point_index")
    return a == b and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in arrays)


ENGINES = ("in process (1 thread)", "cluster, 1 worker", "cluster, 2 workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points (default 100000)")
    parser.add_argument("--d", type=int, default=768, help="dimensions (default 768)")
    parser.add_argument("--k", type=int, default=64, help="neighbours (default 64: TwoNN, MLE k=20 and GRIDE to 64)")
    parser.add_argument("--block-rows", type=int, default=None, help="rows per group (default: geostudy.cluster's choice)")
    parser.add_argument("--reps", type=int, default=2, help="repetitions, the order reversed every other one (default 2)")
    args = parser.parse_args()

    X = make_cloud(args.n, args.d)
    print(f"cloud {args.n} x {args.d} float32, k = {args.k}; GEMM {gemm_rate():.0f} GFLOP/s per core before", flush=True)
    wall: dict[str, list[float]] = {e: [] for e in ENGINES}
    cpu: dict[str, list[float]] = {e: [] for e in ENGINES}
    identical = True
    with tempfile.TemporaryDirectory() as tmp, connect("local:1") as one, connect("local:2") as two:
        source = write_store(X, Path(tmp))
        # every process loads idest's compiled kernels once before the timing (a study's do, at its first search)
        small = write_store(X[:3000], Path(tmp) / "warm")
        in_process(X[:3000], args.k)
        for cluster in (one, two):
            on_cluster(cluster.client, small, args.k, 1000)
        ref = None
        for rep in range(args.reps):
            for engine in (ENGINES if rep % 2 == 0 else ENGINES[::-1]):
                if engine == ENGINES[0]:
                    t, c, nb = in_process(X, args.k)
                else:
                    t, c, nb = on_cluster((one if engine == ENGINES[1] else two).client, source, args.k, args.block_rows)
                ref = nb if ref is None else ref
                identical &= same(ref, nb)
                wall[engine].append(t)
                cpu[engine].append(c)
                print(f"rep {rep}: {engine:<22s} {t:7.1f} s wall, {c:7.1f} s CPU", flush=True)
    t_in, t1, t2 = (statistics.median(wall[e]) for e in ENGINES)
    c_in, c1 = statistics.median(cpu[ENGINES[0]]), statistics.median(cpu[ENGINES[1]])
    print(f"medians of {args.reps}: in process {t_in:.1f} s, 1 worker {t1:.1f} s, 2 workers {t2:.1f} s")
    print(f"results identical to idest.neighborhoods: {identical}")
    print(f"scaling efficiency t1 / (2 t2) = {t1 / (2 * t2):.2f} (target >= 0.85)")
    print(f"cluster overhead at 1 worker: wall t1 / t_in - 1 = {100 * (t1 / t_in - 1):+.1f}%, "
          f"CPU (client + workers) {100 * (c1 / c_in - 1):+.1f}% (target <= 10%)")
    print(f"GEMM {gemm_rate():.0f} GFLOP/s per core after")
    if not identical:
        raise SystemExit("the distributed result differs from idest's")


if __name__ == "__main__":
    main()
