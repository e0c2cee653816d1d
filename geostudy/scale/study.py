"""The corpus-scale study from start to end, in one run folder: the forward passes (shards of
sequences into activations.zarr), the estimators on every partition of every site, the site x
site comparisons, then the tables, figures and report.

Resuming: as the token study (geostudy/pipeline/study.py). A shard of the store whose marker
matches its chunks is kept, a unit (model, site, partition) or a comparison whose marker matches
its files is kept; anything else is redone, with one warning line when it was damaged. The
tables are rebuilt from these files in a fixed order, so a run killed at any moment and started
again ends with byte-identical tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..pipeline.executor import Executor, ThreadExecutor, run_as_done
from ..rundir import manifest as mf
from ..rundir.diskspace import DiskFullError, disk_full_message
from ..rundir.folder import check_run_folder
from ..rundir.fsio import atomic_write_json, disk_full_guard, is_disk_full, read_json, remove_stale_temporaries
from ..rundir.integrity import damage, read_marker
from ..rundir.layout import MANIFEST, PLOT_DIR, REPORT, TIMINGS
from ..rundir.lock import RunFolderLock
from ..runtime.progress import Progress
from ..runtime.threads import blas_single_thread
from .forward import forward_shard
from .plan import ScalePlan
from .store import ActivationStore
from .tables import assemble_scale_tables, write_scale_tables
from .tasks import analyse_unit, compare_partition, read_neighbours, write_comparison_files, write_unit_files


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _manifest(plan: ScalePlan, old: dict) -> dict:
    seqs = plan.sequences
    return {
        "geostudy_format": mf.FORMAT_VERSION,
        "protocol": "corpus-scale",
        "created": old.get("created", mf.now()),
        "versions": mf.versions(),
        "model": plan.model_info,
        "tokenizer": plan.tokenizer_info,
        "corpus": {
            "source": plan.source.description,
            "source_path": plan.corpus_spec,
            "name": plan.source.name,
            "n_documents": seqs.n_documents,
            "n_candidates": seqs.n_candidates,
            "n_duplicates": seqs.n_duplicates,
            "n_sequences": plan.n_sequences,
            "sequences_sha256": seqs.sha256(),
        },
        "options": {
            "sites": [s.name for s in plan.sites],
            "represent": plan.options.represent,
            "window": plan.options.window,
            "remainder": plan.options.remainder,
            "max_sequences": plan.options.max_sequences,
            "seed": plan.options.seed,
            "drop_positions": list(plan.drop_positions),
            "dtype": plan.dtype,
            "batch_size": plan.options.batch_size,
            "shard_rows": plan.shard_rows,
            "partitions": plan.partition_plan.partitions,
            "partition_size": plan.partition_plan.size,
            "partition_note": plan.partition_plan.note,
            "settings": plan.settings.as_dict(),
            "models": [r.name for r in plan.runs],
            "plots": plan.make_plots,
            "report": plan.make_report,
        },
        "stores": {run.name: str(run.store) for run in plan.runs},  # where the activations are (--store)
        "fingerprint": plan.fingerprint,
        "fingerprint_sha256": mf.fingerprint_hash(plan.fingerprint),
        "sessions": old.get("sessions", []),
    }


def _start_manifest(plan: ScalePlan) -> None:
    """The manifest (the first file of a run), keeping the creation time and earlier sessions,
    with this session started."""
    path = plan.out / MANIFEST
    man = _manifest(plan, read_json(path) if path.is_file() else {})
    man["status"] = "running"
    man["sessions"].append({"started": mf.now()})
    atomic_write_json(path, man, indent=2)


def _update_manifest(plan: ScalePlan, change) -> None:
    path = plan.out / MANIFEST
    man = read_json(path)
    change(man)
    atomic_write_json(path, man, indent=2)


def execute_scale(plan: ScalePlan, executor: Executor | None = None) -> Path:
    """Run a prepared corpus-scale study (resuming whatever the run folder holds), holding the
    run folder's lock; StudyError at once if another process holds it, DiskFullError (one line)
    when the disk fills. executor: what runs the tasks (default: plan.workers threads); the
    results do not depend on it."""
    with disk_full_guard() as disk_full_at:
        try:
            with RunFolderLock(plan.out):
                if executor is not None:
                    return _execute_locked(plan, executor)
                with ThreadExecutor(plan.workers) as threads:
                    return _execute_locked(plan, threads)
        except Exception as err:
            where = disk_full_at()
            if where is None and not is_disk_full(err):
                raise
            raise DiskFullError(disk_full_message(plan.out, None, where or getattr(err, "filename", None))) from None


def _execute_locked(plan: ScalePlan, executor: Executor) -> Path:
    out, timer = plan.out, plan.timer
    check_run_folder(out, plan.fingerprint)
    _start_manifest(plan)
    remove_stale_temporaries(out)

    for run in plan.runs:
        with timer(f"forward passes ({run.name})"), blas_single_thread():
            _forward(plan, run, executor)
    with timer("estimators per partition"), blas_single_thread():
        _analyses(plan, executor)
    with timer("site x site comparisons"), blas_single_thread():
        _comparisons(plan, executor)
    _write_outputs(plan)
    seconds = timer.as_dict()
    atomic_write_json(out / TIMINGS, {"workers": plan.workers, **seconds}, indent=2)

    def complete(man):
        man["status"] = "complete"
        man["sessions"][-1].update(finished=mf.now(), seconds=seconds)

    _update_manifest(plan, complete)
    return out


def _forward(plan: ScalePlan, run, executor: Executor) -> None:
    store = ActivationStore.open(run.store, sites=plan.site_widths(), n_rows=plan.n_sequences, shard_rows=plan.shard_rows,
                                 dtype=plan.dtype, fingerprint=plan.fingerprint["sequences_sha256"])
    finished = store.finished_shards(verify=True)
    todo = [k for k, done in enumerate(finished) if not done]
    bar = Progress(store.n_shards, f"forward passes ({run.name}), shards of {plan.shard_rows} sequences", enabled=plan.progress)
    if len(todo) < store.n_shards:
        bar.advance(store.n_shards - len(todo), note="done earlier")
    ids, lengths, names = plan.sequences.ids, plan.sequences.lengths, [s.name for s in plan.sites]
    calls = []
    for k in todo:
        a, b = store.shard_rows_range(k)
        calls.append((forward_shard, (run.spec, run.store, k, ids[a:b], lengths[a:b], names, plan.options.represent,
                                      plan.drop_positions, plan.options.batch_size)))
    run_as_done(executor, calls, on_done=lambda i, _: bar.advance())
    bar.close()


def _unit_intact(plan: ScalePlan, marker_path: Path, files: list[Path]) -> bool:
    if not marker_path.is_file():
        return False
    marker, why = read_marker(marker_path)
    problem = why if marker is None else damage(plan.out, marker, [plan.layout.relative(f) for f in files])
    if problem is not None:
        _warn(f"{plan.layout.relative(marker_path.with_suffix(''))} is redone: {problem}")
        marker_path.unlink(missing_ok=True)
        return False
    return True


def _analyses(plan: ScalePlan, executor: Executor) -> None:
    units = [(run, site.name, p) for run in plan.runs for site in plan.sites for p in range(plan.partition_plan.partitions)]
    bar = Progress(len(units), "estimators, site x partition", enabled=plan.progress)
    calls, destinations = [], []
    for run, site, p in units:
        json_path, nn_path, marker = plan.layout.unit_paths(run.name, site, p)
        if _unit_intact(plan, marker, [json_path, nn_path]):
            bar.advance(note="done earlier")
            continue
        calls.append((analyse_unit, (run.store, site, plan.partition_rows(p), plan.settings)))
        destinations.append((json_path, nn_path, marker))

    def write_files(i: int, result) -> None:  # in this thread, as each task finishes: the workers need only the store
        write_unit_files(result, *destinations[i], plan.out)
        bar.advance()

    run_as_done(executor, calls, on_done=write_files)
    bar.close()


def _comparisons(plan: ScalePlan, executor: Executor) -> None:
    names = [s.name for s in plan.sites]
    units = [(run, p) for run in plan.runs for p in range(plan.partition_plan.partitions)]
    bar = Progress(len(units), "site x site comparisons, partitions", enabled=plan.progress)
    calls, destinations = [], []
    for run, p in units:
        json_path, marker = plan.layout.compare_paths(run.name, p)
        if _unit_intact(plan, marker, [json_path]):
            bar.advance(note="done earlier")
            continue
        # the estimators' neighbour lists, read here and sent with the task: workers read no run folder
        neighbours = read_neighbours([plan.layout.unit_paths(run.name, s, p)[1] for s in names])
        calls.append((compare_partition, (run.store, names, plan.partition_rows(p), neighbours, plan.settings.cka_dtype)))
        destinations.append((json_path, marker))

    def write_files(i: int, record: dict) -> None:  # in this thread, as each task finishes
        write_comparison_files(record, *destinations[i], plan.out)
        bar.advance()

    run_as_done(executor, calls, on_done=write_files)
    bar.close()


# How auto_gride_scale (scale/analyses.py) chooses GRIDE's scale, for the report.
GRIDE_RULE = ("the scale n1 where ID against scale is flattest: for each scale with a neighbour on both sides, the mean "
              "absolute change of the ID to its two neighbours per doubling of the scale, relative to its own ID; the "
              "smallest wins (ties to the smaller scale), chosen on each partition's curve and again on the mean curve")


def _write_outputs(plan: ScalePlan) -> None:
    timer = plan.timer
    with timer("tables"):
        rows = assemble_scale_tables(plan)
        write_scale_tables(plan, rows)
    if not (plan.make_plots or plan.make_report):
        return
    from ..outputs.scale_figures import ScaleTables

    tables = ScaleTables.build(rows.results, rows.overlap, rows.cka, rows.partitions, [s.name for s in plan.sites],
                               plan.cfg, overlap_k=plan.settings.k_overlap)
    figures = {}
    if plan.make_plots:
        from ..outputs.scale_figures import make_scale_plots

        with timer("plots"):
            figures = make_scale_plots(tables, plan.out / PLOT_DIR)
    if plan.make_report:
        from ..outputs.scale_report import write_scale_report

        with timer("report"):
            write_scale_report(scale_report_info(plan), tables, figures, plan.out / REPORT)


def scale_report_info(plan: ScalePlan):
    """What the report says about the run, besides the tables."""
    from ..outputs.scale_report import ScaleReportInfo

    seqs, opts = plan.sequences, plan.options
    return ScaleReportInfo(
        model=plan.model_info["source"], source=plan.source.description, n_documents=int(seqs.n_documents),
        n_candidates=int(seqs.n_candidates), n_duplicates=int(seqs.n_duplicates), n_sequences=plan.n_sequences,
        window=opts.window, remainder=opts.remainder, represent=opts.represent,
        partitions=plan.partition_plan.partitions, partition_size=plan.partition_plan.size,
        partition_note=plan.partition_plan.note, seed=opts.seed, gride_rule=GRIDE_RULE,
        timings=dict(plan.timer.seconds), versions=_versions(), date=mf.now(),
        untrained_seed=opts.seed if opts.untrained else None, drop_positions=tuple(plan.drop_positions),
        max_sequences=opts.max_sequences,
    )


def _versions() -> dict:
    return {k: v for k, v in mf.versions().items() if not k.endswith("_sha256")}


def run_scale_study(model="gpt2", corpus=None, out=None, **options) -> Path:
    """The corpus-scale protocol, end to end; returns the run folder.

    corpus: a .jsonl/.json file, a folder of .txt files, a .parquet file or folder, or
    "hf:<dataset>[:<config>]" / a datasets.save_to_disk folder (the `corpus` extra). Options
    (keyword only): represent ("last" or "mean"), window (tokens per sequence, e.g. 20),
    remainder ("drop" or "keep"), max_sequences, seed, text_column, split, partitions,
    partition_size, batch_size, untrained (also the untrained control), store (where the
    activation store goes: a local path or an fsspec URL the workers share), and the token study's
    tokenizer, sites (default: the embeddings and every block's output), drop_positions,
    dtype, plots, report, progress, runs_dir, workers. Raises StudyError before any work on bad
    input."""
    from .plan import prepare_scale_study

    return execute_scale(prepare_scale_study(model, corpus, out, **options))
