"""Estimates on point clouds of known intrinsic dimension, and rotation invariance.

Tolerances come from a seed study (N = 1000 points each, seeds 0..49, the same
generators as below), which gave for estimate - d:

    data (d)            estimator       mean     sd     worst |dev|   tolerance
    hypercube (4)       twonn           -0.20    0.14   0.55          0.70
                        twonn mle       -0.19    0.15   0.53          0.70
                        mle k=20        -0.39    0.04   0.47          0.60
                        gride n1=1      -0.19    0.14   0.53          0.70
                        gride n1=4      -0.33    0.07   0.49          0.65
    5-sphere (5)        twonn           -0.08    0.20   0.73          0.95
                        twonn mle       -0.07    0.20   0.63          0.80
                        mle k=20        -0.18    0.05   0.28          0.40
                        gride n1=1      -0.07    0.20   0.63          0.80
                        gride n1=4      -0.14    0.11   0.35          0.45
    Gaussian in R^768   twonn           -0.15    0.29   0.80          1.00
    (8)                 twonn mle       -0.14    0.32   0.82          1.05
                        mle k=20        -0.60    0.05   0.73          0.95
                        gride n1=1      -0.14    0.32   0.82          1.05
                        gride n1=4      -0.42    0.12   0.64          0.85
    swiss roll (2)      twonn           -0.02    0.08   0.22          0.30
                        twonn mle       -0.03    0.08   0.17          0.25
                        mle k=20        -0.07    0.02   0.10          0.15
                        gride n1=1      -0.02    0.08   0.17          0.25
                        gride n1=4      -0.05    0.04   0.12          0.20
    local PCA FO k=50:  hypercube 4 and Gaussian 8 in all 50 seeds (sd 0).
    participation ratio: hypercube -0.015 (sd 0.006, worst 0.033), Gaussian -0.07
                        (sd 0.017, worst 0.11): tolerances 0.05 and 0.15.

Tolerance = 1.25 x the worst deviation over the 50 seeds, rounded up to 0.05: with the
bias included and 4-5 standard deviations of room. (The negative biases are the known
finite-sample and boundary biases of these estimators, largest for MLE at d = 8.)
The tests use seeds 100 and 101, outside the study.
"""

import numpy as np
import pytest

import idest

N = 1000
SEEDS = (100, 101)


def hypercube(n, d, rng):
    return rng.uniform(size=(n, d))


def sphere(n, d, rng):
    """Uniform on the d-sphere in R^(d+1)."""
    g = rng.standard_normal((n, d + 1))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def gaussian_in_768(n, d, rng):
    """Standard Gaussian of dimension d on a random d-plane of R^768."""
    q, _ = np.linalg.qr(rng.standard_normal((768, d)))
    return rng.standard_normal((n, d)) @ q.T


def swiss_roll(n, d, rng):
    u, v = rng.uniform(size=(2, n))
    t = 1.5 * np.pi * (1 + 2 * u)
    return np.stack([t * np.cos(t), 21 * v, t * np.sin(t)], axis=1)


CASES = {
    "hypercube": (hypercube, 4),
    "sphere": (sphere, 5),
    "gaussian768": (gaussian_in_768, 8),
    "swissroll": (swiss_roll, 2),
}

ESTIMATORS = {
    "twonn": lambda X: idest.twonn(X).dimension,
    "twonn_mle": lambda X: idest.twonn(X, discard_fraction=0, method="mle").dimension,
    "mle": lambda X: idest.mle(X, k=20).dimension,
    "gride1": lambda X: idest.gride(X, range_max=8).dimensions[0],
    "gride4": lambda X: idest.gride(X, range_max=8).dimensions[2],
}

TOLERANCE = {
    "hypercube": {"twonn": 0.70, "twonn_mle": 0.70, "mle": 0.60, "gride1": 0.70, "gride4": 0.65},
    "sphere": {"twonn": 0.95, "twonn_mle": 0.80, "mle": 0.40, "gride1": 0.80, "gride4": 0.45},
    "gaussian768": {"twonn": 1.00, "twonn_mle": 1.05, "mle": 0.95, "gride1": 1.05, "gride4": 0.85},
    "swissroll": {"twonn": 0.30, "twonn_mle": 0.25, "mle": 0.15, "gride1": 0.25, "gride4": 0.20},
}


@pytest.fixture(scope="module", params=[(case, seed) for case in CASES for seed in SEEDS], ids=str)
def cloud(request):
    case, seed = request.param
    gen, d = CASES[case]
    return case, d, gen(N, d, np.random.default_rng(seed))


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_known_dimension(cloud, estimator):
    case, d, X = cloud
    estimate = ESTIMATORS[estimator](X)
    assert abs(estimate - d) <= TOLERANCE[case][estimator], (case, estimator, estimate)


@pytest.mark.parametrize("case", ["hypercube", "gaussian768"])
def test_linear_sets_pca(case):
    gen, d = CASES[case]
    for seed in SEEDS:
        X = gen(N, d, np.random.default_rng(seed))
        assert idest.local_pca(X, k=50, rule="FO").dimension == pytest.approx(d, abs=0.05)
        tol = {"hypercube": 0.05, "gaussian768": 0.15}[case]
        assert abs(idest.pca(X).participation_ratio - d) <= tol


def test_rank_of_a_flat_gaussian_is_exact():
    X = gaussian_in_768(500, 8, np.random.default_rng(0))
    result = idest.pca(X, variance=[0.5, 0.999999])
    assert np.count_nonzero(result.spectrum) == 8  # numerically-zero eigenvalues are 0
    assert result.dimensions[-1] == 8
    assert result.spectrum.shape == (500,)  # min(N, D)


def test_rotation_invariance():
    rng = np.random.default_rng(7)
    flat = np.zeros((800, 768))
    flat[:, :8] = rng.standard_normal((800, 8)) * np.linspace(1, 2, 8)
    q, _ = np.linalg.qr(rng.standard_normal((768, 768)))
    rotated = flat @ q
    for f in (
        lambda X: idest.twonn(X).dimension,
        lambda X: idest.twonn(X, metric="cosine").dimension,
        lambda X: idest.mle(X, k=15).dimension,
        lambda X: idest.gride(X).dimensions,
        lambda X: idest.local_pca(X, k=30, rule="participation_ratio").dimension,
        lambda X: idest.pca(X).participation_ratio,
        lambda X: idest.pca(X).spectrum[:8],
    ):
        np.testing.assert_allclose(f(rotated), f(flat), rtol=1e-6)
