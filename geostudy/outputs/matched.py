"""Genres (and topics) compared at a matched number of points.

The per-genre PCA counts, participation ratio and log-volume of the depth figures are means of
per-prompt values, and all three grow with the number of points in a cloud: a genre of long
prompts gets more components than a word list whatever the geometry. Here every group (genre,
or topic) pools the kept tokens of its prompts at a site and keeps a seeded random subsample of
as many points as the smallest group has (at most MATCH_CAP); the same tokens at every site (the
subsample is drawn once per group, from the group's name), so the depth trend compares one set
of tokens. Then PCA (idest.pca, the study's solver) gives the components for the headline
variance share, the participation ratio and the log-volume per token, exactly as for the pooled
corpus.

Cost: one PCA per group and site, in the report's stage, on one thread. It is done along the
residual stream (the embeddings and every block's output, and the scatter site), where the
depth trend is read: 13 sites of GPT-2 small x 11 groups of at most MATCH_CAP points take a few
seconds, where every one of the 73 default sites would take half a minute.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

import idest

from ..measure.geometry import log_volume_from_spectrum
from ..plan import StudyPlan
from ..runtime.threads import blas_single_thread
from ..sites import EMBEDDINGS_SITE
from ..store.activations import load_clouds

MATCH_SEED = 12  # with each group's name (crc32): the subsample of its pooled tokens
MIN_POINTS = 3  # fewer points than this make no spectrum worth comparing
MATCH_CAP = 512  # points per group at most: equal sizes are what makes groups comparable, not large ones
GROUPINGS = ("genre", "topic")
MATCHED_COLUMNS = ["grouping", "group", "site", "n_prompts", "n_available", "n_points", "pca_level",
                   "pca_components", "pca_participation_ratio", "log_volume"]


@dataclass(frozen=True)
class Groups:
    """The prompts of each group (indices into the corpus), the number of kept tokens each group
    pools, and the matched number of points (the smallest group's)."""

    grouping: str
    members: dict[str, list[int]]
    sizes: dict[str, int]

    @property
    def matched(self) -> int:
        return min(MATCH_CAP, *self.sizes.values())


def group_prompts(plan: StudyPlan, grouping: str) -> Groups:
    """Prompts by genre or topic (an empty label is its own group, shown as "—")."""
    members: dict[str, list[int]] = {}
    for i, p in enumerate(plan.corpus):
        members.setdefault(getattr(p, grouping) or "—", []).append(i)
    sizes = {g: int(sum(plan.kept[i].size for i in idx)) for g, idx in members.items()}
    return Groups(grouping, members, sizes)


def subsample(n_available: int, n: int, group: str) -> np.ndarray:
    """n of range(n_available), sorted, drawn without replacement from a generator seeded by
    MATCH_SEED and the group's name: the same for every site and every run."""
    rng = np.random.default_rng([MATCH_SEED, zlib.crc32(group.encode("utf-8"))])
    return np.sort(rng.choice(n_available, size=n, replace=False))


def matched_measures(X: np.ndarray, level: float, solver: str) -> tuple[int, float, float]:
    """(components for `level` of the variance, participation ratio, log-volume per token) of X."""
    r = idest.pca(X, variance=[level], solver=solver)
    volume, _rank = log_volume_from_spectrum(r.spectrum, X.shape[0])
    return int(r.dimensions[0]), float(r.participation_ratio), volume


def matched_sites(plan: StudyPlan) -> list:
    """The residual stream among the run's sites (embeddings, block outputs) and the scatter
    site, in depth order; every site when the run has none of them."""
    chosen = [s for s in plan.sites
              if s.sublayer == "hook_resid_post" or s.name in (EMBEDDINGS_SITE, plan.scatter_site)]
    return chosen or list(plan.sites)


def comparable(groups: Groups) -> bool:
    """A comparison needs two groups or more, each with enough points."""
    return len(groups.members) >= 2 and groups.matched >= MIN_POINTS


def matched_rows(plan: StudyPlan, level: float) -> list[list]:
    """MATCHED_COLUMNS rows, per grouping (genre, then topic) that has two groups or more, per
    group in corpus order, per site of matched_sites in depth order. Each site's activations are
    read once."""
    groupings = [g for g in (group_prompts(plan, name) for name in GROUPINGS) if comparable(g)]
    picks = {(g.grouping, name): subsample(g.sizes[name], g.matched, name) for g in groupings for name in g.members}
    rows: dict[tuple[str, str], list[list]] = {key: [] for key in picks}
    paths = [plan.act_path(p.id) for p in plan.corpus]
    solver = plan.pooled_settings.pca_solver
    with blas_single_thread():  # small products: a second BLAS thread spins more than it helps
        for site in matched_sites(plan):
            _site_rows(plan, site.name, paths, groupings, picks, rows, level, solver)
    return [row for key in picks for row in rows[key]]


def _site_rows(plan: StudyPlan, site: str, paths, groupings: list[Groups], picks: dict, rows: dict, level: float,
               solver: str) -> None:
    """Every group's matched row at one site, appended to rows[(grouping, group)]."""
    clouds = load_clouds(paths, site, plan.kept)
    for g in groupings:
        for name, idx in g.members.items():
            X = np.concatenate([clouds[i] for i in idx])[picks[(g.grouping, name)]]
            comps, ratio, volume = matched_measures(X, level, solver)
            rows[(g.grouping, name)].append([g.grouping, name, site, len(idx), g.sizes[name], g.matched,
                                             level, comps, ratio, volume])

