"""One point per sequence: batched forward passes and the task that fills one shard of the store.

`represent_batch` runs gpt2np on a (B, T) batch of right-padded sequences and reduces each kept
site to one row per sequence: its last real token (`last`) or the mean over its real positions
(`mean`). `forward_shard` is the task of the corpus-scale study: small picklable arguments (a
ModelSpec, a path, one shard's ids), the model loaded once per process, the rows written into
the shard's chunks of the ActivationStore (store.py).

Why no padding mask: the padding is on the right and attention is causal, so a real position t
attends to keys 0..t only, all real; a padded position (t >= length) is never a key of a real
one. Every operation other than attention (embeddings, LayerNorm, the MLP, the residual sums)
works on each position alone. The real positions' states are therefore exactly those of the
sequence run alone, whatever the padding holds (tests/test_scale_forward.py checks it against
run_with_cache sequence by sequence); the padded positions' own states are discarded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gpt2np
from gpt2np.config import PRESETS, GPT2Config

from ..errors import StudyError
from .store import ActivationStore

REPRESENTATIONS = ("last", "mean")


def default_sites(cfg: GPT2Config) -> list[str]:
    """The embeddings (the stream entering block 0) and every block's output, in depth order."""
    return ["blocks.0.hook_resid_pre", *[f"blocks.{i}.hook_resid_post" for i in range(cfg.n_layer)]]


def _check_batch(ids: np.ndarray, lengths: np.ndarray, represent: str) -> None:
    if represent not in REPRESENTATIONS:
        raise ValueError(f"represent must be one of {', '.join(REPRESENTATIONS)}, got {represent!r}")
    if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
        raise ValueError(f"ids must be (B, T) and lengths (B,), got {ids.shape} and {lengths.shape}")
    if ids.shape[0] and (lengths.min() < 1 or lengths.max() > ids.shape[1]):
        raise ValueError(f"every length must be in 1..{ids.shape[1]} (the batch's width)")


def position_weights(lengths: np.ndarray, width: int, drop_positions: tuple[int, ...], dtype) -> np.ndarray:
    """(B, width) weights of the mean: 1/count on positions [0, length) not dropped, 0 elsewhere."""
    keep = np.arange(width)[None, :] < lengths[:, None]
    dropped = [p for p in drop_positions if 0 <= p < width]
    keep[:, dropped] = False
    count = keep.sum(axis=1)
    if (count == 0).any():
        b = int(np.flatnonzero(count == 0)[0])
        raise ValueError(
            f"sequence {b} of the batch (length {int(lengths[b])}) has no position left once positions "
            f"{list(drop_positions)} are dropped: the mean needs at least one"
        )
    return (keep / count[:, None]).astype(dtype)


def reduce_site(states: np.ndarray, lengths: np.ndarray, represent: str, weights: np.ndarray | None) -> np.ndarray:
    """(B, T, D) states -> (B, D): the last real position's, or the weighted mean over positions."""
    if represent == "last":
        return np.ascontiguousarray(states[np.arange(states.shape[0]), lengths - 1])
    # (B, 1, T) @ (B, T, D): one small product per sequence, the sum in BLAS' order
    return np.matmul(weights[:, None, :], states)[:, 0, :]


def represent_batch(model: gpt2np.GPT2, ids: np.ndarray, lengths: np.ndarray, sites: list[str], represent: str,
                    drop_positions: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """{site: (B, width) in the model's dtype}: each sequence's `last` state or the `mean` of its
    states over positions [0, lengths[b]) minus `drop_positions` (ValueError if none remain).
    ids (B, T) right-padded (what the padding holds does not matter; see the module docstring)."""
    ids = np.asarray(ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    _check_batch(ids, lengths, represent)
    width = int(lengths.max())
    ids = ids[:, :width]  # columns past the longest sequence are padding for everyone
    weights = position_weights(lengths, width, tuple(drop_positions), model.dtype) if represent == "mean" else None
    _, cache = model.run_with_cache(ids, names=list(sites), return_type=None)
    return {site: reduce_site(cache[site], lengths, represent, weights) for site in sites}


@dataclass(frozen=True)
class ModelSpec:
    """A picklable description of a model that any process can load (and caches once loaded)."""

    weights: str | None  # the .safetensors file of a trained model
    config: str | None  # its config.json (None: a folder's own, else GPT-2 small)
    dtype: str = "float32"
    untrained_seed: int | None = None  # not None: GPT-2's initialisation with this seed (gpt2np.init)
    cfg: GPT2Config | None = None  # the untrained model's shape (else read from `config`)

    def load(self) -> gpt2np.GPT2:
        """The model, loaded once per process and kept while tasks ask for this spec. Only the
        last spec's model is kept (the study runs the trained model's shards, then the untrained
        one's): two GPT-2 smalls would hold twice the memory for nothing."""
        with _MODELS_LOCK:  # worker threads starting together load it once
            if self not in _MODELS:
                _MODELS.clear()
                _MODELS[self] = self._build()
            return _MODELS[self]

    def _build(self) -> gpt2np.GPT2:
        if self.untrained_seed is not None:
            cfg = self.cfg or (GPT2Config.from_json_file(self.config) if self.config else PRESETS["gpt2"])
            return gpt2np.untrained_model(cfg, self.untrained_seed, self.dtype)
        if self.weights is None:
            raise StudyError("a ModelSpec needs a weights file or an untrained_seed")
        return gpt2np.load_model(self.weights, dtype=self.dtype, config=self.config)


_MODELS: dict[ModelSpec, gpt2np.GPT2] = {}  # this process's loaded model, by its spec
_MODELS_LOCK = threading.Lock()


def batch_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The rows of each batch: longest first (stable), so that sequences of similar lengths run
    together and little padding is computed; equal lengths keep their order."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]


def forward_shard(model_spec: ModelSpec, store_path: Path | str, shard: int, ids, lengths, sites: list[str], represent: str,
                  drop_positions: tuple[int, ...], batch_size: int) -> None:
    """The task: represent the shard's sequences (`ids`, `lengths`: its rows, in store order) in
    batches of `batch_size` and write them as the shard's chunks of the store at `store_path`
    (a local path or a URL)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    store = ActivationStore.open_existing(store_path)  # not Path(): a URL must stay a URL
    r0, r1 = store.shard_rows_range(shard)
    ids, lengths = np.asarray(ids), np.asarray(lengths, dtype=np.int64)
    if ids.shape[0] != r1 - r0 or lengths.shape != (r1 - r0,):
        raise ValueError(f"shard {shard} holds rows {r0}..{r1 - 1} ({r1 - r0}); got {ids.shape[0]} sequences")
    model = model_spec.load()
    rows = {site: np.empty((r1 - r0, store.sites[site]), dtype=model.dtype) for site in sites}
    for batch in batch_order(lengths, batch_size):
        out = represent_batch(model, ids[batch], lengths[batch], sites, represent, drop_positions)
        for site in sites:
            rows[site][batch] = out[site]
        del out  # the cache's memory goes back to the model's pool for the next batch
    store.write_shard(shard, rows)
