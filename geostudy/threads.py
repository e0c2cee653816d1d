"""How the study uses the cores: independent single-threaded tasks on a few worker threads.

The analyses are many independent problems (one per site of a prompt, one per site of the
pooled corpus). Each is run single-threaded (one BLAS thread, one Numba thread) and several run
at once on worker threads (NumPy, LAPACK and idest's Numba kernels release the GIL). This beats
multi-threading inside each problem: OpenBLAS and Numba synchronise their threads on every call,
which for small problems costs more than the second thread saves and, when another process
holds a core, becomes ruinous (measured here: `np.linalg.eigvalsh` of a 946 x 946 matrix took
4.5 s with two OpenBLAS threads and 0.09 s with one while another process ran). Large matrix
products in the main thread (the forward pass, the logit lens) keep every BLAS thread.

Results do not depend on the number of workers: each task's numbers come from one thread, and
they are collected in a fixed order. BLAS threads are limited through threadpoolctl when it is
installed (otherwise BLAS keeps its own thread count).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - optional
    ThreadpoolController = None

_controller = None


def default_workers() -> int:
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


def run_tasks(fn, items, workers: int, on_done=None) -> list:
    """[fn(item) for item in items], computed on `workers` threads, each task with one Numba
    thread; results in the order of `items`. on_done(i, result) is called in the main thread,
    in order, as results become available."""
    items = list(items)

    def task(item):
        with numba_single_thread():
            return fn(item)

    results = []
    if workers <= 1:
        for i, item in enumerate(items):
            results.append(task(item))
            if on_done:
                on_done(i, results[-1])
        return results
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(task, item) for item in items]
        for i, fut in enumerate(futures):
            results.append(fut.result())
            if on_done:
                on_done(i, results[-1])
    return results


class TaskPool:
    """A pool of worker threads whose tasks each run with one Numba thread; with one worker,
    tasks run at once in the calling thread. Use as a context manager; on an error (or Ctrl-C)
    queued tasks are cancelled and running ones finish."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    @staticmethod
    def _call(fn, args):
        with numba_single_thread():
            return fn(*args)

    def submit(self, fn, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(self._call, fn, args)
        future: Future = Future()
        try:
            future.set_result(self._call(fn, args))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future

    def __enter__(self) -> "TaskPool":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
