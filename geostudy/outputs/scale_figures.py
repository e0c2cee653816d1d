"""The corpus-scale study's figures (one point per sequence, numbers per partition): ID per
layer with partition error bars, GRIDE against scale, PCA per layer, and the overlap and CKA
site x site matrices. `make_scale_plots` draws them and returns {key: (path, caption)} for the
report (scale_report.py).

The tables come in as a `ScaleTables`: the rows of tables/results.csv (RESULT_COLUMNS with
"model" first), overlap.csv and cka.csv, a summary of partitions.csv, and the sites in depth
order. Every figure is laid out with a fixed size and no cropping (the same bytes for the same
tables), and every text is literal (drawing.LITERAL_TEXT: no maths, no LaTeX).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from ..errors import StudyError  # noqa: E402
from ..rundir.fsio import atomic_write_with  # noqa: E402
from ..sites import EMBEDDINGS_SITE, Site, site_info  # noqa: E402
from .drawing import DPI, LITERAL_TEXT  # noqa: E402
from .figures import PCA_HEADLINE_LEVEL  # noqa: E402
from .tables import RESULT_COLUMNS, read_csv  # noqa: E402

TRAINED, UNTRAINED = "trained", "untrained"
MODELS = (TRAINED, UNTRAINED)
SUMMARY_ID = "partitions"  # results.csv: the row holding the mean over partitions (error: their std)
PARTITION_PREFIX = "partition-"  # results.csv: partition-0, partition-1, ...
MEAN_PARTITION = "mean"  # overlap.csv / cka.csv: the partition column of the mean rows
SCALE_RESULT_COLUMNS = ["model", *RESULT_COLUMNS]
PAIR_COLUMNS = ["model", "partition", "site_a", "site_b", "value"]
PARTITION_COLUMNS = ["sequence", "document", "start", "length", "partition"]
ESTIMATORS = (("id_twonn", "TwoNN"), ("id_mle", "MLE"), ("id_gride_auto", "GRIDE (auto scale)"))
_R = {c: i for i, c in enumerate(SCALE_RESULT_COLUMNS)}
_P = {c: i for i, c in enumerate(PAIR_COLUMNS)}
_Q = {c: i for i, c in enumerate(PARTITION_COLUMNS)}
_LINE = {TRAINED: "-", UNTRAINED: "--"}
_MARK = {TRAINED: "o", UNTRAINED: "s"}
_BESIDE = {TRAINED: 0.0, UNTRAINED: 0.18}  # x offset of the untrained points: error bars side by side
_EST_COLOURS = {"id_twonn": "tab:blue", "id_mle": "tab:orange", "id_gride_auto": "tab:green"}


# ---------------------------------------------------------------------------------------------
# The tables


@dataclass(frozen=True)
class PartitionSummary:
    """What tables/partitions.csv says, per partition: how many sequences, their mean length."""

    sizes: tuple[int, ...]  # sequences in partition 0, 1, ...
    mean_lengths: tuple[float, ...]  # mean tokens per sequence, per partition
    unused: int  # sequences in no partition (partition -1)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence]) -> PartitionSummary:
        """From partitions.csv rows (sequence, document, start, length, partition)."""
        counts: dict[int, list[int]] = {}
        unused = 0
        for r in rows:
            if len(r) != len(PARTITION_COLUMNS):
                raise StudyError(f"a partitions row has {len(r)} cells, expected {len(PARTITION_COLUMNS)} "
                                 f"({', '.join(PARTITION_COLUMNS)})")
            part, length = int(r[_Q["partition"]]), int(r[_Q["length"]])
            if part < 0:
                unused += 1
                continue
            counts.setdefault(part, []).append(length)
        if sorted(counts) != list(range(len(counts))):
            raise StudyError(f"partitions.csv names partitions {sorted(counts)}; expected 0, 1, ... without gaps")
        sizes = tuple(len(counts[p]) for p in range(len(counts)))
        means = tuple(float(np.mean(counts[p])) for p in range(len(counts)))
        return cls(sizes=sizes, mean_lengths=means, unused=unused)


@dataclass(frozen=True)
class ScaleTables:
    """Everything the scale figures and report read. `results`: rows of SCALE_RESULT_COLUMNS;
    `overlap`, `cka`: rows of PAIR_COLUMNS; `sites`: every analysed site, in depth order."""

    results: tuple[tuple, ...]
    overlap: tuple[tuple, ...]
    cka: tuple[tuple, ...]
    partitions: PartitionSummary
    sites: tuple[Site, ...]
    overlap_k: int | None = None  # neighbours per point in the overlap, when known
    index: ResultIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_rows("results", self.results, SCALE_RESULT_COLUMNS, _R["model"])
        _check_rows("overlap", self.overlap, PAIR_COLUMNS, _P["model"])
        _check_rows("cka", self.cka, PAIR_COLUMNS, _P["model"])
        names = [s.name for s in self.sites]
        if not names:
            raise StudyError("the scale tables have no site; give the analysed sites in depth order")
        if [s.depth for s in self.sites] != sorted(s.depth for s in self.sites) or len(set(names)) != len(names):
            raise StudyError("the scale tables' sites must be distinct and in depth order (use ScaleTables.build)")
        known = set(names)
        stray = sorted({r[_R["site"]] for r in self.results} - known)
        stray += sorted({r[i] for r in (*self.overlap, *self.cka) for i in (_P["site_a"], _P["site_b"])} - known)
        if stray:
            raise StudyError(f"the tables name sites that are not in the site list: {stray[:3]}; pass every analysed site")
        object.__setattr__(self, "index", ResultIndex(self.results))

    @classmethod
    def build(cls, results, overlap, cka, partition_rows, site_names: Iterable[str], cfg,
              overlap_k: int | None = None) -> ScaleTables:
        """The tables from row lists and the site names (any order), labelled by sites.site_info."""
        sites = sorted({site_info(n, cfg) for n in site_names}, key=lambda s: s.depth)
        return cls(results=tuple(map(tuple, results)), overlap=tuple(map(tuple, overlap)), cka=tuple(map(tuple, cka)),
                   partitions=PartitionSummary.from_rows(partition_rows), sites=tuple(sites), overlap_k=overlap_k)

    @property
    def models(self) -> tuple[str, ...]:
        """The models with results, trained first."""
        present = {r[_R["model"]] for r in self.results}
        return tuple(m for m in MODELS if m in present)


def _cell(text: str):
    """A CSV cell back as tables.py wrote it: "" -> None, integers -> int, other numbers -> float
    (NaN, Inf, -Inf included), else the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_rows(path: Path, columns: list[str], text_columns: tuple[str, ...]) -> list[tuple]:
    """A table written by tables.write_table, its cells typed again (text columns stay text)."""
    if not path.is_file():
        raise StudyError(f"{path} is missing; run the corpus-scale study (it writes tables/{path.name}) first")
    rows = []
    for r in read_csv(path):
        if list(r) != columns:
            raise StudyError(f"{path} has columns {list(r)}; expected {columns}")
        rows.append(tuple(r[c] if c in text_columns else _cell(r[c]) for c in columns))
    return rows


def read_scale_tables(folder: Path, cfg, overlap_k: int | None = None) -> ScaleTables:
    """The tables of a run folder's tables/ (results, overlap, cka, partitions .csv); the sites
    are those results.csv names."""
    folder = Path(folder)
    text = ("model", "prompt_id", "genre", "topic", "site", "site_label", "sublayer", "quantity")
    results = _read_rows(folder / "results.csv", SCALE_RESULT_COLUMNS, text)
    pair_text = ("model", "site_a", "site_b")
    overlap = _read_rows(folder / "overlap.csv", PAIR_COLUMNS, pair_text) if (folder / "overlap.csv").is_file() else []
    cka = _read_rows(folder / "cka.csv", PAIR_COLUMNS, pair_text) if (folder / "cka.csv").is_file() else []
    parts = _read_rows(folder / "partitions.csv", PARTITION_COLUMNS, ())
    sites = {r[_R["site"]] for r in results}
    return ScaleTables.build(results, overlap, cka, parts, sites, cfg, overlap_k=overlap_k)


def _check_rows(name: str, rows, columns: list[str], model_col: int) -> None:
    for r in rows:
        if len(r) != len(columns):
            raise StudyError(f"a {name} row has {len(r)} cells, expected {len(columns)} ({', '.join(columns)})")
        if r[model_col] not in MODELS:
            raise StudyError(f"a {name} row has model {r[model_col]!r}; expected 'trained' or 'untrained'")


@dataclass(frozen=True)
class Summary:
    """A site's value over the partitions: the mean, the std across partitions (NaN with one
    partition), and the parameter (GRIDE's scale n1, a PCA level) when it has one."""

    mean: float
    std: float
    param: float | int | None = None


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


class ResultIndex:
    """Values of results.csv by (model, prompt_id, site, quantity) -> {param: (value, error)}."""

    def __init__(self, rows):
        self._v: dict[tuple, dict] = {}
        for r in rows:
            key = (r[_R["model"]], r[_R["prompt_id"]], r[_R["site"]], r[_R["quantity"]])
            self._v.setdefault(key, {})[r[_R["param"]]] = (r[_R["value"]], r[_R["error"]])

    def summary(self, model: str, site: str, quantity: str, param=None) -> Summary | None:
        """The "partitions" row, or None. id_gride_auto: whatever scale the row names. If the
        summary has several auto scales (partitions that chose different ones), the mean and
        std of the per-partition values, with the scale most partitions chose."""
        by_param = self._v.get((model, SUMMARY_ID, site, quantity), {})
        if quantity == "id_gride_auto":
            if len(by_param) == 1:
                (p, (v, e)), = by_param.items()
                return Summary(float(v), _as_float(e), p) if _finite(v) else None
            return self._auto_from_partitions(model, site)
        hit = _match_param(by_param, param)
        if hit is None or not _finite(hit[1][0]):
            return None
        p, (v, e) = hit
        return Summary(float(v), _as_float(e), p)

    def _auto_from_partitions(self, model: str, site: str) -> Summary | None:
        values, scales = [], []
        for (m, pid, s, q), by_param in self._v.items():
            if m == model and s == site and q == "id_gride_auto" and pid.startswith(PARTITION_PREFIX):
                for p, (v, _e) in by_param.items():
                    if _finite(v):
                        values.append(float(v))
                        scales.append(p)
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        common = max(sorted(set(scales), key=str), key=scales.count)
        return Summary(float(np.mean(values)), std, common)

    def params(self, model: str, quantity: str) -> list:
        """The parameters of `quantity` in the summary rows of `model`, sorted."""
        found = {p for (m, pid, _s, q), by in self._v.items() if m == model and pid == SUMMARY_ID and q == quantity
                 for p in by}
        return sorted(p for p in found if p is not None)

    def has(self, quantity: str) -> bool:
        return any(q == quantity and pid == SUMMARY_ID for (_m, pid, _s, q) in self._v)


def _as_float(e) -> float:
    return float(e) if _finite(e) else math.nan


def _match_param(by_param: dict, param):
    """(param, (value, error)) for `param` (floats compared to 1e-9: a CSV round trip), or None."""
    for p, ve in by_param.items():
        if p == param or (isinstance(p, float) and isinstance(param, float) and abs(p - param) < 1e-9):
            return p, ve
    return None


def pca_level(tables: ScaleTables) -> float | None:
    """The PCA level shown against depth: the token study's headline (90%) when computed, else the largest."""
    levels = set()
    for m in tables.models:
        levels.update(tables.index.params(m, "pca_components"))
    if not levels:
        return None
    return next((lv for lv in levels if abs(lv - PCA_HEADLINE_LEVEL) < 1e-9), max(levels))


def pair_matrix(rows, model: str, sites: Sequence[Site]) -> np.ndarray:
    """(S, S) site x site matrix of `model`'s partition-mean rows (partition "mean"; without
    them, the mean of the per-partition values). Symmetric; a missing pair is NaN, a missing
    diagonal 1 (a site shares every neighbour with itself, CKA(X, X) = 1)."""
    pos = {s.name: i for i, s in enumerate(sites)}
    mine = [r for r in rows if r[_P["model"]] == model]
    means = [r for r in mine if str(r[_P["partition"]]) == MEAN_PARTITION]
    use = means if means else mine
    total = np.zeros((len(sites), len(sites)))
    count = np.zeros((len(sites), len(sites)))
    for r in use:
        v = r[_P["value"]]
        if not _finite(v):
            continue
        i, j = pos[r[_P["site_a"]]], pos[r[_P["site_b"]]]
        for a, b in {(i, j), (j, i)}:
            total[a, b] += v
            count[a, b] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mat = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    diag = np.isnan(np.diag(mat))
    mat[np.diag_indices(len(sites))] = np.where(diag, 1.0, np.diag(mat))
    return mat


def short_labels(sites: Sequence[Site]) -> list[str]:
    """Tick labels: "emb" for the embeddings; the block number when every other site is the
    same sub-layer (the residual stream), else "block sub-layer" ("3 attn out")."""
    subs = {s.sublayer for s in sites if s.name != EMBEDDINGS_SITE}
    labels = []
    for s in sites:
        if s.name == EMBEDDINGS_SITE:
            labels.append("emb")
        elif s.block < 0 or s.sublayer.startswith("ln_final"):
            labels.append(s.short)
        elif len(subs) == 1:
            labels.append(str(s.block))
        else:
            labels.append(f"{s.block} {s.short}")
    if len(set(labels)) != len(labels):  # cannot happen for gpt2np's sites; names stay readable anyway
        return [s.name for s in sites]
    return labels


def depth_axis_label(sites: Sequence[Site]) -> str:
    subs = sorted({s.sublayer for s in sites if s.name != EMBEDDINGS_SITE and 0 <= s.block})
    if len(subs) == 1:
        short = next(s.short for s in sites if s.sublayer == subs[0])
        return f"site, in depth order (emb = embeddings; n = block n's {short})"
    return "site, in depth order (emb = embeddings; block number and sub-layer)"


# ---------------------------------------------------------------------------------------------
# Layout helpers


def _tick_size(n: int) -> float:
    return 9.0 if n <= 14 else 7.0 if n <= 30 else 6.0


def _depth_width(n: int) -> float:
    """Inches of one depth axis with n sites: room for a rotated label per site, and for the
    axis label and the legend below it."""
    return max(7.0, 1.4 + 0.17 * n)


def _site_ticks(ax, sites: Sequence[Site], axis: str = "x") -> None:
    labels, n = short_labels(sites), len(sites)
    rot = 0 if n <= 14 and max(map(len, labels)) <= 4 else 90
    if axis == "x":
        ax.set_xticks(range(n))
        ax.set_xticklabels(labels, rotation=rot, fontsize=_tick_size(n))
        ax.set_xlim(-0.6, n - 0.4)
    else:
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=_tick_size(n))


def _err(std: float) -> float:
    return std if math.isfinite(std) else 0.0  # one partition: no spread to draw


def _series(tables: ScaleTables, model: str, quantity: str, param=None):
    """(xs, means, stds) of a quantity against the site index, where it has a value."""
    xs, ms, es = [], [], []
    for i, s in enumerate(tables.sites):
        got = tables.index.summary(model, s.name, quantity, param)
        if got is not None:
            xs.append(i + _BESIDE[model])
            ms.append(got.mean)
            es.append(_err(got.std))
    return xs, ms, es


def _model_label(model: str) -> str:
    return "trained" if model == TRAINED else "untrained (GPT-2 initialisation)"


def _legend_below(fig, handles, labels, ncol: int) -> None:
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False, fontsize=9)


# ---------------------------------------------------------------------------------------------
# The figures (each returns the matplotlib figure; `make_scale_plots` writes it)


def id_figure(tables: ScaleTables):
    """(1) ID per layer: TwoNN, MLE and GRIDE at its automatic scale, mean over partitions with
    the std across them as error bars; trained solid, untrained dashed beside it."""
    n = len(tables.sites)
    fig, ax = plt.subplots(figsize=(_depth_width(n), 4.8), layout="constrained")
    handles, labels = [], []
    for model in tables.models:
        for quantity, name in ESTIMATORS:
            xs, ms, es = _series(tables, model, quantity)
            if xs:
                h = ax.errorbar(xs, ms, yerr=es, color=_EST_COLOURS[quantity], ls=_LINE[model], marker=_MARK[model],
                                ms=3.5, lw=1.4, capsize=2.5, mfc="white" if model == UNTRAINED else None)
                handles.append(h)
                labels.append(f"{name}, {model}")
    _site_ticks(ax, tables.sites)
    ax.set_xlabel(depth_axis_label(tables.sites))
    ax.set_ylabel("intrinsic dimension")
    ax.grid(alpha=0.3)
    ax.set_title("Intrinsic dimension per site\nmean over partitions, error bars: std across partitions", fontsize=10)
    _legend_below(fig, handles, labels, ncol=3)
    return fig


def _log2_scale_axis(ax, scales: list[int]) -> None:
    """A log2 axis at the GRIDE scales, labelled with plain numbers (the log scale's own
    labels are maths, "2^{3}", which literal text would show as code)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(scales))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(scales) / 1.3, max(scales) * 1.3)


def gride_scale_figure(tables: ScaleTables):
    """(2) GRIDE ID against its neighbour order n1 (log2 axis), a line per site coloured by
    depth (viridis), the automatic scale of each site ringed; trained and untrained panels."""
    models = tables.models
    n = len(tables.sites)
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models) + 1.4, 4.6), layout="constrained",
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis").resampled(n)  # one colour per site: the colour bar reads as a list of sites
    norm = Normalize(vmin=-0.5, vmax=n - 0.5)
    all_scales = sorted({p for m in models for p in tables.index.params(m, "id_gride")})
    for ax, model in zip(axes[0], models):
        for i, s in enumerate(tables.sites):
            pts = [(p, tables.index.summary(model, s.name, "id_gride", p)) for p in all_scales]
            pts = [(p, g) for p, g in pts if g is not None]
            if not pts:
                continue
            colour = cmap(norm(i))
            ax.errorbar([p for p, _ in pts], [g.mean for _, g in pts], yerr=[_err(g.std) for _, g in pts],
                        color=colour, marker="o", ms=2.5, lw=1.0, capsize=1.5)
            auto = tables.index.summary(model, s.name, "id_gride_auto")
            if auto is not None and _finite(auto.param):
                ax.plot([auto.param], [auto.mean], marker="o", ms=8, mfc="none", mec=colour, mew=1.4, ls="none")
        if all_scales:
            _log2_scale_axis(ax, all_scales)
        ax.set_xlabel("GRIDE neighbour order n1 (n2 = 2 n1), log2 scale")
        ax.set_title(_model_label(model), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("GRIDE intrinsic dimension")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), location="right", fraction=0.04,
                       pad=0.02, aspect=30)
    step = max(1, math.ceil(n / 13))
    ticks = list(range(0, n, step))
    bar.set_ticks(ticks)
    bar.set_ticklabels([short_labels(tables.sites)[t] for t in ticks], fontsize=8)
    bar.set_label("site (depth order)")
    fig.suptitle("GRIDE against scale, per site (mean over partitions; rings: the automatic scale)", fontsize=11)
    return fig


def pca_figure(tables: ScaleTables):
    """(3) PCA per layer: components for the headline share of the variance and the
    participation ratio, with partition error bars; trained solid, untrained dashed."""
    level = pca_level(tables)
    n = len(tables.sites)
    panels = [("pca_components", level, f"components for {level:.0%} of the variance" if level is not None else ""),
              ("pca_participation_ratio", None, "participation ratio")]
    panels = [p for p in panels if tables.index.has(p[0])]
    fig, axes = plt.subplots(1, len(panels), figsize=(_depth_width(n) * len(panels), 4.6), layout="constrained",
                             squeeze=False)
    handles, labels = {}, {}
    for ax, (quantity, param, ylabel) in zip(axes[0], panels):
        for model in tables.models:
            xs, ms, es = _series(tables, model, quantity, param)
            if xs:
                h = ax.errorbar(xs, ms, yerr=es, color="tab:purple" if model == TRAINED else "tab:gray", ls=_LINE[model],
                                marker=_MARK[model], ms=3.5, lw=1.4, capsize=2.5)
                handles.setdefault(model, h)
                labels.setdefault(model, _model_label(model))
        _site_ticks(ax, tables.sites)
        ax.set_xlabel(depth_axis_label(tables.sites), fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle("Principal components per site (mean over partitions, error bars: std across partitions)", fontsize=10)
    _legend_below(fig, [handles[m] for m in handles], [labels[m] for m in handles], ncol=2)
    return fig


def pair_figure(tables: ScaleTables, rows, title: str, bar_label: str):
    """(4) A site x site matrix (partition mean) per model, side by side, one colour scale [0, 1]."""
    models = [m for m in tables.models if any(r[_P["model"]] == m for r in rows)]
    n = len(tables.sites)
    side = max(3.4, 1.2 + 0.13 * n)
    fig, axes = plt.subplots(1, len(models), figsize=(side * len(models) + 1.6, side + 1.3), layout="constrained",
                             squeeze=False)
    im = None
    for k, (ax, model) in enumerate(zip(axes[0], models)):
        mat = np.ma.masked_invalid(pair_matrix(rows, model, tables.sites))
        im = ax.imshow(mat, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        _site_ticks(ax, tables.sites, "x")
        _site_ticks(ax, tables.sites, "y")
        if k:
            ax.tick_params(labelleft=False)  # the same rows as the panel on its left
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_title(_model_label(model), fontsize=10)
        if n <= 14:
            for i in range(n):
                for j in range(n):
                    if not np.ma.is_masked(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if mat[i, j] < 0.6 else "black")
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), location="right", fraction=0.05, pad=0.02, label=bar_label)
    fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# Which figures, their captions, and the files


@dataclass(frozen=True)
class ScaleFigure:
    key: str
    caption: str
    build: Callable[[], object]  # returns a matplotlib figure


def scale_figures(tables: ScaleTables) -> list[ScaleFigure]:
    """The figures these tables can fill, in report order."""
    idx = tables.index
    both = " Dashed: the untrained control, drawn just right of the trained point." if UNTRAINED in tables.models else ""
    figs = []
    if any(idx.has(q) for q, _ in ESTIMATORS):
        figs.append(ScaleFigure("scale_id", "Intrinsic dimension per site: TwoNN, MLE and GRIDE at its automatic scale, "
                                "the mean over partitions, error bars one standard deviation across partitions." + both,
                                lambda: id_figure(tables)))
    if idx.has("id_gride"):
        figs.append(ScaleFigure("scale_gride", "GRIDE's intrinsic dimension at each neighbour order n1 (n2 = 2 n1), one "
                                "line per site coloured by depth; the ring marks the scale chosen automatically. Error "
                                "bars: standard deviation across partitions.", lambda: gride_scale_figure(tables)))
    if idx.has("pca_components") or idx.has("pca_participation_ratio"):
        figs.append(ScaleFigure("scale_pca", "Principal components needed for the headline share of the variance, and "
                                "the participation ratio (sum of eigenvalues)^2 / sum of squares, per site; error bars "
                                "across partitions." + both, lambda: pca_figure(tables)))
    k = f" (k = {tables.overlap_k})" if tables.overlap_k else ""
    if tables.overlap:
        figs.append(ScaleFigure("scale_overlap", f"Neighbourhood overlap{k}: the mean fraction of each sequence's k nearest "
                                "neighbours that two sites share, averaged over partitions.",
                                lambda: pair_figure(tables, tables.overlap, f"Neighbourhood overlap{k} between sites",
                                                    "fraction of neighbours shared")))
    if tables.cka:
        figs.append(ScaleFigure("scale_cka", "Linear CKA between the representations of two sites (Kornblith et al. "
                                "2019), averaged over partitions.",
                                lambda: pair_figure(tables, tables.cka, "Linear CKA between sites", "linear CKA")))
    return figs


def save_figure(fig, path: Path) -> None:
    """Write the PNG at its laid-out size (no cropping: the layout already fits the canvas) and close it."""
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        plt.close(fig)


def make_scale_plots(tables: ScaleTables, out_dir: Path) -> dict[str, tuple[Path, str]]:
    """Draw every figure the tables can fill into out_dir; {key: (path, caption)} in report order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for f in scale_figures(tables):
        path = out_dir / f"{f.key}.png"
        with matplotlib.rc_context(LITERAL_TEXT):
            save_figure(f.build(), path)
        drawn[f.key] = (path, f.caption)
    return drawn
