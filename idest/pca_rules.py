"""Rules that read a dimension off a PCA spectrum (eigenvalues, descending), as skdim 0.5
``lPCA`` defines them (Fukunaga-Olsen, Fan et al., Cangelosi & Goriely, Kaiser, ...).

Each rule is a small Numba function of one spectrum; ``apply_rule`` maps it over the rows
of a 2-D array of spectra (one per neighbourhood).
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Each rule's code is a named constant, and _one dispatches on these names: neither the
# order of RULES nor the position of a name in any list decides which function runs.
_FO = 1
_FAN = 2
_MAXGAP = 3
_RATIO = 4
_KAISER = 5
_BROKEN_STICK = 6
_PARTICIPATION_RATIO = 7
_CODES = {
    "FO": _FO,
    "Fan": _FAN,
    "maxgap": _MAXGAP,
    "ratio": _RATIO,
    "Kaiser": _KAISER,
    "broken_stick": _BROKEN_STICK,
    "participation_ratio": _PARTICIPATION_RATIO,
}
RULES = tuple(_CODES)
DEFAULTS = {"alpha_fo": 0.05, "alpha_fan": 10.0, "beta_fan": 0.8, "p_fan": 0.95, "alpha_ratio": 0.05}

# numpy semantics for x / 0 (inf or nan), which the gap rules rely on, as skdim's do
_NB = dict(cache=True, nogil=True, error_model="numpy")


@nb.njit(**_NB)
def _fo(ev, alpha):
    """Fukunaga-Olsen: eigenvalues above alpha times the largest."""
    count = 0
    for v in ev:
        if v > alpha * ev[0]:
            count += 1
    return count


@nb.njit(**_NB)
def _maxgap(ev):
    """Position of the largest ratio of consecutive eigenvalues (NaN ratios 0/0 ignored)."""
    best = -1
    best_gap = 0.0
    for i in range(ev.size - 1):
        gap = ev[i] / ev[i + 1]
        if gap == gap and (best < 0 or gap > best_gap):
            best = i
            best_gap = gap
    return best + 1 if best >= 0 else ev.size


@nb.njit(**_NB)
def _ratio(ev, alpha):
    """Leading components whose cumulative share of the variance stays below alpha, plus one."""
    total = 0.0
    for v in ev:
        total += v
    count = 0
    cumulative = 0.0
    for v in ev:
        cumulative += v
        if cumulative / total < alpha:
            count += 1
    return count + 1


@nb.njit(**_NB)
def _fan(ev, alpha, beta, p):
    """Fan et al. (2010) as skdim: subtract the mean tail eigenvalue beyond the share p,
    then the first large gap (> alpha) or cumulative share above beta."""
    m = ev.size
    total = 0.0
    for v in ev:
        total += v
    r = m - 1
    cumulative = 0.0
    for i in range(m):
        cumulative += ev[i]
        if cumulative / total > p:
            r = i
            break
    sigma = 0.0
    for i in range(r, m):
        sigma += ev[i]
    sigma /= m - r
    shifted = ev - sigma
    shifted_total = 0.0
    for v in shifted:
        shifted_total += v
    first = m - 1  # neither criterion fires (degenerate spectra): all components
    for i in range(m - 1):
        if shifted[i] / shifted[i + 1] > alpha:
            first = i
            break
    cumulative = 0.0
    for i in range(m):
        cumulative += shifted[i]
        if cumulative / shifted_total > beta:
            first = min(first, i)
            break
    return first + 1


@nb.njit(**_NB)
def _kaiser(ev):
    """Eigenvalues above their mean."""
    mean = 0.0
    for v in ev:
        mean += v
    mean /= ev.size
    count = 0
    for v in ev:
        if v > mean:
            count += 1
    return count


@nb.njit(**_NB)
def _broken_stick(ev):
    """Leading eigenvalue shares above the broken-stick expectation (1/m) sum_{j>=i} 1/j."""
    m = ev.size
    total = 0.0
    for v in ev:
        total += v
    for i in range(m):
        stick = 0.0
        for j in range(i, m):
            stick += 1.0 / (j + 1)
        stick /= m
        if stick > ev[i] / total:
            return i
    return m  # every share above the stick (only if they coincide): all components


@nb.njit(**_NB)
def _participation_ratio(ev):
    s = 0.0
    s2 = 0.0
    for v in ev:
        s += v
        s2 += v * v
    return s * s / s2


@nb.njit(**_NB)
def _one(ev, code, alpha_fo, alpha_fan, beta_fan, p_fan, alpha_ratio):
    """The rule with this code (one of the named constants; check_rule gives them)."""
    if code == _FO:
        return float(_fo(ev, alpha_fo))
    if code == _FAN:
        return float(_fan(ev, alpha_fan, beta_fan, p_fan))
    if code == _MAXGAP:
        return float(_maxgap(ev))
    if code == _RATIO:
        return float(_ratio(ev, alpha_ratio))
    if code == _KAISER:
        return float(_kaiser(ev))
    if code == _BROKEN_STICK:
        return float(_broken_stick(ev))
    if code == _PARTICIPATION_RATIO:
        return _participation_ratio(ev)
    return np.nan  # no rule has this code (check_rule refuses unknown names first)


@nb.njit(cache=True, nogil=True)
def _apply(spectra, code, alpha_fo, alpha_fan, beta_fan, p_fan, alpha_ratio):
    out = np.empty(spectra.shape[0])
    for i in range(spectra.shape[0]):
        out[i] = _one(spectra[i], code, alpha_fo, alpha_fan, beta_fan, p_fan, alpha_ratio)
    return out


def _params(params: dict) -> tuple[float, ...]:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"Unknown PCA-rule parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    merged = {**DEFAULTS, **params}
    return tuple(float(merged[name]) for name in ("alpha_fo", "alpha_fan", "beta_fan", "p_fan", "alpha_ratio"))


def check_rule(rule: str) -> int:
    if rule not in _CODES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}.")
    return _CODES[rule]


def apply_rule(spectra: np.ndarray, rule: str, **params) -> np.ndarray:
    """Apply ``rule`` to each row of ``spectra`` (rows descending, non-negative, nonzero
    sum). Parameters (skdim names in brackets): alpha_fo [alphaFO] = 0.05,
    alpha_fan [alphaFan] = 10, beta_fan [betaFan] = 0.8, p_fan [PFan] = 0.95,
    alpha_ratio [alphaRatio] = 0.05."""
    code = check_rule(rule)
    spectra = np.ascontiguousarray(spectra, dtype=np.float64)
    return _apply(spectra, code, *_params(params))


def pca_rule(spectrum, rule: str = "FO", **params) -> float:
    """Apply one rule to one spectrum (descending eigenvalues). Returns an integer-valued
    float for every rule except "participation_ratio"."""
    ev = np.asarray(spectrum, dtype=np.float64)
    if ev.ndim != 1 or ev.size == 0:
        raise ValueError(f"spectrum must be a non-empty 1-D array; got shape {ev.shape}.")
    if not np.all(np.isfinite(ev)) or np.any(ev < 0) or ev.sum() <= 0:
        raise ValueError("spectrum must hold finite, non-negative eigenvalues with a positive sum.")
    if np.any(np.diff(ev) > 0):
        raise ValueError("spectrum must be sorted in descending order (as idest.pca returns it).")
    return float(apply_rule(ev[None, :], rule, **params)[0])
