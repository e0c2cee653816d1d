"""Benchmark idest against scikit-dimension and DADApy, and against the machine's floor.

    python scripts/bench_idest.py                       # N = 2000, 10000, 50000 + 100000 (idest only)
    python scripts/bench_idest.py --sizes 2000 10000 --big 0 --reps 3

What it does
------------
* Data: a GPT-2-like cloud (``make_data``): a curved 12-dimensional manifold in R^768 with
  small noise, three coordinates offset by 3000 (residual streams sit far from the origin),
  float32, saved to a temporary .npy so every implementation reads the same array.
* Each timing runs in a *fresh subprocess*; its peak memory is that process's
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (whole-process peak RSS, which includes the
  interpreter, the libraries and the data itself; the RSS just before the timed call is
  reported as the baseline). Inside the subprocess one warm-up call on 200 points comes
  first, so imports and Numba compilation (cached) are not timed.
* Implementations are run alternately (idest, skdim, DADApy, idest, ...) ``--reps`` times;
  the table shows medians, and the speed-up is the median of per-repetition ratios.
* DADApy needs numpy<2 and jax, so it runs in its own venv (``--dadapy-python``, default
  /tmp/dadapy-venv/bin/python), created with ``scripts/setup_dadapy_venv.sh``, i.e.
      python -m venv /tmp/dadapy-venv && /tmp/dadapy-venv/bin/pip install "numpy<2" dadapy
  and driven through ``scripts/bench_idest_dadapy.py time DATA.npy twonn|gride``.
* The floor: the distance products themselves, N^2 D / 2 multiply-adds (idest uses the
  symmetry of the distance matrix), at the float32 matrix-product rate this machine
  reaches right now: a 4096 x 768 by 768 x 8192 sgemm (best of 5) in a fresh process just
  before *each* idest run, so load from other processes hits both alike. The table
  shows the median floor and the median of the per-run ratios idest / floor.
* Numba compile time: a subprocess with an empty NUMBA_CACHE_DIR (cold: compiles every
  kernel) and one with the cache filled (warm: loads it), each timing import + a first
  TwoNN and MLE call on 200 points.

Timings on a shared 2-core machine are noisy: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# the child processes import idest from this checkout, whether or not it is installed
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
D = 768


def make_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 12))
    X = np.tanh(z @ rng.standard_normal((12, 64))) @ rng.standard_normal((64, D))
    X += 0.01 * rng.standard_normal((n, D))
    X[:, :3] += 3000.0
    return X.astype(np.float32)


# ----------------------------------------------------------------------------- workers


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(impl: str, method: str, path: str) -> dict:
    """One timed call in this (fresh) process. Prints JSON."""
    if impl == "rate":
        return {"flops": sgemm_rate()}
    X = np.load(path)
    small = X[:200]
    if impl == "idest":
        import idest

        calls = {
            "twonn": lambda A: idest.twonn(A).dimension,
            "mle": lambda A: idest.mle(A, k=20).dimension,
            "gride": lambda A: idest.gride(A, range_max=64).dimensions.tolist(),
        }
    elif impl == "skdim":
        import warnings

        import skdim

        warnings.simplefilter("ignore")
        calls = {
            "twonn": lambda A: float(skdim.id.TwoNN().fit(A).dimension_),
            "mle": lambda A: float(skdim.id.MLE().fit(A, n_neighbors=20).dimension_),
        }
    else:
        raise SystemExit(f"unknown implementation {impl}")
    call = calls[method]
    call(small)  # imports, compilation / cache loading, BLAS warm-up
    baseline = _rss()
    t0 = time.perf_counter()
    estimate = call(X)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "estimate": estimate, "max_rss_bytes": _rss(), "baseline_rss_bytes": baseline}


def run_worker(impl: str, method: str, path: str, dadapy_python: str) -> dict:
    if impl == "dadapy":
        cmd = [dadapy_python, os.path.join(HERE, "bench_idest_dadapy.py"), "time", path, method]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, method, path]
    out = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- floor


def sgemm_rate(reps: int = 5) -> float:
    """float32 matrix-product rate (flop/s) of this machine now, best of ``reps``."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4096, D)).astype(np.float32)
    b = rng.standard_normal((8192, D)).astype(np.float32)
    out = np.empty((4096, 8192), dtype=np.float32)
    np.matmul(a, b.T, out=out)
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b.T, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * 8192 * D / best


def floor_seconds(n: int, rate: float) -> float:
    """N^2 D / 2 multiply-adds = N^2 D flop."""
    return n * n * D / rate


# ----------------------------------------------------------------------------- compile time


def compile_times() -> dict:
    code = (
        "import time, sys, numpy as np; t=time.perf_counter(); import idest; "
        "X=np.random.default_rng(0).standard_normal((200, 768)).astype(np.float32); "
        "idest.twonn(X); idest.mle(X, k=20); idest.gride(X); print(time.perf_counter()-t)"
    )
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(CHILD_ENV, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            result[label] = float(out.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- main


PLAN = {  # method -> reference implementations compared with idest
    "twonn": ("skdim", "dadapy"),
    "mle": ("skdim",),
    "gride": ("dadapy",),
}


def bench_size(n, reps, dadapy_python, tmp, methods, refs_allowed, log):
    path = os.path.join(tmp, f"X_{n}.npy")
    np.save(path, make_data(n))
    rows = []
    for method in methods:
        impls = ["idest"] + [r for r in PLAN[method] if r in refs_allowed]
        runs = {impl: [] for impl in impls}
        for rep in range(reps):
            for impl in impls:
                if impl == "idest":  # the floor, measured just before each idest run
                    rate = run_worker("rate", method, path, dadapy_python)["flops"]
                r = run_worker(impl, method, path, dadapy_python)
                if impl == "idest":
                    r["floor_s"] = floor_seconds(n, rate)
                    r["sgemm_flops"] = rate
                runs[impl].append(r)
                log(f"  N={n} {method:5s} {impl:6s} rep {rep + 1}: {r['seconds']:.3f} s, "
                    f"peak {r['max_rss_bytes'] / 2**30:.2f} GiB, estimate {np.ravel(r['estimate'])[0]:.6f}"
                    + (f", floor {r['floor_s']:.3f} s" if impl == "idest" else ""))
        rows.append(summarise(n, method, runs))
    os.remove(path)
    return rows


def summarise(n, method, runs):
    ours = runs["idest"]
    row = {
        "N": n,
        "method": method,
        "floor_s": statistics.median(r["floor_s"] for r in ours),
        "idest_over_floor": statistics.median(r["seconds"] / r["floor_s"] for r in ours),
        "sgemm_gflops": statistics.median(r["sgemm_flops"] for r in ours) / 1e9,
        "idest_s": statistics.median(r["seconds"] for r in ours),
        "idest_peak_gib": max(r["max_rss_bytes"] for r in ours) / 2**30,
        "idest_baseline_gib": max(r["baseline_rss_bytes"] for r in ours) / 2**30,
        "idest_estimate": ours[0]["estimate"],
        "refs": {},
    }
    for impl, rs in runs.items():
        if impl == "idest":
            continue
        ratios = [r["seconds"] / o["seconds"] for r, o in zip(rs, ours)]
        est_ref = np.ravel(rs[0]["estimate"]).astype(float)
        est_ours = np.ravel(ours[0]["estimate"]).astype(float)
        row["refs"][impl] = {
            "s": statistics.median(r["seconds"] for r in rs),
            "peak_gib": max(r["max_rss_bytes"] for r in rs) / 2**30,
            "speedup": statistics.median(ratios),
            "estimate": rs[0]["estimate"],
            "max_rel_diff": float(np.max(np.abs(est_ours / est_ref - 1))),
        }
    return row


def markdown(rows, compile_s) -> str:
    lines = [
        "| N | estimator | idest (s) | floor (s) | idest / floor | idest peak RSS (GiB) | reference | ref (s) "
        "| ref peak RSS (GiB) | speed-up (ref / idest) | max rel. diff of estimates |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = (f"| {r['N']:,} | {r['method']} | {r['idest_s']:.3f} | {r['floor_s']:.3f} | {r['idest_over_floor']:.2f} "
                f"| {r['idest_peak_gib']:.2f} |")
        if not r["refs"]:
            lines.append(base + " - | - | - | - | - |")
        for impl, ref in r["refs"].items():
            lines.append(base + f" {impl} | {ref['s']:.2f} | {ref['peak_gib']:.2f} | {ref['speedup']:.1f}x | {ref['max_rel_diff']:.1e} |")
    if compile_s:
        lines.append("")
        lines.append(f"Numba first call (import + first TwoNN, MLE, GRIDE on 200 points): cold cache {compile_s['cold']:.1f} s, "
                     f"warm cache {compile_s['warm']:.2f} s.")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[2000, 10000, 50000])
    p.add_argument("--big", type=int, default=100000, help="idest-only size (0 to skip)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--big-reps", type=int, default=2)
    p.add_argument("--methods", nargs="*", default=["twonn", "mle", "gride"])
    p.add_argument("--refs", nargs="*", default=["skdim", "dadapy"], help="reference implementations to run")
    p.add_argument("--refs-max-n", type=int, default=50000, help="largest N at which references run")
    p.add_argument("--gride-max-n", type=int, default=10000, help="largest N for the GRIDE comparison")
    p.add_argument("--dadapy-python", default="/tmp/dadapy-venv/bin/python")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--worker", nargs=3, metavar=("IMPL", "METHOD", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    refs = [r for r in args.refs if r != "dadapy" or os.path.exists(args.dadapy_python)]
    if "dadapy" in args.refs and "dadapy" not in refs:
        print(f"DADApy venv not found at {args.dadapy_python}: run scripts/setup_dadapy_venv.sh", file=sys.stderr)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log("compile time ...")
    compile_s = compile_times()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            methods = [m for m in args.methods if m != "gride" or n <= args.gride_max_n]
            allowed = refs if n <= args.refs_max_n else []
            rows += bench_size(n, args.reps, args.dadapy_python, tmp, methods, allowed, log)
        if args.big:
            rows += bench_size(args.big, args.big_reps, args.dadapy_python, tmp,
                               [m for m in args.methods if m != "gride"], [], log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "compile_s": compile_s}, f, indent=1)
    print(markdown(rows, compile_s))


if __name__ == "__main__":
    main()
