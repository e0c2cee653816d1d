"""Hostile inputs for idest (issue 10, points 12 and 13). Each test here failed on the code
before the fix it names; each compares against a reference that does not depend on the
fix (the same estimator on the cloud without the copies, the same cloud at scale 1).

12. Near-duplicates: rows that differ from another row only in their last bits.
13. Scale: the same cloud multiplied by 10^-130 ... 10^150, and beyond that range.
"""

import dataclasses

import numpy as np
import pytest

import idest

EPS32 = float(np.finfo(np.float32).eps)


def embedding_cloud(n, d=768, seed=0):
    """GPT-2-like float32 cloud: a curved 12-dimensional manifold in R^d with small noise,
    three coordinates offset by 3000 (residual streams sit far from the origin)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 12))
    X = np.tanh(z @ rng.standard_normal((12, 64))) @ rng.standard_normal((64, d))
    X += 0.01 * rng.standard_normal((n, d))
    X[:, :3] += 3000.0
    return X.astype(np.float32)


def fields_except(result, *names):
    """Every field of a result (arrays as bytes, so equality is bit for bit) except names."""
    out = {}
    for f in dataclasses.fields(result):
        if f.name in names:
            continue
        value = getattr(result, f.name)
        out[f.name] = (value.dtype.str, value.shape, value.tobytes()) if isinstance(value, np.ndarray) else value
    return out


# ------------------------------------------------------------------ 12. near-duplicates


@pytest.fixture(scope="module")
def issue_cloud():
    """The issue's scenario: 10,000 x 768 float32 points of which 3 % are copies of other
    rows scaled by (1 + 1e-7), i.e. changed in their last bit; the copies come after the
    rows they copy, so dropping them (first copy kept) leaves exactly the clean cloud."""
    clean = embedding_cloud(9_700)
    copied = np.random.default_rng(1).choice(len(clean), 300, replace=False)
    with_copies = np.vstack([clean, clean[copied] * np.float32(1 + 1e-7)])
    assert not np.any(np.all(with_copies[9_700:] == clean[copied], axis=1))  # no exact repeat
    return clean, with_copies


ISSUE_ESTIMATORS = {
    "twonn": lambda src: idest.twonn(src),
    "twonn_ml": lambda src: idest.twonn(src, discard_fraction=0.0, method="mle"),
    "mle_20": lambda src: idest.mle(src, k=20),
    "gride": lambda src: idest.gride(src, range_max=64),
}


def test_last_bit_copies_in_float32_embeddings_do_not_bias_the_estimates(issue_cloud):
    # before: TwoNN 15 % low, MLE(k=20) 32 % low, the ML TwoNN about 1 instead of 11
    clean, with_copies = issue_cloud
    nb_clean = idest.neighborhoods(clean, k=64)
    nb = idest.neighborhoods(with_copies, k=64)
    assert (nb.n_near_duplicates, nb.n_duplicates, nb.n_points) == (300, 0, 9_700)
    np.testing.assert_array_equal(nb.point_index, np.arange(9_700))
    for name, run in ISSUE_ESTIMATORS.items():
        expected = run(nb_clean)
        assert expected.n_near_duplicates == 0
        got = run(nb)
        assert got.n_near_duplicates == 300 and got.n_duplicates == 0, name
        assert fields_except(got, "n_near_duplicates") == fields_except(expected, "n_near_duplicates"), name
    # and straight from X, each estimator's own search finds the same copies
    for name in ("twonn", "mle_20"):
        got = ISSUE_ESTIMATORS[name](with_copies)
        assert got.n_near_duplicates == 300, name
        assert got.dimension == ISSUE_ESTIMATORS[name](clean).dimension, name


def near_copy_groups():
    """Near-copies placed *before* the rows they copy, a group of six (more than TwoNN's two
    neighbours can see at once) and a chain a ~ b ~ c where a and c are farther apart than
    the tolerance: the groups must not depend on how many neighbours a search holds."""
    X = embedding_cloud(600, d=64, seed=3).astype(np.float64)
    X = X[:, 3:] + 1.0  # off the origin, but not by thousands: ||x|| ~ 60
    eps64 = np.finfo(np.float64).eps  # X is float64: the tolerance is 64 float64 eps
    rows = [X[0] * (1 + 10 * eps64)]  # row 0: a near-copy of row 1 (= X[0]), placed before it
    rows += list(X)
    rows += [X[10] * (1 + q * 1e-15) for q in range(1, 6)]  # five near-copies of X[10] (row 11)
    # a chain: X[20] * (1 + 40 eps), then * (1 + 80 eps): consecutive links within the
    # tolerance, the ends not
    rows += [X[20] * (1 + 40 * eps64), X[20] * (1 + 80 * eps64)]
    return np.array(rows)


def test_near_copies_keep_the_first_row_of_each_group_whatever_k():
    X = near_copy_groups()
    n = len(X)
    # rows of X: 0 copies 1; 11 has near-copies 601..605; 21 chains with 606 and 607
    dropped = {1, 601, 602, 603, 604, 605, 606, 607}
    keep = np.array([i for i in range(n) if i not in dropped])
    tw = idest.twonn(X)  # a search for 2 neighbours
    nb = idest.neighborhoods(X, k=64)
    for result in (tw, nb, idest.mle(X, k=5), idest.gride(X, range_max=8)):
        assert result.n_near_duplicates == len(dropped) and result.n_duplicates == 0
    np.testing.assert_array_equal(tw.point_index, keep)
    np.testing.assert_array_equal(nb.point_index, keep)
    same = ("point_index", "n_near_duplicates")
    assert fields_except(tw, *same) == fields_except(idest.twonn(X[keep]), *same)


def test_float32_rows_parallel_up_to_rounding_are_cosine_duplicates():
    # 2.5 x rounded to float32 points the same way as x up to its last bit: a duplicate for
    # the cosine distance (before: kept, with 1 - cos ~ 1e-14 against ~1e-3 for real pairs)
    X = embedding_cloud(400, d=64, seed=4)
    Y = np.vstack([X, np.float32(2.5) * X[:7]])
    cos = idest.twonn(Y, metric="cosine")
    assert cos.n_points == 400 and cos.n_duplicates + cos.n_near_duplicates == 7
    assert cos.dimension == idest.twonn(X, metric="cosine").dimension
    # for the Euclidean distance they are other points
    assert idest.twonn(Y).n_points == 407


def test_refusing_duplicates_refuses_near_duplicates_too():
    X = embedding_cloud(300, d=64, seed=5)
    Y = np.vstack([X, X[[4, 9]] * np.float32(1 + 1e-7)])
    message = (r"X contains 2 near-duplicated point\(s\) \(rows 300, 301 lie within near_duplicate_tol=64 "
               r"eps .*on_duplicates='drop'.*near_duplicate_tol=0")
    with pytest.raises(ValueError, match=message):
        idest.twonn(Y, on_duplicates="raise")
    with pytest.raises(ValueError, match=message):
        idest.neighborhoods(Y, k=10, on_duplicates="raise")


# ------------------------------------------------------------------ 13. scale

# (the cloud's largest |value| lies in [0.5, 1))
ACCEPTED_SCALES = [2e-130, 1e-100, 1e-50, 1e-20, 1e20, 1e50, 1e77, 1e100, 1e150, 2.0**-430, 2.0**498]
REFUSED_SCALES = [1e-310, 1e-200, 1e-140, 1e160]


def scale_cloud():
    """A curved 4-dimensional cloud in R^24, float64, away from the origin, its largest
    |value| in [0.5, 1) (divided by a power of two: exactly)."""
    rng = np.random.default_rng(7)
    z = rng.standard_normal((300, 4))
    X = np.tanh(z @ rng.standard_normal((4, 12))) @ rng.standard_normal((12, 24)) + 2.0
    return X / 2.0 ** np.ceil(np.log2(np.abs(X).max()))


# fields in units of length (power 1) or of variance (power 2); GRIDE's "scales" are
# neighbour orders, TwoNN scaling's are lengths
UNIT_POWER = {"scale": 1, "radii": 1, "distances": 1, "points": 1, "spectrum": 2}
UNIT_POWER_OF = {idest.TwoNNScalingResult: {"scales": 1}}


def as_numbers(result, scale):
    """Everything a result says, in the units of scale 1: lengths divided by the scale,
    variances by its square (dividing twice: the square itself may overflow)."""
    if isinstance(result, tuple):  # knn
        return {"distances": result[0] / scale, "indices": result[1]}
    out = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        power = UNIT_POWER_OF.get(type(result), {}).get(f.name, UNIT_POWER.get(f.name, 0))
        for _ in range(power):
            value = np.asarray(value) / scale
        out[f.name] = value
    return out


SCALE_ESTIMATORS = {
    "twonn": lambda X: idest.twonn(X),
    "twonn_scaling": lambda X: idest.twonn_scaling(X, n_min=40),
    "mle": lambda X: idest.mle(X, k=10),
    "gride": lambda X: idest.gride(X, range_max=32),
    "pca_covariance": lambda X: idest.pca(X, variance=[0.5, 0.9, 0.99], solver="covariance"),
    "pca_svd": lambda X: idest.pca(X, variance=[0.5, 0.9, 0.99], solver="svd"),
    "local_pca_fan": lambda X: idest.local_pca(X, k=20, rule="Fan"),
    "local_pca_pr": lambda X: idest.local_pca(X, k=20, rule="participation_ratio"),
    "neighborhoods": lambda X: idest.neighborhoods(X, k=16),
    "knn": lambda X: idest.knn(X, 8),
}


def assert_same_numbers(got, expected, context, rtol):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        other = got[name]
        if isinstance(value, (str, bool, tuple)) or value is None:
            assert other == value, (context, name)
            continue
        value, other = np.asarray(value), np.asarray(other)
        if value.dtype.kind in "iub":
            np.testing.assert_array_equal(other, value, err_msg=f"{context}: {name}")
        else:
            np.testing.assert_allclose(other, value, rtol=rtol, atol=0, err_msg=f"{context}: {name}")


@pytest.mark.parametrize("estimator", sorted(SCALE_ESTIMATORS))
def test_scale_invariance_over_the_accepted_range_and_a_clear_error_outside(estimator):
    # before: PCA's participation ratio NaN from 1e77 on; 1e-310 gave NaN with a
    # RuntimeWarning (an ldexp overflow) or, in PCA, a LinAlgError; 1e-160 "zero variance"
    run = SCALE_ESTIMATORS[estimator]
    X = scale_cloud()
    expected = as_numbers(run(X), 1.0)
    with np.errstate(over="raise", invalid="raise"):  # no overflow or NaN on the way
        for scale in ACCEPTED_SCALES:
            exact = np.log2(scale).is_integer()  # powers of two scale every step exactly
            got = as_numbers(run(X * scale), scale)
            assert_same_numbers(got, expected, f"scale {scale:g}", rtol=0.0 if exact else 1e-9)
    for scale in REFUSED_SCALES:
        with pytest.raises(ValueError, match=r"X has values up to .*; idest accepts data whose largest \|value\| "
                                             r"lies in \[1e-130, 1e\+150\].*Rescale it"):
            run(X * scale)
