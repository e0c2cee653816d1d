"""Norms, angles and volume of a token cloud X of shape (N, D): one row per token.

All quantities are computed in float64 from the rows given (the caller has already dropped the
positions it does not want).

* mean_norm: mean Euclidean norm of the rows, |x_i|.
* mean_centred_norm: mean norm of the centred rows, |x_i - mean|: the cloud's spread.
* cosine_to_last: mean over i < N-1 of cos(x_i, x_{N-1}): how aligned each token is with the last
  (kept) token, whose vector is what the model predicts from.
* mean_pairwise_cosine: mean of cos(x_i, x_j) over all pairs i < j, computed exactly in O(N D)
  as (|sum_i u_i|^2 - N) / (N (N - 1)) with u_i = x_i / |x_i|; near 1 for an anisotropic cloud
  (all vectors in a narrow cone), near 0 for an isotropic one. Uncentred, as in the anisotropy
  literature.
* log_volume: the log-volume of the centred cloud per token,
      log_volume = (1 / N) * (1/2) * log pdet(G),   G = Xc Xc^T  (the N x N Gram matrix),
  where Xc = X - mean and pdet is the product of G's non-zero eigenvalues; sqrt(pdet(G)) is the
  r-dimensional volume of the parallelotope spanned by the centred token vectors. No
  determinant is ever formed (it would overflow or underflow): the study takes the covariance
  eigenvalues lambda_i (ddof=1) that idest.pca computes anyway, with the eigenvalues at rounding
  level already set to exactly 0 by idest, and sums logs:
      log_volume = sum_{lambda_i > 0} (1/2) log((N - 1) lambda_i) / N,
  since the singular values of Xc are s_i = sqrt((N - 1) lambda_i). The number r of non-zero
  eigenvalues (at most min(N - 1, D): centring removes one dimension) is log_volume_rank.
  `log_volume(X)` computes the same from its own SVD of Xc (never forming G; singular values
  with s_i^2 <= max(N, D) * eps * s_max^2 count as zero), for checking.
"""

from __future__ import annotations

import numpy as np

EPS64 = np.finfo(np.float64).eps


def _as_cloud(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"a token cloud must be 2-D (N, D), got shape {X.shape}")
    return X


def _as64(X) -> np.ndarray:
    return _as_cloud(X).astype(np.float64, copy=False)


def mean_norm(X) -> float:
    return float(np.linalg.norm(_as64(X), axis=1).mean())


def mean_centred_norm(X) -> float:
    X = _as64(X)
    return float(np.linalg.norm(X - X.mean(axis=0), axis=1).mean())


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return X / norms  # a zero row gives NaN, which propagates to the means: no silent zeros


def cosine_to_last(X) -> float:
    X = _as64(X)
    if X.shape[0] < 2:
        return float("nan")
    u = _unit_rows(X)
    return float((u[:-1] @ u[-1]).mean())


def cosine_to_last_sum(X) -> tuple[float, int]:
    """(sum over i < N-1 of cos(x_i, x_{N-1}), number of terms): for pooling across prompts.
    Dot products over norms, without forming the unit rows (this runs on every prompt at every
    site of the pooled corpus); a zero row gives NaN, as in `cosine_to_last`."""
    X = _as64(X)
    rest, last = X[:-1], X[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (rest @ last) / (np.sqrt(np.einsum("ij,ij->i", rest, rest)) * np.linalg.norm(last))
    return float(cos.sum()), X.shape[0] - 1


def mean_pairwise_cosine(X) -> float:
    X = _as64(X)
    n = X.shape[0]
    if n < 2:
        return float("nan")
    s = _unit_rows(X).sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def singular_values_centred(X) -> np.ndarray:
    """Singular values of the centred cloud, descending (LAPACK gesdd, no vectors)."""
    X = _as64(X)
    return np.linalg.svd(X - X.mean(axis=0), compute_uv=False)


def log_volume_from_singular_values(s, n: int, d: int) -> tuple[float, int]:
    """(log_volume, rank) from the singular values s of the centred (n, d) cloud."""
    s = np.asarray(s, dtype=np.float64)
    if s.size == 0 or not s[0] > 0:
        return float("-inf"), 0
    # the same cut as on eigenvalues: s_i^2 > max(n, d) * eps * s_max^2
    kept = s[s * s > s[0] * s[0] * max(n, d) * EPS64]
    return float(np.log(kept).sum() / n), int(kept.size)


def log_volume(X) -> tuple[float, int]:
    """(log_volume, rank) of the cloud; see the module docstring."""
    X = _as64(X)
    return log_volume_from_singular_values(singular_values_centred(X), *X.shape)


_CHUNK_BYTES = 1 << 20  # float64 rows per pass of `describe`: stays in cache, never a copy of X


def describe(X) -> dict[str, float]:
    """Every quantity of this module except the volume, in two passes over X in row chunks (the
    pooled clouds are 9,335 x 3,072: whole-array float64 temporaries would cost GBs)."""
    X = _as_cloud(X)  # converted to float64 a chunk at a time
    n = X.shape[0]
    rows = max(16, _CHUNK_BYTES // (8 * max(1, X.shape[1])))
    chunks = [slice(a, a + rows) for a in range(0, n, rows)]
    mean = sum(X[c].astype(np.float64).sum(axis=0) for c in chunks) / n
    norm_sum = centred_sum = 0.0
    unit_sum = np.zeros(X.shape[1])
    last = _unit_rows(X[-1:].astype(np.float64))[0]
    cos_last_sum = 0.0
    for c in chunks:
        x = X[c].astype(np.float64)
        norms = np.linalg.norm(x, axis=1)
        norm_sum += norms.sum()
        centred_sum += np.linalg.norm(x - mean, axis=1).sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            x /= norms[:, None]  # unit rows (as _unit_rows, reusing the norms): a zero row gives NaN
        unit_sum += x.sum(axis=0)
        dots = x @ last
        cos_last_sum += (dots[:-1] if c.stop >= n else dots).sum()  # not the last token with itself
    return {
        "mean_norm": float(norm_sum / n),
        "mean_centred_norm": float(centred_sum / n),
        "cosine_to_last": float(cos_last_sum / (n - 1)) if n > 1 else float("nan"),
        "mean_pairwise_cosine": float((unit_sum @ unit_sum - n) / (n * (n - 1))) if n > 1 else float("nan"),
    }


def log_volume_from_spectrum(spectrum, n: int) -> tuple[float, int]:
    """(log_volume, rank) from the covariance eigenvalues (ddof=1) of the centred (n, d) cloud,
    as idest.pca / idest.spectrum return them (numerically zero ones already set to 0):
    the singular values of Xc are sqrt((n - 1) * eigenvalue)."""
    ev = np.asarray(spectrum, dtype=np.float64)
    kept = ev[ev > 0]
    if kept.size == 0:
        return float("-inf"), 0
    return float(0.5 * np.log((n - 1) * kept).sum() / n), int(kept.size)
