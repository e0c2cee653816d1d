"""Result objects: small frozen dataclasses holding an estimate and what produced it.

Fields are keyword-only; arrays are excluded from ``repr`` and equality so results print
compactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _array():
    return field(repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class Neighborhoods:
    """Exact k nearest neighbours of the distinct points of X, from ``idest.neighborhoods``:
    one search that ``twonn``, ``twonn_scaling``, ``mle``, ``gride`` and ``local_pca`` accept
    in place of X, giving bit-identical results (each reads the first columns it needs).

    distances : (n_points, k) float64, ascending along each row: Euclidean distances, or
        cosine distances (1 - cos) for ``metric="cosine"``; the point itself excluded.
    indices : (n_points, k) int64, rows of ``points`` (not of X: ``point_index[indices]``
        gives rows of X); equal distances are ordered by index.
    points : (n_points, D) the distinct points, float32 or float64 as validated; a read-only
        view of X when nothing was dropped or converted (do not modify X while using this).
    point_index : (n_points,) the row of X each distinct point came from (the first copy).
    n_duplicates, n_near_duplicates : rows of X dropped as exact repeats and as
        near-duplicates of earlier rows (n_points + both = len(X)); see ``idest.neighborhoods``.
    k : neighbours per point held, min(the k asked for, n_points - 1): a cloud of any size
        gives an object, and an estimator asked for more than the cloud has reports too few
        points in the same words as when it is given X.

    The arrays are read-only.
    """

    distances: np.ndarray = _array()
    indices: np.ndarray = _array()
    points: np.ndarray = _array()
    point_index: np.ndarray = _array()
    k: int
    n_points: int  # distinct points
    n_duplicates: int  # rows of X dropped as exact repeats of earlier rows
    n_near_duplicates: int  # rows of X dropped as near-duplicates of earlier rows
    metric: str
    on_duplicates: str  # the duplicate policy the search used ("drop" or "raise")
    near_duplicate_tol: float  # the near-duplicate tolerance the search used (in eps)


@dataclass(frozen=True, kw_only=True)
class TwoNNResult:
    """TwoNN estimate (Facco et al. 2017).

    dimension : the ID; ``method="linear"`` is the fit of -log(1 - F(mu)) on log(mu)
        through the origin (DADApy ``compute_id_2NN``, skdim ``TwoNN``), ``"mle"`` the
        maximum-likelihood form.
    error : asymptotic standard error of the maximum-likelihood estimate,
        dimension / sqrt(n_fit - 2), given for both methods (the linear fit has no
        closed-form error; DADApy reports 0 for it on the full data).
    mu : (n_points,) ratios r2 / r1 per distinct point (order of ``point_index``).
    """

    dimension: float
    error: float
    method: str
    discard_fraction: float
    n_fit: int  # ratios entering the fit (the smallest int(n_points * (1 - discard_fraction)))
    n_points: int  # distinct points used
    n_duplicates: int  # rows of X dropped as exact repeats of earlier rows
    n_near_duplicates: int  # rows of X dropped as near-duplicates of earlier rows
    metric: str
    scale: float  # mean distance to the first two neighbours (DADApy's 'rs')
    mu: np.ndarray = _array()
    point_index: np.ndarray = _array()  # row of X behind each distinct point


@dataclass(frozen=True, kw_only=True)
class TwoNNScalingResult:
    """TwoNN on random subsets of size round(N / 2**i) (DADApy ``return_id_scaling_2NN``).

    sizes : subset size at each level (the first is the full data).
    dimensions : mean ID over the level's subsets.
    errors : standard error of that mean, std / sqrt(n_subsets) (0 for the full data).
    scales : mean distance to the first two neighbours, averaged over the subsets: the
        length scale each estimate probes.
    """

    sizes: np.ndarray = _array()
    dimensions: np.ndarray = _array()
    errors: np.ndarray = _array()
    scales: np.ndarray = _array()
    n_subsets: np.ndarray = _array()
    method: str
    discard_fraction: float
    seed: int
    n_points: int
    n_duplicates: int
    n_near_duplicates: int
    metric: str


@dataclass(frozen=True, kw_only=True)
class MLEResult:
    """Levina-Bickel MLE.

    dimension : local estimates combined by ``comb`` ("mle": 1 / mean(1 / local), the
        MacKay-Ghahramani rule skdim uses; "mean"; "median"), averaged over k1..k2 if a
        range of k was asked.
    error : standard error of ``dimension`` across points (delta method, treating points
        as independent; neighbourhoods overlap, so this understates the uncertainty).
    local : (n_points,) per-point estimates (averaged over k1..k2 for a range).
    """

    dimension: float
    error: float
    local: np.ndarray = _array()
    k1: int
    k2: int
    comb: str
    unbiased: bool
    n_points: int
    n_duplicates: int
    n_near_duplicates: int
    metric: str
    point_index: np.ndarray = _array()


@dataclass(frozen=True, kw_only=True)
class PCAResult:
    """Global PCA of the centred data (covariance eigenvalues, ddof=1).

    dimension : components needed to explain ``variance_levels[0]`` of the variance
        (the first cumulative ratio that exceeds it, as scikit-learn's PCA(n_components=v)).
    dimensions : the same for each entry of ``variance_levels``.
    spectrum : min(N, D) eigenvalues, descending; numerically zero ones set to 0.
    explained_variance_ratio : spectrum / spectrum.sum().
    participation_ratio : (sum spectrum)^2 / sum spectrum^2.
    solver : how the spectrum was computed: "covariance" (eigenvalues of the covariance,
        or of the Gram matrix when N < D) or "svd" (singular values of the centred data).
    """

    dimension: int
    dimensions: np.ndarray = _array()
    variance_levels: tuple
    spectrum: np.ndarray = _array()
    explained_variance_ratio: np.ndarray = _array()
    participation_ratio: float
    n_points: int
    n_features: int
    solver: str

    def rule(self, name: str, **params) -> float:
        """Apply one of the local-PCA rules ("FO", "Fan", "maxgap", "ratio", "Kaiser",
        "broken_stick", "participation_ratio") to this spectrum."""
        from .pca_rules import pca_rule

        return pca_rule(self.spectrum, name, **params)


@dataclass(frozen=True, kw_only=True)
class LocalPCAResult:
    """PCA rule applied to each point's k-neighbourhood (the point itself excluded, as in
    skdim's ``lPCA().fit_pw``).

    dimension : ``comb`` ("mean" or "median") of the local values.
    error : standard error of the mean of the local values (for "median", 1.2533 times it).
    local : (n_points,) per-point values (integers stored as float, except for
        "participation_ratio").
    """

    dimension: float
    error: float
    local: np.ndarray = _array()
    rule: str
    k: int
    comb: str
    n_points: int
    n_duplicates: int
    n_near_duplicates: int
    metric: str
    point_index: np.ndarray = _array()


@dataclass(frozen=True, kw_only=True)
class GrideResult:
    """Multiscale GRIDE (Denti et al. 2022), as DADApy ``return_id_scaling_gride``.

    scales : the neighbour orders n1 = 1, 2, 4, ... (n2 = 2 n1) of each estimate.
    dimensions, errors : ID and its Fisher-information standard error at each scale.
    radii : mean of the n1-th and n2-th neighbour distances over the points at each scale
        (what DADApy returns as the scale); the physical length each estimate probes.
    n_used : points entering each likelihood after DADApy's outlier cut on mu.
    """

    scales: np.ndarray = _array()
    dimensions: np.ndarray = _array()
    errors: np.ndarray = _array()
    radii: np.ndarray = _array()
    n_used: np.ndarray = _array()
    range_max: int
    n_points: int
    n_duplicates: int
    n_near_duplicates: int
    metric: str
