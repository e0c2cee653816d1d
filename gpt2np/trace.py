"""What a full run does at each named site: keep the tensor, let a hook replace it, or neither.

The functions of fast.py call `trace(name, array)` at every site and carry on with what it returns.
Arrays inside the forward pass always have a batch axis; the public view (what is cached and what
hooks see) drops it when the caller passed a single sequence. Kept tensors live in memory from
the model's BufferPool (see recycle.py), which the next run reuses once the cache is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import InputError
from .recycle import BufferPool

Hook = Callable[[np.ndarray, str], "np.ndarray | None"]


class Trace:
    def __init__(self, keep: frozenset[str], hooks: dict[str, Hook], batched: bool, pool: BufferPool):
        self.keep = keep
        self.hooks = hooks
        self.batched = batched
        self.pool = pool
        self.cache: dict[str, np.ndarray] = {}

    def needs(self, name: str) -> bool:
        """Whether anything outside the forward pass will see this tensor (so it must not be
        overwritten in place, and optional tensors must be computed)."""
        return name in self.keep or name in self.hooks

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        if not self.keep and not self.hooks:
            return value
        public = value if self.batched else value[0]
        hook = self.hooks.get(name)
        if hook is not None:
            public = _apply_hook(hook, name, public)
            value = public if self.batched else public[None]
        if name in self.keep:
            self.cache[name] = self.pool.keep(public)
        return value

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Room for a large result (a layer's output, scores, pattern, logits), from the pool: a
        kept or returned array is reused by later runs once dropped, and a temporary (one
        layer's scores) by the next layer, instead of fresh memory."""
        return self.pool.empty(shape, dtype)

    def rows(self, x: np.ndarray, width: int) -> np.ndarray:
        """`empty` for a result with x's rows and `width` columns: (..., width)."""
        return self.empty((*x.shape[:-1], width), x.dtype)

    def heads(self, name: str, value: np.ndarray) -> np.ndarray:
        """Like __call__ for per-head tensors held as (B, H, T, ·) but shown as (B, T, H, ·)."""
        if not self.needs(name):
            return value
        shown = self(name, value.transpose(0, 2, 1, 3))
        return np.ascontiguousarray(shown.transpose(0, 2, 1, 3))



def _apply_hook(hook: Hook, name: str, value: np.ndarray) -> np.ndarray:
    returned = hook(value, name)
    if returned is None:  # the hook edited `value` in place (or only looked at it)
        return value
    returned = np.asarray(returned)
    if returned.shape != value.shape:
        raise InputError(
            f"the hook on {name!r} returned an array of shape {returned.shape}; it must keep the "
            f"shape {value.shape}"
        )
    if returned.dtype.kind not in "biuf":  # complex would lose its imaginary part; objects, strings: no numbers
        raise InputError(
            f"the hook on {name!r} returned an array of dtype {returned.dtype}; it must return real "
            f"numbers (the tensor is {value.dtype})"
        )
    if returned.dtype != value.dtype:
        returned = returned.astype(value.dtype)
    return returned
