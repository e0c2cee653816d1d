"""Memory for kept tensors, reused once the caller has let go of the arrays made from it.

Why: a full trace of GPT-2 small at T = 1024 keeps about 2 GB. Memory the process has never
used, or has given back to the system, costs a page fault per page when first written, and on a
virtual machine the host may have to back every page again as well (measured here: writing 2 GB
of fresh memory took 1 to 5 s, more than the whole forward pass). A user who runs the model
again after dropping the previous cache should not pay that on every run, so the blocks behind
kept tensors stay with the model and later runs write into them.

When is a block free? Every array made from a block (every view, every slice, a memoryview of
it) holds a reference to the block itself, because NumPy points a view's `.base` at the array
that owns the memory. So a block whose only reference is the pool's own list is provably
unused, and CPython's reference count says so exactly.

Policy, so that idle memory stays bounded:
* a request takes the smallest free block that holds it and is at most twice its size (a run
  at a shorter length reuses the blocks of a longer one), else a new block of its exact size;
* a free block that two runs in a row have not used is released when the next run starts, so
  the pool never holds more than the tensors of the last three runs;
* `clear()` (the model's `release_memory()`) releases every free block at once.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

# Smaller arrays come from malloc's warm heap anyway; pooling them would only add copies.
MIN_BYTES = 1 << 20
# Runs in a row that may leave a free block unused before it is released.
IDLE_RUNS = 2


def _references_when_free() -> int:
    """What sys.getrefcount reports for a list item nothing else refers to, measured the way
    `_is_free` asks (the count includes the call's own argument; interpreters differ)."""
    probe = [np.empty(1)]
    return sys.getrefcount(probe[0])


_FREE = _references_when_free()


class BufferPool:
    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []  # 1-D uint8 arrays owned here
        self._last_used: list[int] = []  # the run that last took each block
        self._run = 0
        # one model may run in several threads: choosing a free block and taking it is one step
        self._lock = threading.Lock()

    def _is_free(self, i: int) -> bool:
        return sys.getrefcount(self._blocks[i]) <= _FREE

    def start_run(self) -> None:
        """Called before each run: release free blocks the last IDLE_RUNS runs left unused."""
        with self._lock:
            self._start_run()

    def _start_run(self) -> None:
        self._run += 1
        self._keep_only([
            i for i in range(len(self._blocks))  # by index: a loop variable would be one more reference
            if not self._is_free(i) or self._run - self._last_used[i] - 1 < IDLE_RUNS
        ])

    def _keep_only(self, indices: list[int]) -> None:
        self._blocks = [self._blocks[i] for i in indices]
        self._last_used = [self._last_used[i] for i in indices]

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array, in the smallest free block that fits (up to twice its size)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        with self._lock:
            return self._take(nbytes).view(dtype).reshape(shape)

    def _take(self, nbytes: int) -> np.ndarray:
        best = None
        for i in range(len(self._blocks)):
            size = self._blocks[i].nbytes
            if nbytes <= size <= 2 * nbytes and (best is None or size < self._blocks[best].nbytes) and self._is_free(i):
                best = i
        if best is None:
            self._blocks.append(np.empty(nbytes, dtype=np.uint8))
            self._last_used.append(self._run)
            best = len(self._blocks) - 1
        self._last_used[best] = self._run
        return self._blocks[best][:nbytes]  # a view: the block is in use from here on

    def keep(self, array: np.ndarray) -> np.ndarray:
        """`array` itself if it lives in a pool block (or is small), else a copy in one."""
        if array.nbytes < MIN_BYTES or self.owns(array):
            return array
        out = self.empty(array.shape, array.dtype)
        np.copyto(out, array)
        return out

    def owns(self, array: np.ndarray) -> bool:
        base = array.base
        return base is not None and any(base is block for block in self._blocks)

    def clear(self) -> None:
        """Release every free block now."""
        with self._lock:
            self._keep_only([i for i in range(len(self._blocks)) if not self._is_free(i)])

    @property
    def nbytes(self) -> int:
        """Bytes held, in use or free."""
        return sum(block.nbytes for block in self._blocks)
