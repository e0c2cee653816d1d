"""The token study's pooled clouds searched on a cluster: each pooled cloud (all kept tokens of
all prompts at one site, up to 10^5-10^6 points) is written to its own Zarr store in the run
folder, its exact neighbours are found as row-block tasks on the workers (cluster/knn.py), and
the store is removed. The neighbourhoods are bit-identical to idest.neighborhoods on the same
array, so the tables are the same bytes with or without the cluster."""

from __future__ import annotations

import copy
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

import idest

from ..runtime.progress import Progress
from .knn import ZarrCloud, distributed_neighborhoods

CLOUD_DIR = "pooled_clouds"  # <run>/pooled_clouds/<site>.zarr while its search runs
CHUNK_BYTES = 16 * 2**20  # rows per Zarr chunk: about this many bytes (workers read whole chunks)


def write_cloud(path: Path, X: np.ndarray) -> ZarrCloud:
    """X into a fresh Zarr store at `path` (one array "cloud", no compression)."""
    import zarr

    shutil.rmtree(path, ignore_errors=True)
    rows = max(1, CHUNK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))
    arr = zarr.create_array(store=str(path), name="cloud", shape=X.shape, chunks=(min(rows, X.shape[0]), X.shape[1]),
                            dtype=X.dtype, compressors=None, fill_value=0)
    arr[...] = X
    return ZarrCloud(store=str(path), array="cloud")


class ClusterSearches:
    """`for_site(name)` -> search(X, k): idest.neighborhoods(X, k=k), run on the cluster.
    `reporting_to(bar)`: the same searches, each finished task shown on the progress bar."""

    def __init__(self, client, run_folder: Path):
        self.client = client
        self.folder = Path(run_folder) / CLOUD_DIR
        self.progress: Progress | None = None

    def reporting_to(self, progress: Progress) -> ClusterSearches:
        reporting = copy.copy(self)  # (a subclass stays itself)
        reporting.progress = progress
        return reporting

    def _task_counter(self, site: str) -> Callable[[], None] | None:
        if self.progress is None:
            return None
        lock, done = threading.Lock(), [0]

        def one_more() -> None:  # Dask calls back from its own thread
            with lock:
                done[0] += 1
                count = done[0]
            self.progress.stage(f"{site}: neighbour search, {count} tasks done on the cluster")

        return one_more

    def for_site(self, site: str) -> Callable[[np.ndarray, int], idest.Neighborhoods]:
        def search(X: np.ndarray, k: int) -> idest.Neighborhoods:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{site}.zarr"
            try:
                return distributed_neighborhoods(self.client, write_cloud(path, np.ascontiguousarray(X)), k,
                                                 on_done=self._task_counter(site))
            finally:
                shutil.rmtree(path, ignore_errors=True)

        return search
