"""GRIDE with both metrics, pooled corpus: the ID against the scale (neighbour order n1, n2 = 2 n1)
with Euclidean distances (left) and with cosine distances (right: GRIDE on the rows scaled to
unit length, measure/cosine_gride.py), one row of panels per sub-layer, one line per depth.
Drawn when the run computed the cosine curve (--cosine-gride)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ...corpus import POOLED_ID
from ..drawing import Results
from ._canvas import depth_colour, depth_colourbar, plain_log_labels, save_png, site_names, sublayer_rows

METRICS = (("id_gride", "Euclidean"), ("id_gride_cosine", "cosine (unit rows)"))


def curve(res: Results, site: str, quantity: str) -> tuple[list[int], list[float], list[float]]:
    """(scales n1, IDs, errors) of the pooled corpus at one site."""
    pts = sorted((p, v) for (pid, s, q, p), v in res.value.items() if pid == POOLED_ID and s == site and q == quantity)
    return [p for p, _ in pts], [v[0] for _, v in pts], [v[1] or 0.0 for _, v in pts]


def has_cosine(res: Results) -> bool:
    return bool(res.sites_by_quantity.get("id_gride_cosine"))


def gride_both_metrics(plan, results_rows, path: Path) -> None:
    res = Results(results_rows)
    rows = [(t, pts) for t, pts in sublayer_rows(plan, site_names(plan))
            if any(s in res.sites_by_quantity.get("id_gride_cosine", ()) for _, s in pts)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(9.5, 2.4 * len(rows) + 0.8), squeeze=False, layout="constrained",
                             sharey="row")
    for (title, pts), row_axes in zip(rows, axes):
        for ax, (quantity, metric) in zip(row_axes, METRICS):
            for block, site in pts:
                xs, vs, es = curve(res, site, quantity)
                if xs:
                    ax.errorbar(xs, vs, yerr=es, color=depth_colour(block, plan.cfg.n_layer), lw=1.1, marker="o",
                                ms=2, capsize=1.5)
            ax.set_xscale("log", base=2)
            plain_log_labels(ax.xaxis, decimal=False)
            ax.set_title(f"{title}: {metric}", fontsize=9)
            ax.set_ylabel("GRIDE ID")
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("neighbour order n1 (n2 = 2 n1)")
    depth_colourbar(fig, axes[:, 1].tolist(), plan.cfg.n_layer)
    fig.suptitle("Pooled corpus: GRIDE ID against scale, Euclidean and cosine distances, every site", fontsize=11)
    save_png(fig, path)
