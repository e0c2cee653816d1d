"""Benchmark gpt2np's forward pass against transformers (eager attention), with peak memory.

    python scripts/bench_gpt2np.py                 # GPT-2-small-shaped random weights, T = 64, 256, 1024
    python scripts/bench_gpt2np.py --model DIR     # any local GPT-2 folder (e.g. the real weights)
    python scripts/bench_gpt2np.py --baseline /tmp/before --no-memory   # before/after a change

(after `pip install -e .`, or from the repository root with PYTHONPATH=.)

--baseline DIR also times the gpt2np package of another checkout (e.g. one made with
`git worktree add /tmp/before HEAD~1`), alternating with this one on the same weights, and prints
the after/before ratios.

Speed: in one process, alternating transformers (output_hidden_states + output_attentions),
gpt2np's full trace (run_with_cache, every tensor) and gpt2np's residual stream only
("*hook_resid*"), each repeated, median time and the ratio to transformers.
Memory: each configuration in a fresh subprocess: RSS before loading, after loading (every weight
read once by the finiteness check, so the mapped file is resident), and the peak of one run
(VmHWM). Working space = peak − loaded − (cache + logits kept).
Targets (issue 2): full trace at T=1024 ratio <= 1.0; working space <= 0.3 GB; loading adds
<= 1.1x the weights file. Needs the test requirements (torch, transformers).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESID_ONLY = "*hook_resid*"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def current_rss() -> int:
    return _status_kib("VmRSS")


def peak_rss() -> int:
    """High-water mark of this process's resident memory. (Not ru_maxrss: on Linux that survives
    fork + exec, so a probe would report its parent's peak.)"""
    return _status_kib("VmHWM")


def build_random_gpt2_small(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


def memory_probe(mode: str, t: int, model_dir: str) -> dict:
    """Run in a fresh interpreter: what one forward pass costs in resident memory."""
    ids = np.random.default_rng(0).integers(0, 50257, size=t)
    if mode == "transformers":
        import torch
        from transformers import GPT2LMHeadModel

        before = current_rss()
        model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
        loaded = current_rss()
        with torch.no_grad():
            out = model(torch.as_tensor(ids)[None], output_hidden_states=True, output_attentions=True)
        kept = sum(x.numel() * 4 for x in (out.logits, *out.hidden_states, *out.attentions))
    else:
        import gpt2np

        before = current_rss()
        model = gpt2np.load_model(model_dir)
        loaded = current_rss()
        logits, cache = model.run_with_cache(ids, names=None if mode == "full" else RESID_ONLY)
        kept = cache.nbytes + logits.nbytes
    weights = (Path(model_dir) / "model.safetensors").stat().st_size
    return dict(before=before, loaded=loaded, peak=peak_rss(), kept=kept, weights=weights)


def run_probe(mode: str, t: int, model_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--probe", mode, str(t), "--model", str(model_dir)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_baseline(checkout: Path):
    """The gpt2np package of another checkout, imported under the name gpt2np_baseline (its
    imports are relative, so it runs beside this one)."""
    init = checkout / "gpt2np" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline: {checkout} has no gpt2np/__init__.py")
    spec = importlib.util.spec_from_file_location("gpt2np_baseline", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpt2np_baseline"] = module
    spec.loader.exec_module(module)
    return module


def time_speed(model_dir: Path, lengths: list[int], reps: int, baseline=None) -> dict:
    import torch
    from transformers import GPT2LMHeadModel

    import gpt2np

    ours = gpt2np.load_model(model_dir)
    theirs = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    runs = {
        "transformers": lambda ids: theirs(torch.as_tensor(ids)[None], output_hidden_states=True, output_attentions=True),
        "full": lambda ids: ours.run_with_cache(ids),
        "resid": lambda ids: ours.run_with_cache(ids, names=RESID_ONLY),
    }
    if baseline is not None:
        before = baseline.load_model(model_dir)
        runs["full before"] = lambda ids: before.run_with_cache(ids)
        runs["resid before"] = lambda ids: before.run_with_cache(ids, names=RESID_ONLY)
    results = {}
    with torch.no_grad():
        for t in lengths:
            ids = np.random.default_rng(t).integers(0, 50257, size=t)
            times = {name: [] for name in runs}
            for fn in runs.values():  # warm-up: page in weights, first allocations
                fn(ids)
            for _ in range(reps):
                for name, fn in runs.items():
                    start = time.perf_counter()
                    out = fn(ids)
                    times[name].append(time.perf_counter() - start)
                    del out
            results[t] = {name: statistics.median(ts) for name, ts in times.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local GPT-2 folder (model.safetensors + config.json); default: random GPT-2 small")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout whose gpt2np is timed alternately with this one")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes (fresh subprocesses)")
    parser.add_argument("--probe", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.probe:
        print(json.dumps(memory_probe(args.probe[0], int(args.probe[1]), args.model)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else build_random_gpt2_small(Path(tmp) / "gpt2-random")
        print(f"model: {model_dir}   reps: {args.reps} (median)   numpy {np.__version__}")
        baseline = load_baseline(args.baseline) if args.baseline else None
        speed = time_speed(model_dir, args.lengths, args.reps, baseline)
        print("\n| T | transformers (s) | gpt2np full (s) | ratio | gpt2np resid only (s) | ratio |")
        print("|---|---|---|---|---|---|")
        for t, r in speed.items():
            tf = r["transformers"]
            print(f"| {t} | {tf:.3f} | {r['full']:.3f} | {r['full'] / tf:.2f} | {r['resid']:.3f} | {r['resid'] / tf:.2f} |")
        if baseline is not None:
            print(f"\nagainst the baseline {args.baseline} (ratio = this checkout / baseline)")
            print("\n| T | full before (s) | full after (s) | ratio | resid before (s) | resid after (s) | ratio |")
            print("|---|---|---|---|---|---|---|")
            for t, r in speed.items():
                full, resid = r["full"] / r["full before"], r["resid"] / r["resid before"]
                print(f"| {t} | {r['full before']:.3f} | {r['full']:.3f} | {full:.3f} "
                      f"| {r['resid before']:.3f} | {r['resid']:.3f} | {resid:.3f} |")
        if args.no_memory:
            return

        gb = 1e9
        print("\n| T | run | load adds (x file) | peak RSS (GB) | kept (GB) | working space (GB) |")
        print("|---|---|---|---|---|---|")
        for t in args.lengths:
            for mode in ("full", "resid", "transformers"):
                m = run_probe(mode, t, model_dir)
                load = (m["loaded"] - m["before"]) / m["weights"]
                work = (m["peak"] - m["loaded"] - m["kept"]) / gb
                print(f"| {t} | {mode} | {load:.2f} | {m['peak'] / gb:.2f} | {m['kept'] / gb:.3f} | {work:.3f} |")


if __name__ == "__main__":
    main()
