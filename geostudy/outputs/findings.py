"""The report's "what we found": sentences computed from this run's tables, never written in
advance. Each function takes plain numbers (result rows, an attention pattern) and returns one
sentence, or None when the run has nothing to say about it (a quantity not computed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..corpus import POOLED_ID
from ..measure.analysis import FINAL_SITE
from .tables import RESULT_COLUMNS

_C = {c: i for i, c in enumerate(RESULT_COLUMNS)}
RESIDUAL_SUBLAYER = "hook_resid_post"  # the block's output: the residual stream between blocks
EMBEDDINGS_SUBLAYER = "hook_resid_pre"  # at block 0: the embeddings entering the first block
AGREEMENT_MAJORITY = 0.5  # "the lens agrees": at least half of the sampled positions' top-1 tokens
SINK_RATIO = 2.0  # position 0 gets at least twice the uniform share: a first column visibly brighter
TREND_FACTOR = 1.1  # an end value within 10 % of the start is "about where it starts"


@dataclass(frozen=True)
class Point:
    """One site's value in depth order."""

    site: str
    label: str
    depth: int
    sublayer: str
    value: float
    error: float | None


def series(rows, quantity: str, param=None, prompt: str = POOLED_ID) -> list[Point]:
    """One prompt's (default: the pooled corpus') finite values of a quantity, in depth order."""
    out = []
    for r in rows:
        if r[_C["prompt_id"]] == prompt and r[_C["quantity"]] == quantity and r[_C["param"]] == param:
            v = r[_C["value"]]
            if v is not None and math.isfinite(v):
                e = r[_C["error"]]
                out.append(Point(r[_C["site"]], r[_C["site_label"]], r[_C["depth"]], r[_C["sublayer"]], float(v),
                                 None if e is None or not math.isfinite(e) else float(e)))
    return sorted(out, key=lambda p: p.depth)


def residual_stream(points: list[Point]) -> list[Point]:
    """The embeddings and every block's output, when the run has at least two of them (the
    stream's trend without the sub-layers' wider or narrower clouds in between); else all."""
    stream = [p for p in points if p.sublayer == RESIDUAL_SUBLAYER
              or (p.sublayer == EMBEDDINGS_SUBLAYER and p.depth == min(q.depth for q in points))]
    return stream if len(stream) >= 2 else points


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _with_error(p: Point) -> str:
    return _num(p.value) + (f" ± {_num(p.error)}" if p.error is not None else "")


def peak_sentence(name: str, points: list[Point]) -> str | None:
    """Where a pooled ID estimate is highest, how high, and its values at both ends."""
    if not points:
        return None
    top = max(points, key=lambda p: p.value)
    first, last = points[0], points[-1]
    head = f"{name}: the pooled intrinsic dimension"
    if len(points) == 1:
        return f"{head} is {_with_error(top)} at {top.label} (the only site)."
    if top is first:
        return (f"{head} is highest at the first site, {first.label}: {_with_error(top)}; "
                f"{_num(last.value)} at the last, {last.label}.")
    if top is last:
        return (f"{head} is highest at the last site, {last.label}: {_with_error(top)}; "
                f"{_num(first.value)} at the first, {first.label}.")
    return (f"{head} peaks at {_with_error(top)} at {top.label}; it is "
            f"{_num(first.value)} at {first.label} and {_num(last.value)} at {last.label}.")


def _trend(start: float, end: float) -> str:
    if end > start * TREND_FACTOR:
        return "rises"
    if end * TREND_FACTOR < start:
        return "falls"
    return "ends about where it starts"


def pca_sentence(points: list[Point], level: float) -> str | None:
    """How the pooled PCA dimension moves along the residual stream."""
    stream = residual_stream(points)
    if len(stream) < 2:
        return None
    first, last = stream[0], stream[-1]
    top, low = max(stream, key=lambda p: p.value), min(stream, key=lambda p: p.value)
    where = "along the residual stream" if stream is not points else "over depth"
    extremes = [f"most: {_num(top.value)} at {top.label}" if top not in (first, last) else "",
                f"fewest: {_num(low.value)} at {low.label}" if low not in (first, last) else ""]
    extra = "; ".join(e for e in extremes if e)
    return (f"PCA: the pooled cloud needs {_num(first.value)} principal components for {level:.0%} of its variance at "
            f"{first.label} and {_num(last.value)} at {last.label} (it {_trend(first.value, last.value)} {where})"
            + (f"; {extra}." if extra else "."))


def first_sustained(points: list[Point], holds) -> int | None:
    """The index from which `holds(value)` is true at every later point, or None if not at the end."""
    start = None
    for i, p in enumerate(points):
        if holds(p.value):
            start = i if start is None else start
        else:
            start = None
    return start


def agreement_sentence(points: list[Point]) -> str | None:
    """From which depth the logit lens' top-1 token is the model's own at most sampled positions."""
    if not points:
        return None
    i = first_sustained(points, lambda v: v >= AGREEMENT_MAJORITY)
    best = max(points, key=lambda p: p.value)
    if i is None:
        return (f"Logit lens: at no depth does the lens' top-1 token equal the model's at half of the sampled "
                f"positions (at most {best.value:.0%}, at {best.label}).")
    here = points[i]
    before = (f"; {points[i - 1].value:.0%} at {points[i - 1].label} just before" if i > 0 else "")
    if i == len(points) - 1:
        return (f"Logit lens: the top-1 token agrees with the model's final prediction at most sampled positions "
                f"only at {here.label}, where the lens is the model's own output ({here.value:.0%}{before}).")
    return (f"Logit lens: from {here.label} on, the lens' top-1 token is the model's final prediction at "
            f"{here.value:.0%} or more of the sampled positions (at least {AGREEMENT_MAJORITY:.0%} at every later "
            f"depth{before}).")


def last_token_sentence(points: list[Point], prompt: str) -> str | None:
    """From which depth the focus prompt's last token already has the final top-1 token on top
    (lens_final_top_rank == 1 from there on). The model's own output (rank 1 by definition) is
    left out."""
    points = [p for p in points if p.site != FINAL_SITE]
    if not points:
        return None
    i = first_sustained(points, lambda v: v == 1)
    if i is None:
        return f"For the last token of {prompt!r} the final top-1 token is not yet first at the last lens depth."
    return (f"For the last token of {prompt!r} the model's final top-1 token is first through the lens from "
            f"{points[i].label} on (its rank at the first depth: {points[0].value:.0f}).")


@dataclass(frozen=True)
class SinkMeasure:
    """Attention to position 0: the mean, over heads and over every query after position 0, of
    the weight on key 0; and the same mean for a uniform causal pattern (query i spreads 1/(i+1)
    over its i+1 keys)."""

    mean_to_first: float
    uniform_share: float
    n_heads: int
    n_queries: int

    @property
    def ratio(self) -> float:
        return self.mean_to_first / self.uniform_share

    @property
    def is_sink(self) -> bool:
        return self.ratio >= SINK_RATIO


def attention_to_first(pattern: np.ndarray) -> SinkMeasure | None:
    """The SinkMeasure of one block's pattern (n_head, T, T); None with fewer than two tokens."""
    p = np.asarray(pattern, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] < 2:
        return None
    to_first = p[:, 1:, 0]  # (H, T-1): queries 1..T-1, key 0
    uniform = 1.0 / np.arange(2, p.shape[1] + 1)
    return SinkMeasure(float(to_first.mean()), float(uniform.mean()), p.shape[0], p.shape[1] - 1)


def sink_sentence(m: SinkMeasure | None, block: int, prompt: str) -> str | None:
    """The attention-sink sentence, only when the measure supports it; else the measured number."""
    if m is None:
        return None
    measured = (f"in block {block} on {prompt!r}, position 0 gets on average {m.mean_to_first:.3g} of each later "
                f"token's attention (mean over {m.n_heads} heads and {m.n_queries} queries), {m.ratio:.3g}× the "
                f"{m.uniform_share:.3g} a uniform pattern would give it")
    if m.is_sink:
        return f"Attention: {measured}; the attention sink at position 0 shows as a bright first column."
    return (f"Attention: {measured}; that is less than {SINK_RATIO:g}× the uniform share, so this run shows no "
            "attention sink at position 0.")


def what_we_found(rows, gride_n1: int | None, pca_level: float | None, focus: str,
                  sink: SinkMeasure | None, attention_block: int) -> list[str]:
    """Every finding sentence this run's numbers support, in the report's order."""
    found = [peak_sentence("TwoNN", series(rows, "id_twonn")), peak_sentence("MLE", series(rows, "id_mle"))]
    if gride_n1 is not None:
        found.append(peak_sentence(f"GRIDE (n1 = {gride_n1})", series(rows, "id_gride", gride_n1)))
    if pca_level is not None:
        found.append(pca_sentence(series(rows, "pca_components", pca_level), pca_level))
    found.append(agreement_sentence(series(rows, "lens_top1_agreement_all_positions")))
    found.append(last_token_sentence(series(rows, "lens_final_top_rank", prompt=focus), focus))
    found.append(sink_sentence(sink, attention_block, focus))
    return [s for s in found if s]
