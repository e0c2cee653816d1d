"""Memory for kept tensors, reused once the caller has let go of the arrays made from it.

Why: a full trace of GPT-2 small at T = 1024 keeps about 2 GB. Memory the process has never
used costs a page fault per page on first touch, and on a virtual machine the host may have to
back every page as well: writing 2 GB of fresh memory can take longer than the whole forward
pass. A user who runs the model again after dropping the previous cache should not pay that
twice, so the blocks behind kept tensors stay with the model and the next run writes into them.

When is a block free? Every array made from a block (every view, every slice, a memoryview of
it) holds a reference to the block itself, because NumPy points a view's `.base` at the array
that owns the memory. So a block whose only reference is the pool's own list is provably
unused, and CPython's reference count says so exactly.

A run first tells the pool which block sizes it will keep (`plan`); free blocks it will not
reuse are released then, so idle memory never adds to a run's peak. After a run the pool holds
at most the blocks of the tensors that run kept; `clear()` releases the free ones at once.
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np

# Smaller arrays come from malloc's warm heap anyway; pooling them would only add copies.
MIN_BYTES = 1 << 20


def _references_when_free() -> int:
    """What sys.getrefcount reports for a list item nothing else refers to, measured the way
    `_is_free` asks (the count includes the call's own argument; interpreters differ)."""
    probe = [np.empty(1)]
    return sys.getrefcount(probe[0])


_FREE = _references_when_free()


class BufferPool:
    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []  # 1-D uint8 arrays owned here

    def _is_free(self, i: int) -> bool:
        return sys.getrefcount(self._blocks[i]) <= _FREE

    def plan(self, sizes: Counter) -> None:
        """Before a run that will keep `sizes[n]` arrays of n bytes: release every free block
        that run will not use."""
        wanted = Counter({n: c for n, c in sizes.items() if n >= MIN_BYTES})
        kept = []
        for i in range(len(self._blocks)):  # by index: a loop variable would be one more reference
            if not self._is_free(i):
                kept.append(self._blocks[i])
            elif wanted[self._blocks[i].nbytes] > 0:
                wanted[self._blocks[i].nbytes] -= 1
                kept.append(self._blocks[i])
        self._blocks = kept

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array, in a free block of the right size if there is one."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        for i in range(len(self._blocks)):
            if self._blocks[i].nbytes == nbytes and self._is_free(i):
                return self._blocks[i].view(dtype).reshape(shape)
        block = np.empty(nbytes, dtype=np.uint8)
        self._blocks.append(block)
        return block.view(dtype).reshape(shape)

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
        self.plan(Counter())

    @property
    def nbytes(self) -> int:
        """Bytes held, in use or free."""
        return sum(block.nbytes for block in self._blocks)
