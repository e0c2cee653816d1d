"""The plan of a corpus-scale study: every input validated and loaded once (model, tokenizer,
corpus stream, sequences, sites, partitions), before any work.

`prepare_scale_study` raises StudyError on any problem, before anything but the (empty) run
folder is written: a window over the model's context, a corpus smaller than one partition (with
how many sequences there are and how many are needed), a missing text column, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gpt2np

from ..errors import SiteError, StudyError
from ..options import integer_option, parse_drop_positions, parse_dtype
from ..plan import load_model, load_tokenizer
from ..rundir import manifest as mf
from ..rundir.folder import prepare_run_folder
from ..rundir.layout import DEFAULT_RUNS_DIR, default_run_folder
from ..runtime.progress import StageTimer
from ..runtime.threads import default_workers
from ..sites import EMBEDDINGS_SITE, Site, resolve_sites, site_width
from .analyses import ScaleSettings
from .forward import ModelSpec
from .layout import ScaleLayout
from .options import DEFAULT_SHARD_ROWS, ScaleOptions, validate_scale_options
from .partitions import PartitionPlan, draw_partitions, plan_partitions
from .sequences import SequenceSet, build_sequences
from .sources import DocumentSource, open_source
from .store_files import check_location

SCALE_FORMAT = "geostudy-scale-1"


@dataclass(frozen=True)
class ModelRun:
    """One model the protocol runs: the trained checkpoint, or its untrained control."""

    name: str  # "trained" or "untrained"
    spec: ModelSpec  # how any process loads it
    store: Path | str  # its activation store: a local folder or a URL (scale/layout.py)


@dataclass
class ScalePlan:
    """Everything validated and loaded, before any work."""

    model: gpt2np.GPT2  # the trained model (its config; the tasks load models from specs)
    tokenizer: gpt2np.Tokenizer
    source: DocumentSource
    corpus_spec: str  # the --corpus the user gave
    sequences: SequenceSet
    sites: list[Site]  # in depth order
    options: ScaleOptions
    drop_positions: tuple[int, ...]
    dtype: str
    runs: list[ModelRun]  # trained first
    partition_plan: PartitionPlan
    partition_of: np.ndarray  # (N,) int32: each sequence's partition, -1 if in none
    settings: ScaleSettings
    shard_rows: int
    out: Path
    make_plots: bool
    make_report: bool
    model_info: dict
    tokenizer_info: dict
    fingerprint: dict
    progress: bool = True
    workers: int = 1
    timer: StageTimer = field(default_factory=StageTimer)
    store: Path | str | None = None  # --store: the trained model's store when not in the run folder

    @property
    def cfg(self) -> gpt2np.GPT2Config:
        return self.model.cfg

    @property
    def layout(self) -> ScaleLayout:
        return ScaleLayout(self.out, self.store)

    @property
    def n_sequences(self) -> int:
        return int(self.sequences.lengths.size)

    def partition_rows(self, partition: int) -> np.ndarray:
        """The store rows of one partition, in increasing order."""
        return np.flatnonzero(self.partition_of == partition).astype(np.int64)

    def site_widths(self) -> dict[str, int]:
        return {s.name: site_width(s, self.cfg) for s in self.sites}


def default_scale_sites(cfg) -> list[str]:
    """The embeddings and every block's output: the residual stream the papers measure."""
    return [EMBEDDINGS_SITE] + [f"blocks.{i}.hook_resid_post" for i in range(cfg.n_layer)]


def _sites(spec, cfg) -> list[Site]:
    if spec is None or spec == "default" or spec == ["default"]:
        spec = default_scale_sites(cfg)
    try:
        return resolve_sites(spec, cfg)
    except StudyError as err:
        raise SiteError(str(err)) from None


def _check_window(window: int | None, cfg) -> None:
    if window is not None and window > cfg.n_ctx:
        raise StudyError(f"--window {window} is longer than the model's context of {cfg.n_ctx} tokens; use at most {cfg.n_ctx}")


def _check_positions(opts: ScaleOptions, drop: tuple[int, ...], sequences: SequenceSet) -> None:
    """`mean` needs a kept position in every sequence; `last` reads the last one, whatever is dropped."""
    if opts.represent != "mean" or not drop:
        return
    shortest = int(sequences.lengths.min())
    kept = [p for p in range(shortest) if p not in drop]
    if not kept:
        raise StudyError(
            f"the shortest sequence has {shortest} tokens and positions {list(drop)} are dropped: its mean would be over "
            "no position; drop fewer positions (--drop-positions) or use a longer --window / --remainder drop"
        )


def _fingerprint(model_info, source, sequences, sites, opts, drop, dtype, pplan, settings, shard_rows) -> dict:
    """Everything that decides the results (a run folder belongs to one fingerprint)."""
    return {
        "format": SCALE_FORMAT,
        "model_sha256": model_info["weights_sha256"],
        "model_config": model_info["config"],
        "dtype": dtype,
        "source": source.fingerprint(),
        "sequences_sha256": sequences.sha256(),
        "sites": [s.name for s in sites],
        "represent": opts.represent,
        "window": opts.window,
        "remainder": opts.remainder,
        "max_sequences": opts.max_sequences,
        "seed": opts.seed,
        "drop_positions": list(drop),
        "batch_size": opts.batch_size,
        "shard_rows": shard_rows,
        "partitions": pplan.partitions,
        "partition_size": pplan.size,
        "settings": settings.as_dict(),
        "untrained": opts.untrained,
    }


def prepare_scale_study(model="gpt2", corpus=None, out=None, *, tokenizer=None, sites=None, drop_positions=(0,),
                        dtype="float32", plots=True, report=True, progress=True, runs_dir=DEFAULT_RUNS_DIR,
                        workers=None, shard_rows=DEFAULT_SHARD_ROWS, settings: ScaleSettings | None = None,
                        store=None, **scale_options) -> ScalePlan:
    """Validate every input, stream the corpus into sequences and draw the partitions; nothing
    is written but the (empty) run folder. Raises StudyError on any problem. store: where the
    trained model's activation store goes, a local path or an fsspec URL the workers share
    (default: <run folder>/activations.zarr; the untrained control's goes beside it, see
    scale/layout.py). scale_options are validate_scale_options' (represent, window, remainder,
    max_sequences, seed, text_column, split, partitions, partition_size, batch_size, untrained)."""
    timer = StageTimer()
    with timer("validate inputs + load model"):
        opts = validate_scale_options(**scale_options)
        store = None if store is None else check_location(store)
        drop = parse_drop_positions(drop_positions)
        dtype = parse_dtype(dtype)
        n_workers = integer_option(default_workers() if workers is None else workers, "workers", "a positive integer", 1)
        shard_rows = integer_option(shard_rows, "shard_rows", "a positive integer", 1)
        if corpus is None:
            raise StudyError("the corpus-scale protocol needs a corpus (--corpus): a .jsonl, .json, .parquet file or folder, "
                             "a folder of .txt files, or hf:<dataset name>")
        source = open_source(corpus, text_column=opts.text_column, split=opts.split)
        mdl, model_info = load_model(model, dtype)
        cfg = mdl.cfg
        _check_window(opts.window, cfg)
        tok, tok_info = load_tokenizer(tokenizer if tokenizer is not None else model)
        if tok.vocab_size > cfg.d_vocab:
            raise StudyError(f"the tokenizer has {tok.vocab_size} tokens but the model only {cfg.d_vocab}: they do not belong together")
        site_list = _sites(sites, cfg)
    with timer("read corpus into sequences"):
        seqs = build_sequences(source, tok, window=opts.window, remainder=opts.remainder,
                               max_sequences=opts.max_sequences, seed=opts.seed, n_ctx=cfg.n_ctx)
        _check_positions(opts, drop, seqs)
        pplan = plan_partitions(int(seqs.lengths.size), opts.partitions, opts.partition_size)
        partition_of = draw_partitions(int(seqs.lengths.size), pplan, opts.seed)
    settings = settings or ScaleSettings()
    fingerprint = _fingerprint(model_info, source, seqs, site_list, opts, drop, dtype, pplan, settings, shard_rows)
    if out is None:
        out = default_run_folder(Path(runs_dir), str(model), f"{source.name}-{opts.represent}", mf.fingerprint_hash(fingerprint))
    out = Path(out).expanduser()
    prepare_run_folder(out, fingerprint)

    layout = ScaleLayout(out, store)
    config_file = model_info["config_file"]
    runs = [ModelRun("trained", ModelSpec(weights=model_info["weights_file"], config=config_file, dtype=dtype),
                     layout.store_location("trained"))]
    if opts.untrained:
        runs.append(ModelRun("untrained", ModelSpec(weights=None, config=config_file, dtype=dtype, untrained_seed=opts.seed,
                                                    cfg=cfg), layout.store_location("untrained")))
    return ScalePlan(
        model=mdl, tokenizer=tok, source=source, corpus_spec=str(corpus), sequences=seqs, sites=site_list, options=opts,
        drop_positions=drop,
        dtype=dtype, runs=runs, partition_plan=pplan, partition_of=partition_of, settings=settings, shard_rows=shard_rows,
        out=out, make_plots=bool(plots), make_report=bool(report), model_info=model_info, tokenizer_info=tok_info,
        fingerprint=fingerprint, progress=bool(progress), workers=n_workers, timer=timer, store=store,
    )
