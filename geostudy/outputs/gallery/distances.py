"""Distance matrices of the focus prompt at the scatter site: Euclidean |x_i - x_j| and cosine
distance 1 - cos(x_i, x_j), token by token, as heatmaps (positions as analysed: the dropped
ones left out). Computed in float64 with einsum (no BLAS: this figure may be drawn in a forked
process)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ...sites import site_info
from ...store.activations import load_cloud
from ..drawing import token_label
from ._canvas import save_png

LABELLED_TOKENS = 48  # up to this many tokens, every row and column is labelled with its token


def euclidean_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    diff = X[:, None, :] - X[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def cosine_distance_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    U = X / np.sqrt(np.einsum("ij,ij->i", X, X))[:, None]
    return 1.0 - np.einsum("ik,jk->ij", U, U)


def focus_tokens(plan) -> tuple[int, list[str]]:
    """(the focus prompt's index, its kept tokens' strings)."""
    i = next(j for j, p in enumerate(plan.corpus) if p.id == plan.focus.id)
    strings = plan.tokenizer.token_strings(plan.token_ids[i])
    return i, [strings[k] for k in plan.kept[i]]


def distance_heatmaps(plan, path: Path) -> None:
    i, tokens = focus_tokens(plan)
    X = load_cloud(plan.act_path(plan.focus.id), plan.scatter_site, plan.kept[i])
    mats = [("Euclidean distance |x_i - x_j|", euclidean_matrix(X), "magma"),
            ("cosine distance 1 - cos(x_i, x_j)", cosine_distance_matrix(X), "magma")]
    n = X.shape[0]
    side = 4.6 if n <= LABELLED_TOKENS else 4.2
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.6, side + 0.9), layout="constrained")
    for ax, (title, mat, cmap) in zip(axes, mats):
        im = ax.imshow(mat, cmap=cmap, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.75)
        ax.set_title(title, fontsize=9)
        if n <= LABELLED_TOKENS:
            labels = [token_label(t) for t in tokens]
            ax.set_xticks(range(n))
            ax.set_xticklabels(labels, rotation=90, fontsize=5)
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels, fontsize=5)
        else:
            ax.set_xlabel("token (kept position index)")
            ax.set_ylabel("token (kept position index)")
    label = site_info(plan.scatter_site, plan.cfg).label
    fig.suptitle(f"Token x token distances of {plan.focus.id!r}, {label}", fontsize=10)
    save_png(fig, path)
