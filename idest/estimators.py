"""Thin scikit-learn-style wrappers: ``idest.TwoNN().fit(X).dimension_``.

They only store options and call the functional API; the full result object is kept in
``result_``. No scikit-learn dependency (``get_params`` is enough for cloning-free use).
"""

from __future__ import annotations

from typing import Any

from .gride import gride
from .mle import mle
from .pca import local_pca, pca
from .twonn import twonn


class _Estimator:
    _function: Any = None

    def __init__(self, **options):
        self._options = dict(options)

    def get_params(self, deep: bool = True) -> dict:
        return dict(self._options)

    def fit(self, X, y=None):
        """Estimate on X (N, D), or on ``idest.neighborhoods(X, k)`` where the function
        accepts it; ``y`` is ignored. Returns self."""
        self.result_ = type(self)._function(X, **self._options)
        self.dimension_ = getattr(self.result_, "dimension", None)
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).dimension_

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({args})"


class TwoNN(_Estimator):
    """``idest.twonn`` as an estimator: dimension_, error_, result_."""

    _function = staticmethod(twonn)

    def fit(self, X, y=None):
        super().fit(X)
        self.error_ = self.result_.error
        return self


class MLE(_Estimator):
    """``idest.mle`` as an estimator: dimension_, error_, dimension_pw_ (local), result_."""

    _function = staticmethod(mle)

    def fit(self, X, y=None):
        super().fit(X)
        self.error_ = self.result_.error
        self.dimension_pw_ = self.result_.local
        return self


class PCA(_Estimator):
    """``idest.pca`` as an estimator: dimension_, spectrum_, result_."""

    _function = staticmethod(pca)

    def fit(self, X, y=None):
        super().fit(X)
        self.spectrum_ = self.result_.spectrum
        return self


class LocalPCA(_Estimator):
    """``idest.local_pca`` as an estimator: dimension_, dimension_pw_, result_."""

    _function = staticmethod(local_pca)

    def fit(self, X, y=None):
        super().fit(X)
        self.dimension_pw_ = self.result_.local
        return self


class GRIDE(_Estimator):
    """``idest.gride`` as an estimator: dimensions_, errors_, scales_, result_
    (``dimension_`` is the estimate at the first scale, n1 = 1)."""

    _function = staticmethod(gride)

    def fit(self, X, y=None):
        self.result_ = gride(X, **self._options)
        self.dimensions_ = self.result_.dimensions
        self.errors_ = self.result_.errors
        self.scales_ = self.result_.scales
        self.dimension_ = float(self.result_.dimensions[0])
        return self
