"""How the study uses the cores: independent single-threaded tasks on a few worker threads.

The analyses are many independent problems (one per site of a prompt, one per site of the
pooled corpus). Each is run single-threaded (one BLAS thread, one Numba thread) and several run
at once on worker threads (NumPy, LAPACK and idest's Numba kernels release the GIL). This beats
multi-threading inside each problem: OpenBLAS and Numba synchronise their threads on every call,
which for small problems costs more than the second thread saves and, when another process
holds a core, becomes ruinous (measured here: `np.linalg.eigvalsh` of a 946 x 946 matrix took
4.5 s with two OpenBLAS threads and 0.09 s with one while another process ran). The forward
passes and the logit lens are tasks of the same pipeline, so they run inside
`blas_single_thread` too: the two cores are kept busy by two tasks, not by one task's two BLAS
threads (see geostudy/pipeline/prompts.py). The figures this process draws beside a forked
child run with one BLAS thread as well (a second would spin against the child's core).

Results do not depend on the number of workers: each task's numbers come from one thread, and
they are collected in a fixed order. BLAS threads are limited through threadpoolctl when it is
installed (otherwise BLAS keeps its own thread count). The worker threads themselves are
geostudy/pipeline/executor.py's.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - optional
    ThreadpoolController = None

_controller = None


def default_workers() -> int:
    """Worker threads when the user does not say: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


@contextmanager
def blas_single_thread():
    """One BLAS thread for the whole process while the block runs (set from the main thread,
    around a pool of workers), then the previous setting again."""
    global _controller
    limiter = None
    if ThreadpoolController is not None:
        if _controller is None:
            _controller = ThreadpoolController()
        limiter = _controller.limit(limits=1, user_api="blas")
    try:
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


@contextmanager
def numba_single_thread():
    """One Numba thread for parallel kernels launched from the current thread."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
