"""t-SNE maps (2-D) of the scatter site's cloud: the focus prompt, every token labelled, and
the pooled corpus (a seeded sample) coloured by genre.

The embedding is scikit-learn's (sklearn.manifold.TSNE: exact gradients of a well-tested
implementation, not worth writing again): seeded (random_state=0), initialised from PCA,
perplexity 30 or, for small clouds, (N - 1) / 3 (it must stay below N), on one thread. scikit-learn is only
needed with --tsne and is imported when a map is drawn.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ...errors import StudyError
from ...sites import site_info
from ...store.activations import load_cloud
from ..drawing import text_label, token_label
from ._canvas import sample_rows, save_png
from .distances import focus_tokens
from .pca_sheet import genre_index

POOLED_POINTS = 1000
SEED = 0
LABELLED_TOKENS = 120  # more labels than this would cover each other


def perplexity_for(n: int) -> float:
    """30 (scikit-learn's default) when the cloud allows, else (n - 1) / 3."""
    return float(min(30.0, max(1.0, (n - 1) / 3)))


def tsne_2d(X: np.ndarray) -> np.ndarray:
    """2-D t-SNE coordinates of X's rows (float64, seeded, PCA initialisation)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise StudyError("--tsne needs scikit-learn: pip install 'scikit-learn>=1.3' (or run without --tsne)") from None
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    X = np.asarray(X, dtype=np.float64)
    # one thread: the Barnes-Hut gradient's OpenMP threads made it 10-30 times slower on this shared
    # 2-core machine, and a sum split over threads could change the map with the thread count
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity_for(X.shape[0]), init="pca", random_state=SEED,
                    learning_rate="auto").fit_transform(X)


def focus_tsne(plan, path: Path) -> None:
    i, tokens = focus_tokens(plan)
    X = load_cloud(plan.act_path(plan.focus.id), plan.scatter_site, plan.kept[i])
    Y = tsne_2d(X)
    fig, ax = plt.subplots(figsize=(8.5, 7), layout="constrained")
    sc = ax.scatter(Y[:, 0], Y[:, 1], c=plan.kept[i], cmap="viridis", s=14)
    if len(tokens) <= LABELLED_TOKENS:
        for (x, y), tok in zip(Y, tokens):
            ax.annotate(token_label(tok), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points",
                        annotation_clip=False)
    fig.colorbar(sc, ax=ax, shrink=0.7, label="token position")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {plan.focus.id!r}, {site_info(plan.scatter_site, plan.cfg).label}\n"
                 f"perplexity {perplexity_for(X.shape[0]):g}, seed {SEED}, PCA initialisation (scikit-learn)", fontsize=9)
    save_png(fig, path)


def pooled_tsne(plan, path: Path) -> None:
    prompt_of = np.concatenate([np.full(k.size, i) for i, k in enumerate(plan.kept)])
    X = np.concatenate([load_cloud(plan.act_path(p.id), plan.scatter_site, k) for p, k in zip(plan.corpus, plan.kept)])
    pick = sample_rows(X.shape[0], POOLED_POINTS)
    Y = tsne_2d(X[pick])
    genres, of_prompt = genre_index(plan)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8.5, 7.4), layout="constrained")
    g = of_prompt[prompt_of[pick]]
    for gi in range(len(genres)):
        m = g == gi
        ax.scatter(Y[m, 0], Y[m, 1], s=4, color=cmap(gi % 10))
    # handles and labels passed by hand: matplotlib drops labels that start with "_", and a genre may
    fig.legend(handles=ax.collections, labels=[text_label(x) for x in genres], loc="outside lower center",
               ncol=min(4, len(genres)), frameon=False, fontsize=8, markerscale=3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of the pooled corpus ({pick.size} of {X.shape[0]} tokens), "
                 f"{site_info(plan.scatter_site, plan.cfg).label}\nperplexity {perplexity_for(pick.size):g}, seed {SEED}, "
                 "PCA initialisation (scikit-learn)", fontsize=9)
    save_png(fig, path)
