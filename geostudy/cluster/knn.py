"""The exact neighbour search of a cloud in a Zarr store, as row-block tasks on a Dask cluster.

Each worker reads the cloud from the store once (kept per worker process), prepares it once
per set of rows searched, and runs the tasks of ``idest.blocked_knn`` on it: pair tasks (the
products between two row groups), then one task per group that certifies its rows. The client
reads the cloud too, drops duplicates exactly as ``idest.neighborhoods`` does, and merges the
blocks: the result is bit-identical to ``idest.neighborhoods`` (or ``idest.knn``) on the same
array, for any number of workers and any block size.

Fault tolerance comes from Dask: every task is a pure function of small arguments (the store's
address, a plan, group numbers) and of the futures it depends on, so a worker lost mid-search
only loses its tasks and the results it held, which the scheduler computes again elsewhere.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import idest

from ..errors import StudyError
from .executor import DaskExecutor


@dataclass(frozen=True)
class ZarrCloud:
    """A point cloud (N, D) stored as array ``array`` of the Zarr store at ``store`` (a path, or
    any URL that every worker and the client can open)."""

    store: str
    array: str

    def load(self) -> np.ndarray:
        import zarr

        try:
            arr = zarr.open_array(store=self.store, path=self.array, mode="r")
        except (FileNotFoundError, KeyError, ValueError) as err:
            raise StudyError(
                f"cannot open array {self.array!r} of the Zarr store {self.store} ({err}); check the path and the name."
            ) from None
        if len(arr.shape) != 2:
            raise StudyError(f"array {self.array!r} of {self.store} has shape {arr.shape}; a point cloud is (n_points, n_features).")
        return np.ascontiguousarray(arr[...])


# Per worker process: the last cloud read, and the last one prepared (a search's tasks all use
# the same; a new one replaces it, so memory stays at one cloud). Keyed by the search, not only
# by the store's address: a store rewritten at the same path (a later run on a long-lived
# cluster) is read again, never taken from an earlier search.
_cache_lock = threading.Lock()
_loaded: dict = {}
_prepared: dict = {}


@dataclass(frozen=True)
class _Search:
    """What a task reads: the cloud of one search (``search_id``, drawn afresh by each call)."""

    source: ZarrCloud
    search_id: str


def _rows_digest(rows: np.ndarray | None) -> str:
    return "all" if rows is None else hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


def cached_cloud(search: _Search, metric: str, rows: np.ndarray | None) -> idest.KnnCloud:
    """The cloud X[rows] of the search's store, prepared, read and prepared once per process."""
    key = (search, metric, _rows_digest(rows))
    with _cache_lock:
        if key in _prepared:
            return _prepared[key]
        if search not in _loaded:
            _loaded.clear()
            _loaded[search] = search.source.load()
        _prepared.clear()
        _prepared[key] = idest.prepare_cloud(_loaded[search], metric, rows)
        return _prepared[key]


def pair_task(source: _Search, metric: str, rows, plan: idest.BlockPlan, g: int, h: int,
              thresholds=None) -> idest.PairCandidates:
    return idest.knn_pair(cached_cloud(source, metric, rows), plan, g, h, thresholds)


def thresholds_task(diagonal: idest.PairCandidates) -> np.ndarray:
    """What a diagonal pair found, as the thresholds its group's off-diagonal pairs start from
    (N_g float32: a small result, so that those tasks do not wait for the whole pair)."""
    return diagonal.thresholds()


def part_task(pair: idest.PairCandidates, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Group g's half of a pair's candidates (copied: the rest of the pair can then be freed)."""
    keys, ids = pair.part(g)
    return keys.copy(), ids.copy()


def group_task(source: _Search, metric: str, rows, plan: idest.BlockPlan, g: int, *parts) -> idest.BlockNeighbors:
    return idest.knn_group(cached_cloud(source, metric, rows), plan, g, list(parts))


def _keep(rows: np.ndarray) -> np.ndarray:
    return rows


# Dask priorities (higher first, then earlier submissions): what follows a finished pair, the
# diagonal pairs that seed the others, then the other pairs in submission order.
_FOLLOWING, _DIAGONAL = 2, 1


def dask_runner(client, cloud: ZarrCloud, n_rows: int, executor: DaskExecutor) -> Callable:
    """The runner ``idest.neighborhoods_blocked`` calls for each search: the plan's tasks on the
    cluster, the blocks gathered in group order."""
    source = _Search(cloud, uuid.uuid4().hex)

    def small(fn: Callable, *args):
        """A short task on a pair's result (not counted as progress), run as soon as it is ready."""
        return client.submit(fn, *args, pure=False, retries=executor.retries, priority=_FOLLOWING)

    def run(rows: np.ndarray, plan: idest.BlockPlan, metric: str) -> list[idest.BlockNeighbors]:
        # all rows: None (nothing to send); otherwise the rows go to the cluster once, as a task
        # of their own, so that a lost copy is recomputed like any other result
        rows_arg = None if len(rows) == n_rows else client.submit(_keep, np.asarray(rows, dtype=np.int64), pure=False)
        # the diagonal pairs first; each other pair starts from the thresholds its two groups'
        # diagonal pairs found (fewer keys buffered; the same result). The other pairs go row by
        # row, (0, 1), (0, 2), ..., so group g has all its candidates after row g, and whatever
        # follows a pair (its parts, a group's refinement) runs as soon as it can: the groups are
        # then spread over the search, not left for the end, and each pair is freed early.
        n = plan.n_groups
        pairs = {(g, g): executor.submit(pair_task, source, metric, rows_arg, plan, g, g, priority=_DIAGONAL)
                 for g in range(n)}
        seeds = [small(thresholds_task, pairs[g, g]) for g in range(n)]
        for g, h in plan.pairs:
            if g < h:  # (Dask hands the task the two futures' results, as a tuple)
                pairs[g, h] = executor.submit(pair_task, source, metric, rows_arg, plan, g, h, (seeds[g], seeds[h]))
        del seeds
        parts = {(p, g): small(part_task, pairs[p], g) for p in plan.pairs for g in set(p)}
        del pairs  # the scheduler keeps what the parts still need
        groups = [executor.submit(group_task, source, metric, rows_arg, plan, g, *[parts[(p, g)] for p in plan.pairs_of(g)],
                                  priority=_FOLLOWING)
                  for g in range(plan.n_groups)]
        del parts
        return client.gather(groups)

    return run


def default_block_rows(n_points: int, n_workers: int) -> int:
    """Rows per group: groups of equal size, at most idest's default, and enough of them for
    about 6 pair tasks per worker (G groups give G (G + 1) / 2), so that the last tasks leave
    little idle time; results do not depend on it."""
    groups = -(-n_points // idest.blocked_knn.DEFAULT_BLOCK_ROWS)
    while groups * (groups + 1) // 2 < 6 * max(n_workers, 1) and groups < n_points:
        groups += 1
    return -(-n_points // groups)


def _workers(client) -> int:
    return len(client.nthreads())


def distributed_neighborhoods(
    client,
    source: ZarrCloud,
    k: int,
    *,
    metric: str = "euclidean",
    on_duplicates: str = "drop",
    near_duplicate_tol: float | None = None,
    block_rows: int | None = None,
    on_done: Callable[[], None] | None = None,
    retries: int = 3,
) -> idest.Neighborhoods:
    """``idest.neighborhoods(X, k, ...)`` of the cloud in ``source``, its searches run as row-block
    tasks on the cluster (bit-identical). ``on_done()`` is called as each task finishes;
    ``near_duplicate_tol`` None is idest's default."""
    X = source.load()
    tol = {} if near_duplicate_tol is None else {"near_duplicate_tol": near_duplicate_tol}
    block_rows = block_rows or default_block_rows(len(X), _workers(client))
    executor = DaskExecutor(client, retries=retries, on_done=on_done)
    return idest.neighborhoods_blocked(
        X, k, metric=metric, on_duplicates=on_duplicates, **tol,
        run=dask_runner(client, source, len(X), executor), block_rows=block_rows,
    )


def distributed_knn(client, source: ZarrCloud, k: int, *, metric: str = "euclidean", block_rows: int | None = None,
                    on_done: Callable[[], None] | None = None, retries: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``idest.knn(X, k, metric)`` of the cloud in ``source`` (duplicates kept, as there), on the cluster."""
    X = source.load()
    cloud = idest.prepare_cloud(X, metric)  # validates as idest.knn does, before any task
    plan = idest.plan_blocks(cloud.n_points, k, block_rows or default_block_rows(len(X), _workers(client)))
    run = dask_runner(client, source, len(X), DaskExecutor(client, retries=retries, on_done=on_done))
    return idest.merge_blocks(cloud, plan, run(np.arange(len(X)), plan, metric))
