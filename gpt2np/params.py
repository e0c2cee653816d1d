"""The weights of GPT-2, in containers named after the checkpoint's keys.

`params.h[5].attn.c_attn.weight` is the tensor stored as `h.5.attn.c_attn.weight`. Conv1D
weights keep the checkpoint's (in, out) layout, so every linear layer is `x @ weight + bias`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerNormParams:
    weight: np.ndarray  # (d_model,)
    bias: np.ndarray  # (d_model,)


@dataclass(frozen=True)
class Conv1DParams:
    weight: np.ndarray  # (d_in, d_out)
    bias: np.ndarray  # (d_out,)


@dataclass(frozen=True)
class AttentionParams:
    c_attn: Conv1DParams  # (d_model, 3·d_model): [Q | K | V], each n_head blocks of d_head columns
    c_proj: Conv1DParams  # (d_model, d_model)


@dataclass(frozen=True)
class MLPParams:
    c_fc: Conv1DParams  # (d_model, d_mlp)
    c_proj: Conv1DParams  # (d_mlp, d_model)


@dataclass(frozen=True)
class BlockParams:
    ln_1: LayerNormParams
    attn: AttentionParams
    ln_2: LayerNormParams
    mlp: MLPParams


@dataclass(frozen=True)
class GPT2Params:
    wte: np.ndarray  # (d_vocab, d_model) token embedding
    wpe: np.ndarray  # (n_ctx, d_model) position embedding
    h: tuple[BlockParams, ...]
    ln_f: LayerNormParams
    lm_head: np.ndarray  # (d_vocab, d_model); the very same array as wte when tied

    @property
    def tied(self) -> bool:
        return self.lm_head is self.wte
