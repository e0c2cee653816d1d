"""Spectra: the share of the variance along each of the first principal components.

Pooled corpus: one row of panels per sub-layer (percent per component, log scale; cumulative
percent), one line per depth. Per genre: the cumulative share at each site of one block (the
scatter site's), one line per genre (the mean over its prompts) and the pooled corpus in black.
Read from the spectra table (the covariance eigenvalues idest.pca computed, ddof=1).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ...corpus import POOLED_ID
from ...sites import EMBEDDINGS_SITE, site_info
from ..drawing import text_label
from ._canvas import depth_colour, depth_colourbar, plain_log_labels, save_png, site_names, sublayer_rows

N_COMPONENTS = 20


def explained_by_site(spectra_rows, prompt_id: str, limit: int = N_COMPONENTS) -> dict[str, np.ndarray]:
    """{site: explained-variance ratios of the first `limit` components} of one prompt (or the
    pooled corpus), from the spectra table's rows (prompt_id, site, component, eigenvalue, ratio)."""
    return explained_by_prompt(spectra_rows, limit).get(prompt_id, {})


def explained_by_prompt(spectra_rows, limit: int = N_COMPONENTS) -> dict[str, dict[str, np.ndarray]]:
    """{prompt: {site: ratios of the first `limit` components}}, in one pass over the table (it
    holds every component of every prompt and site: over a million rows for the shipped corpus)."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for pid, site, comp, _ev, ratio in spectra_rows:
        if comp <= limit:
            out[pid][site].append((comp, ratio))
    return {pid: {s: np.array([r for _, r in sorted(v)]) for s, v in sites.items()} for pid, sites in out.items()}


def pooled_spectra(plan, spectra_rows, path: Path) -> None:
    """Rows: sub-layers; left: percent per component (log scale), right: cumulative percent."""
    ratios = explained_by_site(spectra_rows, POOLED_ID)
    rows = [(t, [(b, s) for b, s in pts if s in ratios]) for t, pts in sublayer_rows(plan, site_names(plan))]
    rows = [r for r in rows if r[1]]
    fig, axes = plt.subplots(len(rows), 2, figsize=(9.5, 2.3 * len(rows) + 0.8), squeeze=False, layout="constrained")
    for (title, pts), (ax_p, ax_c) in zip(rows, axes):
        for block, site in pts:
            r = ratios[site]
            comps = np.arange(1, r.size + 1)
            colour = depth_colour(block, plan.cfg.n_layer)
            ax_p.plot(comps, 100 * r, color=colour, lw=1.1, marker="o", ms=2)
            ax_c.plot(comps, 100 * np.cumsum(r), color=colour, lw=1.1, marker="o", ms=2)
        ax_p.set_yscale("log")
        plain_log_labels(ax_p.yaxis)
        ax_p.set_ylabel("% of variance")
        ax_c.set_ylabel("cumulative %")
        ax_c.set_ylim(0, 100)
        for ax in (ax_p, ax_c):
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xticks([1, 5, 10, 15, 20])
    for ax in axes[-1]:
        ax.set_xlabel("principal component")
    depth_colourbar(fig, axes[:, 1].tolist(), plan.cfg.n_layer)
    fig.suptitle(f"Pooled corpus: variance along the first {N_COMPONENTS} principal components, every site", fontsize=11)
    save_png(fig, path)


def genre_block(plan) -> int:
    """The block whose sites the per-genre spectra show: the scatter site's (the embeddings: 0)."""
    return max(0, site_info(plan.scatter_site, plan.cfg).block)


def genre_spectra(plan, spectra_rows, path: Path) -> None:
    """One panel per site of genre_block (and the embeddings): cumulative percent of the first
    components, per genre the mean over its prompts, the pooled corpus in black."""
    block = genre_block(plan)
    names = [n for n in site_names(plan) if n == EMBEDDINGS_SITE or site_info(n, plan.cfg).block == block]
    genres: dict[str, list[str]] = {}
    for p in plan.corpus:
        genres.setdefault(p.genre or "all prompts", []).append(p.id)
    every = explained_by_prompt(spectra_rows)
    per_prompt = {p.id: every.get(p.id, {}) for p in plan.corpus}
    pooled = every.get(POOLED_ID, {})
    n = len(names)
    cols = min(3, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols + 0.4, 2.8 * nrows + 1.2), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10")
    handles = {}
    for ax, site in zip(axes.flat, names):
        for gi, (genre, ids) in enumerate(genres.items()):
            curves = [np.cumsum(per_prompt[i][site]) for i in ids if site in per_prompt[i]]
            if not curves:
                continue
            width = min(c.size for c in curves)  # a short prompt has fewer components
            mean = 100 * np.mean([c[:width] for c in curves], axis=0)
            (h,) = ax.plot(np.arange(1, width + 1), mean, color=colours(gi % 10), lw=1.2)
            handles.setdefault(gi, (h, text_label(genre)))
        if site in pooled:
            (h,) = ax.plot(np.arange(1, pooled[site].size + 1), 100 * np.cumsum(pooled[site]), color="black", lw=2)
            handles.setdefault(len(genres), (h, "pooled corpus"))
        ax.set_title(site_info(site, plan.cfg).label, fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_xticks([1, 5, 10, 15, 20])
        ax.grid(alpha=0.3)
        ax.set_xlabel("principal component")
        ax.set_ylabel("cumulative % of variance")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if handles:
        hs, labels = zip(*(handles[k] for k in sorted(handles)))
        fig.legend(hs, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False, fontsize=8)
    fig.suptitle(f"Cumulative variance of the first {N_COMPONENTS} principal components per genre (block {block})",
                 fontsize=11)
    save_png(fig, path)
