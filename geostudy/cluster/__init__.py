"""The study on a Dask cluster (an optional extra: ``pip install "gpt2-geometry[cluster]"``).

    cluster = connect("local:2")               # or "tcp://host:8786", or None with DASK_SCHEDULER_ADDRESS
    executor = DaskExecutor(cluster.client)    # the pipeline's Executor: submit(fn, *args) -> future
    nb = distributed_neighborhoods(cluster.client, ZarrCloud("run/activations.zarr", "blocks.5.hook_resid_post"), k=64)
    cluster.close()

``connect`` checks, before any work, that the scheduler answers and that every worker runs the
same packages as this process (one-line StudyError otherwise) and prints the dashboard address.
The neighbour search runs as row-block tasks (``idest.blocked_knn``) that read the cloud from
the store on each worker; the result is bit-identical to ``idest.neighborhoods`` on the same
array, and a worker lost mid-search only costs its tasks, which are run again.

Dask is imported only inside these modules' functions, so importing geostudy never needs it.
"""

from .connection import Cluster, check_packages, connect
from .executor import DaskExecutor, progress_callback
from .knn import ZarrCloud, distributed_knn, distributed_neighborhoods

__all__ = [
    "Cluster",
    "connect",
    "check_packages",
    "DaskExecutor",
    "progress_callback",
    "ZarrCloud",
    "distributed_knn",
    "distributed_neighborhoods",
]
