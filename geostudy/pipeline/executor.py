"""The one small interface through which the pipeline runs its tasks.

    executor.submit(fn, *args) -> a future: `future.result()` returns fn(*args) or raises its error

That is all the pipeline asks of an executor, so that another engine can run the same tasks:
a `dask.distributed.Client` satisfies it as it is (its futures have `.result()` too). Tasks are
plain functions of picklable-in-principle arguments; they write their own files, so collecting a
result only tells the caller that the task is done.

`ThreadExecutor` is the engine the study uses on one machine: a few worker threads, each task
with one Numba thread (BLAS is limited around the stages, see geostudy/runtime/threads.py);
with one worker, each task runs at once in the calling thread.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from ..runtime.threads import numba_single_thread


class TaskFuture(Protocol):
    def result(self) -> Any: ...

    def add_done_callback(self, fn: Callable[[Any], None], /) -> None: ...


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any) -> TaskFuture: ...


def _single_threaded(fn: Callable[..., Any], args: tuple) -> Any:
    with numba_single_thread():
        return fn(*args)


class ThreadExecutor:
    """Worker threads whose tasks each run with one Numba thread; with one worker, tasks run at
    once in the calling thread. Use as a context manager; on an error (or Ctrl-C) queued tasks
    are cancelled and running ones finish."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    @property
    def runs_inline(self) -> bool:
        """Each task runs inside submit (one worker): see run_as_done."""
        return self._pool is None

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        if self._pool is not None:
            return self._pool.submit(_single_threaded, fn, args)
        future: Future = Future()
        try:
            future.set_result(_single_threaded(fn, args))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future

    def __enter__(self) -> ThreadExecutor:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def collect_in_order(futures: Iterable[TaskFuture], on_done: Callable[[int, Any], None] | None = None) -> list:
    """The futures' results, in their order; on_done(i, result) is called in this thread, in
    order, as each result is collected."""
    results = []
    for i, future in enumerate(futures):
        results.append(future.result())
        if on_done is not None:
            on_done(i, results[-1])
    return results


def collect_as_done(futures: Sequence[TaskFuture], on_done: Callable[[int, Any], None] | None = None) -> list:
    """The futures' results, in their order; on_done(i, result) is called in this thread as each
    task finishes, in the order they finish (on a cluster the progress bar then moves with the
    cluster's completions, not with the first task submitted). The first error to arrive is
    raised at once."""
    finished: queue.SimpleQueue = queue.SimpleQueue()
    for i, future in enumerate(futures):
        # both concurrent.futures' and Dask's futures call back from their own thread
        future.add_done_callback(lambda _, i=i: finished.put(i))
    results: list = [None] * len(futures)
    for _ in range(len(futures)):
        i = finished.get()
        results[i] = futures[i].result()
        if on_done is not None:
            on_done(i, results[i])
    return results


def run_as_done(executor: Executor, calls: Sequence[tuple[Callable[..., Any], tuple]],
                on_done: Callable[[int, Any], None]) -> None:
    """Run fn(*args) for every (fn, args) of `calls` and hand each result to on_done(i, result)
    in this thread as it finishes (collect_as_done). An executor that runs each task inside
    submit (`runs_inline`: ThreadExecutor with one worker) gets the next task only once the
    last one's result is handed over, so that a run killed midway keeps what it finished."""
    if getattr(executor, "runs_inline", False):
        for i, (fn, args) in enumerate(calls):
            on_done(i, executor.submit(fn, *args).result())
        return
    collect_as_done([executor.submit(fn, *args) for fn, args in calls], on_done=on_done)
