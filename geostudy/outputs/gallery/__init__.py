"""The original study's figures that the depth plots do not cover (issue 12): spectra, 3-D PCA
sheets over depth, t-SNE, distance matrices, GRIDE with both metrics, attention of every block
and Q/K/V, histograms over depth, the logit lens of each prompt as a GIF and its cosine to the
final distribution. One module per figure kind; `gallery_figures` lists those a run can fill,
with captions and drawing costs, and figures.make_plots draws them with the rest.

GALLERY_KEYS: the figure keys in report order. "lens_pair_gif" stands for one key per chosen
prompt, "lens_pair_gif.<prompt id>" (--lens-gifs: the focus prompt by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from safetensors import safe_open

from ...corpus import POOLED_ID
from ...measure.distributions import PAIR_SAMPLE
from ...rundir.fsio import read_json
from ...sites import site_info
from .. import drawing
from . import attention_sheet, distances, gride_metrics, histograms, lens_gifs, pca_sheet, spectra, tsne

GALLERY_KEYS = (
    "spectra_pooled",
    "spectra_genres",
    "pca_sheet_pooled_position",
    "pca_sheet_pooled_genre",
    "pca_sheet_focus",
    "tsne_focus",
    "tsne_pooled",
    "distances_focus",
    "gride_metrics",
    "attention_all_blocks",
    "attention_qkv",
    "histograms_sublayer_outputs",
    "histograms_sublayer_outputs_gif",
    "histograms_residual",
    "histograms_residual_gif",
    "histograms_whole_stream",
    "histograms_whole_stream_gif",
    "lens_cosine",
    "lens_pair_gif",
)
LENS_PAIR_PREFIX = "lens_pair_gif."

# CPU seconds each figure took to draw on the shipped corpus with a GPT-2-small-shaped model, on
# this 2-core machine shared with other jobs (only used to share the figures between two
# processes, runtime/balance.py; t-SNE measured on its own).
COST = {
    "spectra_pooled": 1.5, "spectra_genres": 1.0, "pca_sheet": 1.9, "tsne_focus": 1.0, "tsne_pooled": 15.0,
    "distances_focus": 0.8, "gride_metrics": 1.5, "attention_all_blocks": 1.1, "attention_qkv": 1.2,
    "ridge": 1.3, "gif": 1.4, "lens_cosine": 0.7, "lens_pair_gif": 3.5,
}


@dataclass(frozen=True)
class GalleryFigure:
    """One file: the fields of figures.Figure (which wraps it)."""

    key: str
    path: Path
    caption: str
    draw: Callable[[], object]
    cost: float
    uses_blas: bool = False


def _focus_holds(plan, names: list[str]) -> bool:
    """Whether the focus prompt's activation file has these tensors (a run folder from before
    they were saved has not: its figures are left out)."""
    try:
        with safe_open(str(plan.act_path(plan.focus.id)), framework="numpy") as f:
            return set(names) <= set(f.keys())
    except Exception:  # unreadable: the other figures report it
        return False


def _has_distributions(plan) -> bool:
    return bool(plan.sites) and "distributions" in read_json(plan.pooled_path(plan.sites[0].name))


def gallery_figures(plan, tables: dict, folder: Path) -> list[GalleryFigure]:
    """The gallery figures this run can fill, in GALLERY_KEYS' order."""
    folder = Path(folder)
    figs: list[GalleryFigure] = []

    def add(key, name, caption, draw, cost, uses_blas=False):
        figs.append(GalleryFigure(key, folder / name, caption, partial(draw, folder / name), cost, uses_blas))

    pooled_spectra = any(r[0] == POOLED_ID for r in tables["spectra"])
    if pooled_spectra:
        add("spectra_pooled", "spectra_pooled.png",
            f"Pooled corpus, every site: the share of the variance along each of the first {spectra.N_COMPONENTS} "
            "principal components (left, percent, log scale) and its running sum (right); one line per depth, rows by "
            "sub-layer. From the covariance eigenvalues of the pooled cloud (idest.pca, the spectra table).",
            partial(spectra.pooled_spectra, plan, tables["spectra"]), COST["spectra_pooled"])
        block = spectra.genre_block(plan)
        add("spectra_genres", "spectra_genres.png",
            f"Per genre, at each analysed site of block {block} (the scatter site's block) and the embeddings: the "
            f"cumulative share of the variance of the first {spectra.N_COMPONENTS} principal components, the mean over "
            "the genre's prompts (each prompt's own PCA); black: the pooled corpus. A prompt of N tokens has at most "
            "N - 1 components, so short genres reach 100 % sooner: the curves are confounded with length.",
            partial(spectra.genre_spectra, plan, tables["spectra"]), COST["spectra_genres"])
    sub = site_info(plan.scatter_site, plan.cfg).label.rsplit(", block", 1)[0]
    sheet_note = (f"One panel per depth (the embeddings and every block, {sub}: the scatter site's sub-layer), each on its "
                  "own first three principal components (of the centred points shown); the title gives their share "
                  "of the variance.")
    add("pca_sheet_pooled_position", "pca_sheet_pooled_position.png",
        f"Pooled corpus, a seeded sample of {pca_sheet.MAX_POINTS} tokens (the same at every depth), coloured by the "
        "token's position in its prompt. " + sheet_note,
        partial(pca_sheet.pooled_by_position, plan), 2 * COST["pca_sheet"], True)
    add("pca_sheet_pooled_genre", "pca_sheet_pooled_genre.png",
        "The same sample coloured by genre. " + sheet_note, partial(pca_sheet.pooled_by_genre, plan), COST["pca_sheet"], True)
    add("pca_sheet_focus", "pca_sheet_focus.png",
        f"The focus prompt {plan.focus.id!r}, coloured by position. " + sheet_note,
        partial(pca_sheet.focus_by_position, plan), COST["pca_sheet"], True)
    site_label = site_info(plan.scatter_site, plan.cfg).label
    if plan.tsne:
        tsne_note = ("2-D t-SNE (scikit-learn's sklearn.manifold.TSNE, random_state 0, PCA initialisation, perplexity "
                     "30 or (N - 1) / 3 for small clouds); distances in a t-SNE map mean little beyond who is near whom.")
        add("tsne_focus", "tsne_focus.png", f"The focus prompt {plan.focus.id!r} {site_label}, each point labelled with "
            f"its token (up to {tsne.LABELLED_TOKENS} tokens), coloured by position. " + tsne_note,
            partial(tsne.focus_tsne, plan), COST["tsne_focus"], True)
        add("tsne_pooled", "tsne_pooled.png", f"The pooled corpus {site_label}, a seeded sample of {tsne.POOLED_POINTS} "
            "tokens coloured by genre. " + tsne_note, partial(tsne.pooled_tsne, plan), COST["tsne_pooled"], True)
    add("distances_focus", "distances_focus.png",
        f"The focus prompt {plan.focus.id!r} {site_label}: Euclidean distance |x_i - x_j| (left) and cosine distance "
        "1 - cos(x_i, x_j) (right) between every two analysed tokens, in float64.",
        partial(distances.distance_heatmaps, plan), COST["distances_focus"])
    if gride_metrics.has_cosine(drawing.Results(tables["results"])):
        add("gride_metrics", "gride_metrics.png",
            "Pooled corpus, every site: GRIDE's ID against the neighbour order n1 (n2 = 2 n1) with Euclidean distances "
            "(left) and with cosine distances (right: GRIDE on the rows scaled to unit length; on the unit sphere the "
            "Euclidean distance is 2 sin(angle / 2), a monotone function of the cosine distance, so the neighbour order "
            "is the cosine one). Error bars: GRIDE's standard error.",
            partial(gride_metrics.gride_both_metrics, plan, tables["results"]), COST["gride_metrics"])
    patterns = [f"blocks.{b}.attn.hook_pattern" for b in range(plan.cfg.n_layer)]
    if _focus_holds(plan, patterns):
        add("attention_all_blocks", "attention_all_blocks.png",
            f"Attention patterns of the focus prompt {plan.focus.id!r}: every head (columns) of every block (rows); in "
            "each tile the row is the token attending, the column the token attended to (every position, the first "
            "included), colour the attention weight on a square-root scale. A prompt longer than "
            f"{attention_sheet.TILE_MAX} tokens: each pixel is the largest weight of a square of positions (focus prompts "
            "longer than 512 tokens save only the chosen block's pattern, and this sheet is left out).",
            partial(attention_sheet.all_blocks_sheet, plan), COST["attention_all_blocks"])
    qkv = [attention_sheet.qkv_name(plan.attention_block, w) for w in "qkv"]
    if _focus_holds(plan, qkv):
        i = next(j for j, p in enumerate(plan.corpus) if p.id == plan.focus.id)
        tokens = plan.tokenizer.token_strings(plan.token_ids[i])
        add("attention_qkv", f"attention_qkv_block{plan.attention_block}.png",
            f"Queries, keys and values of block {plan.attention_block} for {plan.focus.id!r}: tokens (rows, every "
            "position) x features (head after head, thin lines between heads), each matrix on its own symmetric colour "
            "scale.", partial(attention_sheet.qkv_heatmaps, plan, tokens), COST["attention_qkv"])
    if _has_distributions(plan):
        for key, title, subs in histograms.GROUPS:
            if not histograms.group_sites(plan, subs):
                continue
            how = ("Pooled corpus, " + title + ": the distribution of the row norms |x| (log bins), of the cosine of "
                   "each token to its own prompt's last token, and of the cosine between every two tokens of a seeded "
                   f"sample of {PAIR_SAMPLE}; computed from the saved activations in the pooled stage.")
            scale = 2.5 if subs is None else 1.0  # the whole stream has every site
            add(f"histograms_{key}", f"histograms_{key}.png", how + " One row per site, top to bottom in forward order, "
                "each scaled to its own peak.", partial(histograms.ridge_figure, plan, key), scale * COST["ridge"])
            add(f"histograms_{key}_gif", f"histograms_{key}.gif", how + " Animated over depth, as shares of the tokens.",
                partial(histograms.gif_figure, plan, key), scale * COST["gif"])
    res = drawing.Results(tables["results"])
    if drawing.plotted_sites(plan, res, "lens_cosine_to_final"):
        path = folder / "lens_cosine.png"
        figs.append(GalleryFigure(
            "lens_cosine", path,
            "Logit lens, last token: the cosine between the next-token distribution read at each depth (ln_f and the "
            "unembedding of the residual stream) and the model's final one, p.q / (|p| |q|); 1 means the same "
            "distribution. Per genre the mean over its prompts (error bars: standard deviation).",
            partial(drawing.depth_figure, plan, res, "lens_cosine_to_final", None, "cosine to the final distribution",
                    "Logit lens, last token: cosine of each depth's distribution to the final one", path, pooled=False),
            COST["lens_cosine"]))
    for pid in plan.lens_gif_prompts:
        add(LENS_PAIR_PREFIX + pid, f"lens_pair_{pid}.gif",
            f"Logit lens of the last token of {pid!r}, block by block (animated): the top-{plan.top_k} next tokens and "
            "their probabilities read after the block's attention + residual (left) and after the block (right; after "
            "the last block this is the model's output). One log-scaled axis for every frame.",
            partial(lens_gifs.lens_pair_gif, plan, tables["lens_top_tokens"], pid), COST["lens_pair_gif"])
    return figs
