"""Every option of the study, parsed and checked once, before anything is loaded.

`validate_options` turns what a caller passed (Python values, or the command line's strings)
into a `StudyOptions` of checked values, raising StudyError with what was wrong and what is
accepted. The checks that need the model or the corpus (the attention block's range, the
scatter site, the focus prompt) are the functions at the end, called by plan.py with them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import SiteError, StudyError
from .measure.estimators import ESTIMATORS, EstimatorSettings
from .rundir.layout import DEFAULT_RUNS_DIR
from .runtime.threads import default_workers

DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"
DEFAULT_DROP_POSITIONS = (0,)  # GPT-2's first position is an attention sink, an outlier
DEFAULT_LENS_POSITIONS = 32
DEFAULT_TOP_K = 10
MAX_TOP_K = 100
LENS_GIFS_CHOICES = ("focus", "all")  # or comma-separated prompt ids, checked against the corpus in plan.py


def integer_option(value, name: str, requirement: str, low: int, high: int | None = None) -> int:
    """`value` as an int in low..high (high None: no upper bound), else StudyError
    "<name> must be <requirement>, got <value>". A string of digits (from the command line) is
    read as the integer it spells; a bool is not an integer here."""
    number = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < low or (high is not None and number > high):
        raise StudyError(f"{name} must be {requirement}, got {value!r}")
    return int(number)


def parse_estimators(spec, what: str) -> tuple[str, ...]:
    """None or 'all': every estimator; 'none' or empty: none; else a list or comma-separated
    names, returned in ESTIMATORS' order."""
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


def parse_drop_positions(spec) -> tuple[int, ...]:
    """None, 'none' or '': no position; an int, a list of ints, or comma-separated integers."""
    if spec is None:
        return ()
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "none"):
            return ()
        try:
            spec = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise StudyError(f"positions to drop must be comma-separated integers or 'none', got {text!r}") from None
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = [spec]
    positions = {integer_option(p, "positions to drop", "integers >= 0 (0 is the first token)", 0) for p in spec}
    return tuple(sorted(positions))


def parse_lens_positions(value) -> int | None:
    """None or 'all': every position; else an integer >= 0 (0: no all-positions summary)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    return integer_option(value, "lens_positions", "an integer >= 0 (0: no all-positions summary) or None (all)", 0)


def parse_lens_gifs(value) -> str | tuple[str, ...]:
    """'focus' (the default: one GIF), 'all' (every prompt), 'none', or prompt ids (a list, or
    comma-separated); the ids are checked against the corpus by plan.py."""
    if value is None:
        return "focus"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in LENS_GIFS_CHOICES + ("none",):
            return text.lower()
        value = [s.strip() for s in text.split(",") if s.strip()]
    ids = tuple(str(v) for v in value)
    if not ids:
        raise StudyError("lens_gifs must be 'focus', 'all', 'none' or prompt ids (comma-separated), got an empty list")
    return ids


def parse_dtype(value) -> str:
    if value not in DTYPES:
        raise StudyError(f"dtype must be {' or '.join(map(repr, DTYPES))}, got {value!r}")
    return value


@dataclass(frozen=True)
class StudyOptions:
    """The checked options (see run_study for what each means)."""

    tokenizer: str | Path | None
    sites: object  # resolved against the model by sites.resolve_sites
    settings: EstimatorSettings  # per prompt
    pooled_settings: EstimatorSettings  # the pooled corpus
    drop_positions: tuple[int, ...]
    dtype: str
    lens_positions: int | None
    top_k: int
    focus: str | None
    attention_block: object  # None (the middle block) or an integer, checked against the model
    scatter_site: str | None
    plots: bool
    report: bool
    progress: bool
    runs_dir: Path
    workers: int
    tsne: bool = False  # the t-SNE figures (scikit-learn; seconds per cloud)
    lens_gifs: str | tuple[str, ...] = "focus"  # whose logit-lens GIF is drawn (parse_lens_gifs)
    cosine_gride: bool = False  # GRIDE of the pooled corpus on unit rows too: a second neighbour search per site


def validate_options(
    *,
    tokenizer=None,
    sites=None,
    estimators=None,
    pooled_estimators=None,
    drop_positions=DEFAULT_DROP_POSITIONS,
    dtype: str = DEFAULT_DTYPE,
    lens_positions=DEFAULT_LENS_POSITIONS,
    top_k=DEFAULT_TOP_K,
    focus: str | None = None,
    attention_block=None,
    scatter_site: str | None = None,
    plots: bool = True,
    report: bool = True,
    progress: bool = True,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    workers=None,
    settings: EstimatorSettings | None = None,
    tsne: bool = False,
    lens_gifs="focus",
    cosine_gride: bool = False,
) -> StudyOptions:
    """Check every option that can be checked without the model; StudyError on the first problem."""
    chosen = parse_estimators(estimators, "estimator")
    pooled = chosen if pooled_estimators is None else parse_estimators(pooled_estimators, "pooled estimator")
    drop = parse_drop_positions(drop_positions)
    lens = parse_lens_positions(lens_positions)
    n_workers = integer_option(default_workers() if workers is None else workers, "workers", "a positive integer", 1)
    k = integer_option(top_k, "top_k", f"an integer between 1 and {MAX_TOP_K}", 1, MAX_TOP_K)
    base = settings or EstimatorSettings()
    return StudyOptions(
        tokenizer=tokenizer, sites=sites, settings=replace(base, estimators=chosen),
        pooled_settings=replace(base, estimators=pooled), drop_positions=drop, dtype=parse_dtype(dtype),
        lens_positions=lens, top_k=k, focus=focus, attention_block=attention_block, scatter_site=scatter_site,
        plots=bool(plots), report=bool(report), progress=bool(progress), runs_dir=Path(runs_dir), workers=n_workers,
        tsne=bool(tsne), lens_gifs=parse_lens_gifs(lens_gifs), cosine_gride=bool(cosine_gride),
    )


def resolve_attention_block(value, n_layer: int) -> int:
    """None: the middle block; else a block index of the model."""
    if value is None:
        return n_layer // 2
    return integer_option(value, "attention_block", f"a block index in 0..{n_layer - 1}", 0, n_layer - 1)


def resolve_lens_gifs(value: str | tuple[str, ...], prompt_ids: list[str], focus_id: str) -> tuple[str, ...]:
    """The prompts whose logit-lens GIF is drawn, in corpus order."""
    if value == "focus":
        return (focus_id,)
    if value == "all":
        return tuple(prompt_ids)
    if value == "none":
        return ()
    unknown = [v for v in value if v not in prompt_ids]
    if unknown:
        raise StudyError(f"lens_gifs names prompts the corpus does not have: {', '.join(map(repr, unknown[:5]))}; "
                         "give prompt ids of the corpus, 'focus', 'all' or 'none'")
    return tuple(p for p in prompt_ids if p in value)


def resolve_scatter_site(value: str | None, site_names: list[str], n_layer: int) -> str:
    """None: the middle block's output if analysed, else the deepest site; else one of the sites."""
    if value is None:
        middle = f"blocks.{n_layer // 2}.hook_resid_post"
        return middle if middle in site_names else site_names[-1]
    if value not in site_names:
        raise SiteError(f"the scatter site {value!r} is not among the analysed sites; add it to the sites or pick one of them")
    return value
