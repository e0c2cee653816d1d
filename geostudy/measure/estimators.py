"""The intrinsic-dimension estimators, through idest, turned into table rows.

One function, `estimate`, runs the chosen estimators on one token cloud X (N, D), exactly as a
user would call idest on the same array (X is passed as saved, float32 by default; idest works
in float64 internally). TwoNN, MLE and GRIDE read one shared exact neighbour search,
``nb = idest.neighborhoods(X, k=idest.k_needed(...))``, which gives results bit-identical to
calling each on X:

* twonn: ``idest.twonn(nb, discard_fraction=0.1)`` -> quantity ``id_twonn`` (error: its
  asymptotic standard error);
* mle: ``idest.mle(nb, k=20)`` -> ``id_mle`` (error: standard error across points);
* gride: ``idest.gride(nb, range_max=64)`` -> ``id_gride`` once per scale, param = the neighbour
  order n1 (n2 = 2 n1), error: its Fisher-information standard error;
* pca: ``idest.pca(X, variance=[0.75, 0.8, 0.85, 0.9, 0.95], solver="covariance")`` ->
  ``pca_components`` (param = the variance level), ``pca_participation_ratio``, and the
  spectrum. The covariance (or, for fewer points than dimensions, Gram) eigen-solver is several
  times faster than an SVD on the pooled 9,335 x 3,072 MLP clouds; it resolves eigenvalues down
  to about max(N, D) eps times the largest, far below anything the study reads.

An estimator that refuses the cloud (idest raises ValueError, e.g. too few points for k=20) is
recorded as skipped with idest's message; the study goes on.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

import idest

ESTIMATORS = ("twonn", "mle", "gride", "pca")
KNN_ESTIMATORS = ("twonn", "mle", "gride")  # the ones that read the shared neighbour search
PCA_LEVELS = (0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class EstimatorSettings:
    estimators: tuple[str, ...] = ESTIMATORS
    twonn_discard_fraction: float = 0.1
    mle_k: int = 20
    gride_range_max: int = 64
    pca_levels: tuple[float, ...] = PCA_LEVELS
    pca_solver: str = "covariance"

    def as_dict(self) -> dict:
        return {
            "estimators": list(self.estimators),
            "twonn_discard_fraction": self.twonn_discard_fraction,
            "mle_k": self.mle_k,
            "gride_range_max": self.gride_range_max,
            "pca_levels": list(self.pca_levels),
            "pca_solver": self.pca_solver,
        }


@dataclass
class Estimates:
    """What the estimators said about one cloud."""

    items: list = field(default_factory=list)  # (quantity, param, value, error)
    spectrum: np.ndarray | None = None  # covariance eigenvalues (ddof=1), descending
    explained: np.ndarray | None = None  # spectrum / spectrum.sum()
    skipped: list = field(default_factory=list)  # (estimator, reason)


def _no_timer(stage):
    return nullcontext()


def estimate(X: np.ndarray, settings: EstimatorSettings, timer=None, prefix: str = "", search=None) -> Estimates:
    """Run the chosen estimators on X, and always the covariance spectrum (the log-volume reads
    it); `timer(stage)` (a context manager) times each step. `search(X, k)` finds the exact
    neighbourhoods (default idest.neighborhoods; a cluster's search gives the same arrays)."""
    timer = timer or _no_timer
    out = Estimates()
    chosen = settings.estimators
    with timer(prefix + "neighbours"):
        nb = _neighbours(X, settings, out, search or _in_process)
    if nb is not None:
        with timer(prefix + "twonn, mle, gride"):
            if "twonn" in chosen:
                add_twonn(nb, settings, out)
            if "mle" in chosen:
                add_mle(nb, settings, out)
            if "gride" in chosen:
                add_gride(nb, settings, out)
    with timer(prefix + "pca"):
        _pca(X, settings, out)
    return out


def _in_process(X, k: int):
    return idest.neighborhoods(X, k=k)


def _neighbours(X, settings, out, search):
    """One exact neighbour search serving every chosen kNN estimator (None if none is chosen)."""
    chosen = settings.estimators
    if not any(e in chosen for e in KNN_ESTIMATORS):
        return None
    k = idest.k_needed(
        twonn="twonn" in chosen,
        mle=settings.mle_k if "mle" in chosen else None,
        gride=settings.gride_range_max if "gride" in chosen else None,
    )
    try:
        return search(X, k)
    except ValueError as err:  # e.g. a single distinct point: every kNN estimator refuses it
        out.skipped += [(e, str(err)) for e in KNN_ESTIMATORS if e in chosen]
        return None


def add_twonn(nb, settings, out) -> None:
    """add_twonn, add_mle, add_gride: the estimator's rows from nb into out.items (into
    out.skipped, with idest's message, when it refuses the cloud). settings: any object with the
    estimator's fields (EstimatorSettings, the corpus-scale study's ScaleSettings)."""
    try:
        r = idest.twonn(nb, discard_fraction=settings.twonn_discard_fraction)
        out.items.append(("id_twonn", None, float(r.dimension), float(r.error)))
    except ValueError as err:
        out.skipped.append(("twonn", str(err)))


def add_mle(nb, settings, out) -> None:
    try:
        r = idest.mle(nb, k=settings.mle_k)
        out.items.append(("id_mle", None, float(r.dimension), float(r.error)))
    except ValueError as err:
        out.skipped.append(("mle", str(err)))


def add_gride(nb, settings, out) -> None:
    try:
        r = idest.gride(nb, range_max=settings.gride_range_max)
        for n1, d, e in zip(r.scales.tolist(), r.dimensions.tolist(), r.errors.tolist()):
            out.items.append(("id_gride", int(n1), float(d), float(e)))
    except ValueError as err:
        out.skipped.append(("gride", str(err)))


def _pca(X, settings, out):
    """PCA when chosen (its spectrum comes with it); otherwise the spectrum alone."""
    if "pca" in settings.estimators:
        try:
            r = idest.pca(X, variance=list(settings.pca_levels), solver=settings.pca_solver)
            for level, n in zip(r.variance_levels, r.dimensions.tolist()):
                out.items.append(("pca_components", float(level), int(n), None))
            out.items.append(("pca_participation_ratio", None, float(r.participation_ratio), None))
            out.spectrum, out.explained = r.spectrum, r.explained_variance_ratio
        except ValueError as err:
            out.skipped.append(("pca", str(err)))
    else:
        try:
            out.spectrum = idest.spectrum(X, solver=settings.pca_solver)
            out.explained = out.spectrum / out.spectrum.sum()
        except ValueError as err:
            out.skipped.append(("spectrum", str(err)))
