"""Thin scikit-learn-style wrappers: ``idest.TwoNN(discard_fraction=0.1).fit(X).dimension_``.

Each class takes its function's options as explicit keyword arguments (with the function's
defaults), stores them unchanged as attributes of the same names, and only calls the
functional API in ``fit``; the full result object is kept in ``result_``. ``get_params``,
``set_params`` and ``sklearn.base.clone`` work as for scikit-learn estimators, without a
scikit-learn dependency. Options are checked when ``fit`` calls the function, as
scikit-learn does.
"""

from __future__ import annotations

import inspect
from typing import Any

from .gride import gride
from .mle import mle
from .pca import local_pca, pca
from .pca_rules import DEFAULTS as RULE_DEFAULTS
from .twonn import twonn


class _Estimator:
    """Parameters are the keyword arguments of ``__init__``, held as attributes."""

    _function: Any = None

    @classmethod
    def _parameter_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters and their current values (``deep`` is accepted for
        scikit-learn; these estimators hold no sub-estimators)."""
        return {name: getattr(self, name) for name in self._parameter_names()}

    def set_params(self, **params):
        """Set parameters by name (as scikit-learn); returns self."""
        valid = self._parameter_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; its parameters are {valid}."
                )
            setattr(self, name, value)
        return self

    def _options(self) -> dict:
        """Keyword arguments for the function."""
        return self.get_params()

    def fit(self, X, y=None):
        """Estimate on X (N, D), or on ``idest.neighborhoods(X, k)`` where the function
        accepts it; ``y`` is ignored. Returns self."""
        self.result_ = type(self)._function(X, **self._options())
        self.dimension_ = getattr(self.result_, "dimension", None)
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).dimension_

    def __repr__(self) -> str:
        """The parameters that differ from their defaults, as scikit-learn prints them."""
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        args = ", ".join(
            f"{name}={value!r}" for name, value in self.get_params().items() if not _is_default(value, defaults[name])
        )
        return f"{type(self).__name__}({args})"


def _is_default(value, default) -> bool:
    """Whether a parameter still has its default (an equal value of the same type; arrays
    and other containers given explicitly always count as set)."""
    if value is default:
        return True
    return type(value) is type(default) and isinstance(value, (int, float, str)) and value == default


class TwoNN(_Estimator):
    """``idest.twonn`` as an estimator: dimension_, error_, result_. Parameters as for
    ``idest.twonn``: metric, discard_fraction, method ("linear" | "mle"), on_duplicates,
    near_duplicate_tol."""

    _function = staticmethod(twonn)

    def __init__(
        self,
        *,
        metric: str | None = None,
        discard_fraction: float = 0.1,
        method: str = "linear",
        on_duplicates: str | None = None,
        near_duplicate_tol: float | None = None,
    ):
        self.metric = metric
        self.discard_fraction = discard_fraction
        self.method = method
        self.on_duplicates = on_duplicates
        self.near_duplicate_tol = near_duplicate_tol

    def fit(self, X, y=None):
        super().fit(X)
        self.error_ = self.result_.error
        return self


class MLE(_Estimator):
    """``idest.mle`` as an estimator: dimension_, error_, dimension_pw_ (local), result_.
    Parameters as for ``idest.mle``: k (an integer or (k1, k2)), comb ("mle" | "mean" |
    "median"), unbiased, metric, on_duplicates, near_duplicate_tol."""

    _function = staticmethod(mle)

    def __init__(
        self,
        *,
        k=20,
        comb: str = "mle",
        unbiased: bool = False,
        metric: str | None = None,
        on_duplicates: str | None = None,
        near_duplicate_tol: float | None = None,
    ):
        self.k = k
        self.comb = comb
        self.unbiased = unbiased
        self.metric = metric
        self.on_duplicates = on_duplicates
        self.near_duplicate_tol = near_duplicate_tol

    def fit(self, X, y=None):
        super().fit(X)
        self.error_ = self.result_.error
        self.dimension_pw_ = self.result_.local
        return self


class PCA(_Estimator):
    """``idest.pca`` as an estimator: dimension_, spectrum_, result_. Parameters as for
    ``idest.pca``: variance (one fraction or several), solver ("auto" | "covariance" |
    "svd")."""

    _function = staticmethod(pca)

    def __init__(self, *, variance=0.9, solver: str = "auto"):
        self.variance = variance
        self.solver = solver

    def fit(self, X, y=None):
        super().fit(X)
        self.spectrum_ = self.result_.spectrum
        return self


class LocalPCA(_Estimator):
    """``idest.local_pca`` as an estimator: dimension_, dimension_pw_, result_. Parameters
    as for ``idest.local_pca``: k, rule, comb, metric, on_duplicates, near_duplicate_tol,
    and the rules' parameters alpha_fo, alpha_fan, beta_fan, p_fan, alpha_ratio (skdim's
    alphaFO, alphaFan, betaFan, PFan, alphaRatio)."""

    _function = staticmethod(local_pca)

    def __init__(
        self,
        *,
        k: int = 100,
        rule: str = "FO",
        comb: str = "mean",
        metric: str | None = None,
        on_duplicates: str | None = None,
        near_duplicate_tol: float | None = None,
        alpha_fo: float = RULE_DEFAULTS["alpha_fo"],
        alpha_fan: float = RULE_DEFAULTS["alpha_fan"],
        beta_fan: float = RULE_DEFAULTS["beta_fan"],
        p_fan: float = RULE_DEFAULTS["p_fan"],
        alpha_ratio: float = RULE_DEFAULTS["alpha_ratio"],
    ):
        self.k = k
        self.rule = rule
        self.comb = comb
        self.metric = metric
        self.on_duplicates = on_duplicates
        self.near_duplicate_tol = near_duplicate_tol
        self.alpha_fo = alpha_fo
        self.alpha_fan = alpha_fan
        self.beta_fan = beta_fan
        self.p_fan = p_fan
        self.alpha_ratio = alpha_ratio

    def fit(self, X, y=None):
        super().fit(X)
        self.dimension_pw_ = self.result_.local
        return self


class GRIDE(_Estimator):
    """``idest.gride`` as an estimator: dimensions_, errors_, scales_, result_
    (``dimension_`` is the estimate at the first scale, n1 = 1). Parameters as for
    ``idest.gride``: range_max, metric, on_duplicates, near_duplicate_tol."""

    _function = staticmethod(gride)

    def __init__(
        self,
        *,
        range_max: int = 64,
        metric: str | None = None,
        on_duplicates: str | None = None,
        near_duplicate_tol: float | None = None,
    ):
        self.range_max = range_max
        self.metric = metric
        self.on_duplicates = on_duplicates
        self.near_duplicate_tol = near_duplicate_tol

    def fit(self, X, y=None):
        self.result_ = gride(X, **self._options())
        self.dimensions_ = self.result_.dimensions
        self.errors_ = self.result_.errors
        self.scales_ = self.result_.scales
        self.dimension_ = float(self.result_.dimensions[0])
        return self
