"""Distributions over a token cloud, as histograms small enough to keep for every site: row
norms, the cosine of each token to its own prompt's last token, and pairwise cosines.

The bins are fixed, the same at every site, so that histograms of different depths can be drawn
on one axis (a ridge figure, the frames of a GIF): norms on 0.04-decade log bins from 1e-2 to
1e5 (GPT-2's rows range from about 1 after a layer norm to a few thousand late in the residual
stream), cosines on 80 bins over [-1, 1]. A value outside the range is counted in the end bin and
in `clipped`. Pairwise cosines are those of every pair of a seeded random sample of at most
PAIR_SAMPLE tokens (all pairs of 9,335 tokens would be 44 million products per site, for an
80-bin histogram that 130,000 pairs already fix). Rows are widened to float64 one prompt at a
time (a float64 copy of a pooled MLP cloud is 230 MB).
"""

from __future__ import annotations

import numpy as np

NORM_LOG10_RANGE = (-2.0, 5.0)
NORM_BINS = 175  # 0.04 decades each
COSINE_BINS = 80
PAIR_SAMPLE = 512
PAIR_SEED = 0


def row_norms(X: np.ndarray) -> np.ndarray:
    """|x_i| of every row, in float64."""
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", X, X))


def norms_and_cosines_to_last(X: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For rows laid out prompt after prompt (`sizes` rows each): every row's norm, and
    cos(x_i, x_last) of every row but the last of its prompt, against that prompt's last row."""
    norms, cosines, start = [], [], 0
    for n in sizes:
        block = np.asarray(X[start:start + n], dtype=np.float64)
        nb = np.sqrt(np.einsum("ij,ij->i", block, block))
        with np.errstate(invalid="ignore", divide="ignore"):
            cosines.append(block[:-1] @ block[-1] / (nb[:-1] * nb[-1]))
        norms.append(nb)
        start += n
    if not norms:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(norms), np.concatenate(cosines)


def cosines_to_own_last(X: np.ndarray, sizes: list[int]) -> np.ndarray:
    """cos(x_i, x_last) of every row but the last of its prompt (see norms_and_cosines_to_last)."""
    return norms_and_cosines_to_last(X, sizes)[1]


def pairwise_cosines(X: np.ndarray, sample: int = PAIR_SAMPLE, seed: int = PAIR_SEED) -> np.ndarray:
    """cos(x_i, x_j) for every pair i < j of at most `sample` rows (a seeded random choice when X
    has more)."""
    if X.shape[0] > sample:
        X = X[np.sort(np.random.default_rng(seed).choice(X.shape[0], size=sample, replace=False))]
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        U = X / row_norms(X)[:, None]
    i, j = np.triu_indices(U.shape[0], k=1)
    return (U @ U.T)[i, j]


def histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    """Counts over fixed `edges`, values beyond them counted in the end bins; NaNs left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    clipped = int(np.count_nonzero((v < edges[0]) | (v > edges[-1])))
    counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
    return {"counts": counts.tolist(), "n": int(v.size), "clipped": clipped,
            "mean": float(v.mean()) if v.size else float("nan"),
            "median": float(np.median(v)) if v.size else float("nan")}


def norm_edges() -> np.ndarray:
    return np.logspace(*NORM_LOG10_RANGE, NORM_BINS + 1)


def cosine_edges() -> np.ndarray:
    return np.linspace(-1.0, 1.0, COSINE_BINS + 1)


def distributions(X: np.ndarray, sizes: list[int]) -> dict:
    """The three histograms of a pooled cloud (rows prompt after prompt, `sizes` rows each)."""
    norms, to_last = norms_and_cosines_to_last(X, sizes)
    return {
        "row_norm": histogram(norms, norm_edges()),
        "cosine_to_last": histogram(to_last, cosine_edges()),
        "pairwise_cosine": histogram(pairwise_cosines(X), cosine_edges()),
    }
