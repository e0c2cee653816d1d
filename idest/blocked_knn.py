"""The exact neighbour search as independent row-block tasks, for a cloud too large for one
process's time: the tasks can run anywhere (other processes, other machines) and the merged
result is bit-identical to ``idest.knn`` / ``idest.neighborhoods`` on the same array.

    plan = idest.plan_blocks(len(X), k)                  # row groups, small and picklable
    cloud = idest.prepare_cloud(X)                       # once per process (O(N D))
    pairs = {(g, g): idest.knn_pair(cloud, plan, g, g) for g in range(plan.n_groups)}   # diagonal first
    seeds = [pairs[g, g].thresholds() for g in range(plan.n_groups)]                    # (optional)
    pairs |= {(g, h): idest.knn_pair(cloud, plan, g, h, (seeds[g], seeds[h]))           # the O(N^2 D) work
              for g, h in plan.pairs if g < h}
    blocks = [idest.knn_group(cloud, plan, g, [pairs[p].part(g) for p in plan.pairs_of(g)])
              for g in range(plan.n_groups)]
    d, i = idest.merge_blocks(cloud, plan, blocks)       # == idest.knn(X, k), bit for bit

    nb = idest.neighborhoods_blocked(X, k, run=my_runner)   # == idest.neighborhoods(X, k)

How: the upper triangle of the product matrix is cut along row groups; task (g, h), g <= h,
computes the products between groups g and h (half the work of a full-row search is saved,
as in process) and keeps candidates for both groups' rows; task g then certifies its rows
exactly as the in-process search does (``idest._knn.blocks``). The result of a certified row
does not depend on its candidates, so it is the same whatever the block size or the engine.
An off-diagonal task may start from thresholds, each point's kc-th key within its own group
(``thresholds()`` of the diagonal task's candidates): it then buffers far fewer keys than from
scratch (in process, one buffer per point sees every key), and the result is the same.

Duplicates: ``neighborhoods`` drops exact and near-duplicates, which needs the neighbours of
the points kept so far, and may search again with a larger k. ``neighborhoods_blocked`` runs
that same procedure (the same code) with each search done by ``run(rows, plan, metric)``:
the runner computes the blocks of the cloud X[rows] (rows of X kept so far) and returns them
in group order; the default runs them here, one after another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _knn as engine
from ._knn import blocks as engine_blocks
from ._validate import CleanPoints, abs_max, as_points, check_int, check_metric
from .neighbor_search import _neighborhoods
from .results import Neighborhoods

# Rows per group: large enough that each pair task is long beside its scheduling and its
# candidates ((rows, kc) per task) are small beside the products; small enough to give
# several tasks per worker on 10^5 points.
DEFAULT_BLOCK_ROWS = 16384


@dataclass(frozen=True)
class BlockPlan:
    """How a search of n_points points for k neighbours is cut: group g holds rows
    bounds[g]..bounds[g+1]-1; kc is the candidates kept per point and task."""

    n_points: int
    k: int
    kc: int
    bounds: tuple[int, ...]

    @property
    def n_groups(self) -> int:
        return len(self.bounds) - 1

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Every pair task (g, h), g <= h, in a fixed order."""
        return [(g, h) for g in range(self.n_groups) for h in range(g, self.n_groups)]

    def pairs_of(self, g: int) -> list[tuple[int, int]]:
        """The pair tasks whose candidates group g's refinement needs."""
        return [p for p in self.pairs if g in p]

    def rows(self, g: int) -> tuple[int, int]:
        return self.bounds[g], self.bounds[g + 1]


def plan_blocks(n_points: int, k: int, block_rows: int | None = None) -> BlockPlan:
    """Row groups of ``block_rows`` rows (the last one shorter) for k neighbours, 1 <= k < n."""
    n_points = check_int("n_points", n_points, minimum=2)
    k = check_int("k", k, minimum=1)
    if k >= n_points:
        raise ValueError(f"k={k} neighbours need at least k + 1 = {k + 1} points; X has {n_points}. Use a smaller k.")
    block_rows = DEFAULT_BLOCK_ROWS if block_rows is None else check_int("block_rows", block_rows, minimum=1)
    bounds = tuple(range(0, n_points, block_rows)) + (n_points,)
    return BlockPlan(n_points=n_points, k=k, kc=engine_blocks.candidate_count(k, n_points), bounds=bounds)


@dataclass(frozen=True)
class KnnCloud:
    """A validated cloud prepared for the search (float32 copy, bounds): build it once per
    process with ``prepare_cloud`` and run any number of tasks on it."""

    geometry: engine.Geometry

    @property
    def n_points(self) -> int:
        return self.geometry.X.shape[0]

    @property
    def metric(self) -> str:
        return self.geometry.metric


def prepare_cloud(X, metric: str = "euclidean", rows: np.ndarray | None = None) -> KnnCloud:
    """Validate X as every idest function does and prepare it; ``rows`` (increasing rows of
    X) restricts it to those points, exactly as ``neighborhoods`` does after dropping
    duplicates (the points kept so far that a runner is asked to search)."""
    points = as_points(X)
    metric = check_metric(metric)
    if rows is not None and len(rows) != points.X.shape[0]:
        kept = np.ascontiguousarray(points.X[np.asarray(rows, dtype=np.int64)])
        points = CleanPoints(kept, abs_max(kept), points.eps)
    return KnnCloud(engine.prepare(points, metric))


@dataclass(frozen=True)
class PairCandidates:
    """What pair task (g, h) found: candidates for group g's rows, then group h's (unless
    g == h). Opaque to runners: hand ``part(g)`` to task g."""

    g: int
    h: int
    n_rows_g: int
    keys: np.ndarray  # (rows, kc) float32
    ids: np.ndarray  # (rows, kc) int32, rows of the cloud (-1: an unfilled slot)

    def thresholds(self) -> np.ndarray:
        """Of a diagonal pair (g, g): each row's bound (the kc-th key it found in its own group,
        or the sentinel), float32 (rows of g,), to start task (g, h) or (h, g) with."""
        if self.g != self.h:
            raise ValueError(f"thresholds come from a diagonal pair (g, g); this is ({self.g}, {self.h}).")
        return self.keys[:, 0].copy()

    def part(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        if group == self.g:
            return self.keys[: self.n_rows_g], self.ids[: self.n_rows_g]
        if group == self.h:
            return self.keys[self.n_rows_g :], self.ids[self.n_rows_g :]
        raise ValueError(f"pair ({self.g}, {self.h}) holds no candidates for group {group}.")


@dataclass(frozen=True)
class BlockNeighbors:
    """Exact neighbours of rows start..stop-1: sq_distances in the engine's internal units
    (turned into the user's by ``merge_blocks``), indices as ``idest.knn``'s."""

    start: int
    stop: int
    sq_distances: np.ndarray  # (rows, k) float64
    indices: np.ndarray  # (rows, k) int64


def _check_cloud(cloud: KnnCloud, plan: BlockPlan) -> None:
    if cloud.n_points != plan.n_points:
        raise ValueError(f"the plan is for {plan.n_points} points; the cloud has {cloud.n_points}. Make the plan from this cloud.")


def knn_pair(cloud: KnnCloud, plan: BlockPlan, g: int, h: int,
             thresholds: tuple[np.ndarray, np.ndarray] | None = None) -> PairCandidates:
    """Task (g, h), g <= h: the products between groups g and h, scanned into candidates;
    ``thresholds`` (g < h only, optional): the ``thresholds()`` of pairs (g, g) and (h, h)."""
    _check_cloud(cloud, plan)
    if not 0 <= g <= h < plan.n_groups:
        raise ValueError(f"pair ({g}, {h}) is not one of the plan's (0 <= g <= h < {plan.n_groups}).")
    starting = None
    if thresholds is not None:
        if g == h:
            raise ValueError(f"a diagonal pair ({g}, {g}) starts without thresholds: it is where they come from.")
        starting = np.concatenate([np.asarray(t, dtype=np.float32) for t in thresholds])
    keys, ids = engine_blocks.scan_pair(cloud.geometry, plan.bounds, g, h, plan.kc, starting)
    start, stop = plan.rows(g)
    return PairCandidates(g=g, h=h, n_rows_g=stop - start, keys=keys, ids=ids)


def knn_group(cloud: KnnCloud, plan: BlockPlan, g: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> BlockNeighbors:
    """Task g: the exact neighbours of group g's rows, certified (and repaired where needed)
    as in process, from the candidates of every pair task in ``plan.pairs_of(g)``."""
    _check_cloud(cloud, plan)
    if len(parts) != len(plan.pairs_of(g)):
        raise ValueError(f"group {g} needs the candidates of {len(plan.pairs_of(g))} pair tasks; got {len(parts)}.")
    start, stop = plan.rows(g)
    d2, idx = engine_blocks.refine_group(cloud.geometry, plan.bounds, g, list(parts), plan.k)
    return BlockNeighbors(start=start, stop=stop, sq_distances=d2, indices=idx)


def merge_internal(plan: BlockPlan, blocks: list[BlockNeighbors]) -> tuple[np.ndarray, np.ndarray]:
    """The blocks (one per group, any order) joined into (N, k) internal squared distances
    and indices; a missing or repeated group is an error."""
    starts = sorted(b.start for b in blocks)
    if starts != list(plan.bounds[:-1]):
        raise ValueError(f"the blocks start at rows {starts}; the plan's groups start at {list(plan.bounds[:-1])}.")
    ordered = sorted(blocks, key=lambda b: b.start)
    return np.concatenate([b.sq_distances for b in ordered]), np.concatenate([b.indices for b in ordered])


def merge_blocks(cloud: KnnCloud, plan: BlockPlan, blocks: list[BlockNeighbors]) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) as ``idest.knn(X, k, metric)`` returns them, bit for bit."""
    d2, idx = merge_internal(plan, blocks)
    return engine.user_distances(d2, cloud.geometry), idx


def run_in_process(cloud: KnnCloud, plan: BlockPlan) -> list[BlockNeighbors]:
    """Every task, here, one after another (the reference a distributed runner must equal):
    the diagonal pairs, the others started from their thresholds, then the groups."""
    pairs = {(g, g): knn_pair(cloud, plan, g, g) for g in range(plan.n_groups)}
    seeds = [pairs[g, g].thresholds() for g in range(plan.n_groups)]
    pairs |= {(g, h): knn_pair(cloud, plan, g, h, (seeds[g], seeds[h])) for g, h in plan.pairs if g < h}
    return [knn_group(cloud, plan, g, [pairs[p].part(g) for p in plan.pairs_of(g)]) for g in range(plan.n_groups)]


def knn_blocked(X, k: int, metric: str = "euclidean", block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``idest.knn(X, k, metric)`` computed by row-block tasks in this process (bit-identical)."""
    cloud = prepare_cloud(X, metric)
    plan = plan_blocks(cloud.n_points, k, block_rows)
    return merge_blocks(cloud, plan, run_in_process(cloud, plan))


# run(rows, plan, metric) -> the blocks of the cloud X[rows] (see the module docstring)
Runner = Callable[[np.ndarray, BlockPlan, str], list[BlockNeighbors]]


def neighborhoods_blocked(
    X,
    k: int,
    *,
    metric: str = "euclidean",
    on_duplicates: str = "drop",
    near_duplicate_tol: float = engine.NEAR_DUPLICATE_TOL,
    run: Runner | None = None,
    block_rows: int | None = None,
) -> Neighborhoods:
    """``idest.neighborhoods(X, k, ...)`` (bit-identical, the same duplicates dropped) with
    every neighbour search done by row-block tasks: ``run(rows, plan, metric)`` must return
    the blocks of ``prepare_cloud(X, metric, rows)`` for ``plan`` (default: in this process).
    X is validated and deduplicated here, so it must be the same array the runner reads."""
    points_of_X = X

    def in_process(rows: np.ndarray, plan: BlockPlan, metric: str) -> list[BlockNeighbors]:
        return run_in_process(prepare_cloud(points_of_X, metric, rows), plan)

    runner = in_process if run is None else run

    def nearest(geo: engine.Geometry, rows: np.ndarray, k_now: int) -> tuple[np.ndarray, np.ndarray]:
        plan = plan_blocks(geo.X.shape[0], k_now, block_rows)
        return merge_internal(plan, runner(rows, plan, geo.metric))

    return _neighborhoods(X, k, metric, on_duplicates, near_duplicate_tol, nearest=nearest)
