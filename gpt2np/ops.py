"""The elementary operations of GPT-2, one small pure function each: each returns its result and
changes none of its arguments (fast.py and causal.py have the in-place variants full runs use).

Shapes: B batch, T positions, D d_model, H heads, E d_head (D = H·E).
Every function computes exactly what Hugging Face `transformers` computes for GPT-2.
"""

from __future__ import annotations

import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)


def layer_norm_scale(x_centred: np.ndarray, eps: float) -> np.ndarray:
    """sqrt(biased variance + eps) of each row: (..., D) -> (..., 1)."""
    var = np.mean(np.square(x_centred), axis=-1, keepdims=True)
    return np.sqrt(var + eps)


def gelu_new(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GELU that GPT-2 was trained with ("gelu_new"):
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in the order fast.gelu_new_into takes."""
    c = x.dtype.type(GELU_C)
    return 0.5 * (x * (1.0 + np.tanh(c * (x + 0.044715 * (x * x * x)))))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis. Subtracting each row's maximum first keeps exp from overflowing."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=-1, keepdims=True)


def split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(B, T, D) -> (B, H, T, E), contiguous so that the batched products below run on BLAS."""
    b, t, d = x.shape
    return np.ascontiguousarray(x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3))


def merge_heads(z: np.ndarray) -> np.ndarray:
    """(B, H, T, E) -> (B, T, H·E)."""
    b, h, t, e = z.shape
    return z.transpose(0, 2, 1, 3).reshape(b, t, h * e)


def causal_mask(t: int, dtype: np.dtype) -> np.ndarray:
    """(T, T) additive mask: 0 where a query may attend (key ≤ query), −inf above the diagonal."""
    return np.triu(np.full((t, t), -np.inf, dtype=dtype), k=1)


def padding_mask(attention_mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(B, T) of 1/0 -> (B, 1, 1, T) additive mask hiding padded keys from every query."""
    add = np.where(attention_mask.astype(bool), 0.0, -np.inf).astype(dtype)
    return add[:, None, None, :]
