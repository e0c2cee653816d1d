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
    p.add_argument("--tsne", action="store_true",
                   help="also draw t-SNE maps (scikit-learn) of the scatter site's cloud, the focus prompt's tokens labelled: "
                        "several seconds per map, so off by default")
    p.add_argument("--lens-gifs", default="focus",
                   help="whose logit-lens GIF (after attention and after the block, side by side) is drawn: 'focus', 'all' "
                        "(every prompt: about 3 s each), 'none', or comma-separated prompt ids (default: focus)")
    p.add_argument("--cosine-gride", action="store_true",
                   help="also run GRIDE on the pooled corpus with unit-length rows (cosine neighbours), drawn beside the "
                        "Euclidean curve: a second pooled neighbour search per site, the study's largest cost, so off by default")
    p.add_argument("--workers", default=None,
                   help="threads for the analyses; the results do not depend on it (default: one per core, at most 4)")
    p.add_argument("--no-plots", action="store_true",
                   help="draw no figures; the report is still written, with its tables and text but without figures")
    p.add_argument("--no-report", action="store_true", help="write no HTML report")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_scale_flags(p)
    return p


def _add_scale_flags(p: argparse.ArgumentParser) -> None:
    """The corpus-scale protocol (one point per sequence, partitions with error bars)."""
    from .scale.options import DEFAULT_BATCH_SIZE, DEFAULT_SEED, REMAINDERS, REPRESENTATIONS

    g = p.add_argument_group(
        "corpus-scale protocol (--represent last|mean)",
        "One point per sequence over many sequences, as the literature measures a layer's intrinsic dimension "
        "(Cheng et al. 2025; Valeriani et al. 2023): the corpus is streamed, cut into windows, deduplicated and sampled; "
        "the residual stream of each sequence's last token (or its mean) is stored in activations.zarr; TwoNN, MLE, GRIDE "
        "and PCA run on disjoint partitions (mean +- std across them); layers are compared by neighbourhood overlap and "
        "linear CKA. The token study's figure and lens options do not apply.")
    g.add_argument("--represent", default="tokens", choices=REPRESENTATIONS,
                   help="tokens: the token study (every kept token of every prompt a point); last: each sequence's last "
                        "token; mean: the mean over each sequence's kept positions (default: tokens)")
    g.add_argument("--window", default=None,
                   help="cut each document into sequences of exactly this many tokens (Cheng et al. use 20) "
                        "(default: each document is one sequence, up to the model's context)")
    g.add_argument("--remainder", default=None, choices=REMAINDERS,
                   help="a document's last window, shorter than --window: drop it, or keep it shorter (right-padded in "
                        "its batch) (default: drop)")
    g.add_argument("--max-sequences", default=None,
                   help="a seeded uniform sample of at most this many sequences, after duplicates are removed (default: all)")
    g.add_argument("--seed", default=None,
                   help=f"seed of the sampling, the partitions and the untrained model (default: {DEFAULT_SEED})")
    g.add_argument("--text-column", default=None,
                   help="the text field of a JSONL/Parquet/Hugging Face dataset corpus (default: text)")
    g.add_argument("--split", default=None, help="the split of a Hugging Face dataset, hf:<name> (default: train)")
    g.add_argument("--partitions", default=None,
                   help="number of disjoint partitions (default: 5, or fewer equal ones when the corpus is small)")
    g.add_argument("--partition-size", default=None,
                   help="sequences per partition (default: 10000, or the largest equal share the corpus allows)")
    g.add_argument("--batch-size", default=None,
                   help=f"sequences per forward batch; part of the study's identity (default: {DEFAULT_BATCH_SIZE})")
    g.add_argument("--cluster", default=None,
                   help="a Dask cluster: local:N (N worker processes on this machine) or a scheduler address "
                        "tcp://host:8786 (default: DASK_SCHEDULER_ADDRESS if set, else this process's own threads). With "
                        "--represent last|mean every task runs there; in the token study, the pooled clouds' exact "
                        "neighbour searches. The tables are the same bytes either way. Needs pip install "
                        "\"gpt2-geometry[cluster]\"")
    g.add_argument("--store", default=None, metavar="PATH_OR_URL",
                   help="where the activation store goes: a local folder or any fsspec URL the workers share "
                        "(file://, s3://bucket/run/acts.zarr, ...; URLs need fsspec, which comes with the cluster extra). "
                        "The trained model's store is exactly there, the untrained control's beside it with -untrained "
                        "before .zarr (acts-untrained.zarr); everything else stays in the run folder, written by this "
                        "process only (default: <run folder>/activations.zarr and activations-untrained.zarr)")
    g.add_argument("--untrained", action="store_true",
                   help="also run the same protocol on an untrained GPT-2 of the same shape (GPT-2's initialisation, "
                        "seeded by --seed), its rows marked model=untrained")


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
    if args.represent != "tokens":
        return _main_scale(args)
    from .scale.options import refuse_scale_options_for_tokens

    try:
        refuse_scale_options_for_tokens(_scale_values(args))
    except StudyError as err:
        return _error(str(err))
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
        tsne=args.tsne, lens_gifs=args.lens_gifs, cosine_gride=args.cosine_gride,
    )
    try:
        plan = prepare_study(args.model, args.corpus, args.out, **options)
    except StudyError as err:
        return _error(_with_hint(err))
    if not args.quiet:
        print(f"geometry study: {len(plan.corpus)} prompts, {len(plan.sites)} sites, model {args.model}", file=sys.stderr)
        print(f"run folder: {plan.out}", file=sys.stderr)
    try:
        out = _run_on(args.cluster, lambda cluster: execute(plan, pooled_searches=_cluster_searches(cluster, plan.out)))
    except StudyError as err:  # the folder is busy, the disk is full, ...: one line
        return _error(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted. Finished prompts are kept in {plan.out}; run the same command again "
              f"(with --out {plan.out}) to resume.", file=sys.stderr)
        return 130
    _print_summary(plan, out)
    return 0


def _scale_values(args) -> dict:
    """The corpus-scale options given on the command line (None: not given)."""
    return dict(window=args.window, remainder=args.remainder, max_sequences=args.max_sequences,
                text_column=args.text_column, split=args.split, partitions=args.partitions,
                partition_size=args.partition_size, batch_size=args.batch_size, untrained=args.untrained,
                seed=args.seed, store=args.store)


def _main_scale(args) -> int:
    """The corpus-scale protocol: --represent last or mean."""
    from .runtime.malloc import keep_freed_memory
    from .scale.plan import prepare_scale_study
    from .scale.study import execute_scale

    keep_freed_memory()
    given = {k: v for k, v in _scale_values(args).items() if v is not None}
    try:
        plan = prepare_scale_study(
            args.model, args.corpus, args.out, tokenizer=args.tokenizer, sites=args.sites,
            drop_positions=args.drop_positions, dtype=args.dtype, plots=not args.no_plots, report=not args.no_report,
            progress=not args.quiet, runs_dir=args.runs_dir, workers=args.workers, represent=args.represent, **given)
    except StudyError as err:
        return _error(_with_hint(err))
    if not args.quiet:
        pp = plan.partition_plan
        print(f"corpus-scale study: {plan.n_sequences} sequences ({args.represent}), {len(plan.sites)} sites, "
              f"{pp.partitions} partitions of {pp.size}, model {args.model}", file=sys.stderr)
        print(f"run folder: {plan.out}", file=sys.stderr)
    try:
        out = _run_on(args.cluster, lambda cluster: execute_scale(plan, _dask_executor(cluster)))
    except StudyError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted. Finished shards and partitions are kept in {plan.out}; run the same command again "
              f"(with --out {plan.out}) to resume.", file=sys.stderr)
        return 130
    if not args.quiet:
        print("\nDone. Time per stage:")
        print(plan.timer.table())
        print(f"\nEverything is in {out}: report.html, tables/ (results, overlap, cka, partitions, spectra), "
              "manifest.json")
        for run in plan.runs:
            print(f"  activations ({run.name}): {run.store}")
    return 0


def _cluster_spec(flag: str | None) -> str | None:
    """--cluster, else DASK_SCHEDULER_ADDRESS, else None (this process's threads)."""
    import os

    from .cluster.connection import ADDRESS_VARIABLE

    return flag or os.environ.get(ADDRESS_VARIABLE) or None


def _run_on(flag: str | None, work):
    """work(cluster) on the Dask cluster the flag (or the environment) names, else work(None)."""
    spec = _cluster_spec(flag)
    if spec is None:
        return work(None)
    from .cluster.connection import connect

    with connect(spec) as cluster:
        return work(cluster)


def _dask_executor(cluster):
    """The corpus-scale tasks on the cluster's workers (None: this process's threads)."""
    if cluster is None:
        return None
    from .cluster.executor import DaskExecutor

    return DaskExecutor(cluster.client)


def _cluster_searches(cluster, run_folder):
    """The token study on a cluster: the pooled clouds' neighbour searches run on its workers."""
    if cluster is None:
        return None
    from .cluster.pooled import ClusterSearches

    return ClusterSearches(cluster.client, run_folder)
