"""The `GPT2` object: weights + config, with the forward pass, the cache and step-by-step calls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from . import fast, forward
from .config import GPT2Config
from .errors import InputError, UnknownNameError
from .inputs import as_batch, check_attention_mask
from .names import NamesFilter, hook_names, resolve_names, unknown_name_message
from .ops import causal_mask, padding_mask
from .params import GPT2Params
from .recycle import BufferPool
from .trace import Hook, Trace


class ActivationCache(Mapping):
    """Read-only mapping from tensor name to array, in the order the forward pass made them."""

    def __init__(self, tensors: dict[str, np.ndarray], all_names: list[str]):
        self._tensors = tensors
        self._all_names = all_names

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._tensors[name]
        except KeyError:
            if name in self._all_names:
                raise UnknownNameError(
                    f"{name!r} was not kept in this cache: add it to names= in run_with_cache"
                ) from None
            raise UnknownNameError(unknown_name_message(name, self._all_names)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._tensors.values())

    def __repr__(self) -> str:
        lines = [f"  {n}: {a.shape} {a.dtype}" for n, a in self._tensors.items()]
        return f"ActivationCache({len(self)} tensors, {self.nbytes / 2**20:.1f} MiB\n" + "\n".join(lines) + "\n)"


class GPT2:
    """GPT-2 in NumPy. `model(ids)` gives logits; `model.run_with_cache(ids, names=...)` gives
    logits and the named intermediate tensors (both through fast.py); `embed`, `block` and
    `unembed` run one stage at a time in plain NumPy on the calling thread (forward.py), for
    stepping through in a debugger."""

    def __init__(self, params: GPT2Params, cfg: GPT2Config, source: str | None = None):
        self.params = params
        self.cfg = cfg
        self.source = source
        self.dtype = params.wte.dtype
        self._pool = BufferPool()  # memory of kept tensors, reused once a cache is dropped

    def __repr__(self) -> str:
        c = self.cfg
        return (f"GPT2(n_layer={c.n_layer}, n_head={c.n_head}, d_model={c.d_model}, d_vocab={c.d_vocab}, "
                f"dtype={self.dtype}, source={self.source!r})")

    @property
    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    # -- whole forward pass ------------------------------------------------------------------
    def __call__(self, ids, attention_mask=None) -> np.ndarray:
        """Logits: (T, d_vocab) for ids of shape (T,), (B, T, d_vocab) for (B, T)."""
        logits, _ = self.run_with_cache(ids, names=(), attention_mask=attention_mask)
        return logits

    def run_with_cache(
        self, ids, names: NamesFilter = None, hooks: dict[str, Hook] | None = None, attention_mask=None,
        return_type: str | None = "logits",
    ) -> tuple[np.ndarray | None, ActivationCache]:
        """Run the model and keep the tensors `names` selects (None: all but attn.hook_result;
        a name, a glob pattern, a list of them, or a callable). `hooks` maps a tensor name to
        `fn(array, name)`, whose return value (if not None) replaces the tensor downstream.
        `return_type=None` (as in TransformerLens) skips the unembedding and returns (None,
        cache): the (T, d_vocab) logits are the largest product of the pass."""
        if return_type not in ("logits", None):
            raise InputError(f"return_type must be 'logits' or None, got {return_type!r}")
        batch, batched = as_batch(ids, self.cfg)
        mask = self._mask(batch, attention_mask)
        keep = resolve_names(names, self.cfg)
        self._pool.start_run()
        trace = Trace(keep, self._check_hooks(hooks), batched, self._pool)
        resid = fast.embed(batch, self.params, trace)
        for layer, block_params in enumerate(self.params.h):
            resid = fast.block(resid, block_params, self.cfg, layer, mask, trace)
        cache = ActivationCache(trace.cache, self.hook_names)
        if return_type is None:
            if any(n.startswith("ln_final.") for n in [*keep, *trace.hooks]):
                fast.final_layer_norm(resid, self.params, self.cfg, trace)
            return None, cache
        logits = fast.unembed(resid, self.params, self.cfg, trace)
        return (logits if batched else logits[0]), cache

    def run_with_hooks(self, ids, hooks: dict[str, Hook], attention_mask=None) -> np.ndarray:
        """Logits of a run in which `hooks` may replace tensors (patching, ablation)."""
        logits, _ = self.run_with_cache(ids, names=(), hooks=hooks, attention_mask=attention_mask)
        return logits

    # -- one stage at a time, in plain NumPy (forward.py): no pool, no threads, no row blocks ---
    def embed(self, ids) -> np.ndarray:
        """Token + position embedding: the residual stream entering block 0."""
        batch, batched = as_batch(ids, self.cfg)
        resid = forward.embed(batch, self.params)
        return resid if batched else resid[0]

    def block(self, layer: int, resid: np.ndarray, attention_mask=None) -> np.ndarray:
        """Run block `layer` on a residual stream of shape (T, D) or (B, T, D)."""
        if not 0 <= layer < self.cfg.n_layer:
            raise InputError(f"layer must be in 0..{self.cfg.n_layer - 1}, got {layer}")
        x, batched = self._as_resid(resid)
        mask = self._mask(np.zeros(x.shape[:2], np.int64), attention_mask)
        out = forward.block(x, self.params.h[layer], self.cfg, layer, mask)
        return out if batched else out[0]

    def unembed(self, resid: np.ndarray) -> np.ndarray:
        """ln_f and the unembedding applied to any residual stream: the logit lens. Rows are
        independent here, so any number of them may be passed (not limited to n_ctx)."""
        x, batched = self._as_resid(resid, positional=False)
        logits = forward.unembed(x, self.params, self.cfg)
        return logits if batched else logits[0]

    def release_memory(self) -> None:
        """Give back at once the memory the model holds for reuse by later runs (see recycle.py:
        the kept tensors of dropped caches, otherwise released after two runs that do not use
        them). Arrays still in use are never touched."""
        self._pool.clear()

    # -- helpers -----------------------------------------------------------------------------
    def _as_resid(self, resid, positional: bool = True) -> tuple[np.ndarray, bool]:
        x = np.asarray(resid)
        if x.ndim not in (2, 3) or x.shape[-1] != self.cfg.d_model:
            raise InputError(f"a residual stream must have shape (T, {self.cfg.d_model}) or (B, T, {self.cfg.d_model}), got {x.shape}")
        if x.dtype.kind != "f":
            raise InputError(f"a residual stream must be a floating-point array, got dtype {x.dtype}")
        if positional and x.shape[-2] > self.cfg.n_ctx:
            raise InputError(f"the residual stream has {x.shape[-2]} positions; the model has {self.cfg.n_ctx}")
        return (x, True) if x.ndim == 3 else (x[None], False)

    def _mask(self, batch: np.ndarray, attention_mask) -> np.ndarray:
        """The additive attention mask: causal, plus padded keys when a mask hides some."""
        causal = causal_mask(batch.shape[1], self.dtype)
        padded = check_attention_mask(attention_mask, batch)
        return causal if padded is None else causal + padding_mask(padded, self.dtype)

    def _check_hooks(self, hooks) -> dict[str, Hook]:
        if not hooks:
            return {}
        if not isinstance(hooks, Mapping):
            raise TypeError("hooks must be a dict mapping a tensor name to a function fn(array, name)")
        valid = set(self.hook_names)
        for name, fn in hooks.items():
            if name not in valid:
                raise UnknownNameError(unknown_name_message(name, self.hook_names))
            if not callable(fn):
                raise TypeError(f"the hook for {name!r} is not callable")
        return dict(hooks)
