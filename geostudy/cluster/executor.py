"""The pipeline's Executor on Dask: submit(fn, *args) -> a future with .result(), each task run
with one Numba thread (as the study's own worker threads run them), retried when it fails or
its worker is lost, and a hook that reports every finished task (to feed the progress bar)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..runtime.threads import blas_single_thread, numba_single_thread

# Times a task is run again after an error (a worker lost mid-task is handled by the scheduler,
# which reruns the task on another worker, up to distributed.scheduler.allowed-failures times).
DEFAULT_RETRIES = 3


def run_single_threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) with one BLAS and one Numba thread, as the study's own worker threads run it:
    each worker process has one thread of its own, a task spreading over every core would fight
    the other workers for them, and the same thread counts give the same bytes."""
    with blas_single_thread(), numba_single_thread():
        return fn(*args)


def progress_callback(progress) -> Callable[[], None]:
    """A thread-safe 'one more task done' for a geostudy Progress (Dask calls back from its own
    thread)."""
    lock = threading.Lock()

    def done() -> None:
        with lock:
            progress.advance()

    return done


class DaskExecutor:
    """``submit(fn, *args)`` -> distributed.Future (``.result()`` returns fn(*args) or raises its
    error). Tasks are never deduplicated (pure=False: the same arguments may be run twice on
    purpose, after a failure). ``on_done()`` is called once per finished task, whatever its
    outcome. ``priority`` (Dask's: higher runs first, then earlier submissions) orders tasks that
    are ready at the same time."""

    def __init__(self, client, *, retries: int = DEFAULT_RETRIES, on_done: Callable[[], None] | None = None):
        self.client = client
        self.retries = retries
        self.on_done = on_done

    def submit(self, fn: Callable[..., Any], /, *args: Any, priority: int = 0):
        # the key names the task's own function (the dashboard shows it), unique: never deduplicated
        key = f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"
        future = self.client.submit(run_single_threaded, fn, *args, key=key, pure=False, retries=self.retries,
                                    priority=priority)
        if self.on_done is not None:
            on_done = self.on_done
            future.add_done_callback(lambda _: on_done())
        return future

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass
