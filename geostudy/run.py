"""The study from start to end: validate everything, then per prompt, then pooled, then outputs.

Run folder layout (all files written atomically, see fsio):

    .lock                            held (fcntl.flock) by the one run working in the folder
    manifest.json                    versions, model source and hash, corpus hash, options; the
                                     first file a run writes
    activations/<prompt>.safetensors the chosen sites of each prompt (TransformerLens names)
    prompts/<prompt>.json            that prompt's analysis results
    prompts/<prompt>.done            written last: the prompt is finished; the size and sha256 of
                                     its two files
    pooled/<site>.json               the pooled-corpus analysis of one site
    pooled/<site>.done               written last: its size and sha256, and a digest of the
                                     activation files it was computed from
    tables/*.csv, tables/*.json      the tidy result tables
    plots/*.png, plots/*.gif         the figures
    report.html                      the self-contained report
    timings.json                     seconds per stage of the last (resumed) run: wall clock, CPU
                                     (user, system) of each wall-clock stage, and time inside
                                     each step summed over the worker threads

Resuming: one run at a time (a second one is refused at once, naming the first, see lock.py).
A prompt whose .done marker matches its files (sizes and sha256) is skipped; otherwise it is
redone from scratch (its files are replaced) with one warning line naming the damaged file. A
pooled site is skipped when its marker matches its json and the activation files are those it
was computed from. Tables, plots and the report are always rebuilt from these files in a fixed
order, and every file is written deterministically (activations included), so a run that was
killed, or whose files were damaged, and started again ends with byte-identical tables.

A full disk stops the run with one StudyError line (how much space the rest needs, that what is
finished is kept, that the same command resumes); see diskspace.py.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import gpt2np
from gpt2np.loading import resolve_model_files

from . import manifest as mf
from .analysis import FINAL_SITE, analyse_cloud, lens_for_prompt
from .beside import Beside
from .corpus import POOLED_ID, Corpus, Prompt, load_corpus, tokenize_corpus
from .diskspace import SpaceNeeded, activation_file_bytes, disk_full_message, free_bytes, other_bytes
from .errors import StudyError
from .estimators import ESTIMATORS, EstimatorSettings
from .extract import load_cloud, pattern_name, save_activations
from .fsio import (
    TMP_MARK, atomic_write_json, disk_full_guard, is_disk_full, is_temporary, read_json, remove_stale_temporaries,
)
from .geometry import cosine_to_last_sum
from .integrity import damage, inputs_digest, read_marker, write_json_checked, write_marker
from .lock import LOCK_FILE, RunFolderLock
from .progress import Progress, StageTimer
from .sites import Site, as_cloud, lens_site_names, resolve_sites, site_info, site_width
from .threads import TaskPool, blas_single_thread, default_workers, run_tasks
from .tables import (
    PROMPT_COLUMNS, RESULT_COLUMNS, SITE_COLUMNS, SKIPPED_COLUMNS, SPECTRUM_COLUMNS,
    TOP_TOKEN_COLUMNS, write_table,
)

ACT_DIR, PROMPT_DIR, POOLED_DIR, TABLE_DIR, PLOT_DIR = "activations", "prompts", "pooled", "tables", "plots"
MANIFEST, REPORT, TIMINGS = "manifest.json", "report.html", "timings.json"
DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_LENS_POSITIONS = 32
MIN_POINTS = 3  # kept tokens per prompt: fewer cannot even be centred and compared
SLUG_LENGTH = 60  # characters of the model's and the corpus' names in a default run folder's name
WRITE_PROBE = f".write-test{TMP_MARK}"  # + pid: a temporary, swept by the lock holder if left behind
RESULT_ROWS_PER_SITE = 30  # about, per prompt and site: for the disk-space estimate only


class DiskFullError(StudyError):
    """The run folder's disk is full: the message says how much space the run needs."""


@dataclass
class StudyPlan:
    """Everything validated and loaded, before any work."""

    model: object
    tokenizer: object
    corpus: Corpus
    token_ids: list
    kept: list  # per prompt: the positions analysed
    sites: list[Site]
    lens_sites: list[str]
    settings: EstimatorSettings
    pooled_settings: EstimatorSettings
    drop_positions: tuple[int, ...]
    dtype: str
    lens_positions: int | None
    top_k: int
    focus: Prompt
    attention_block: int
    scatter_site: str
    out: Path
    make_plots: bool
    make_report: bool
    model_info: dict
    tokenizer_info: dict
    fingerprint: dict
    progress: bool = True
    workers: int = 1
    timer: StageTimer = field(default_factory=StageTimer)

    @property
    def cfg(self):
        return self.model.cfg

    def act_path(self, prompt_id: str) -> Path:
        return self.out / ACT_DIR / f"{prompt_id}.safetensors"

    def result_path(self, prompt_id: str) -> Path:
        return self.out / PROMPT_DIR / f"{prompt_id}.json"

    def marker_path(self, prompt_id: str) -> Path:
        return self.out / PROMPT_DIR / f"{prompt_id}.done"

    def pooled_path(self, site: str) -> Path:
        return self.out / POOLED_DIR / f"{site}.json"

    def pooled_marker_path(self, site: str) -> Path:
        return self.out / POOLED_DIR / f"{site}.done"

    def relative(self, path: Path) -> str:
        """A file's name in the run folder, as its marker records it."""
        return Path(path).relative_to(self.out).as_posix()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _parse_estimators(spec, what: str) -> tuple[str, ...]:
    if spec is None:
        return ESTIMATORS
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    spec = [s.lower() for s in spec]
    if spec in (["none"], []):
        return ()
    if spec == ["all"]:
        return ESTIMATORS
    unknown = [s for s in spec if s not in ESTIMATORS]
    if unknown:
        raise StudyError(f"unknown {what} {', '.join(map(repr, unknown))}; choose among {', '.join(ESTIMATORS)} (or 'all', 'none')")
    return tuple(e for e in ESTIMATORS if e in spec)


def _parse_drop(spec) -> tuple[int, ...]:
    if spec is None:
        return ()
    if isinstance(spec, str):
        spec = spec.strip().lower()
        if spec in ("", "none"):
            return ()
        try:
            spec = [int(s) for s in spec.split(",") if s.strip()]
        except ValueError:
            raise StudyError(f"positions to drop must be comma-separated integers or 'none', got {spec!r}") from None
    if isinstance(spec, int):
        spec = [spec]
    out = []
    for p in spec:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise StudyError(f"positions to drop must be integers >= 0 (0 is the first token), got {p!r}")
        out.append(int(p))
    return tuple(sorted(set(out)))


def _slug(text: str, fallback: str) -> str:
    """A name that is safe as part of one file name: letters, digits, '.', '_' and '-' only (so
    no '/' and no '..' can lead out of the runs folder), at most SLUG_LENGTH characters."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text or "").strip("._-")[:SLUG_LENGTH].strip("._-")
    return slug or fallback


def _model_slug(source: str) -> str:
    p = Path(source)
    name = p.stem if (p.suffix == ".safetensors" and p.stem != "model") else (p.parent.name if p.suffix else p.name)
    return _slug(name, "model")


def default_run_folder(runs_dir: Path, model: str, corpus_name: str, fingerprint: dict) -> Path:
    """runs_dir/<model>-<corpus>-<hash of the fingerprint>: always a direct child of runs_dir."""
    name = f"{_model_slug(model)}-{_slug(corpus_name, 'corpus')}-{mf.fingerprint_hash(fingerprint)[:10]}"
    folder = Path(runs_dir) / name
    assert folder.parent == Path(runs_dir) and folder.name == name, name  # the slugs guarantee it
    return folder


def _load_model(source, dtype: str):
    if dtype not in ("float32", "float64"):
        raise StudyError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    try:
        weights, config_file = resolve_model_files(source)
        model = gpt2np.load_model(source, dtype=dtype)
    except (gpt2np.ModelNotFoundError, gpt2np.WeightsError, gpt2np.ConfigError, OSError, ValueError) as err:
        raise StudyError(f"cannot load the model {str(source)!r}: {err}") from None
    info = {
        "source": str(source),
        "weights_file": str(Path(weights).resolve()),
        "weights_sha256": mf.sha256_file(weights),
        "config_file": str(Path(config_file).resolve()) if config_file else None,
        "config": {k: getattr(model.cfg, k) for k in model.cfg.__dataclass_fields__},
        "dtype": dtype,
        "known_checkpoint": str(source) in gpt2np.hub.HUB_ALIASES or str(source) in gpt2np.hub.HUB_ALIASES.values(),
    }
    return model, info


def _load_tokenizer(source):
    try:
        tok = gpt2np.load_tokenizer(source)
    except (gpt2np.ModelNotFoundError, OSError, ValueError) as err:
        raise StudyError(
            f"cannot load a tokenizer from {str(source)!r}: {err}. Pass --tokenizer with a folder "
            "holding tokenizer.json (or vocab.json + merges.txt), or a Hub name such as gpt2"
        ) from None
    return tok, {"source": str(source), "vocab_size": tok.vocab_size}


def _is_debris(entry: Path) -> bool:
    """What a run killed before it wrote its manifest can leave: the lock file, temporaries
    (the write probe and a manifest being written among them), and the run's sub-folders
    holding nothing else (older versions created them before the manifest)."""
    if entry.is_dir() and entry.name in (ACT_DIR, PROMPT_DIR, POOLED_DIR):
        return all(is_temporary(e.name) and e.is_file() for e in entry.iterdir())
    return entry.is_file() and (entry.name == LOCK_FILE or is_temporary(entry.name))


def _check_run_folder(out: Path, fingerprint: dict) -> None:
    """The folder is new, the start of a run killed before its manifest, or a run of this very
    study (to resume); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"the output path {out} exists and is not a folder")
    man = out / MANIFEST
    if out.is_dir() and man.is_file():
        try:
            old = read_json(man).get("fingerprint", {})
        except (OSError, ValueError, AttributeError) as err:
            raise StudyError(f"{man} cannot be read ({err}); pass another --out") from None
        diff = mf.differences(old, fingerprint)
        if diff:
            raise StudyError(
                f"the output folder {out} holds a run of a different study (differences in: "
                f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}); pass another --out or delete it"
            )
    elif out.is_dir() and not all(_is_debris(e) for e in out.iterdir()):
        raise StudyError(f"the output folder {out} is not empty and holds no {MANIFEST}: it is not a study run; pass another --out")


def _prepare_out(out: Path, fingerprint: dict) -> None:
    """Create the run folder (or accept the folder of the same study, to resume)."""
    _check_run_folder(out, fingerprint)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f"{WRITE_PROBE}{os.getpid()}"  # per process: runs probing side by side
        probe.write_bytes(b"ok")
        probe.unlink(missing_ok=True)  # the lock holder may have swept it already
    except OSError as err:
        raise StudyError(f"cannot write to the output folder {out}: {err.strerror or err}") from None


def prepare_study(
    model: str | Path = "gpt2",
    corpus: str | Path | None = None,
    out: str | Path | None = None,
    *,
    tokenizer: str | Path | None = None,
    sites=None,
    estimators=None,
    pooled_estimators=None,
    drop_positions=(0,),
    dtype: str = "float32",
    lens_positions: int | None = DEFAULT_LENS_POSITIONS,
    top_k: int = 10,
    focus: str | None = None,
    attention_block: int | None = None,
    scatter_site: str | None = None,
    plots: bool = True,
    report: bool = True,
    progress: bool = True,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    workers: int | None = None,
    settings: EstimatorSettings | None = None,
) -> StudyPlan:
    """Validate every input and load the model, tokenizer and corpus; no output is written
    except the (empty) run folder. Raises StudyError on any problem. See run_study."""
    timer = StageTimer()
    with timer("validate inputs + load model"):
        corp = load_corpus(corpus)
        chosen_est = _parse_estimators(estimators, "estimator")
        pooled_est = chosen_est if pooled_estimators is None else _parse_estimators(pooled_estimators, "pooled estimator")
        drop = _parse_drop(drop_positions)
        if lens_positions is not None and (isinstance(lens_positions, bool) or not isinstance(lens_positions, (int, np.integer)) or lens_positions < 0):
            raise StudyError(f"lens_positions must be an integer >= 0 (0: no all-positions summary) or None (all), got {lens_positions!r}")
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise StudyError(f"workers must be a positive integer, got {workers!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= 100:
            raise StudyError(f"top_k must be an integer between 1 and 100, got {top_k!r}")
        base = settings or EstimatorSettings()
        settings_ = replace(base, estimators=chosen_est)
        pooled_settings = replace(base, estimators=pooled_est)

        mdl, model_info = _load_model(model, dtype)
        cfg = mdl.cfg
        tok, tok_info = _load_tokenizer(tokenizer if tokenizer is not None else model)
        if tok.vocab_size > cfg.d_vocab:
            raise StudyError(
                f"the tokenizer has {tok.vocab_size} tokens but the model only {cfg.d_vocab}: they do not belong together"
            )
        site_list = resolve_sites(sites, cfg)
        ids = tokenize_corpus(corp, tok, cfg.n_ctx)
        kept, short = [], []
        for p, t in zip(corp, ids):
            k = np.array([i for i in range(t.size) if i not in drop], dtype=np.int64)
            if k.size < MIN_POINTS:
                short.append(f"{p.id}: {t.size} tokens, {k.size} left after dropping positions {list(drop)}")
            kept.append(k)
        if short:
            raise StudyError(f"every prompt needs at least {MIN_POINTS} tokens to analyse:\n  " + "\n  ".join(short))

        focus_prompt = corp.by_id(focus) if focus is not None else corp[0]
        if attention_block is None:
            attention_block = cfg.n_layer // 2
        if isinstance(attention_block, bool) or not isinstance(attention_block, (int, np.integer)) or not 0 <= attention_block < cfg.n_layer:
            raise StudyError(f"attention_block must be a block index in 0..{cfg.n_layer - 1}, got {attention_block!r}")
        names = [s.name for s in site_list]
        if scatter_site is None:
            default = f"blocks.{cfg.n_layer // 2}.hook_resid_post"
            scatter_site = default if default in names else names[-1]
        elif scatter_site not in names:
            raise StudyError(f"the scatter site {scatter_site!r} is not among the analysed sites; add it to the sites or pick one of them")

        fingerprint = {
            "format": mf.FORMAT_VERSION,
            "model_sha256": model_info["weights_sha256"],
            "model_config": model_info["config"],
            "dtype": dtype,
            "corpus_sha256": corp.sha256(),
            "token_ids_sha256": mf.sha256_token_ids(ids),
            "sites": names,
            "estimators": settings_.as_dict(),
            "pooled_estimators": list(pooled_settings.estimators),
            "drop_positions": list(drop),
            "lens_positions": lens_positions,
            "top_k": int(top_k),
            "focus": focus_prompt.id,
            "attention_block": int(attention_block),
            "scatter_site": scatter_site,
        }
        if out is None:
            out = default_run_folder(Path(runs_dir), str(model), corp.name, fingerprint)
        out = Path(out).expanduser()
        _prepare_out(out, fingerprint)

    return StudyPlan(
        model=mdl, tokenizer=tok, corpus=corp, token_ids=ids, kept=kept, sites=site_list,
        lens_sites=lens_site_names(cfg), settings=settings_, pooled_settings=pooled_settings,
        drop_positions=drop, dtype=dtype, lens_positions=None if lens_positions is None else int(lens_positions),
        top_k=int(top_k), focus=focus_prompt, attention_block=int(attention_block), scatter_site=scatter_site,
        out=out, make_plots=plots, make_report=report, model_info=model_info, tokenizer_info=tok_info,
        fingerprint=fingerprint, progress=progress, workers=int(workers), timer=timer,
    )


# --------------------------------------------------------------------------------------------
# Per prompt
# --------------------------------------------------------------------------------------------

def _forward(plan: StudyPlan, i: int):
    """Forward pass of prompt i (no unembedding: the lens unembeds the rows it uses), its
    activations saved; returns (the cache, the activation file's checksum)."""
    prompt, ids = plan.corpus[i], plan.token_ids[i]
    site_names = [s.name for s in plan.sites]
    extra = [pattern_name(plan.attention_block)] if prompt.id == plan.focus.id else []
    with plan.timer.busy("forward pass"):
        _, cache = plan.model.run_with_cache(
            ids, names=sorted(set(site_names) | set(plan.lens_sites) | set(extra)), return_type=None)
    with plan.timer.busy("save activations"):
        tensors = {n: cache[n] for n in site_names + extra}
        saved = save_activations(plan.act_path(prompt.id), tensors, ids, {"prompt_id": prompt.id, "format": "geostudy-activations-1"})
    return cache, saved


def _analyse_site(plan: StudyPlan, i: int, cache, site: Site):
    X = as_cloud(cache[site.name])[plan.kept[i]]  # as saved: the model's dtype
    return X.shape[0], analyse_cloud(X, plan.settings, timer=plan.timer.busy, prefix="per-prompt ")


def _lens(plan: StudyPlan, i: int, cache):
    with plan.timer.busy("logit lens"):
        return lens_for_prompt(plan.model, cache, plan.lens_sites, plan.kept[i], plan.lens_positions, plan.top_k)


def _write_prompt(plan: StudyPlan, i: int, site_results: list, lens: dict, saved) -> None:
    """The prompt's results file, then its marker (written last: the prompt is finished), which
    records the checksums of the results and of the activation file (`saved`)."""
    prompt, ids, kept = plan.corpus[i], plan.token_ids[i], plan.kept[i]
    rows, spectra, skipped = [], {}, []
    for site, (n, est) in zip(plan.sites, site_results):
        rows += [[site.name, n, q, p, v, e] for q, p, v, e in est.items]
        if est.spectrum is not None:
            spectra[site.name] = [est.spectrum.tolist(), est.explained.tolist()]
        skipped += [[site.name, name, reason] for name, reason in est.skipped]
    top = []
    for site, stats in list(zip(lens["sites"], lens["last"])) + [(FINAL_SITE, lens["final"])]:
        rows += [
            [site, 1, "lens_entropy", None, stats["entropy"], None],
            [site, 1, "lens_kl_to_final", None, stats["kl_to_final"], None],
            [site, 1, "lens_cosine_to_final", None, stats["cosine_to_final"], None],
            [site, 1, "lens_final_top_rank", None, stats["final_top_rank"], None],
            [site, 1, "lens_top1_prob", None, stats["top1_prob"], None],
        ]
        top += [[site, r + 1, tid, plan.tokenizer.token_strings([tid])[0], pr]
                for r, (tid, pr) in enumerate(zip(stats["top_ids"], stats["top_probs"]))]
    for site, (kl_sum, agree, n) in lens["all_positions"].items():
        rows += [
            [site, n, "lens_mean_kl_all_positions", None, kl_sum / n, None],
            [site, n, "lens_top1_agreement_all_positions", None, agree / n, None],
        ]
    result = {
        "prompt_id": prompt.id,
        "n_tokens": int(ids.size),
        "n_points": int(kept.size),
        "tokens": plan.tokenizer.token_strings(ids),
        "rows": rows,
        "spectra": spectra,
        "skipped": skipped,
        "top_tokens": top,
        "lens_tracked": {"ids": lens["final"]["top_ids"], "probs": lens["tracked_probs"]},
        "lens_all_positions": lens["all_positions"],
        "lens_positions": lens["positions"],
    }
    written = write_json_checked(plan.result_path(prompt.id), result)
    write_marker(plan.marker_path(prompt.id), plan.out,
                 {plan.act_path(prompt.id): saved, plan.result_path(prompt.id): written},
                 prompt_id=prompt.id, n_tokens=int(ids.size))


def _run_prompts(plan: StudyPlan, todo: list[int], bar: Progress) -> None:
    """Every unfinished prompt (in the order of `todo`): its forward pass, one task per site, the
    logit lens; each prompt's results written when they are complete. A pipeline, so that no
    worker waits: the first two forward passes run side by side, each next prompt's forward
    pass is queued before this prompt's analyses, and this prompt's analyses are queued before
    the main thread waits for the previous prompt's results (at most three prompts' caches are
    alive at once)."""

    def finish(i, saved, lens_future, site_futures):
        bar.stage(f"{plan.corpus[i].id}: geometry, ID, logit lens")
        results = [f.result() for f in site_futures]
        _write_prompt(plan, i, results, lens_future.result(), saved)
        bar.advance(note=f"{plan.corpus[i].id}: done")

    with TaskPool(plan.workers) as pool:
        forwards = {}

        def start_forward(k):
            if k < len(todo) and k not in forwards:
                forwards[k] = pool.submit(_forward, plan, todo[k])

        start_forward(0)
        start_forward(1)  # the first two side by side: no worker waits for the first
        previous = None
        for k, i in enumerate(todo):
            bar.stage(f"{plan.corpus[i].id}: forward pass")
            cache, saved = forwards.pop(k).result()
            start_forward(k + 1)
            analyses = (i, saved, pool.submit(_lens, plan, i, cache),
                        [pool.submit(_analyse_site, plan, i, cache, site) for site in plan.sites])
            del cache  # the queued tasks hold it until they have run
            if previous is not None:
                finish(*previous)
            previous = analyses
        if previous is not None:
            finish(*previous)


# --------------------------------------------------------------------------------------------
# Pooled corpus
# --------------------------------------------------------------------------------------------

def load_pooled_cloud(plan: StudyPlan, site: str) -> tuple[np.ndarray, float]:
    """All kept tokens of all prompts at one site, in corpus order, as saved; and the mean over
    those tokens of the cosine to their own prompt's last kept token."""
    clouds, cos_sum, cos_n = [], 0.0, 0
    for p, kept in zip(plan.corpus, plan.kept):
        X = load_cloud(plan.act_path(p.id), site, kept)
        s, n = cosine_to_last_sum(X)
        cos_sum += s
        cos_n += n
        clouds.append(X)
    return np.concatenate(clouds), cos_sum / cos_n


def _analyse_pooled_site(plan: StudyPlan, site: Site, inputs: str) -> None:
    """Runs in a worker thread: load, analyse and save one site of the pooled corpus; its marker
    records `inputs`, the digest of the activation files it was computed from."""
    with plan.timer.busy("pooled: load activations"):
        X, cos_last = load_pooled_cloud(plan, site.name)
    est = analyse_cloud(X, plan.pooled_settings, cosine_to_last=cos_last, timer=plan.timer.busy, prefix="pooled ")
    result = {
        "site": site.name,
        "n_points": int(X.shape[0]),
        "rows": [[q, p, v, e] for q, p, v, e in est.items],
        "spectrum": None if est.spectrum is None else [est.spectrum.tolist(), est.explained.tolist()],
        "skipped": [[name, reason] for name, reason in est.skipped],
    }
    written = write_json_checked(plan.pooled_path(site.name), result)
    write_marker(plan.pooled_marker_path(site.name), plan.out, {plan.pooled_path(site.name): written},
                 site=site.name, inputs_sha256=inputs)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def site_columns(name: str, cfg, cache: dict) -> tuple:
    """(site_label, block, sublayer, depth) of a site name, including the lens' 'logits'."""
    if name not in cache:
        if name == FINAL_SITE:
            cache[name] = ("model output (final next-token distribution)", cfg.n_layer, FINAL_SITE, len(gpt2np.hook_names(cfg)))
        else:
            s = site_info(name, cfg)
            cache[name] = (s.label, s.block, s.sublayer, s.depth)
    return cache[name]


def assemble_tables(plan: StudyPlan) -> dict[str, list]:
    """Build every table from the per-prompt and pooled files, in corpus and depth order."""
    cfg, info = plan.cfg, {}
    results, top, spectra, skipped, prompts = [], [], [], [], []
    pooled_lens: dict[str, list] = {}
    for p, ids in zip(plan.corpus, plan.token_ids):
        r = read_json(plan.result_path(p.id))
        head = [p.id, p.genre, p.topic]
        for site, n, q, param, v, e in r["rows"]:
            results.append(head + [site, *site_columns(site, cfg, info), n, q, param, v, e])
        for site, rank, tid, tok, prob in r["top_tokens"]:
            top.append(head + [site, *site_columns(site, cfg, info), rank, tid, tok, prob])
        for site in plan.sites:
            if site.name in r["spectra"]:
                ev, ratio = r["spectra"][site.name]
                spectra += [[p.id, site.name, c + 1, a, b] for c, (a, b) in enumerate(zip(ev, ratio))]
        skipped += [[p.id, *s] for s in r["skipped"]]
        prompts.append([p.id, p.genre, p.topic, r["n_tokens"], r["n_points"], len(p.text.split())])
        for site, (kl_sum, agree, n) in r["lens_all_positions"].items():
            acc = pooled_lens.setdefault(site, [0.0, 0, 0])
            acc[0] += kl_sum
            acc[1] += agree
            acc[2] += n
    head = [POOLED_ID, "all", "all"]
    for site in plan.sites:
        r = read_json(plan.pooled_path(site.name))
        for q, param, v, e in r["rows"]:
            results.append(head + [site.name, *site_columns(site.name, cfg, info), r["n_points"], q, param, v, e])
        if r["spectrum"] is not None:
            ev, ratio = r["spectrum"]
            spectra += [[POOLED_ID, site.name, c + 1, a, b] for c, (a, b) in enumerate(zip(ev, ratio))]
        skipped += [[POOLED_ID, site.name, *s] for s in r["skipped"]]
    for site in plan.lens_sites:
        if site in pooled_lens:
            kl_sum, agree, n = pooled_lens[site]
            cols = site_columns(site, cfg, info)
            results.append(head + [site, *cols, n, "lens_mean_kl_all_positions", None, kl_sum / n, None])
            results.append(head + [site, *cols, n, "lens_top1_agreement_all_positions", None, agree / n, None])
    sites = [[s.name, s.label, s.short, s.block, s.sublayer, s.depth, site_width(s, cfg)] for s in plan.sites]
    return {"results": results, "lens_top_tokens": top, "spectra": spectra, "skipped": skipped,
            "prompts": prompts, "sites": sites}


TABLE_COLUMNS = {
    "results": RESULT_COLUMNS, "lens_top_tokens": TOP_TOKEN_COLUMNS, "spectra": SPECTRUM_COLUMNS,
    "skipped": SKIPPED_COLUMNS, "prompts": PROMPT_COLUMNS, "sites": SITE_COLUMNS,
}


def write_tables(plan: StudyPlan, tables: dict[str, list]) -> list[Path]:
    paths = []
    for name, rows in tables.items():
        paths += write_table(plan.out / TABLE_DIR, name, TABLE_COLUMNS[name], rows)
    return paths


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------

def _write_manifest(plan: StudyPlan, **extra) -> None:
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
        },
        "fingerprint": plan.fingerprint,
        "fingerprint_sha256": mf.fingerprint_hash(plan.fingerprint),
        "sessions": old.get("sessions", []),
    }
    man.update(extra)
    atomic_write_json(path, man, indent=2)


# --------------------------------------------------------------------------------------------
# What is finished: checked against the markers' checksums, not believed
# --------------------------------------------------------------------------------------------

def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _in_parallel(fn, items, workers: int) -> list:
    """[fn(item) for item in items] on threads (hashing releases the GIL), in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(fn, items))


def _intact(plan: StudyPlan, marker_path: Path, files: list[Path]) -> tuple[dict | None, str | None]:
    """(the marker, None) if it exists and each of `files` is as it recorded; else (None, why)."""
    marker, why = read_marker(marker_path)
    if marker is None:
        return None, why
    problem = damage(plan.out, marker, [plan.relative(f) for f in files])
    return (marker, None) if problem is None else (None, problem)


def finished_prompts(plan: StudyPlan) -> list[bool]:
    """Per prompt: finished and intact. A prompt with a marker whose files are damaged or missing
    gets one warning line naming the file, and loses its marker: it is redone."""

    def check(prompt):
        if not plan.marker_path(prompt.id).is_file():
            return None, None  # not finished, nothing to warn about
        return _intact(plan, plan.marker_path(prompt.id), [plan.act_path(prompt.id), plan.result_path(prompt.id)])

    finished = []
    for prompt, (marker, why) in zip(plan.corpus, _in_parallel(check, plan.corpus, plan.workers)):
        if marker is None and why is not None:
            _warn(f"prompt {prompt.id} is redone: {why}")
            plan.marker_path(prompt.id).unlink(missing_ok=True)
        finished.append(marker is not None)
    return finished


def activation_inputs(plan: StudyPlan) -> str:
    """The digest of every prompt's activation file as its marker recorded it (all prompts are
    finished): what a pooled result is computed from."""
    named = []
    for p in plan.corpus:
        marker, why = read_marker(plan.marker_path(p.id))
        if marker is None:
            raise StudyError(f"prompt {p.id} is not finished ({why}): run the same command again")
        named.append((p.id, marker["files"][plan.relative(plan.act_path(p.id))]["sha256"]))
    return inputs_digest(named)


def finished_pooled_sites(plan: StudyPlan, inputs: str) -> list[bool]:
    """Per site: its pooled result is intact and was computed from these activation files
    (`inputs`); otherwise one warning line (when it had a marker) and it is redone."""

    def check(site):
        marker_path = plan.pooled_marker_path(site.name)
        if not marker_path.is_file():
            return None
        marker, why = _intact(plan, marker_path, [plan.pooled_path(site.name)])
        if marker is not None and marker.get("inputs_sha256") != inputs:
            why = (f"{plan.relative(plan.pooled_path(site.name))} was computed from other activation "
                   "files than the prompts' current ones")
        return why if why is not None else "intact"

    finished = []
    for site, state in zip(plan.sites, _in_parallel(check, plan.sites, plan.workers)):
        if state not in (None, "intact"):
            _warn(f"the pooled corpus at {site.name} is redone: {state}")
            plan.pooled_marker_path(site.name).unlink(missing_ok=True)
        finished.append(state == "intact")
    return finished


# --------------------------------------------------------------------------------------------
# Disk space
# --------------------------------------------------------------------------------------------

def space_needed(plan: StudyPlan) -> SpaceNeeded:
    """What the rest of the run will write: the activation files of the unfinished prompts
    (exactly) and the results, tables and figures (about)."""
    cfg, itemsize = plan.cfg, np.dtype(plan.dtype).itemsize
    widths = [site_width(s, cfg) for s in plan.sites]
    unfinished = [i for i, p in enumerate(plan.corpus) if not plan.marker_path(p.id).is_file()]
    activations = sum(
        activation_file_bytes(int(plan.token_ids[i].size), widths, itemsize,
                              cfg.n_head if plan.corpus[i].id == plan.focus.id else 0)
        for i in unfinished)
    other = other_bytes([int(k.size) for k in plan.kept], widths, RESULT_ROWS_PER_SITE)
    return SpaceNeeded(activations, other, len(plan.corpus) - len(unfinished), len(plan.corpus))


def _check_free_space(plan: StudyPlan) -> None:
    """Refuse before any work when the activation files alone cannot fit."""
    need, free = space_needed(plan), free_bytes(plan.out)
    if free is not None and free < need.activations:
        raise DiskFullError(disk_full_message(plan.out, need, None, before_start=True))


# --------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------

def execute(plan: StudyPlan) -> Path:
    """Run a prepared study (resuming whatever the run folder already holds), holding the run
    folder's lock. Raises StudyError at once when another process holds the folder (naming it),
    and DiskFullError (a StudyError: one line, with the space the run needs) when the disk is
    full; what was finished is kept, and the same call resumes."""
    with disk_full_guard() as disk_full_at:
        try:
            with RunFolderLock(plan.out):
                return _execute_locked(plan)
        except Exception as err:
            # the write that met the full disk, here or in a forked writer (whose error we see
            # as "the child failed"), or an OSError outside fsio (a folder being made)
            where = disk_full_at()
            if where is None and not is_disk_full(err):
                raise
            where = where or getattr(err, "filename", None)
            raise DiskFullError(disk_full_message(plan.out, space_needed(plan), where)) from None


def _execute_locked(plan: StudyPlan) -> Path:
    out, timer = plan.out, plan.timer
    _check_run_folder(out, plan.fingerprint)  # again: a run may have started here since prepare_study
    _write_manifest(plan, status="running")  # the first file: from now on the folder is a study run
    for sub in (ACT_DIR, PROMPT_DIR, POOLED_DIR):
        (out / sub).mkdir(exist_ok=True)
    remove_stale_temporaries(out)  # only now: before the lock they could be a live run's
    with timer("check finished files"):
        finished = finished_prompts(plan)
    _check_free_space(plan)
    todo = [i for i, done in enumerate(finished) if not done]
    # longest prompts first: each forward pass then takes no longer than the analyses it runs
    # beside, so no worker waits for one, and the last tasks before the pooled corpus are small
    # (each prompt's results are its own files: the order changes no number)
    todo.sort(key=lambda i: -plan.token_ids[i].size)
    man = read_json(out / MANIFEST)
    man["sessions"].append({"started": mf.now(), "prompts_already_done": len(plan.corpus) - len(todo)})
    atomic_write_json(out / MANIFEST, man, indent=2)

    bar = Progress(len(plan.corpus), "prompts", enabled=plan.progress)
    if len(todo) < len(plan.corpus):
        bar.advance(len(plan.corpus) - len(todo), note="done earlier")
    with timer("per prompt: forward, geometry, ID, lens"), blas_single_thread():
        _run_prompts(plan, todo, bar)
    bar.close()

    with timer("check finished files"):
        inputs = activation_inputs(plan)
        finished = finished_pooled_sites(plan, inputs)
    todo = [s for s, done in zip(plan.sites, finished) if not done]
    # widest clouds first, so the last tasks running side by side are small ones (each site's
    # result is its own file: the order changes no number)
    todo.sort(key=lambda s: -site_width(s, plan.model.cfg))
    bar = Progress(len(plan.sites), "pooled corpus, sites", enabled=plan.progress)
    if len(todo) < len(plan.sites):
        bar.advance(len(plan.sites) - len(todo), note="done earlier")
    with timer("pooled geometry + ID"), blas_single_thread():
        run_tasks(lambda site: _analyse_pooled_site(plan, site, inputs), todo, plan.workers,
                  on_done=lambda i, _: bar.advance(note=todo[i].name))
    bar.close()

    with timer("tables"):
        tables = assemble_tables(plan)
        # written by a child process while this one draws the plots (see beside.py)
        writer = Beside(lambda: write_tables(plan, tables), "writing the tables")
    figures = {}
    if plan.make_plots:
        from .plots import make_plots

        bar = Progress(1, "plots", enabled=plan.progress)
        bar.stage("drawing")
        with timer("plots"):
            figures = make_plots(plan, tables, out / PLOT_DIR)
        bar.advance(note=f"{len(figures)} files")
        bar.close()
    with timer("tables: waiting for the writer"):
        writer.wait()
    if plan.make_report:
        from .report import write_report

        with timer("report"):
            write_report(plan, tables, figures, out / REPORT)
    atomic_write_json(out / TIMINGS, {"workers": plan.workers, **timer.as_dict()}, indent=2)
    man = read_json(out / MANIFEST)
    man["status"] = "complete"
    man["sessions"][-1]["finished"] = mf.now()
    man["sessions"][-1]["seconds"] = timer.as_dict()
    atomic_write_json(out / MANIFEST, man, indent=2)
    return out


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
    the middle block's output), plots, report, progress (True), runs_dir ("runs"), workers
    (threads for the analyses, default min(4, cores); the results do not depend on it).
    Raises StudyError, before any work, on bad input.
    """
    plan = prepare_study(model, corpus, out, **options)
    return execute(plan)
