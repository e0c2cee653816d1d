"""The corpus-scale study's report: a self-contained HTML page (figures embedded as data URIs)
that explains the protocol with its sources, states what was run (N, P, n, the window, the
representation, GRIDE's scale rule), tabulates the partition means per site, and says what the
numbers show in sentences computed from them (`findings`). Every text is escaped; links point
only to files of the run folder, by relative paths."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StudyError
from ..rundir.fsio import atomic_write_text
from ..rundir.layout import MANIFEST, TABLE_DIR, TIMINGS
from ..sites import EMBEDDINGS_SITE, Site
from .report import CSS, html_table
from .scale_figures import (
    ESTIMATORS,
    PAIR_COLUMNS,
    TRAINED,
    UNTRAINED,
    ScaleTables,
    Summary,
    pair_matrix,
    pca_level,
)

REPRESENTATIONS = ("last", "mean")
REMAINDERS = ("drop", "keep")
TABLE_FILES = ("results", "overlap", "cka", "partitions", "spectra", "skipped")
_P = {c: i for i, c in enumerate(PAIR_COLUMNS)}
_NAMES = dict(ESTIMATORS)
ROUNDING = 1e-9  # a spread below this fraction of the values is rounding: partitions that agree
_REPRESENT_WORDS = {"last": "its last token", "mean": "the mean over its positions"}
_HEADLINE_ORDER = ("id_gride_auto", "id_twonn", "id_mle")  # the estimator the findings lead with, when present

REFERENCES = {
    "cheng": ("E. Cheng, D. Doimo, C. Kervadec, I. Macocco, L. Yu, A. Laio, M. Baroni. Emergence of a "
              "high-dimensional abstraction phase in language transformers. ICLR 2025."),
    "valeriani": ("L. Valeriani, D. Doimo, F. Cuturello, A. Laio, A. Ansuini, A. Cazzaniga. The geometry of hidden "
                  "representations of large transformer models. NeurIPS 2023."),
    "ansuini": ("A. Ansuini, A. Laio, J. H. Macke, D. Zoccolan. Intrinsic dimension of data representations in deep "
                "neural networks. NeurIPS 2019."),
    "denti": ("F. Denti, D. Doimo, A. Laio, A. Mira. The generalized ratios intrinsic dimension estimator. Scientific "
              "Reports 12, 20005 (2022)."),
    "kornblith": ("S. Kornblith, M. Norouzi, H. Lee, G. Hinton. Similarity of neural network representations "
                  "revisited. ICML 2019."),
}


@dataclass(frozen=True)
class ScaleReportInfo:
    """What the report says about the run (everything but the result tables)."""

    model: str  # the model's name or path, as given
    source: str  # the corpus, in words: DocumentSource.description
    n_documents: int
    n_candidates: int  # sequences the corpus gave before duplicates were removed and sampling
    n_duplicates: int  # identical sequences removed
    n_sequences: int  # sequences analysed (after sampling)
    window: int | None  # tokens per sequence; None: a document is one sequence
    remainder: str  # "drop" or "keep"
    represent: str  # "last" or "mean"
    partitions: int  # P
    partition_size: int  # n
    partition_note: str  # how P and n were chosen (PartitionPlan.note)
    seed: int
    gride_rule: str  # how GRIDE's scale is chosen (the analyses' documented rule), in words
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage
    versions: Mapping[str, str] = field(default_factory=dict)  # package -> version
    date: str = ""
    untrained_seed: int | None = None  # the untrained control's seed, None without one
    drop_positions: tuple[int, ...] = ()  # positions left out of the mean
    max_sequences: int | None = None

    def __post_init__(self):
        if self.represent not in REPRESENTATIONS:
            raise StudyError(f"the scale report is for the 'last' and 'mean' representations, got {self.represent!r}")
        if self.remainder not in REMAINDERS:
            raise StudyError(f"remainder must be 'drop' or 'keep', got {self.remainder!r}")
        counts = ("n_documents", "n_candidates", "n_duplicates", "n_sequences", "partitions", "partition_size")
        for name in counts:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise StudyError(f"ScaleReportInfo.{name} must be a count (an int >= 0), got {v!r}")


# ---------------------------------------------------------------------------------------------
# Numbers as text


def fmt(v, digits: int = 2) -> str:
    """A number for the report: fixed `digits` decimals in [0.01, 1e5), else 3 significant digits."""
    if v is None:
        return ""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == 0 or 0.01 <= abs(v) < 1e5:
        return f"{v:.{digits}f}"
    return f"{v:.3g}"


def fmt_std(v: float, digits: int = 2) -> str:
    """A spread: with the mean's fixed decimals when below 1e5 (a spread at rounding level,
    such as 4e-15 across identical partitions, reads 0.00), else 3 significant digits."""
    return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}"


def fmt_summary(s: Summary | None) -> str:
    """"mean ± std", or the mean alone when there is no spread (one partition)."""
    if s is None:
        return ""
    return fmt(s.mean) + (f" ± {fmt_std(s.std)}" if math.isfinite(s.std) else "")


def _sentence(text: str) -> str:
    """Text given by the caller, ended with a full stop when it has none."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _e(x) -> str:
    return html.escape(str(x))


# ---------------------------------------------------------------------------------------------
# What we found: every sentence computed from the tables


def site_words(site: Site) -> str:
    """A site as a sentence names it: "the embeddings", "the output of block 5", "block 5's attn out"."""
    if site.name == EMBEDDINGS_SITE:
        return "the embeddings"
    if site.block < 0 or site.sublayer.startswith("ln_final"):
        return f"the {site_words(site)}"
    if site.sublayer == "hook_resid_post":
        return f"the output of block {site.block}"
    return f"block {site.block}'s {site.short}"


def _profile(tables: ScaleTables, model: str, quantity: str) -> list[tuple[int, Site, Summary]]:
    out = []
    for i, s in enumerate(tables.sites):
        got = tables.index.summary(model, s.name, quantity)
        if got is not None:
            out.append((i, s, got))
    return out


def headline_estimator(tables: ScaleTables) -> str | None:
    """GRIDE at its automatic scale when computed, else TwoNN, else MLE."""
    model = tables.models[0] if tables.models else None
    return next((q for q in _HEADLINE_ORDER if model and _profile(tables, model, q)), None)


def _peak(profile):
    return max(profile, key=lambda t: (t[2].mean, -t[0]))  # ties: the earliest site


def _where(i: int, n: int) -> str:
    if n < 3:
        return f"site {i + 1} of {n}"
    third = ("in the first third of the network", "in the middle third of the network", "in the last third of the network")
    return f"site {i + 1} of {n}, {third[min(2, 3 * i // n)]}"


def _peak_sentences(tables: ScaleTables, quantity: str) -> list[str]:
    profile = _profile(tables, TRAINED if TRAINED in tables.models else tables.models[0], quantity)
    model = TRAINED if TRAINED in tables.models else tables.models[0]
    n = len(tables.sites)
    i, site, top = _peak(profile)
    out = [f"With {_NAMES[quantity]}, the {model} model's intrinsic dimension is highest at {site_words(site)} "
           f"({_where(i, n)}): {fmt_summary(top)}."]
    first_i, first_site, first = profile[0]
    low_i, low_site, low = min(profile, key=lambda t: (t[2].mean, t[0]))
    if i != first_i and first.mean > 0:
        lowest = ("the lowest of the profile" if low_i == first_i else
                  f"the lowest value is {fmt_summary(low)}, at {site_words(low_site)}")
        out.append(f"That is {top.mean / first.mean:.2f} times its value at {site_words(first_site)} "
                   f"({fmt_summary(first)}); {lowest}.")
    elif len(profile) > 1:
        out.append(f"It falls from there to {fmt_summary(low)}, at {site_words(low_site)}.")
    others = [q for q, _ in ESTIMATORS if q != quantity and _profile(tables, model, q)]
    if others:
        peaks = {q: _peak(_profile(tables, model, q)) for q in others}
        if all(p[0] == i for p in peaks.values()):
            out.append(f"{' and '.join(_NAMES[q] for q in others)} peak at the same site "
                       f"({'; '.join(f'{_NAMES[q]} {fmt_summary(p[2])}' for q, p in peaks.items())}).")
        else:
            out.append("The estimators disagree on where the peak is: "
                       + "; ".join(f"{_NAMES[q]} peaks at {site_words(p[1])} ({fmt_summary(p[2])})" for q, p in peaks.items())
                       + ".")
    return out


def _untrained_sentences(tables: ScaleTables, quantity: str) -> list[str]:
    trained, untrained = _profile(tables, TRAINED, quantity), _profile(tables, UNTRAINED, quantity)
    if not trained or not untrained:
        return []
    i, site, top = _peak(trained)
    at = {j: s for j, _, s in untrained}
    out = []
    if i in at:
        u = at[i]
        diff = top.mean - u.mean
        sentence = f"At {site_words(site)} the untrained control measures {fmt_summary(u)}"
        if diff:
            sentence += f": the trained model is {fmt(abs(diff))} {'higher' if diff > 0 else 'lower'}"
        else:
            sentence += ", the same as the trained model"
        spread = math.hypot(top.std, u.std)
        if diff and math.isfinite(spread) and spread > ROUNDING * max(abs(top.mean), abs(u.mean)):
            sentence += (f", {abs(diff) / spread:.1f} times the two models' standard deviations across partitions "
                         "combined (the square root of the sum of their squares)")
        elif diff and math.isfinite(spread):
            sentence += ", while each model's partitions give the same value to rounding error"
        out.append(sentence + ".")
    ui, usite, utop = _peak(untrained)
    lo_t, hi_t = min(t[2].mean for t in trained), max(t[2].mean for t in trained)
    lo_u, hi_u = min(t[2].mean for t in untrained), max(t[2].mean for t in untrained)
    out.append(f"The untrained control's own profile is highest at {site_words(usite)} ({fmt_summary(utop)}) and spans "
               f"{fmt(lo_u)} to {fmt(hi_u)} across sites, against {fmt(lo_t)} to {fmt(hi_t)} for the trained model.")
    return out


def _consecutive(tables: ScaleTables, rows, model: str) -> list[tuple[float, Site, Site]]:
    mat = pair_matrix(rows, model, tables.sites)
    s = tables.sites
    return [(float(mat[k, k + 1]), s[k], s[k + 1]) for k in range(len(s) - 1) if np.isfinite(mat[k, k + 1])]


def _pair_sentences(tables: ScaleTables, rows, what: str) -> list[str]:
    models = [m for m in tables.models if any(r[_P["model"]] == m for r in rows)]
    if not models:
        return []
    steps = {m: _consecutive(tables, rows, m) for m in models}
    if not steps[models[0]]:
        return []
    m = models[0]
    mean = float(np.mean([v for v, _, _ in steps[m]]))
    low, a, b = min(steps[m], key=lambda t: t[0])
    sentence = (f"{what} between consecutive sites averages {fmt(mean)} for the {m} model; it is lowest between "
                f"{site_words(a)} and {site_words(b)} ({fmt(low)})")
    if len(models) > 1 and steps[models[1]]:
        sentence += f"; for the {models[1]} model it averages {fmt(float(np.mean([v for v, _, _ in steps[models[1]]])))}"
    return [sentence + "."]


def findings(tables: ScaleTables) -> list[str]:
    """The "what we found" sentences, each computed from the tables (none when there are no ID values)."""
    quantity = headline_estimator(tables)
    if quantity is None:
        return []
    out = _peak_sentences(tables, quantity) + _untrained_sentences(tables, quantity)
    out += _pair_sentences(tables, tables.overlap, "The neighbourhood overlap")
    out += _pair_sentences(tables, tables.cka, "Linear CKA")
    return out


# ---------------------------------------------------------------------------------------------
# The page


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _site_table(tables: ScaleTables, model: str) -> str:
    """The "partitions" row of each site: mean ± std across partitions."""
    level = pca_level(tables)
    idx = tables.index
    headers = ["site", "name", "TwoNN", "MLE", "GRIDE (auto)", "GRIDE n1"]
    if level is not None:
        headers.append(f"PCA {level:.0%}")
    headers.append("participation ratio")
    rows = []
    for s in tables.sites:
        auto = idx.summary(model, s.name, "id_gride_auto")
        row = [_e(s.label), f"<code>{_e(s.name)}</code>", fmt_summary(idx.summary(model, s.name, "id_twonn")),
               fmt_summary(idx.summary(model, s.name, "id_mle")), fmt_summary(auto),
               _e(auto.param) if auto is not None and auto.param is not None else ""]
        if level is not None:
            row.append(fmt_summary(idx.summary(model, s.name, "pca_components", level)))
        row.append(fmt_summary(idx.summary(model, s.name, "pca_participation_ratio")))
        rows.append(row)
    return html_table(headers, rows, left=2, cls=f"sites {model}")


def _partition_table(tables: ScaleTables) -> str:
    p = tables.partitions
    rows = [[f"partition-{i}", str(size), fmt(mean)] for i, (size, mean) in enumerate(zip(p.sizes, p.mean_lengths))]
    return html_table(["partition", "sequences", "mean tokens per sequence"], rows, cls="partitions")


def _links(out: Path) -> str:
    items = []
    for name in TABLE_FILES:
        for ext in ("csv", "json"):
            if (out / TABLE_DIR / f"{name}.{ext}").is_file():
                rel = f"{TABLE_DIR}/{name}.{ext}"
                items.append(f'<a href="{_e(rel)}">{_e(rel)}</a>')
    for name in (MANIFEST, TIMINGS):
        if (out / name).is_file():
            items.append(f'<a href="{_e(name)}">{_e(name)}</a>')
    return " · ".join(items) if items else "(no table files next to this report)"


def _window_text(info: ScaleReportInfo) -> str:
    if info.window is None:
        cut = "Each document is one sequence"
        rest = (" (a document longer than the model's context is cut to it, and the rest "
                + ("dropped)" if info.remainder == "drop" else "kept as further, shorter sequences)"))
    else:
        cut = f"Each document's tokens are cut into consecutive windows of exactly {info.window} tokens"
        rest = ("; the last, shorter piece of each document (and any document shorter than the window) is dropped"
                if info.remainder == "drop" else
                "; the last, shorter piece of each document is kept as a shorter sequence (right-padded in the batch)")
    return cut + rest + "."


def _represent_text(info: ScaleReportInfo) -> str:
    if info.represent == "last":
        return ("<b>last</b>: each sequence is one point, the hidden state at its last token (the state from which "
                "the model predicts the next token, having read the whole sequence), as Cheng et al. do")
    drop = (f", leaving out positions {_e(list(info.drop_positions))}" if info.drop_positions else "")
    return ("<b>mean</b>: each sequence is one point, the mean of its hidden states over its positions"
            f"{drop}, as Valeriani et al. do")


def _what_was_run(info: ScaleReportInfo, tables: ScaleTables, out: Path) -> str:
    sample = (f"a uniform sample of {info.n_sequences} of them without replacement (reservoir sampling, seed "
              f"{info.seed}), kept in corpus order" if info.max_sequences is not None and info.n_sequences <
              info.n_candidates - info.n_duplicates else f"all {info.n_sequences} of them")
    untrained = ("" if info.untrained_seed is None else
                 f" The untrained control is the same configuration with GPT-2's initialisation, seed "
                 f"{info.untrained_seed}.")
    s = tables.sites
    return (
        f"<p>Model: <code>{_e(info.model)}</code>. Corpus: {_e(info.source)}: {info.n_documents} documents gave "
        f"{info.n_candidates} candidate sequences; {info.n_duplicates} identical sequences were removed (the first "
        f"of each kept), and the study uses {sample}: <b>N = {info.n_sequences}</b> sequences. "
        f"{_e(_window_text(info))} Window: <b>{_e(info.window if info.window is not None else 'none')}</b>; "
        f"remainder: <b>{_e(info.remainder)}</b>. Representation: {_represent_text(info)}. "
        f"<b>P = {info.partitions}</b> disjoint partitions of <b>n = {info.partition_size}</b> sequences each "
        f"(seed {info.seed}): {_e(_sentence(info.partition_note))} "
        f"{len(s)} sites, from <em>{_e(s[0].label)}</em> to <em>{_e(s[-1].label)}</em>.{untrained} "
        f"GRIDE's scale rule: {_e(_sentence(info.gride_rule))}</p>"
        f"<p>Files of this run: {_links(out)}.</p>"
    )


def _protocol(info: ScaleReportInfo, tables: ScaleTables) -> str:
    k = f"k = {tables.overlap_k}" if tables.overlap_k else "k"
    return (
        "<p>This is the protocol of the papers that measure a layer's intrinsic dimension (ID) in language "
        "models [1, 2], not the token-cloud study: <b>one point per sequence</b>. A corpus is cut into sequences "
        "of a fixed number of tokens (Cheng et al. [1] use 20), identical sequences are removed (a repeated point "
        "has a nearest-neighbour distance of zero, which the neighbour-ratio estimators cannot use), and each "
        "sequence becomes one vector per site: the state at its last token [1] or the mean over its positions "
        "[2]. The sequences are drawn into P disjoint <b>partitions</b> of n (Cheng et al.: 5 of 10,000); every "
        "estimate is made on each partition separately and reported as the mean over partitions, with the "
        "standard deviation across them as the error bar: a spread that shows how much the number depends on "
        "which sequences were drawn, beyond each estimator's own statistical error.</p>"
        "<p>On each partition: <b>TwoNN</b> (with its standard error), <b>MLE</b>, <b>GRIDE</b> [4] at neighbour "
        "orders n1 = 1, 2, 4, … (n2 = 2·n1), which sees the ID at growing length scales (at the smallest scales "
        "noise inflates it), and <b>PCA</b> (components for 75–95% of the variance, participation ratio), a "
        "linear notion of dimension. GRIDE's headline scale is chosen automatically, site by site, where ID "
        f"against scale is flattest — here: {_e(_sentence(info.gride_rule))} The fixed scales are kept beside it.</p>"
        f"<p>Layers are compared with each other in two ways. The <b>neighbourhood overlap</b> [2]: for two "
        f"sites, the fraction of each sequence's {k} nearest neighbours that are the same sequences at both "
        "sites, averaged over sequences (1: the two sites arrange the sequences alike at small scales; from the "
        "neighbour lists the ID estimators already computed). <b>Linear CKA</b> [5]: centred kernel alignment of "
        "the two sites' representations, a similarity of their global linear structure, invariant to rotations "
        "and isotropic scaling. Both are computed per partition and averaged.</p>"
        "<p>The <b>untrained control</b> [3] runs the same study on a GPT-2 of the same configuration with GPT-2's "
        "initialisation (weights normal with standard deviation 0.02, the residual output projections scaled by "
        "1/√(2·n_layer), LayerNorms at 1 and 0), built in NumPy from a seed: what the architecture alone does to "
        "the geometry, without learning. Ansuini et al. [3] found the hunchback ID profile of trained networks "
        "absent in untrained ones.</p>"
    )


def _references() -> str:
    order = ("cheng", "valeriani", "ansuini", "denti", "kornblith")
    return "<ol class=\"references\">" + "".join(f"<li>{_e(REFERENCES[k])}</li>" for k in order) + "</ol>"


def _kv_table(title: str, items: Mapping, unit: str = "", value_title: str = "value") -> str:
    rows = []
    for k, v in items.items():
        if isinstance(v, Mapping):
            v = ", ".join(f"{a}: {fmt(b) if isinstance(b, (int, float)) else b}" for a, b in v.items())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = fmt(v) + unit
        rows.append([_e(k), _e(v)])
    return html_table([title, value_title], rows)


def scale_section_html(info: ScaleReportInfo, tables: ScaleTables, figures: Mapping[str, tuple[Path, str]],
                       out: Path) -> str:
    """The report's body (no <html> wrapper), for this page or another; `out`: the folder the
    page is in (links are relative to it)."""
    fig = {k: _img(p, c) for k, (p, c) in figures.items()}

    def f(*keys: str) -> str:
        return "".join(fig[k] for k in keys if k in fig)

    found = findings(tables)
    models = tables.models
    site_tables = "".join(
        f"<h3>{'Trained model' if m == TRAINED else 'Untrained control'}: mean ± std across partitions</h3>"
        + _site_table(tables, m) for m in models)
    p = tables.partitions
    mismatch = ("" if not p.sizes or (len(p.sizes) == info.partitions and set(p.sizes) == {info.partition_size}) else
                f'<p class="note">The plan was P = {info.partitions} partitions of n = {info.partition_size}, but '
                f"tables/partitions.csv holds {len(p.sizes)} partitions of {_e(sorted(set(p.sizes)))} sequences.</p>")
    parts = [
        "<h2>What was run</h2>", _what_was_run(info, tables, Path(out)),
        "<h2>The protocol</h2>", _protocol(info, tables),
        "<h2>What we found</h2>",
        "<p class=\"findings\">" + " ".join(_e(s) for s in found) + "</p>" if found else
        "<p class=\"findings\">No intrinsic-dimension value was computed, so there is nothing to summarise.</p>",
        "<h2>Intrinsic dimension per site</h2>", f("scale_id", "scale_gride"), site_tables,
        "<h2>Principal components</h2>", f("scale_pca"),
        "<h2>Comparing sites</h2>", f("scale_overlap", "scale_cka") or "<p>No overlap or CKA table.</p>",
        "<h2>Partitions</h2>",
        f"<p>{len(p.sizes)} partitions from <code>tables/partitions.csv</code>; {p.unused} sequences in none.</p>",
        mismatch, _partition_table(tables),
        "<h2>Time, versions</h2>",
        _kv_table("stage", info.timings, "", "seconds") if info.timings else "",
        _kv_table("package", info.versions, "", "version") if info.versions else "",
        f"<p>Written {_e(info.date)}.</p>" if info.date else "",
        "<h2>References</h2>", _references(),
    ]
    return "\n".join(x for x in parts if x)


def write_scale_report(info: ScaleReportInfo, tables: ScaleTables, figures: Mapping[str, tuple[Path, str]],
                       path: Path) -> None:
    """Write the self-contained page to `path` (figures: make_scale_plots' answer, or {} without plots)."""
    path = Path(path)
    title = f"Corpus-scale geometry of {info.model}"
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>", f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}: one point per sequence ({_e(_REPRESENT_WORDS[info.represent])})</h1>",
        scale_section_html(info, tables, figures, path.parent),
        "</body></html>",
    ])
    atomic_write_text(path, page)
