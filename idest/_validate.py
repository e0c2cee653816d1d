"""Input validation, done once at the public boundary so the kernels can trust their input.

Every failure raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind,
unusable values) with a message that says what was wrong and how to fix it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numba as nb
import numpy as np

from .results import Neighborhoods

METRICS = ("euclidean", "cosine")
DUPLICATE_POLICIES = ("drop", "raise")

# The accepted range of the largest |value| of X (or X all zeros). Every estimate is the
# same for X and c X anywhere in it (``tests/test_hostile_idest.py``). Above the top, sums
# of squares (variances, PCA's spectrum) overflow float64. Below the bottom, the smallest
# eigenvalue PCA keeps, about (eps max|x|)^2 (see pca._input_rounding_variance), would not be
# a normal float64: (2.2e-16 * 1e-138)^2 is float64's smallest normal number, 2.2e-308.
MIN_ABS_VALUE = 1e-130
MAX_ABS_VALUE = 1e150
_INT_EXACT = 2**53


class CleanPoints:
    """A validated (N, D) float32/float64 C-contiguous array plus facts found while checking:
    ``max_abs`` (its largest |value|) and ``eps``, the machine epsilon of the dtype X came in
    (float16 data widened to float32 keep float16's; integers count as float64), which sets
    the near-duplicate tolerance."""

    __slots__ = ("X", "max_abs", "eps")

    def __init__(self, X: np.ndarray, max_abs: float, eps: float):
        self.X = X
        self.max_abs = max_abs
        self.eps = eps


def as_points(X, *, name: str = "X") -> CleanPoints:
    """Return ``X`` as a clean C-contiguous float32/float64 array of shape (N, D).

    Handling (documented in the package docstring):
    float32 and float64 are used as given; float16 is widened to float32 and integers to
    float64 (both exact); bool, complex, object and string data are refused.
    """
    if isinstance(X, np.ndarray):
        arr = X
    elif isinstance(X, Neighborhoods):
        raise TypeError(
            f"{name} is an idest.Neighborhoods; this function needs the point cloud itself, the "
            "(n_points, n_features) array (only twonn, twonn_scaling, mle, gride and local_pca "
            "accept Neighborhoods)."
        )
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists etc.
            raise TypeError(
                f"{name} must be a 2-D array of numbers with shape (n_points, n_features); "
                f"could not convert the {type(X).__name__} given ({exc})."
            ) from None

    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(
            f"{name} is boolean; convert it explicitly (e.g. {name}.astype(np.float64)) "
            "if you mean 0/1 coordinates."
        )
    if kind == "c":
        raise TypeError(f"{name} is complex; pass real coordinates (e.g. stack real and imaginary parts).")
    if kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (float32 or float64); got dtype {arr.dtype}."
        )

    if arr.ndim != 2:
        if arr.ndim == 1:
            hint = (
                f"For {arr.shape[0]} points with one feature use {name}.reshape(-1, 1); "
                f"for one point with {arr.shape[0]} features there is nothing to estimate."
            )
        elif arr.ndim == 0:
            hint = "A scalar is not a point cloud."
        else:
            hint = (
                f"For a batch of point clouds, pass one cloud at a time ({name}[i]) or merge "
                f"them with {name}.reshape(-1, {arr.shape[-1]})."
            )
        raise ValueError(
            f"{name} must be 2-D with shape (n_points, n_features); got a {arr.ndim}-D array "
            f"of shape {arr.shape}. {hint}"
        )
    n, d = arr.shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs points and features.")

    eps = float(np.finfo(arr.dtype).eps) if arr.dtype in (np.float16, np.float32) else float(np.finfo(np.float64).eps)
    if kind in "iu":
        if arr.size and max(abs(int(arr.max())), abs(int(arr.min()))) > _INT_EXACT:
            raise ValueError(
                f"{name} holds integers beyond 2**53, which float64 cannot represent exactly; "
                "rescale them first."
            )
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)  # longdouble and friends: compute in float64
    arr = np.ascontiguousarray(arr)

    bad, row, col, max_abs = _value_scan(arr)
    if bad:
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s) (first at row {row}, column {col}). "
            f"Drop or impute those rows first, e.g. {name}[np.isfinite({name}).all(axis=1)]."
        )
    if max_abs > MAX_ABS_VALUE or 0.0 < max_abs < MIN_ABS_VALUE:
        why = (
            "beyond, squared distances would overflow float64"
            if max_abs > MAX_ABS_VALUE
            else "below, PCA's variances would fall out of float64's normal range"
        )
        raise ValueError(
            f"{name} has values up to {max_abs:.3g}; idest accepts data whose largest |value| lies in "
            f"[{MIN_ABS_VALUE:g}, {MAX_ABS_VALUE:g}]: {why}. Rescale it, e.g. {name} / np.abs({name}).max() "
            "(intrinsic-dimension estimates do not depend on the scale)."
        )
    return CleanPoints(arr, float(max_abs), eps)


@nb.njit(cache=True, nogil=True)
def _value_scan(X):
    """Return (number of non-finite values, first bad row, first bad column, max |finite value|).

    One pass instead of ``np.isfinite(X).all()`` + ``np.abs(X).max()``: no (N, D) temporaries.
    """
    n, d = X.shape
    bad = 0
    first_row = -1
    first_col = -1
    amax = 0.0
    for i in range(n):
        for j in range(d):
            v = np.float64(X[i, j])
            if np.isfinite(v):
                a = abs(v)
                if a > amax:
                    amax = a
            else:
                if bad == 0:
                    first_row = i
                    first_col = j
                bad += 1
    return bad, first_row, first_col, amax


def abs_max(X: np.ndarray) -> float:
    """max |x| of finite, already validated data (0 if empty), from its max and min: no
    (N, D) temporary of |X|, which for the pooled clouds costs more than the search's setup."""
    return max(float(X.max()), -float(X.min())) if X.size else 0.0


def check_near_duplicate_tol(value) -> float:
    """A finite number >= 0 (in units of the input dtype's machine epsilon; 0: off)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"near_duplicate_tol must be a number (in units of eps); got {value!r}.")
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"near_duplicate_tol must be finite and >= 0 (0 turns the detection off); got {value}.")
    return value


def check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
    return value


def check_fraction(name: str, value, *, low_open: bool = False, high_open: bool = True) -> float:
    """A float in [0, 1) by default (the open ends are configurable)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}.")
    value = float(value)
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok and np.isfinite(value)):
        lo = "(0" if low_open else "[0"
        hi = "1)" if high_open else "1]"
        raise ValueError(f"{name} must lie in {lo}, {hi}; got {value}.")
    return value


def check_metric(metric) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    return metric


def check_on_duplicates(policy) -> str:
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"on_duplicates must be one of {DUPLICATE_POLICIES}; got {policy!r}.")
    return policy


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}.")
    return value


def power_of_two_scale(max_abs: float) -> float:
    """A power of two s with s * max_abs in [0.5, 1): scaling by it is exact and keeps
    float32 products away from overflow and underflow whatever the data's units."""
    if max_abs == 0.0:
        return 1.0
    _, exponent = np.frexp(max_abs)
    return float(np.ldexp(1.0, -int(exponent)))
