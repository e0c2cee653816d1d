"""Which figures a study gets, in report order, with their captions; `make_plots` draws them
(drawing.py says how) and returns {figure key: (path, caption)} for the report.

A figure is listed only when the results can fill it (a quantity with values at some site).
The headline GRIDE scale and PCA level (one value shown against depth, and a column of the
report's table) come from the study's estimator settings: `gride_headline_scale`,
`pca_headline_level`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib

from ..corpus import POOLED_ID
from ..measure.estimators import EstimatorSettings
from ..plan import StudyPlan
from ..rundir.fsio import read_json
from ..runtime.balance import run_shared, share_out
from . import drawing
from .drawing import LITERAL_TEXT, Results, plotted_sites
from .gallery import gallery_figures

GRIDE_HEADLINE_SCALE = 8  # the GRIDE neighbour order n1 shown against depth (n2 = 16), when computed
PCA_HEADLINE_LEVEL = 0.9  # the variance share whose component count is shown against depth, when computed

# Seconds each kind of figure takes to draw, measured by hand on the shipped corpus: only used to
# share the figures between this process and a forked child (runtime/balance.py).
DRAWING_SECONDS = {
    "depth": 0.9,  # six panels, one per sub-layer
    "lens depth": 0.3,  # the logit lens' two panels
    "multi line": 0.8,
    "lens_heatmap": 1.0,
    "attention": 1.2,
    "pca3d": 1.2,
}


def gride_headline_scale(settings: EstimatorSettings) -> int:
    """GRIDE_HEADLINE_SCALE, or the largest scale n1 (a power of two with n2 = 2 n1 within
    gride_range_max) when the settings stop below it."""
    scale = 1
    while scale * 2 <= GRIDE_HEADLINE_SCALE and scale * 4 <= settings.gride_range_max:
        scale *= 2
    return scale


def pca_headline_level(settings: EstimatorSettings) -> float:
    """PCA_HEADLINE_LEVEL when it is one of the settings' levels, else their largest."""
    levels = tuple(settings.pca_levels)
    return PCA_HEADLINE_LEVEL if PCA_HEADLINE_LEVEL in levels or not levels else max(levels)


@dataclass(frozen=True)
class Figure:
    """One file to draw: `draw()` writes it. `cost` (seconds, roughly) shares the figures between
    two processes; `uses_blas` keeps a figure in this process (BLAS threads do not survive a fork)."""

    key: str
    path: Path
    caption: str
    draw: Callable[[], object]
    cost: float = 1.0
    uses_blas: bool = False

    def render(self) -> None:
        """Draw the file with every text literal (LITERAL_TEXT: never maths, never LaTeX)."""
        with matplotlib.rc_context(LITERAL_TEXT):
            self.draw()


def make_plots(plan: StudyPlan, tables: dict, folder: Path, share: bool = True) -> dict[str, tuple[Path, str]]:
    """Draw every figure; returns {figure key: (path, caption)} in a fixed order. With `share`,
    a forked child draws about half of them while this process draws the rest; each figure is
    the same file either way."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = _figures(plan, tables, folder)
    if share:
        mine, theirs = share_out(figures, cost=lambda f: f.cost, stays_here=lambda f: f.uses_blas)
    else:
        mine, theirs = figures, []
    run_shared(mine, theirs, Figure.render, "drawing the plots")
    return {f.key: (f.path, f.caption) for f in figures}


def _figures(plan: StudyPlan, tables: dict, folder: Path) -> list[Figure]:
    """The figures this study's results can fill, in report order."""
    res = Results(tables["results"])
    figs: list[Figure] = []
    err_note = ("Per genre: the mean over the genre's prompts, error bars one standard deviation across "
                "them. Black: the pooled corpus (all tokens of all prompts)")

    def depth(key, quantity, param, ylabel, title, caption, **kw):
        if plotted_sites(plan, res, quantity):
            path = folder / f"{key}.png"
            draw = partial(drawing.depth_figure, plan, res, quantity, param, ylabel, title, path, **kw)
            kind = "lens depth" if quantity.startswith("lens_") else "depth"
            figs.append(Figure(key, path, caption, draw, cost=DRAWING_SECONDS[kind]))

    def multi_line(key, quantity, params, param_label, ylabel, title, caption, with_errors):
        if plotted_sites(plan, res, quantity) and params:
            path = folder / f"{key}.png"
            draw = partial(drawing.multi_line_figure, plan, res, quantity, params, param_label, ylabel, title, path, with_errors)
            figs.append(Figure(key, path, caption, draw, cost=DRAWING_SECONDS["multi line"]))

    est = set(plan.settings.estimators) | set(plan.pooled_settings.estimators)
    if "twonn" in est:
        depth("id_twonn", "id_twonn", None, "TwoNN ID", "Intrinsic dimension (TwoNN) against depth",
              err_note + ", error bars TwoNN's asymptotic standard error.")
    if "mle" in est:
        depth("id_mle", "id_mle", None, f"MLE ID (k={plan.settings.mle_k})", "Intrinsic dimension (MLE) against depth",
              err_note + ", error bars the standard error across points.")
    if "gride" in est:
        n1 = gride_headline_scale(plan.settings)
        depth("id_gride", "id_gride", n1, f"GRIDE ID (n1={n1}, n2={2 * n1})",
              f"Intrinsic dimension (GRIDE at neighbour orders {n1} and {2 * n1}) against depth",
              err_note + ", error bars GRIDE's standard error. Prompts too short for this scale are left out.")
        scales = sorted({p for (pid, s, q, p) in res.value if pid == POOLED_ID and q == "id_gride"})
        multi_line("id_gride_scales", "id_gride", scales, lambda n: f"n1={n}, n2={2 * n}", "GRIDE ID",
                   "GRIDE intrinsic dimension of the pooled corpus at each scale",
                   "Pooled corpus: GRIDE at neighbour orders n1 = 1, 2, 4, ... (n2 = 2 n1); larger orders probe the "
                   "cloud at larger distances. Error bars: GRIDE's standard error.", True)
    if "pca" in est:
        level = pca_headline_level(plan.settings)
        multi_line("pca_components", "pca_components", list(plan.settings.pca_levels), lambda v: f"{v:.0%} of variance",
                   "components", "Principal components needed for each share of the variance (pooled corpus)",
                   "Pooled corpus: the number of principal components whose eigenvalues add up to each share of the "
                   "total variance.", False)
        depth("pca_components_90", "pca_components", level, f"components for {level:.0%} of variance",
              f"Principal components for {level:.0%} of the variance against depth", err_note + ".")
        depth("pca_participation_ratio", "pca_participation_ratio", None, "participation ratio",
              "Participation ratio (sum of eigenvalues)^2 / sum of squares", err_note + ".")
    depth("norms", "mean_centred_norm", None, "mean |x - mean|", "Mean norm of the centred token vectors", err_note + ".")
    depth("cosine_to_last", "cosine_to_last", None, "mean cos(x_i, x_last)",
          "Mean cosine similarity of each token to the last token", err_note + " (for the pooled corpus: each token "
          "against its own prompt's last token).")
    depth("pairwise_cosine", "mean_pairwise_cosine", None, "mean pairwise cosine",
          "Anisotropy: mean cosine similarity over all pairs of tokens", err_note + ".")
    depth("log_volume", "log_volume", None, "log-volume per token", "Log-volume of the centred token cloud, per token",
          err_note + ".")
    depth("lens_kl_last", "lens_kl_to_final", None, "KL(final || layer), nats",
          "Logit lens, last token: KL divergence from the final distribution", "Per genre: mean over the genre's "
          "prompts of the last token's KL(final || layer) (error bars: standard deviation).", pooled=False)
    if plan.lens_positions != 0:
        depth("lens_kl_all", "lens_mean_kl_all_positions", None, "mean KL(final || layer), nats",
              "Logit lens over positions: mean KL divergence from the final distribution",
              "Per prompt the mean over the sampled positions; per genre the mean over prompts (error bars: standard "
              "deviation); black: the mean over every sampled position of the corpus.")
        depth("lens_agreement", "lens_top1_agreement_all_positions", None, "top-1 agreement with the output",
              "Logit lens over positions: how often the top-1 token already equals the model's",
              "Fraction of sampled positions whose top-1 token at this depth is the model's final top-1 token.")
    focus = read_json(plan.result_path(plan.focus.id))
    top_rows = tables["lens_top_tokens"]
    path = folder / "lens_heatmap.png"
    figs.append(Figure("lens_heatmap", path, "Rows: where the residual stream of the last token is read (after each "
                       "block's attention, after each block) and the model's own output; columns: the model's final "
                       f"top-{plan.top_k} tokens; colour and number: their probability at that depth.",
                       partial(drawing.lens_heatmap, plan, focus, top_rows, path), cost=DRAWING_SECONDS["lens_heatmap"]))
    path = folder / f"attention_block{plan.attention_block}.png"
    figs.append(Figure("attention", path,
                       f"Attention pattern of each head of block {plan.attention_block} on {plan.focus.id!r}.",
                       partial(drawing.attention_grid, plan, focus["tokens"], path), cost=DRAWING_SECONDS["attention"]))
    path = folder / f"pca3d_{plan.scatter_site}.png"
    figs.append(Figure("pca3d", path,
                       "The pooled token cloud on its first three principal components, coloured by position.",
                       partial(drawing.pca_scatter, plan, path), cost=DRAWING_SECONDS["pca3d"], uses_blas=True))
    # the original study's other figures (issue 12): keys in gallery.GALLERY_KEYS, captions and costs there
    figs += [Figure(g.key, g.path, g.caption, g.draw, g.cost, g.uses_blas) for g in gallery_figures(plan, tables, folder)]
    return figs
