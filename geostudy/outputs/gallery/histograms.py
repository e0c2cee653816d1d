"""Histograms over depth of the pooled corpus: row norms |x|, the cosine of each token to its
own prompt's last token, and pairwise cosines (a seeded sample of 512 tokens, every pair).

Computed in the pooled stage from the saved activations (measure/distributions.py: fixed bins,
the same at every site) and kept in each site's pooled result. Three groups of sites, as the
original study drew them: the sub-layer outputs (attention and MLP outputs), the residual
stream after each sum (the embeddings, after attention + residual, after the block), and the
whole stream (every analysed site in forward order). Each group: a static ridge figure (one row
per site, each histogram scaled to its own peak) and a GIF over depth (shares of the tokens, one
y range for every frame).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ...measure.distributions import cosine_edges, norm_edges
from ...rundir.fsio import read_json
from ...sites import EMBEDDINGS_SITE, site_info
from ._canvas import depth_colour, depth_label, plain_log_labels, save_gif_blit, save_png, site_names

QUANTITIES = (
    ("row_norm", "row norm |x| (log scale)"),
    ("cosine_to_last", "cos(x_i, x_last) within its prompt"),
    ("pairwise_cosine", "pairwise cos(x_i, x_j)"),
)
GROUPS = (  # (key, title, the sub-layers of its sites: None for every site)
    ("sublayer_outputs", "the sub-layer outputs (attention output, MLP output)", ("hook_attn_out", "hook_mlp_out")),
    ("residual", "the residual stream after each sum (embeddings, after attention + residual, after the block)",
     ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")),
    ("whole_stream", "the whole stream (every analysed site, in forward order)", None),
)
SHORT_TITLES = {"sublayer_outputs": "sub-layer outputs", "residual": "residual stream after each sum",
                "whole_stream": "the whole stream"}


def group_sites(plan, sublayers) -> list[str]:
    """The analysed sites of a group, in forward order (sublayers None: all of them)."""
    if sublayers is None:
        return site_names(plan)
    out = []
    for name in site_names(plan):
        sub = site_info(name, plan.cfg).sublayer
        # a later block's resid_pre is the block before's resid_post: only the embeddings' is kept
        if (name == EMBEDDINGS_SITE and sub in sublayers) or (sub in sublayers and sub != "hook_resid_pre"):
            out.append(name)
    return out


def read_distributions(plan, sites: list[str]) -> dict[str, dict]:
    """{site: its pooled histograms}, for the sites whose pooled result holds them (a run folder
    from before they were computed has none)."""
    out = {}
    for site in sites:
        r = read_json(plan.pooled_path(site))
        if "distributions" in r:
            out[site] = r["distributions"]
    return out


def _edges(quantity: str) -> np.ndarray:
    return norm_edges() if quantity == "row_norm" else cosine_edges()


def _shares(hist: dict) -> np.ndarray:
    counts = np.asarray(hist["counts"], dtype=np.float64)
    return counts / max(1.0, counts.sum())


def _occupied(dists: dict, quantity: str) -> tuple[float, float]:
    """The x range holding every site's tokens (a bin of margin on each side)."""
    edges = _edges(quantity)
    nz = np.flatnonzero(np.sum([np.asarray(d[quantity]["counts"]) for d in dists.values()], axis=0))
    if nz.size == 0:
        return float(edges[0]), float(edges[-1])
    return float(edges[max(0, nz[0] - 1)]), float(edges[min(edges.size - 1, nz[-1] + 2)])


def _axis(ax, quantity: str, lo: float, hi: float) -> None:
    if quantity == "row_norm":
        ax.set_xscale("log")
        plain_log_labels(ax.xaxis)
    ax.set_xlim(lo, hi)


def ridge(plan, group_title: str, sites: list[str], dists: dict, path: Path) -> None:
    """One row per site (forward order, top to bottom), each histogram scaled to its peak."""
    sites = [s for s in sites if s in dists]
    n = len(sites)
    fig, axes = plt.subplots(1, 3, figsize=(12, min(30.0, 0.2 * n + 2.2)), layout="constrained", sharey=True)
    for ax, (q, xlabel) in zip(axes, QUANTITIES):
        edges = _edges(q)
        for row, site in enumerate(sites):
            share = _shares(dists[site][q])
            peak = share.max() or 1.0
            base = n - 1 - row
            colour = depth_colour(site_info(site, plan.cfg).block if site != EMBEDDINGS_SITE else -1, plan.cfg.n_layer)
            ax.stairs(base + 0.9 * share / peak, edges, baseline=base, fill=True, color=colour, alpha=0.8)
        _axis(ax, q, *_occupied(dists, q))
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks([n - 1 - r + 0.3 for r in range(n)])
    axes[0].set_yticklabels([depth_label(plan, s) for s in sites], fontsize=6 if n > 30 else 7)
    axes[0].set_ylim(-0.2, n + 0.2)
    fig.suptitle(f"Pooled corpus: distributions over depth, {group_title}\n"
                 "each row scaled to its own peak; top: the first site, bottom: the deepest", fontsize=10)
    save_png(fig, path)


def gif(plan, group_title: str, sites: list[str], dists: dict, path: Path) -> None:
    """Frame by frame along the sites: the three histograms as shares of the tokens. `group_title`
    is short: it is one line of every frame's title, on a fixed canvas."""
    sites = [s for s in sites if s in dists]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    fig.subplots_adjust(left=0.06, right=0.98, top=0.78, bottom=0.2, wspace=0.25)  # fixed: one layout for every frame
    patches = []
    for ax, (q, xlabel) in zip(axes, QUANTITIES):
        edges = _edges(q)
        top = max(_shares(d[q]).max() for d in dists.values() if s_in(d, q))
        patches.append(ax.stairs(np.zeros(edges.size - 1), edges, fill=True, color="tab:blue"))
        _axis(ax, q, *_occupied(dists, q))
        ax.set_ylim(0, 1.05 * top)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("share of tokens", fontsize=9)
        ax.grid(alpha=0.3)
    head = fig.suptitle("", fontsize=10)

    def frame(i):
        site = sites[i]
        colour = depth_colour(site_info(site, plan.cfg).block if site != EMBEDDINGS_SITE else -1, plan.cfg.n_layer)
        for patch, (q, _) in zip(patches, QUANTITIES):
            patch.set_data(_shares(dists[site][q]))
            patch.set_color(colour)
        head.set_text(f"Pooled corpus, {group_title}\n{site_info(site, plan.cfg).label}  ({i + 1}/{len(sites)})")

    save_gif_blit(fig, path, len(sites), frame, patches + [head], fps=2.0)


def s_in(d: dict, q: str) -> bool:
    return q in d and sum(d[q]["counts"]) > 0


def ridge_figure(plan, group: str, path: Path) -> None:
    title, sublayers = _group(group)
    sites = group_sites(plan, sublayers)
    ridge(plan, title, sites, read_distributions(plan, sites), path)


def gif_figure(plan, group: str, path: Path) -> None:
    _, sublayers = _group(group)
    sites = group_sites(plan, sublayers)
    gif(plan, SHORT_TITLES[group], sites, read_distributions(plan, sites), path)


def _group(key: str):
    return next((title, subs) for k, title, subs in GROUPS if k == key)
