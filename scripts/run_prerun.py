#!/usr/bin/env python
"""The geometry study of GPT-2's token clouds, end to end.

    python scripts/run_prerun.py                       # GPT-2 small, the shipped corpus, everything
    python scripts/run_prerun.py --model path/to/model_dir --corpus prompts.jsonl --out runs/mine

Writes activations, tables (CSV + JSON), plots and report.html into one run folder (default:
runs/<model>-<corpus>-<hash of the options>). Started again with the same options, an
interrupted run resumes where it stopped, after checking the checksums of what it finished.
One run at a time per folder: a second one exits 2 at once, naming the first. Bad input, a busy
folder and a full disk exit 2 with one line saying what is wrong. All the logic is in the
geostudy package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import geostudy  # noqa: E402
from geostudy.malloc import keep_freed_memory  # noqa: E402
from geostudy.run import DEFAULT_LENS_POSITIONS, MANIFEST, PLOT_DIR, REPORT, TABLE_DIR  # noqa: E402


def _lens_positions(text: str):
    if text.lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="How GPT-2's token cloud changes shape, layer by layer: intrinsic dimension, PCA, "
        "norms, angles, volume and the logit lens, for each prompt of a corpus and for the pooled corpus.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="gpt2", help="Hub name, local folder (model.safetensors + config.json) or .safetensors file")
    p.add_argument("--tokenizer", default=None, help="where the tokenizer is, if not with the model (Hub name, folder, tokenizer.json)")
    p.add_argument("--corpus", default=None, help="a .json or .jsonl corpus or a folder of .txt files (default: the shipped 30 prompts)")
    p.add_argument("--out", default=None, help="run folder (default: a new folder in --runs-dir named after the model, corpus and options)")
    p.add_argument("--runs-dir", default="runs", help="where default run folders go")
    p.add_argument("--sites", default="default",
                   help="comma-separated site names or glob patterns (e.g. 'blocks.*.hook_resid_post'), 'default' or 'all'")
    p.add_argument("--list-sites", action="store_true", help="print the model's site names with their labels and exit")
    p.add_argument("--estimators", default="twonn,mle,gride,pca", help="which of twonn, mle, gride, pca to run per prompt and pooled ('none' for geometry only)")
    p.add_argument("--pooled-estimators", default=None, help="estimators for the pooled corpus, if different from --estimators")
    p.add_argument("--drop-positions", default="0", help="token positions left out of the analyses ('none' to keep all); 0: GPT-2's first position is an outlier")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="the model's compute dtype (and of the saved activations)")
    p.add_argument("--lens-positions", type=_lens_positions, default=DEFAULT_LENS_POSITIONS,
                   help="positions per prompt for the all-positions logit-lens summary ('all', or 0 for none)")
    p.add_argument("--top-k", type=int, default=10, help="top tokens kept by the logit lens")
    p.add_argument("--focus", default=None, help="prompt id for the single-prompt figures (default: the first prompt)")
    p.add_argument("--attention-block", type=int, default=None, help="block whose attention heads are drawn (default: the middle one)")
    p.add_argument("--scatter-site", default=None, help="site of the 3-D PCA scatter (default: the middle block's output)")
    p.add_argument("--workers", type=int, default=None, help="threads for the analyses (default: min(4, cores)); results do not depend on it")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (and their part of the report)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
    return f"{total / 2**20:.0f} MiB"


def list_sites(args) -> int:
    import gpt2np
    from geostudy.sites import all_site_names, default_site_names, site_info

    try:
        model = gpt2np.load_model(args.model, dtype=args.dtype)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the model {args.model!r}: {err}", file=sys.stderr)
        return 2
    defaults = set(default_site_names(model.cfg))
    for name in all_site_names(model.cfg):
        print(f"{'*' if name in defaults else ' '} {name:32s} {site_info(name, model.cfg).label}")
    print("(* = default site)")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_sites:
        return list_sites(args)
    keep_freed_memory()  # process-wide malloc tuning: see geostudy/malloc.py
    options = dict(
        tokenizer=args.tokenizer, sites=args.sites, estimators=args.estimators,
        pooled_estimators=args.pooled_estimators, drop_positions=args.drop_positions, dtype=args.dtype,
        lens_positions=args.lens_positions, top_k=args.top_k, focus=args.focus,
        attention_block=args.attention_block, scatter_site=args.scatter_site,
        plots=not args.no_plots, report=not args.no_report and not args.no_plots, progress=not args.quiet,
        runs_dir=args.runs_dir, workers=args.workers,
    )
    try:
        plan = geostudy.prepare_study(args.model, args.corpus, args.out, **options)
    except geostudy.StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"geometry study: {len(plan.corpus)} prompts, {len(plan.sites)} sites, model {args.model}", file=sys.stderr)
        print(f"run folder: {plan.out}", file=sys.stderr)
    try:
        out = geostudy.execute(plan)
    except geostudy.StudyError as err:  # the folder is busy, the disk is full, ...: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted. Finished prompts are kept in {plan.out}; run the same command again "
              f"(with --out {plan.out}) to resume.", file=sys.stderr)
        return 130
    skipped = len(geostudy.tables.read_csv(out / TABLE_DIR / "skipped.csv"))
    print("\nDone. Time per stage:")
    print(plan.timer.table())
    print(f"\nEverything is in {out}:")
    if (out / REPORT).is_file():
        print(f"  report          {out / REPORT}  (open it in a browser)")
    print(f"  tables          {out / TABLE_DIR}/results.csv (tidy: one row per prompt x site x quantity), "
          "lens_top_tokens.csv, spectra.csv, prompts.csv, sites.csv, skipped.csv (+ .json)")
    if (out / PLOT_DIR).is_dir():
        print(f"  plots           {out / PLOT_DIR}/ ({len(list((out / PLOT_DIR).iterdir()))} files)")
    print(f"  activations     {out / 'activations'}/ (one safetensors file per prompt, {_size(out / 'activations')})")
    print(f"  manifest        {out / MANIFEST}")
    if skipped:
        print(f"  note: {skipped} estimates could not be made (too few points); see {TABLE_DIR}/skipped.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
