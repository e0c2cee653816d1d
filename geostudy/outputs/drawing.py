"""How each figure is drawn (PNG, and one animated GIF), headless with matplotlib; which
figures a study gets, with their captions, is figures.py's business.

Every figure is built from the result tables and the saved activations only, so a resumed run
draws the same figures.

Every text is drawn literally, whatever it holds: a genre such as "costs $5 and $6" or a token
"$$" must not be read as maths (matplotlib's default for text between two dollar signs, which
fails on most such strings). Each figure is drawn under LITERAL_TEXT (see figures.Figure.render),
so no text of ours is ever parsed, and the one axis whose tick labels matplotlib writes as maths
(the logit lens' log scale) gets plain-number labels instead. User text is also shortened to a
label's length (token_label, text_label), and the legend is collected by hand, because
matplotlib leaves out of legends every label that starts with "_".
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

import gpt2np  # noqa: E402
from gpt2np.names import BLOCK_SITES  # noqa: E402

from ..corpus import POOLED_ID  # noqa: E402
from ..measure.analysis import FINAL_SITE  # noqa: E402
from ..rundir.fsio import atomic_write_with  # noqa: E402
from ..sites import EMBEDDINGS_SITE, site_info  # noqa: E402
from ..store.activations import load_clouds, load_tensor, pattern_name  # noqa: E402
from .layout_check import grow_to_fit  # noqa: E402
from .tables import RESULT_COLUMNS  # noqa: E402

DPI = 110
_C = {c: i for i, c in enumerate(RESULT_COLUMNS)}
_ORDER = [s for s, _, _ in BLOCK_SITES]
# Drawn text is never maths nor LaTeX, whatever the user's matplotlibrc says: dollar signs,
# backslashes, carets and underscores in genres and tokens are shown as they are.
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False, "axes.formatter.use_mathtext": False}
TOKEN_LABEL_CHARS = 24  # a tick label; GPT-2 has tokens of 60+ characters (runs of dashes, ...)
TEXT_LABEL_CHARS = 40  # a legend entry (genres)
# Figure sizes, in inches at DPI: the report is at most 1200 px wide, so three panels of a depth
# figure (3 x 3.5 in = 1155 px) are shown at full size; a figure is never narrower than
# MIN_WIDTH (825 px), so that one panel still holds a legend of six genres and its title.
PANEL_WIDTH, PANEL_HEIGHT, MIN_WIDTH = 3.5, 2.8, 7.5
REPORT_WIDTH_PX = 1200
LEGEND_MARGIN_PX = 8
LENS_WIDTH, LENS_COLUMNS, LENS_CELL_POINTS = 10.5, 10, 8  # the logit-lens heatmap: 1155 px, 10 tokens a panel


def _shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def token_label(tok: str) -> str:
    """A token as a readable label: quoted, so that leading spaces, newlines and control
    characters show (as escapes), and shortened to TOKEN_LABEL_CHARS."""
    return _shorten(repr(tok), TOKEN_LABEL_CHARS)


def text_label(text: str) -> str:
    """A genre (one line of text, as the corpus loader guarantees) as a legend label."""
    return _shorten(text, TEXT_LABEL_CHARS)


class Results:
    """Index over the main table: values by (prompt, site, quantity, param)."""

    def __init__(self, rows):
        self.value: dict = {}
        self.sites_by_quantity: dict = defaultdict(set)
        for r in rows:
            key = (r[_C["prompt_id"]], r[_C["site"]], r[_C["quantity"]], r[_C["param"]])
            self.value[key] = (r[_C["value"]], r[_C["error"]])
            self.sites_by_quantity[r[_C["quantity"]]].add(r[_C["site"]])

    def get(self, prompt, site, quantity, param=None):
        return self.value.get((prompt, site, quantity, param), (None, None))


def _save(fig, path: Path, tight: bool = True) -> None:
    """Write the figure and close it; `tight` crops it to what is drawn (a layout pass of its
    own: figures already laid out by tight_layout skip it)."""
    box = "tight" if tight else None
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png", bbox_inches=box))
    plt.close(fig)


def _kind_of(name: str, cfg) -> tuple[str, int, str]:
    """(panel key, x, panel title) of a site for depth plots."""
    info = site_info(name, cfg)
    if name == EMBEDDINGS_SITE or info.block < 0:
        return "embeddings", -1, "embeddings"
    if info.block >= cfg.n_layer:
        return info.sublayer, cfg.n_layer, info.label
    words = info.label.rsplit(", block", 1)[0]
    return info.sublayer, info.block, words


def _panels(site_names, cfg):
    """Panels of a depth figure: {sub-layer: [(x, site), ...]} in forward order, plus the
    embedding sites (drawn in every panel at x = -1)."""
    panels, titles, embeds = defaultdict(list), {}, []
    for name in site_names:
        kind, x, title = _kind_of(name, cfg)
        if kind == "embeddings":
            embeds.append(name)
            continue
        panels[kind].append((x, name))
        titles[kind] = title
    order = sorted(panels, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
    return [(k, titles[k], sorted(panels[k])) for k in order], embeds


def _grid(n: int, width: float = PANEL_WIDTH, height: float = PANEL_HEIGHT):
    """Up to three panels a row under constrained layout (which also places the suptitle and a
    legend "outside" below); at least MIN_WIDTH wide, so that a one-panel figure still holds a
    legend and a title."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(MIN_WIDTH, width * cols), height * rows + 0.9), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _block_ticks(ax, cfg, with_embed: bool) -> None:
    step = max(1, cfg.n_layer // 12)
    ticks = list(range(0, cfg.n_layer, step))
    labels = [str(t) for t in ticks]
    if with_embed:
        ticks, labels = [-1] + ticks, ["emb"] + labels
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.set_xlabel("block (emb = embeddings)" if with_embed else "block")
    ax.grid(alpha=0.3)


def _genre_groups(plan) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for p in plan.corpus:
        groups.setdefault(p.genre or "all prompts", []).append(p.id)
    return list(groups.items())


def depth_figure(plan, res: Results, quantity: str, param, ylabel: str, title: str, path: Path,
                 per_genre: bool = True, pooled: bool = True) -> None:
    """One panel per sub-layer; per genre the mean over its prompts (error bars: standard
    deviation across them), the pooled corpus in black (error bars: the estimator's own).
    The caller draws it only for a quantity with sites (plotted_sites)."""
    cfg = plan.cfg
    names = plotted_sites(plan, res, quantity)
    panels, embeds = _panels(names, cfg)
    if not panels:
        panels = [("embeddings", "embeddings", [])]
    fig, axes = _grid(len(panels))
    colors = plt.get_cmap("tab10")
    groups = _genre_groups(plan) if per_genre else []
    legend: dict = {}  # (0, genre index) or (1, 0) for the pooled corpus -> (handle, label)
    for ax, (_kind, ptitle, pts) in zip(axes, panels):
        xs = [x for x, _ in pts]
        for gi, (genre, ids) in enumerate(groups):
            means, sds, gx = [], [], []
            for x, site in [(-1, e) for e in embeds] + pts:
                vals = [res.get(pid, site, quantity, param)[0] for pid in ids]
                vals = [v for v in vals if v is not None and np.isfinite(v)]
                if not vals:
                    continue
                gx.append(x)
                means.append(float(np.mean(vals)))
                sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            if gx:
                handle = ax.errorbar(gx, means, yerr=sds, color=colors(gi % 10), marker="o", ms=3, lw=1.2,
                                     capsize=2, alpha=0.85)
                legend.setdefault((0, gi), (handle, text_label(genre)))
        if pooled:
            px, pv, pe = _pooled_series(res, quantity, param, [(-1, e) for e in embeds] + pts, True)
            if px:
                handle = ax.errorbar(px, pv, yerr=pe, color="black", marker="s", ms=4, lw=2.2, capsize=3)
                legend.setdefault((1, 0), (handle, "pooled corpus"))
        ax.set_title(ptitle, fontsize=9)
        ax.set_ylabel(ylabel)
        _block_ticks(ax, cfg, bool(embeds))
        if not xs and not embeds:
            ax.set_visible(False)
    _finish(fig, legend, title, path, legend_columns=7)


def _pooled_series(res: Results, quantity: str, param, points, with_errors: bool):
    """(xs, values, errors) of the pooled corpus at the (x, site) points with a finite value; an
    error is 0 where there is none (or where errors are not drawn)."""
    xs, vs, es = [], [], []
    for x, site in points:
        v, e = res.get(POOLED_ID, site, quantity, param)
        if v is not None and np.isfinite(v):
            xs.append(x)
            vs.append(v)
            es.append(e if (with_errors and e is not None and np.isfinite(e)) else 0.0)
    return xs, vs, es


def _finish(fig, legend: dict, title: str, path: Path, legend_columns: int) -> None:
    """One legend for all panels, below them, the title, and the file. `legend`: {sort key:
    (handle, label)}, the first line drawn of each series in any panel. Passed to fig.legend
    as they are: matplotlib's own collection (get_legend_handles_labels) drops labels that start
    with "_", and a genre may. The legend gets as many columns as fit the figure's width; what
    still sticks out (a long title) widens the figure (layout_check.grow_to_fit)."""
    fig.suptitle(title, fontsize=12)
    if legend:
        handles, labels = zip(*(legend[k] for k in sorted(legend)))
        _legend_that_fits(fig, list(handles), list(labels), legend_columns)
    grow_to_fit(fig)
    _save(fig, path, tight=False)


def _legend_that_fits(fig, handles: list, labels: list, max_columns: int):
    """A figure legend below the panels with the most columns (up to max_columns) whose width
    fits the figure: the legend's size needs no layout pass, only the renderer's text sizes."""
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.width - 2 * LEGEND_MARGIN_PX
    for ncol in range(min(len(labels), max_columns), 0, -1):
        leg = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)
        if ncol == 1 or leg.get_window_extent(renderer).width <= room:
            return leg
        leg.remove()
    return None


def plotted_sites(plan, res: Results, quantity: str) -> list[str]:
    """The sites with a value of `quantity`, in depth order (the model's output left out)."""
    return _site_order(plan, [s for s in res.sites_by_quantity.get(quantity, ()) if s != FINAL_SITE])


def _site_order(plan, names):
    order = gpt2np.hook_names(plan.cfg) + [FINAL_SITE]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def multi_line_figure(plan, res: Results, quantity: str, params: list, param_label, ylabel: str,
                      title: str, path: Path, with_errors: bool) -> None:
    """Pooled corpus only: one panel per sub-layer, one line per parameter value. The caller
    draws it only for a quantity with sites (plotted_sites) and some parameter values."""
    cfg = plan.cfg
    names = plotted_sites(plan, res, quantity)
    panels, embeds = _panels(names, cfg)
    fig, axes = _grid(max(1, len(panels)))
    cmap = plt.get_cmap("viridis")
    legend: dict = {}  # parameter index -> (handle, label)
    for ax, (_kind, ptitle, pts) in zip(axes, panels):
        for i, param in enumerate(params):
            xs, vs, es = _pooled_series(res, quantity, param, [(-1, e) for e in embeds] + pts, with_errors)
            if xs:
                color = cmap(i / max(1, len(params) - 1))
                handle = ax.errorbar(xs, vs, yerr=es if with_errors else None, color=color, marker="o", ms=3,
                                     lw=1.3, capsize=2)
                legend.setdefault(i, (handle, param_label(param)))
        ax.set_title(ptitle, fontsize=9)
        ax.set_ylabel(ylabel)
        _block_ticks(ax, cfg, bool(embeds))
    _finish(fig, legend, title, path, legend_columns=8)


def _lens_depth_labels(plan, sites):
    labels = []
    for s in sites:
        if s == FINAL_SITE:
            labels.append("model output")
        else:
            labels.append(site_info(s, plan.cfg).label)
    return labels


def _lens_row_label(plan, site: str) -> str:
    """A heatmap row: "block 3: attn + resid", short enough for the report's width."""
    if site == FINAL_SITE:
        return "model output"
    info = site_info(site, plan.cfg)
    return f"block {info.block}: {info.short}"


def _chunks(n: int, size: int) -> list[range]:
    """0..n-1 in consecutive runs of at most `size`, as even as possible (10 + 10, not 19 + 1)."""
    parts = max(1, math.ceil(n / size))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def lens_heatmap(plan, focus_result: dict, top_rows, path: Path) -> None:
    """Depth x final top-k tokens: probability of each of the model's final top-k tokens at each
    depth, with each depth's own top-1 token at the right. Sized for the report's width (at most
    REPORT_WIDTH_PX at DPI, so shown unscaled): at most LENS_COLUMNS token columns per panel,
    more tokens in further panels below; cell numbers at LENS_CELL_POINTS."""
    sites = list(plan.lens_sites)
    ids = focus_result["lens_tracked"]["ids"]
    probs = np.array(focus_result["lens_tracked"]["probs"])  # (S, k)
    own = {(r[3], r[8]): (r[10], r[11]) for r in top_rows if r[0] == plan.focus.id}  # (site, rank) -> (token, prob)
    final_probs = [own[(FINAL_SITE, r + 1)][1] for r in range(len(ids))]
    mat = np.vstack([probs, np.array(final_probs)[None]])
    rows = sites + [FINAL_SITE]
    tokens = [own[(FINAL_SITE, r + 1)][0] for r in range(len(ids))]
    groups = _chunks(len(ids), LENS_COLUMNS)
    panel_h = 1.0 + 0.24 * len(rows)
    fig, axes = plt.subplots(len(groups), 1, figsize=(LENS_WIDTH, panel_h * len(groups) + 0.6), squeeze=False,
                             layout="constrained")
    vmax = max(1e-12, float(mat.max()))
    fmt = "{:.2f}" if vmax >= 0.01 else "{:.1e}"
    row_labels = [_lens_row_label(plan, s) for s in rows]
    own_labels = [f"{token_label(own[(s, 1)][0])} {fmt.format(own[(s, 1)][1])}" for s in rows]
    im = None
    for ax, cols in zip(axes.flat, groups):
        sub = mat[:, cols.start:cols.stop]
        im = ax.imshow(sub, aspect="auto", cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([token_label(tokens[j]) for j in cols], rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(row_labels, fontsize=8)
        ax.set_xlabel(f"the model's final top-{len(ids)} next tokens"
                      + ("" if len(groups) == 1 else f" (ranks {cols.start + 1}–{cols.stop})"), fontsize=9)
        if len(rows) <= 60:
            for i in range(sub.shape[0]):
                for j in range(sub.shape[1]):
                    v = sub[i, j]
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=LENS_CELL_POINTS,
                            color="white" if v < 0.6 * vmax else "black")
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(range(len(rows)))
        right.set_yticklabels(own_labels, fontsize=8)
        right.set_ylabel("this depth's own top-1 token, probability", fontsize=9)
    bar = fig.colorbar(im, ax=list(axes.flat), location="bottom", shrink=0.5, aspect=40,
                       label="probability of the token at this depth")
    # few, short tick labels: plain numbers (no maths offset, see LITERAL_TEXT) of small
    # probabilities would otherwise run into each other along the horizontal bar
    bar.ax.xaxis.set_major_locator(MaxNLocator(5))
    bar.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    fig.suptitle(f"Logit lens on the last token of {plan.focus.id!r} (rows: where the residual stream is read)",
                 fontsize=10)
    grow_to_fit(fig)
    _save(fig, path, tight=False)


def attention_grid(plan, tokens: list[str], path: Path) -> None:
    """Every head's attention pattern of the chosen block, for the focus prompt."""
    pattern = load_tensor(plan.act_path(plan.focus.id), pattern_name(plan.attention_block))  # (H, T, T)
    h, t, _ = pattern.shape
    cols = math.ceil(math.sqrt(h))
    rows = math.ceil(h / cols)
    # as wide as the report (REPORT_WIDTH_PX) when the heads allow: 2.2-3.1 in a tile
    size = min(3.1, max(2.2, (REPORT_WIDTH_PX / DPI - 1.6) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 1.2, size * rows + 1.2), squeeze=False,
                             layout="constrained")
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.set_visible(False)
            continue
        im = ax.imshow(pattern[i], cmap="viridis", norm=norm, interpolation="nearest")
        ax.set_title(f"head {i}", fontsize=9)
        if t <= 32:
            labels = [token_label(x) for x in tokens]
            ax.set_xticks(range(t))
            ax.set_xticklabels(labels, rotation=90, fontsize=5)
            ax.set_yticks(range(t))
            ax.set_yticklabels(labels, fontsize=5)
        else:
            ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("query position")
        if i // cols == rows - 1 or i + cols >= h:
            ax.set_xlabel("key position")
    fig.suptitle(
        f"Attention patterns of every head, block {plan.attention_block} ({plan.focus.id!r}, {t} tokens)\n"
        "row: the token attending; column: the token attended to\ncolour: attention weight (square-root scale)",
        fontsize=10,
    )
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat), shrink=0.6, label="attention weight")
    grow_to_fit(fig)
    _save(fig, path, tight=False)


def pca_scatter(plan, path: Path, max_points: int = 4000) -> None:
    """The pooled token cloud at one site on its first three principal components, coloured
    by each token's position in its prompt."""
    X = np.concatenate(load_clouds([plan.act_path(p.id) for p in plan.corpus], plan.scatter_site, plan.kept))
    positions = np.concatenate(plan.kept)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    cov = Xc.T @ Xc / (Xc.shape[0] - 1)
    ev, vec = np.linalg.eigh(cov)
    order = np.argsort(ev)[::-1][:3]
    pcs = Xc @ vec[:, order]
    share = ev[order] / ev.sum()
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(X.shape[0], size=min(max_points, X.shape[0]), replace=False))
    fig = plt.figure(figsize=(8.5, 7), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    sc = ax.scatter(pcs[pick, 0], pcs[pick, 1], pcs[pick, 2] if pcs.shape[1] > 2 else 0, c=positions[pick],
                    cmap="viridis", s=4, alpha=0.7, depthshade=False)
    for i, setter in enumerate((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel)):
        if i < len(share):
            setter(f"PC{i + 1} ({share[i]:.0%} of variance)")
    fig.colorbar(sc, ax=ax, shrink=0.6, pad=0.1, label="token position in its prompt")
    label = site_info(plan.scatter_site, plan.cfg).label
    ax.set_title(f"Token cloud {label}\nfirst three principal components, all prompts "
                 f"({pick.size} of {X.shape[0]} tokens shown)", fontsize=10)
    grow_to_fit(fig)
    _save(fig, path, tight=False)
