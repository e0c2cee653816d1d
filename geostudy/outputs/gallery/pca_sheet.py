"""3-D PCA scatters over depth: one small 3-D panel per block (and the embeddings) at one
sub-layer, the scatter site's; for the pooled corpus (coloured by position, and by genre) and
for the focus prompt (by position).

Each panel is the cloud on its own first three principal components. For the pooled corpus
they are those of a seeded sample of MAX_POINTS tokens (the points drawn), not of all 9,335
(the pooled PCA of every token, at every site, is in the tables).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from ...sites import EMBEDDINGS_SITE, site_info
from ...store.activations import load_cloud
from ..drawing import text_label
from ._canvas import depth_label, sample_rows, save_png, site_names

MAX_POINTS = 1000
COLUMNS = 5


def sheet_sites(plan) -> list[str]:
    """The embeddings and every block's site at the scatter site's sub-layer, those analysed."""
    sub = site_info(plan.scatter_site, plan.cfg).sublayer
    names = site_names(plan)
    chosen = [n for n in names if n == EMBEDDINGS_SITE]
    chosen += [f"blocks.{b}.{sub}" for b in range(plan.cfg.n_layer) if f"blocks.{b}.{sub}" in names]
    return list(dict.fromkeys(chosen))


def top3(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates on the first three principal components (N, 3, zero-padded), their shares
    of the variance) of X's rows, in float64, from the eigenvectors of the smaller of the
    covariance (D x D) and Gram (N x N) matrices of the centred rows (the same nonzero
    eigenvalues; an SVD of the rows took seconds per panel here)."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    n, d = Xc.shape
    if d <= n:
        ev, vec = np.linalg.eigh(Xc.T @ Xc)
        ev, vec = ev[::-1], vec[:, ::-1]
        k = min(3, d)
        coords_k = Xc @ vec[:, :k]
    else:
        ev, vec = np.linalg.eigh(Xc @ Xc.T)
        ev, vec = ev[::-1], vec[:, ::-1]
        k = min(3, n)
        coords_k = vec[:, :k] * np.sqrt(np.maximum(ev[:k], 0.0))
    coords = np.zeros((n, 3))
    coords[:, :k] = coords_k
    # a component's sign is arbitrary: fix it (largest |coordinate| positive) so that panels agree run to run
    for j in range(k):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] *= -1
    ev = np.maximum(ev, 0.0)
    total = float(ev.sum())
    return coords, (ev[:k] / total if total > 0 else np.zeros(k))


def pooled_sample(plan) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(prompt index of each row, position of each row, the sample's row indices) of the pooled
    sample: the same tokens at every depth."""
    prompt_of = np.concatenate([np.full(k.size, i) for i, k in enumerate(plan.kept)])
    position = np.concatenate(plan.kept)
    pick = sample_rows(prompt_of.size, MAX_POINTS)
    return prompt_of[pick], position[pick], pick


# the two pooled sheets show the same sample: its components, N x 3 numbers a site, are kept
_COMPONENTS: dict = {}


def cached_top3(plan, cloud: str, site: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """top3(X), remembered under the run folder, the cloud, the site and the activation files'
    sizes and modification times (a file redone by a resumed run is a new key)."""
    files = tuple((st.st_size, st.st_mtime_ns) for st in (plan.act_path(p.id).stat() for p in plan.corpus))
    key = (str(plan.out), cloud, site, files)
    if key not in _COMPONENTS:
        with threadpool_limits(1):  # small products: BLAS threads only spun against each other here
            _COMPONENTS[key] = top3(X)
    return _COMPONENTS[key]


def pooled_clouds(plan, sites: list[str], pick: np.ndarray) -> list[np.ndarray]:
    """The sampled rows of the pooled cloud at each site, read from the activation files."""
    out = []
    for site in sites:
        X = np.concatenate([load_cloud(plan.act_path(p.id), site, k) for p, k in zip(plan.corpus, plan.kept)])
        out.append(X[pick])
    return out


def _sheet(plan, cloud: str, clouds, sites, colour, cmap, title, path: Path, colour_label=None, legend=None) -> None:
    """`cloud`: "pooled" or "focus", which cloud `clouds` hold (their components are cached)."""
    n = len(sites)
    cols = min(COLUMNS, n)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(2.5 * cols + 1.3, 2.5 * rows + 1.0), layout="constrained")
    sc = None
    for i, (site, X) in enumerate(zip(sites, clouds)):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        pcs, share = cached_top3(plan, cloud, site, X)
        sc = ax.scatter(pcs[:, 0], pcs[:, 1], pcs[:, 2], c=colour, cmap=cmap, s=2, alpha=0.7, depthshade=False,
                        vmin=None if cmap != "tab10" else -0.5, vmax=None if cmap != "tab10" else 9.5)
        ax.set_title(f"{depth_label(plan, site)}\n{share.sum():.0%} of variance in 3 PCs", fontsize=7)
        # no ticks or grid: coordinates on a panel's own components mean little, and 3-D ticks
        # were most of the drawing time
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
        ax.grid(False)
    if legend:
        fig.legend(*legend, loc="outside lower center", ncol=min(4, len(legend[1])), frameon=False, fontsize=8,
                   markerscale=4)
    elif sc is not None and colour_label:
        fig.colorbar(sc, ax=fig.axes, shrink=0.6, label=colour_label)
    # above the 3-D panels' own titles (constrained layout does not make room for them); the saved
    # file is cropped to what is drawn, so it stays on the canvas
    fig.suptitle(title, fontsize=10, y=1.05)
    save_png(fig, path)


def pooled_by_position(plan, path: Path) -> None:
    sites = sheet_sites(plan)
    _, position, pick = pooled_sample(plan)
    clouds = pooled_clouds(plan, sites, pick)
    _sheet(plan, "pooled", clouds, sites, position, "viridis",
           f"Pooled corpus on its first three principal components, depth by depth ({pick.size} tokens)",
           path, colour_label="token position in its prompt")


def genre_index(plan) -> tuple[list[str], np.ndarray]:
    """(the genres in corpus order, each prompt's genre index)."""
    genres = list(dict.fromkeys(p.genre or "all prompts" for p in plan.corpus))
    return genres, np.array([genres.index(p.genre or "all prompts") for p in plan.corpus])


def pooled_by_genre(plan, path: Path) -> None:
    sites = sheet_sites(plan)
    prompt_of, _, pick = pooled_sample(plan)
    clouds = pooled_clouds(plan, sites, pick)
    genres, of_prompt = genre_index(plan)
    colour = of_prompt[prompt_of] % 10
    cmap = plt.get_cmap("tab10")
    handles = [plt.Line2D([], [], ls="", marker="o", ms=3, color=cmap(g % 10)) for g in range(len(genres))]
    _sheet(plan, "pooled", clouds, sites, colour, "tab10",
           f"Pooled corpus on its first three principal components, depth by depth, by genre ({pick.size} tokens)",
           path, legend=(handles, [text_label(g) for g in genres]))


def focus_by_position(plan, path: Path) -> None:
    sites = sheet_sites(plan)
    i = next(j for j, p in enumerate(plan.corpus) if p.id == plan.focus.id)
    clouds = [load_cloud(plan.act_path(plan.focus.id), s, plan.kept[i]) for s in sites]
    _sheet(plan, "focus", clouds, sites, plan.kept[i], "viridis",
           f"{plan.focus.id!r} on its first three principal components, depth by depth ({plan.kept[i].size} tokens)",
           path, colour_label="token position")
