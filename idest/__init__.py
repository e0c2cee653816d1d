"""idest: fast, exact intrinsic-dimension estimators for point clouds (N, D).

Numbers agree with scikit-dimension 0.5 and DADApy on the same data; neighbours come
from an exact engine built on float32 BLAS products (``idest.knn``; the engine is ``idest._knn``).

    import idest
    idest.twonn(X).dimension            # TwoNN (DADApy compute_id_2NN / skdim TwoNN)
    idest.mle(X, k=20).local            # Levina-Bickel, per point and combined
    idest.pca(X, variance=[0.75, 0.9])  # global PCA counts, spectrum, participation ratio
    idest.gride(X).dimensions           # multiscale GRIDE (DADApy return_id_scaling_gride)

One neighbour search can serve several estimators (bit-identical results; see
``idest.neighborhoods``), and PCA can trade the far tail of the spectrum for speed:

    nb = idest.neighborhoods(X, k=idest.k_needed(twonn=True, mle=20, gride=64))
    idest.twonn(nb); idest.mle(nb, k=20); idest.gride(nb, range_max=64)
    idest.pca(X, variance=0.9, solver="covariance")   # "auto" (default) | "covariance" | "svd"

Input handling, for every function: X must be 2-D (n_points, n_features), finite, with
its largest |value| 0 or within [1e-130, 1e150] (inside, every estimate is the same for X
and c X; outside, a ValueError says to rescale); float32 and float64 are used as given,
float16 is widened to float32 and integers to float64 (exactly); bool, complex and
non-numeric data are refused. Duplicated points (distance 0) are dropped by default for the
neighbour-based estimators, keeping the first copy, and counted in ``n_duplicates``;
near-duplicates (within ``near_duplicate_tol`` = 64 machine epsilons of X's dtype, relative
to the points' norms; see ``idest.neighborhoods``) likewise, counted in
``n_near_duplicates``; ``on_duplicates="raise"`` refuses both instead.
The neighbour-based estimators (twonn, twonn_scaling, mle, gride, local_pca) also accept
the ``Neighborhoods`` of ``idest.neighborhoods(X, k)`` in place of X: they use its metric and
duplicate settings (passing different ``metric``, ``on_duplicates`` or ``near_duplicate_tol``
is an error) and read the first columns they need (holding too few is an error saying which
k to compute).
Errors are ValueError/TypeError saying what was wrong and how to fix it.
"""

from .blocked_knn import (
    BlockNeighbors,
    BlockPlan,
    KnnCloud,
    PairCandidates,
    knn_blocked,
    knn_group,
    knn_pair,
    merge_blocks,
    neighborhoods_blocked,
    plan_blocks,
    prepare_cloud,
)
from .estimators import GRIDE, MLE, PCA, LocalPCA, TwoNN
from .gride import gride
from .mle import mle
from .neighbor_search import k_needed, knn, neighborhoods
from .pca import SOLVERS as PCA_SOLVERS
from .pca import local_pca, n_components_for_variance, pca, spectrum
from .pca_rules import RULES as PCA_RULES
from .pca_rules import pca_rule
from .results import (
    GrideResult,
    LocalPCAResult,
    MLEResult,
    Neighborhoods,
    PCAResult,
    TwoNNResult,
    TwoNNScalingResult,
)
from .twonn import twonn, twonn_scaling

__all__ = [
    "twonn",
    "twonn_scaling",
    "mle",
    "pca",
    "local_pca",
    "gride",
    "knn",
    "neighborhoods",
    "k_needed",
    "knn_blocked",
    "neighborhoods_blocked",
    "plan_blocks",
    "prepare_cloud",
    "knn_pair",
    "knn_group",
    "merge_blocks",
    "BlockPlan",
    "KnnCloud",
    "PairCandidates",
    "BlockNeighbors",
    "spectrum",
    "n_components_for_variance",
    "pca_rule",
    "PCA_RULES",
    "PCA_SOLVERS",
    "Neighborhoods",
    "TwoNNResult",
    "TwoNNScalingResult",
    "MLEResult",
    "PCAResult",
    "LocalPCAResult",
    "GrideResult",
    "TwoNN",
    "MLE",
    "PCA",
    "LocalPCA",
    "GRIDE",
]
