"""The command line: `geostudy` (the console script), `python -m geostudy`, or
`python scripts/run_prerun.py`. `main(argv)` parses the options, prints, and returns the exit
code: 0 when done, 2 for bad input, a busy run folder or a full disk (one line saying what is
wrong), 130 when interrupted. The work is the library's (geostudy.prepare_study, execute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import SiteError, StudyError
from .measure.estimators import ESTIMATORS
from .options import DEFAULT_DROP_POSITIONS, DEFAULT_DTYPE, DEFAULT_LENS_POSITIONS, DEFAULT_TOP_K, DTYPES, MAX_TOP_K
from .rundir.layout import ACT_DIR, DEFAULT_RUNS_DIR, MANIFEST, PLOT_DIR, REPORT, TABLE_DIR

DESCRIPTION = ("How GPT-2's token cloud changes shape, layer by layer: intrinsic dimension, PCA, norms, angles, "
               "volume and the logit lens, for each prompt of a corpus and for the pooled corpus.")
LIST_SITES_HINT = "run with --list-sites to see this model's sites"


def build_parser() -> argparse.ArgumentParser:
    """Every flag, each default said once in its help."""
    p = argparse.ArgumentParser(prog="geostudy", description=DESCRIPTION)
    p.add_argument("--model", default="gpt2",
                   help="Hub name, local folder (model.safetensors + config.json) or .safetensors file (default: gpt2)")
    p.add_argument("--tokenizer", default=None,
                   help="where the tokenizer is, if not with the model: Hub name, folder, tokenizer.json (default: the model's)")
    p.add_argument("--corpus", default=None, help="a .json or .jsonl corpus or a folder of .txt files (default: the shipped 30 prompts)")
    p.add_argument("--out", default=None,
                   help="run folder (default: a new folder in --runs-dir named after the model, corpus and options)")
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR), help=f"where default run folders go (default: {DEFAULT_RUNS_DIR})")
    p.add_argument("--sites", default="default",
                   help="comma-separated site names or glob patterns (e.g. 'blocks.*.hook_resid_post'), 'default' or 'all' "
                        "(default: default; see --list-sites)")
    p.add_argument("--list-sites", action="store_true",
                   help="print the model's site names with their labels and exit (reads only the model's config: works offline)")
    p.add_argument("--estimators", default=",".join(ESTIMATORS),
                   help=f"which of {', '.join(ESTIMATORS)} to run per prompt and pooled ('none' for geometry only; default: all)")
    p.add_argument("--pooled-estimators", default=None,
                   help="estimators for the pooled corpus (default: those of --estimators)")
    p.add_argument("--drop-positions", default=",".join(map(str, DEFAULT_DROP_POSITIONS)),
                   help="token positions left out of the analyses, comma-separated, or 'none' to keep all "
                        f"(default: {','.join(map(str, DEFAULT_DROP_POSITIONS))}: GPT-2's first position is an outlier)")
    p.add_argument("--dtype", default=DEFAULT_DTYPE, choices=DTYPES,
                   help=f"the model's compute dtype, and the saved activations' (default: {DEFAULT_DTYPE})")
    p.add_argument("--lens-positions", default=str(DEFAULT_LENS_POSITIONS),
                   help=f"positions per prompt for the all-positions logit-lens summary: a number, 'all', or 0 for none "
                        f"(default: {DEFAULT_LENS_POSITIONS})")
    p.add_argument("--top-k", default=str(DEFAULT_TOP_K),
                   help=f"top tokens kept by the logit lens, 1 to {MAX_TOP_K} (default: {DEFAULT_TOP_K})")
    p.add_argument("--focus", default=None, help="prompt id for the single-prompt figures (default: the first prompt)")
    p.add_argument("--attention-block", default=None, help="block whose attention heads are drawn (default: the middle one)")
    p.add_argument("--scatter-site", default=None, help="site of the 3-D PCA scatter (default: the middle block's output)")
    p.add_argument("--workers", default=None,
                   help="threads for the analyses; the results do not depend on it (default: one per core, at most 4)")
    p.add_argument("--no-plots", action="store_true",
                   help="draw no figures; the report is still written, with its tables and text but without figures")
    p.add_argument("--no-report", action="store_true", help="write no HTML report")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _with_hint(err: StudyError) -> str:
    """The error's line; for a site the model does not have (or no token cloud), where to look."""
    return f"{str(err).rstrip('.')}; {LIST_SITES_HINT}" if isinstance(err, SiteError) else str(err)


def list_sites(model: str, out=None) -> int:
    """Print every site of the model (* for the default ones), from its config alone."""
    from .plan import model_config
    from .sites import all_site_names, default_site_names, site_info

    out = out or sys.stdout
    try:
        cfg = model_config(model)
    except StudyError as err:
        return _error(str(err))
    defaults = set(default_site_names(cfg))
    for name in all_site_names(cfg):
        print(f"{'*' if name in defaults else ' '} {name:32s} {site_info(name, cfg).label}", file=out)
    print("(* = default site)", file=out)
    return 0


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
    return f"{total / 2**20:.0f} MiB"


def _print_summary(plan, out: Path) -> None:
    from .outputs.tables import read_csv

    skipped = len(read_csv(out / TABLE_DIR / "skipped.csv"))
    print("\nDone. Time per stage:")
    print(plan.timer.table())
    print(f"\nEverything is in {out}:")
    if (out / REPORT).is_file():
        print(f"  report          {out / REPORT}  (open it in a browser)")
    print(f"  tables          {out / TABLE_DIR}/results.csv (tidy: one row per prompt x site x quantity), "
          "lens_top_tokens.csv, spectra.csv, prompts.csv, sites.csv, skipped.csv (+ .json)")
    if (out / PLOT_DIR).is_dir():
        print(f"  plots           {out / PLOT_DIR}/ ({len(list((out / PLOT_DIR).iterdir()))} files)")
    print(f"  activations     {out / ACT_DIR}/ (one safetensors file per prompt, {_size(out / ACT_DIR)})")
    print(f"  manifest        {out / MANIFEST}")
    if skipped:
        print(f"  note: {skipped} estimates could not be made (too few points); see {TABLE_DIR}/skipped.csv")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_sites:
        return list_sites(args.model)
    from .pipeline.study import execute
    from .plan import prepare_study
    from .runtime.malloc import keep_freed_memory

    keep_freed_memory()  # process-wide malloc tuning: see geostudy/runtime/malloc.py
    options = dict(
        tokenizer=args.tokenizer, sites=args.sites, estimators=args.estimators,
        pooled_estimators=args.pooled_estimators, drop_positions=args.drop_positions, dtype=args.dtype,
        lens_positions=args.lens_positions, top_k=args.top_k, focus=args.focus,
        attention_block=args.attention_block, scatter_site=args.scatter_site,
        plots=not args.no_plots, report=not args.no_report, progress=not args.quiet,
        runs_dir=args.runs_dir, workers=args.workers,
    )
    try:
        plan = prepare_study(args.model, args.corpus, args.out, **options)
    except StudyError as err:
        return _error(_with_hint(err))
    if not args.quiet:
        print(f"geometry study: {len(plan.corpus)} prompts, {len(plan.sites)} sites, model {args.model}", file=sys.stderr)
        print(f"run folder: {plan.out}", file=sys.stderr)
    try:
        out = execute(plan)
    except StudyError as err:  # the folder is busy, the disk is full, ...: one line
        return _error(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted. Finished prompts are kept in {plan.out}; run the same command again "
              f"(with --out {plan.out}) to resume.", file=sys.stderr)
        return 130
    _print_summary(plan, out)
    return 0
