"""GPT-2's own initialisation, in NumPy: the untrained control of the geometry study.

What GPT-2 (and transformers' GPT2PreTrainedModel._init_weights) does before training:
* wte, wpe and the weight of every linear layer (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj):
  normal, mean 0, std 0.02 (`initializer_range`);
* the two projections that write into the residual stream, attn.c_proj and mlp.c_proj weights:
  std 0.02 / sqrt(2 * n_layer) instead (the paper's "scale the weights of residual layers by
  1/sqrt(N)", N = 2 * n_layer residual branches), so the stream's variance stays bounded in depth;
* every bias 0; every LayerNorm weight 1 and bias 0; the unembedding tied to wte.

Draws: one numpy Generator(PCG64(seed)), standard normals drawn in float64 and in this fixed
order, each tensor in C order of its (in, out) checkpoint layout: wte, wpe, then for each block
0..n_layer-1: attn.c_attn.weight, attn.c_proj.weight, mlp.c_fc.weight, mlp.c_proj.weight. Each
draw is scaled by its std and only then rounded to `dtype`, so the float32 and float64 models of
one seed are the same network up to rounding. Draws are taken in blocks of at most BLOCK values
(the stream is the same as one large draw: Generator.standard_normal consumes the bit stream
sequentially), to bound the float64 temporary.
"""

from __future__ import annotations

import math

import numpy as np

from .config import GPT2Config
from .loading import model_dtype
from .model import GPT2
from .params import AttentionParams, BlockParams, Conv1DParams, GPT2Params, LayerNormParams, MLPParams

INITIALIZER_RANGE = 0.02  # GPT-2's std for every weight
BLOCK = 1 << 20  # normals drawn at a time


def residual_std(cfg: GPT2Config) -> float:
    """The std of the two residual output projections: 0.02 / sqrt(2 * n_layer)."""
    return INITIALIZER_RANGE / math.sqrt(2 * cfg.n_layer)


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: np.dtype) -> np.ndarray:
    """std * N(0, 1) of `shape`, drawn in float64 blocks and rounded to `dtype` once."""
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        block = rng.standard_normal(min(BLOCK, flat.size - start))
        block *= std
        flat[start:start + block.size] = block
    return out


def _layer_norm(d: int, dtype: np.dtype) -> LayerNormParams:
    return LayerNormParams(weight=np.ones(d, dtype), bias=np.zeros(d, dtype))


def _linear(rng: np.random.Generator, d_in: int, d_out: int, std: float, dtype: np.dtype) -> Conv1DParams:
    return Conv1DParams(weight=_normal(rng, (d_in, d_out), std, dtype), bias=np.zeros(d_out, dtype))


def _block(rng: np.random.Generator, cfg: GPT2Config, dtype: np.dtype) -> BlockParams:
    d, std, res = cfg.d_model, INITIALIZER_RANGE, residual_std(cfg)
    # The draws happen in the order written here (the documented order of the module docstring).
    c_attn = _linear(rng, d, 3 * d, std, dtype)
    attn_proj = _linear(rng, d, d, res, dtype)
    c_fc = _linear(rng, d, cfg.d_mlp, std, dtype)
    mlp_proj = _linear(rng, cfg.d_mlp, d, res, dtype)
    return BlockParams(
        ln_1=_layer_norm(d, dtype), attn=AttentionParams(c_attn=c_attn, c_proj=attn_proj),
        ln_2=_layer_norm(d, dtype), mlp=MLPParams(c_fc=c_fc, c_proj=mlp_proj),
    )


def init_params(cfg: GPT2Config, seed: int, dtype: str = "float32") -> GPT2Params:
    """GPT-2's initial weights for `cfg`, deterministic in `seed` (see the module docstring)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    dt = model_dtype(dtype)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    wte = _normal(rng, (cfg.d_vocab, cfg.d_model), INITIALIZER_RANGE, dt)
    wpe = _normal(rng, (cfg.n_ctx, cfg.d_model), INITIALIZER_RANGE, dt)
    blocks = tuple(_block(rng, cfg, dt) for _ in range(cfg.n_layer))
    return GPT2Params(wte=wte, wpe=wpe, h=blocks, ln_f=_layer_norm(cfg.d_model, dt), lm_head=wte)


def untrained_model(cfg: GPT2Config, seed: int, dtype: str = "float32") -> GPT2:
    """A GPT2 with GPT-2's initial weights (init_params); its source names the seed."""
    return GPT2(init_params(cfg, seed, dtype), cfg, source=f"untrained (GPT-2 initialisation, seed {seed})")
