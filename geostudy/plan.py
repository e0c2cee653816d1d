"""The plan of a study: every input validated and loaded once (model, tokenizer, corpus, token
ids, sites, options), before any work; and the model's config alone, for listing its sites.

`prepare_study` raises StudyError on any problem; it writes nothing but the (empty) run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

import gpt2np
from gpt2np.hub import HUB_ALIASES, looks_like_path
from gpt2np.loading import CONFIG_FILE, resolve_model_files

from .corpus import Corpus, Prompt, load_corpus, tokenize_corpus
from .errors import SiteError, StudyError
from .measure.estimators import EstimatorSettings
from .options import StudyOptions, resolve_attention_block, resolve_lens_gifs, resolve_scatter_site, validate_options
from .rundir import manifest as mf
from .rundir.folder import prepare_run_folder
from .rundir.layout import RunLayout, default_run_folder
from .runtime.progress import StageTimer
from .sites import Site, lens_site_names, resolve_sites

MIN_POINTS = 3  # kept tokens per prompt: fewer cannot even be centred and compared
_MODEL_ERRORS = (gpt2np.ModelNotFoundError, gpt2np.WeightsError, gpt2np.ConfigError, OSError, ValueError)


@dataclass
class StudyPlan:
    """Everything validated and loaded, before any work."""

    model: gpt2np.GPT2
    tokenizer: gpt2np.Tokenizer
    corpus: Corpus
    token_ids: list[np.ndarray]  # per prompt: (T,) int64
    kept: list[np.ndarray]  # per prompt: the positions analysed, (N,) int64
    sites: list[Site]  # in depth order
    lens_sites: list[str]  # where the logit lens reads the residual stream
    settings: EstimatorSettings  # per prompt
    pooled_settings: EstimatorSettings  # the pooled corpus
    drop_positions: tuple[int, ...]
    dtype: str
    lens_positions: int | None  # None: every kept position
    top_k: int
    focus: Prompt  # of the single-prompt figures
    attention_block: int
    scatter_site: str
    out: Path
    make_plots: bool
    make_report: bool
    model_info: dict  # the manifest's "model"
    tokenizer_info: dict  # the manifest's "tokenizer"
    fingerprint: dict  # what decides the results: a run folder belongs to one fingerprint
    progress: bool = True
    workers: int = 1
    timer: StageTimer = field(default_factory=StageTimer)
    tsne: bool = False  # draw the t-SNE figures
    lens_gif_prompts: tuple[str, ...] = ()  # prompts whose side-by-side logit-lens GIF is drawn
    cosine_gride: bool = False  # pooled GRIDE on unit rows as well (a second neighbour search per site)

    @property
    def cfg(self) -> gpt2np.GPT2Config:
        return self.model.cfg

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.out)

    # the run folder's paths, as the pipeline and the tests use them (see rundir/layout.py)
    def act_path(self, prompt_id: str) -> Path:
        return self.layout.act_path(prompt_id)

    def result_path(self, prompt_id: str) -> Path:
        return self.layout.result_path(prompt_id)

    def marker_path(self, prompt_id: str) -> Path:
        return self.layout.marker_path(prompt_id)

    def pooled_path(self, site: str) -> Path:
        return self.layout.pooled_path(site)

    def pooled_marker_path(self, site: str) -> Path:
        return self.layout.pooled_marker_path(site)

    def relative(self, path: Path) -> str:
        return self.layout.relative(path)


# --------------------------------------------------------------------------------------------
# The model and the tokenizer
# --------------------------------------------------------------------------------------------

def is_known_checkpoint(source) -> bool:
    """A released checkpoint's Hub name (its predictions mean something), not a local file."""
    return str(source) in HUB_ALIASES or str(source) in HUB_ALIASES.values()


def load_model(source, dtype: str) -> tuple[gpt2np.GPT2, dict]:
    """The model and the manifest's record of it. The files are found once (a Hub name is looked
    up once) and loaded from there; the dtype was checked with the options."""
    try:
        weights, config_file = resolve_model_files(source)
        model = gpt2np.load_model(weights, dtype=dtype, config=config_file)
    except _MODEL_ERRORS as err:
        raise StudyError(f"cannot load the model {str(source)!r}: {err}") from None
    info = {
        "source": str(source),
        "weights_file": str(Path(weights).resolve()),
        "weights_sha256": mf.sha256_file(weights),
        "config_file": str(Path(config_file).resolve()) if config_file else None,
        "config": dataclasses.asdict(model.cfg),
        "dtype": dtype,
        "known_checkpoint": is_known_checkpoint(source),
    }
    return model, info


def load_tokenizer(source) -> tuple[gpt2np.Tokenizer, dict]:
    try:
        tok = gpt2np.load_tokenizer(source)
    except (gpt2np.ModelNotFoundError, OSError, ValueError) as err:
        raise StudyError(
            f"cannot load a tokenizer from {str(source)!r}: {err}. Pass --tokenizer with a folder "
            "holding tokenizer.json (or vocab.json + merges.txt), or a Hub name such as gpt2"
        ) from None
    return tok, {"source": str(source), "vocab_size": tok.vocab_size}


def _config_from_header(path: Path) -> gpt2np.GPT2Config:
    """The shape of the model in a bare .safetensors file, from its header alone (no weights are
    read). The head count is not in the shapes and does not change the site names: a released
    size's count when the width is one of theirs, else GPT-2 small's when it divides the width."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k.removeprefix("transformer."): tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise StudyError(f"cannot read the header of {path}: {err}") from None
    try:
        d_vocab, d_model = shapes["wte.weight"]
        n_ctx = shapes["wpe.weight"][0]
        d_mlp = shapes["h.0.mlp.c_fc.weight"][1]
    except (KeyError, IndexError, ValueError):
        raise StudyError(f"{path} does not hold GPT-2 weights (no wte.weight, wpe.weight or h.0.mlp.c_fc.weight "
                         "of the usual shapes)") from None
    n_layer = len({k.split(".")[1] for k in shapes if k.startswith("h.")})
    heads = {p.d_model: p.n_head for p in gpt2np.PRESETS.values()}
    n_head = heads.get(d_model, 12 if d_model % 12 == 0 else 1)
    return gpt2np.GPT2Config(n_layer=n_layer, n_head=n_head, d_model=d_model, d_mlp=d_mlp, n_ctx=n_ctx, d_vocab=d_vocab)


def model_config(source) -> gpt2np.GPT2Config:
    """The model's config without loading its weights (for --list-sites, offline): a released
    checkpoint's preset, a folder's (or a model.safetensors' sibling) config.json, a bare
    .safetensors file's header shapes; another Hub repository's config.json (only that file is
    fetched)."""
    name = str(source)
    try:
        if not looks_like_path(name):
            alias = next((a for a, repo in HUB_ALIASES.items() if name in (a, repo)), None)
            if alias is not None:
                return gpt2np.PRESETS[alias]
            from gpt2np.hub import HubRepo, repo_id

            return gpt2np.GPT2Config.from_json_file(HubRepo(repo_id(name)).file(CONFIG_FILE))
        path = Path(name).expanduser()
        weights, config_file = resolve_model_files(path)
    except _MODEL_ERRORS as err:
        raise StudyError(f"cannot read the config of the model {name!r}: {err}") from None
    if config_file is not None:
        try:
            return gpt2np.GPT2Config.from_json_file(config_file)
        except gpt2np.ConfigError as err:
            raise StudyError(f"cannot read the config of the model {name!r}: {err}") from None
    return _config_from_header(weights)


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------

def _kept_positions(corpus: Corpus, token_ids: list[np.ndarray], drop: tuple[int, ...]) -> list[np.ndarray]:
    """Per prompt, the positions analysed; StudyError naming every prompt left with too few."""
    kept, short = [], []
    for p, t in zip(corpus, token_ids):
        k = np.array([i for i in range(t.size) if i not in drop], dtype=np.int64)
        if k.size < MIN_POINTS:
            short.append(f"{p.id} ({t.size} tokens, {k.size} left)")
        kept.append(k)
    if short:
        listed = "; ".join(short[:5]) + (f"; and {len(short) - 5} more" if len(short) > 5 else "")
        raise StudyError(
            f"every prompt needs at least {MIN_POINTS} tokens left after dropping positions {list(drop)}; "
            f"too short: {listed}. Lengthen or remove them, or drop fewer positions (--drop-positions)"
        )
    return kept


def _fingerprint(model_info: dict, corpus: Corpus, token_ids, site_names, opts: StudyOptions,
                 focus: Prompt, attention_block: int, scatter_site: str) -> dict:
    """Everything that decides the results (see rundir/manifest.py)."""
    return {
        "format": mf.FORMAT_VERSION,
        "model_sha256": model_info["weights_sha256"],
        "model_config": model_info["config"],
        "dtype": opts.dtype,
        "corpus_sha256": corpus.sha256(),
        "token_ids_sha256": mf.sha256_token_ids(token_ids),
        "sites": site_names,
        "estimators": opts.settings.as_dict(),
        "pooled_estimators": list(opts.pooled_settings.estimators),
        "drop_positions": list(opts.drop_positions),
        "lens_positions": opts.lens_positions,
        "top_k": opts.top_k,
        "focus": focus.id,
        "attention_block": attention_block,
        "scatter_site": scatter_site,
        # only when on, so that the default study's fingerprint (and folder name) stays as it was
        **({"cosine_gride": True} if opts.cosine_gride else {}),
    }


def prepare_study(
    model: str | Path = "gpt2",
    corpus: str | Path | None = None,
    out: str | Path | None = None,
    **options,
) -> StudyPlan:
    """Validate every input and load the model, tokenizer and corpus; no output is written
    except the (empty) run folder. Raises StudyError on any problem. The options are run_study's."""
    timer = StageTimer()
    with timer("validate inputs + load model"):
        opts = validate_options(**options)
        corp = load_corpus(corpus)
        mdl, model_info = load_model(model, opts.dtype)
        cfg = mdl.cfg
        tok, tok_info = load_tokenizer(opts.tokenizer if opts.tokenizer is not None else model)
        if tok.vocab_size > cfg.d_vocab:
            raise StudyError(
                f"the tokenizer has {tok.vocab_size} tokens but the model only {cfg.d_vocab}: they do not belong together"
            )
        try:
            site_list = resolve_sites(opts.sites, cfg)
        except StudyError as err:
            raise SiteError(str(err)) from None
        ids = tokenize_corpus(corp, tok, cfg.n_ctx)
        kept = _kept_positions(corp, ids, opts.drop_positions)
        focus = corp.by_id(opts.focus) if opts.focus is not None else corp[0]
        attention_block = resolve_attention_block(opts.attention_block, cfg.n_layer)
        names = [s.name for s in site_list]
        scatter_site = resolve_scatter_site(opts.scatter_site, names, cfg.n_layer)
        lens_gifs = resolve_lens_gifs(opts.lens_gifs, [p.id for p in corp], focus.id)
        fingerprint = _fingerprint(model_info, corp, ids, names, opts, focus, attention_block, scatter_site)
        if out is None:
            out = default_run_folder(opts.runs_dir, str(model), corp.name, mf.fingerprint_hash(fingerprint))
        out = Path(out).expanduser()
        prepare_run_folder(out, fingerprint)

    return StudyPlan(
        model=mdl, tokenizer=tok, corpus=corp, token_ids=ids, kept=kept, sites=site_list,
        lens_sites=lens_site_names(cfg), settings=opts.settings, pooled_settings=opts.pooled_settings,
        drop_positions=opts.drop_positions, dtype=opts.dtype, lens_positions=opts.lens_positions,
        top_k=opts.top_k, focus=focus, attention_block=attention_block, scatter_site=scatter_site,
        out=out, make_plots=opts.plots, make_report=opts.report, model_info=model_info, tokenizer_info=tok_info,
        fingerprint=fingerprint, progress=opts.progress, workers=opts.workers, timer=timer,
        tsne=opts.tsne, lens_gif_prompts=lens_gifs, cosine_gride=opts.cosine_gride,
    )
