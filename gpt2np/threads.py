"""A shared thread pool for head-by-head work.

NumPy's element-wise functions run on one core but release the GIL, so independent heads can be
processed by several threads at once. Each head is computed exactly as it would be alone, so the
results do not depend on the number of threads or their timing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

_pool: ThreadPoolExecutor | None = None


def for_each(fn: Callable[[object], None], items: Iterable) -> None:
    """Call fn(item) for every item, spread over one thread per CPU; re-raises the first error."""
    global _pool
    items = list(items)
    workers = min(os.cpu_count() or 1, len(items))
    if workers <= 1:
        for item in items:
            fn(item)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="gpt2np")
    for future in [_pool.submit(fn, item) for item in items]:
        future.result()
