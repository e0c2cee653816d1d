"""Validation of token ids and attention masks, once, before any computation."""

from __future__ import annotations

import numpy as np

from .config import GPT2Config
from .errors import InputError


def as_batch(ids, cfg: GPT2Config) -> tuple[np.ndarray, bool]:
    """Return ((B, T) int64 ids, whether the caller gave a batch)."""
    if isinstance(ids, (list, tuple)) and len(ids) and all(isinstance(row, (list, tuple, np.ndarray)) for row in ids):
        lengths = {len(row) for row in ids}
        if len(lengths) > 1:
            raise InputError(
                f"the rows of the batch have different lengths {sorted(lengths)}: pad them to one "
                "length and pass attention_mask (1 for real tokens, 0 for padding)"
            )
    arr = np.asarray(ids)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        raise InputError(
            f"token ids must be an integer array, got dtype {arr.dtype}; encode text with "
            "gpt2np.load_tokenizer(...).encode(text)"
        )
    if arr.ndim not in (1, 2):
        raise InputError(f"token ids must be 1-D (T,) or 2-D (B, T), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"token ids are empty (shape {arr.shape}): give at least one token")
    batched = arr.ndim == 2
    arr = arr.reshape(-1, arr.shape[-1]).astype(np.int64, copy=False)
    t = arr.shape[1]
    if t > cfg.n_ctx:
        raise InputError(
            f"the sequence has {t} tokens but the model has only {cfg.n_ctx} positions; "
            f"truncate it to at most {cfg.n_ctx} tokens"
        )
    bad = (arr < 0) | (arr >= cfg.d_vocab)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        pos = where if batched else where[1]
        raise InputError(
            f"token id {int(arr[where])} at position {pos} is outside the vocabulary "
            f"[0, {cfg.d_vocab - 1}]"
        )
    return arr, batched


def check_attention_mask(mask, ids: np.ndarray) -> np.ndarray | None:
    """Return the mask as (B, T) bool, or None when it hides nothing.

    Rows must be right-padded (ones, then zeros) with at least one real token: positions are
    numbered 0..T-1 from the left, so only right padding leaves the real tokens' positions intact.
    """
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.shape != ids.shape:
        raise InputError(f"attention_mask has shape {np.shape(mask)} but the ids have shape {ids.shape}; they must match")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise InputError("attention_mask must hold only 1 (real token) and 0 (padding)")
    arr = arr.astype(bool)
    if not arr[:, 0].all():
        raise InputError(
            "every row of attention_mask must start with a real token (1): gpt2np supports right "
            "padding only (put the padding after the tokens)"
        )
    if (np.diff(arr.astype(np.int8), axis=1) > 0).any():
        raise InputError(
            "attention_mask has a 1 after a 0 in some row: gpt2np supports right padding only "
            "(each row must be ones followed by zeros)"
        )
    return None if arr.all() else arr
