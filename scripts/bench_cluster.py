"""Benchmark: the exact neighbour search of a large cloud on a Dask LocalCluster against idest in
process (not a test; it takes minutes).

    python scripts/bench_cluster.py                      # 100,000 x 768 float32, k = 64
    python scripts/bench_cluster.py --n 50000 --k 10     # smaller

It writes a GPT-2-like cloud (a curved 5-dimensional manifold far from the origin, with a few
duplicates) into a Zarr store in a temporary folder, then times, one after another:

* in process: ``idest.neighborhoods(X, k)`` with one Numba and one BLAS thread (one core);
* the cluster path with 1 worker process (``geostudy.cluster.distributed_neighborhoods``:
  the client reads the store, each worker reads it too, row-block tasks, merge);
* the cluster path with 2 worker processes (one thread each);
* in process again (how far the machine's speed drifted meanwhile).

Cluster start-up is not timed (a study starts its cluster once); everything after it is: the
client's and the workers' reads of the store, the tasks, the transfers, the merge. It checks
that the three results are identical, array for array, and prints scaling efficiency
t1 / (2 t2) (target >= 0.85) and the overhead t1 / t_in - 1 (target <= 10%), with the
machine's float32 GEMM rate per core before and after (these virtual cores drift).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import zarr
from threadpoolctl import threadpool_limits

import idest
from geostudy.cluster import ZarrCloud, connect, distributed_neighborhoods


def make_cloud(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 (n, d): a curved 5-dimensional manifold far from the origin, 0.1% exact repeats."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    X = (np.tanh(z @ rng.standard_normal((5, 24))) @ rng.standard_normal((24, d)) + 1000.0).astype(np.float32)
    copies = n // 1000
    X[n - copies :] = X[:copies]
    return X


def write_store(X: np.ndarray, folder: Path) -> ZarrCloud:
    group = zarr.open_group(str(folder / "activations.zarr"), mode="w")
    arr = group.create_array("cloud", shape=X.shape, chunks=(10_000, X.shape[1]), dtype=X.dtype)
    arr[...] = X
    return ZarrCloud(str(folder / "activations.zarr"), "cloud")


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


def on_cluster(source: ZarrCloud, k: int, workers: int, block_rows: int | None) -> tuple[float, float, idest.Neighborhoods]:
    """Wall-clock seconds of the cluster path, and the CPU seconds of the client and of every
    worker process during it (on a machine shared with other work, CPU seconds show the
    overhead that wall-clock time blurs)."""
    with connect(f"local:{workers}") as cluster:
        client = cluster.client
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points (default 100000)")
    parser.add_argument("--d", type=int, default=768, help="dimensions (default 768)")
    parser.add_argument("--k", type=int, default=64, help="neighbours (default 64: TwoNN, MLE k=20 and GRIDE to 64)")
    parser.add_argument("--block-rows", type=int, default=None, help="rows per group (default: geostudy.cluster's choice)")
    args = parser.parse_args()

    X = make_cloud(args.n, args.d)
    print(f"cloud {args.n} x {args.d} float32, k = {args.k}; GEMM {gemm_rate():.0f} GFLOP/s per core before", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = write_store(X, Path(tmp))
        t_in, c_in, ref = in_process(X, args.k)
        print(f"in process (1 thread):  {t_in:7.1f} s wall, {c_in:7.1f} s CPU", flush=True)
        t1, c1, nb1 = on_cluster(source, args.k, 1, args.block_rows)
        print(f"cluster, 1 worker:      {t1:7.1f} s wall, {c1:7.1f} s CPU (client + workers)", flush=True)
        t2, c2, nb2 = on_cluster(source, args.k, 2, args.block_rows)
        print(f"cluster, 2 workers:     {t2:7.1f} s wall, {c2:7.1f} s CPU (client + workers)", flush=True)
        t_in2, c_in2, _ = in_process(X, args.k)
        print(f"in process again:       {t_in2:7.1f} s wall, {c_in2:7.1f} s CPU (the machine's drift)", flush=True)
    identical = same(ref, nb1) and same(ref, nb2)
    print(f"results identical to idest.neighborhoods: {identical}")
    print(f"scaling efficiency t1 / (2 t2) = {t1 / (2 * t2):.2f} (target >= 0.85)")
    t_ref, c_ref = min(t_in, t_in2), min(c_in, c_in2)
    print(f"cluster overhead at 1 worker: wall t1 / t_in - 1 = {100 * (t1 / t_ref - 1):+.1f}%, "
          f"CPU {100 * (c1 / c_ref - 1):+.1f}% (target <= 10%; t_in, CPU: the better in-process run)")
    print(f"GEMM {gemm_rate():.0f} GFLOP/s per core after")
    if not identical:
        raise SystemExit("the distributed result differs from idest's")


if __name__ == "__main__":
    main()
