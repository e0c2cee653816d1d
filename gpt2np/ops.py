"""The elementary operations of GPT-2, one small pure function each.

Shapes: B batch, T positions, D d_model, H heads, E d_head (D = H·E).
Every function computes exactly what Hugging Face `transformers` computes for GPT-2.
"""

from __future__ import annotations

import math

import numpy as np


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GPT-2's `Conv1D`: an affine map with the weight stored (in, out); into `out` if given."""
    out = np.matmul(x, weight, out=out)
    out += bias
    return out


def layer_norm_scale(x_centred: np.ndarray, eps: float) -> np.ndarray:
    """sqrt(biased variance + eps) of each row: (..., D) -> (..., 1)."""
    var = np.mean(np.square(x_centred), axis=-1, keepdims=True)
    return np.sqrt(var + eps)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm."""
    centred = x - np.mean(x, axis=-1, keepdims=True)
    out = centred / layer_norm_scale(centred, eps)
    out *= weight
    out += bias
    return out


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_new(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The tanh approximation of GELU that GPT-2 was trained with ("gelu_new"):
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Written in place on one array (`out` if given)."""
    inner = np.multiply(x, x, out=out)
    inner *= x
    inner *= 0.044715
    inner += x
    inner *= x.dtype.type(_GELU_C)
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= 0.5
    return inner


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


def softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis; `out=x` overwrites the input to save a (B, H, T, T) array."""
    out = np.subtract(x, np.max(x, axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= np.sum(out, axis=-1, keepdims=True)
    return out
