"""The study from start to end: per prompt, then pooled, then the outputs, in one run folder.

Resuming: one run at a time (a second one is refused at once, naming the first, see
rundir/lock.py). A prompt whose .done marker matches its files (sizes and sha256) is skipped;
otherwise it is redone from scratch (its files are replaced) with one warning line naming the
damaged file. A pooled site is skipped when its marker matches its json and the activation
files are those it was computed from. Tables, plots and the report are always rebuilt from
these files in a fixed order, and every file is written deterministically (activations
included), so a run that was killed, or whose files were damaged, and started again ends with
byte-identical tables. The folder's layout: rundir/layout.py.

A full disk stops the run with one StudyError line (how much space the rest needs, that what is
finished is kept, that the same command resumes); see rundir/diskspace.py.
"""

from __future__ import annotations

from pathlib import Path

from ..outputs.assemble import assemble_tables, write_tables
from ..plan import StudyPlan, prepare_study
from ..rundir import manifest as mf
from ..rundir.diskspace import DiskFullError, disk_full_message
from ..rundir.folder import check_run_folder
from ..rundir.fsio import atomic_write_json, disk_full_guard, is_disk_full, read_json, remove_stale_temporaries
from ..rundir.layout import MANIFEST, PLOT_DIR, REPORT, TIMINGS, WORK_DIRS
from ..rundir.lock import RunFolderLock
from ..runtime.beside import Beside
from ..runtime.progress import Progress
from ..runtime.threads import blas_single_thread
from ..sites import site_width
from .executor import Executor, ThreadExecutor
from .pooled import run_pooled
from .prompts import run_prompts
from .resume import activation_inputs, check_free_space, finished_pooled_sites, finished_prompts, space_needed


def _write_manifest(plan: StudyPlan, **extra) -> None:
    """The manifest (the first file of a run: from then on the folder is a study run), keeping
    the creation time and the sessions of earlier runs."""
    path = plan.out / MANIFEST
    old = read_json(path) if path.is_file() else {}
    man = {
        "geostudy_format": mf.FORMAT_VERSION,
        "created": old.get("created", mf.now()),
        "versions": mf.versions(),
        "model": plan.model_info,
        "tokenizer": plan.tokenizer_info,
        "corpus": {
            "source": plan.corpus.source,
            "name": plan.corpus.name,
            "sha256": plan.corpus.sha256(),
            "n_prompts": len(plan.corpus),
            "n_tokens": int(sum(t.size for t in plan.token_ids)),
            "n_points": int(sum(k.size for k in plan.kept)),
            "token_ids_sha256": plan.fingerprint["token_ids_sha256"],
        },
        "options": {
            "sites": [s.name for s in plan.sites],
            "lens_sites": plan.lens_sites,
            "estimators": plan.settings.as_dict(),
            "pooled_estimators": list(plan.pooled_settings.estimators),
            "drop_positions": list(plan.drop_positions),
            "dtype": plan.dtype,
            "lens_positions": plan.lens_positions,
            "top_k": plan.top_k,
            "focus": plan.focus.id,
            "attention_block": plan.attention_block,
            "scatter_site": plan.scatter_site,
            "plots": plan.make_plots,
            "report": plan.make_report,
            "tsne": plan.tsne,
            "lens_gifs": list(plan.lens_gif_prompts),
            "cosine_gride": plan.cosine_gride,
        },
        "fingerprint": plan.fingerprint,
        "fingerprint_sha256": mf.fingerprint_hash(plan.fingerprint),
        "sessions": old.get("sessions", []),
    }
    man.update(extra)
    atomic_write_json(path, man, indent=2)


def _update_manifest(plan: StudyPlan, change) -> None:
    path = plan.out / MANIFEST
    man = read_json(path)
    change(man)
    atomic_write_json(path, man, indent=2)


def execute(plan: StudyPlan, executor: Executor | None = None, pooled_searches=None) -> Path:
    """Run a prepared study (resuming whatever the run folder already holds), holding the run
    folder's lock. Raises StudyError at once when another process holds the folder (naming it),
    and DiskFullError (a StudyError: one line, with the space the run needs) when the disk is
    full; what was finished is kept, and the same call resumes.

    executor: what runs the tasks (see executor.py); default a ThreadExecutor of plan.workers
    threads. pooled_searches: where the pooled clouds' exact neighbour searches run, an object
    whose for_site(name) gives a search(X, k) (default: idest in this process; on a cluster,
    geostudy.cluster.pooled.ClusterSearches). The results do not depend on either."""
    with disk_full_guard() as disk_full_at:
        try:
            with RunFolderLock(plan.out):
                if executor is not None:
                    return _execute_locked(plan, executor, pooled_searches)
                with ThreadExecutor(plan.workers) as threads:
                    return _execute_locked(plan, threads, pooled_searches)
        except Exception as err:
            # the write that met the full disk, here or in a forked writer (whose error we see
            # as "the child failed"), or an OSError outside fsio (a folder being made)
            where = disk_full_at()
            if where is None and not is_disk_full(err):
                raise
            where = where or getattr(err, "filename", None)
            raise DiskFullError(disk_full_message(plan.out, space_needed(plan), where)) from None


def _execute_locked(plan: StudyPlan, executor: Executor, pooled_searches=None) -> Path:
    out, timer = plan.out, plan.timer
    check_run_folder(out, plan.fingerprint)  # again: a run may have started here since prepare_study
    _write_manifest(plan, status="running")  # the first file: from now on the folder is a study run
    for sub in WORK_DIRS:
        (out / sub).mkdir(exist_ok=True)
    remove_stale_temporaries(out)  # only now: before the lock they could be a live run's
    with timer("check finished files"):
        finished = finished_prompts(plan, executor)
    check_free_space(plan)
    todo = [i for i, done in enumerate(finished) if not done]
    # longest prompts first: each forward pass then takes no longer than the analyses it runs
    # beside, so no worker waits for one, and the last tasks before the pooled corpus are small
    # (each prompt's results are its own files: the order changes no number)
    todo.sort(key=lambda i: -plan.token_ids[i].size)
    _update_manifest(plan, lambda man: man["sessions"].append(
        {"started": mf.now(), "prompts_already_done": len(plan.corpus) - len(todo)}))

    bar = Progress(len(plan.corpus), "prompts", enabled=plan.progress)
    if len(todo) < len(plan.corpus):
        bar.advance(len(plan.corpus) - len(todo), note="done earlier")
    with timer("per prompt: forward, geometry, ID, lens"), blas_single_thread():
        run_prompts(plan, todo, executor, bar)
    bar.close()

    with timer("check finished files"):
        inputs = activation_inputs(plan)
        finished = finished_pooled_sites(plan, inputs, executor)
    sites = [s for s, done in zip(plan.sites, finished) if not done]
    # widest clouds first, so the last tasks running side by side are small ones (each site's
    # result is its own file: the order changes no number)
    sites.sort(key=lambda s: -site_width(s, plan.cfg))
    bar = Progress(len(plan.sites), "pooled corpus, sites", enabled=plan.progress)
    if len(sites) < len(plan.sites):
        bar.advance(len(plan.sites) - len(sites), note="done earlier")
    with timer("pooled geometry + ID"), blas_single_thread():
        run_pooled(plan, sites, inputs, executor, bar, pooled_searches)
    bar.close()

    _write_outputs(plan)
    seconds = timer.as_dict()
    atomic_write_json(out / TIMINGS, {"workers": plan.workers, **seconds}, indent=2)

    def complete(man):
        man["status"] = "complete"
        man["sessions"][-1]["finished"] = mf.now()
        man["sessions"][-1]["seconds"] = seconds

    _update_manifest(plan, complete)
    return out


def _write_outputs(plan: StudyPlan) -> None:
    """The tables (written by a forked child while this process draws), the figures, the report."""
    timer = plan.timer
    with timer("tables"):
        tables = assemble_tables(plan)
        writer = Beside(lambda: write_tables(plan, tables), "writing the tables")  # see runtime/beside.py
        from ..outputs.report import write_matched_table

        write_matched_table(plan, tables)  # genres and topics at a matched number of points
    figures = {}
    if plan.make_plots:
        from ..outputs.figures import make_plots  # matplotlib: imported only when drawing

        bar = Progress(1, "plots", enabled=plan.progress)
        bar.stage("drawing")
        with timer("plots"):
            figures = make_plots(plan, tables, plan.out / PLOT_DIR)
        bar.advance(note=f"{len(figures)} files")
        bar.close()
    with timer("tables: waiting for the writer"):
        writer.wait()
    if plan.make_report:
        from ..outputs.report import write_report

        with timer("report"):
            write_report(plan, tables, figures, plan.out / REPORT)


def run_study(
    model: str | Path = "gpt2",
    corpus: str | Path | None = None,
    out: str | Path | None = None,
    **options,
) -> Path:
    """Run the whole geometry study and return the run folder.

    model: a Hub name ("gpt2"), a local folder (model.safetensors + config.json) or a
        .safetensors file. corpus: None (the shipped corpus), a .json/.jsonl file or a folder of
        .txt files. out: the run folder (default: runs/<model>-<corpus>-<hash of the options>;
        the same study started again resumes there).
    Options (keyword only): tokenizer (default: from `model`), sites ("default", "all", or names
    and glob patterns), estimators and pooled_estimators (subsets of twonn, mle, gride, pca;
    default all), drop_positions (default (0,): GPT-2's first position is an outlier),
    dtype ("float32"), lens_positions (positions per prompt for the all-positions logit-lens
    summary, default 32; None = all), top_k (10), focus (prompt id for the single-prompt figures;
    default the first prompt), attention_block (default n_layer // 2), scatter_site (default
    the middle block's output), plots (True), report (True; without plots it is written without
    figures), progress (True), runs_dir ("runs"), workers (threads for the analyses, default
    min(4, cores); the results do not depend on it), settings (an EstimatorSettings: the
    estimators' parameters).
    Raises StudyError, before any work, on bad input.
    """
    plan = prepare_study(model, corpus, out, **options)
    return execute(plan)
