"""GPT-2's forward pass, top to bottom, one plain NumPy function per stage.

This is what `model.embed`, `model.block` and `model.unembed` run: code to read, and to step
through in a debugger. Each intermediate tensor is a local variable named after what it holds,
computed once on the calling thread and never overwritten; the comment beside it gives its shape
and the name it has in a cache (names.py). Full runs (`model(ids)`, `run_with_cache`) go through
fast.py instead, which computes the same numbers with buffers, row blocks and threads, and keeps
or patches the named tensors; tests/test_gpt2np_stepping.py checks that the two agree.

Shapes: B batch, T positions, D d_model, H heads, E d_head, V vocabulary. Parameters are named
after the checkpoint: `p.attn.c_attn.weight` is `h.{i}.attn.c_attn.weight` (see params.py).
"""

from __future__ import annotations

import numpy as np

from .config import GPT2Config
from .ops import gelu_new, layer_norm_scale, merge_heads, softmax, split_heads
from .params import AttentionParams, BlockParams, GPT2Params, LayerNormParams, MLPParams


def embed(ids: np.ndarray, params: GPT2Params) -> np.ndarray:
    """Token plus position embedding: (B, T) ids -> (B, T, D) residual stream."""
    token = params.wte[ids]  # (B, T, D)  hook_embed
    position = params.wpe[: ids.shape[1]]  # (T, D)  hook_pos_embed, the same for every row
    resid = token + position  # (B, T, D)  blocks.0.hook_resid_pre
    return resid


def layer_norm(x: np.ndarray, p: LayerNormParams, eps: float) -> np.ndarray:
    """LayerNorm over D with biased variance, as torch.nn.LayerNorm: (B, T, D) -> (B, T, D)."""
    centred = x - np.mean(x, axis=-1, keepdims=True)  # (B, T, D)
    scale = layer_norm_scale(centred, eps)  # (B, T, 1)  hook_scale: sqrt(var + eps)
    normalized = centred / scale  # (B, T, D)  hook_normalized: before weight and bias
    out = normalized * p.weight + p.bias  # (B, T, D)  hook_out
    return out


def attention(x: np.ndarray, p: AttentionParams, cfg: GPT2Config, layer: int, mask: np.ndarray) -> np.ndarray:
    """Causal multi-head self-attention: (B, T, D) -> (B, T, D).

    `mask` is additive, 0 where a query may look and -inf where it may not: (T, T) for the causal
    mask alone, (B, 1, T, T) when padded keys are hidden too.
    """
    qkv = x @ p.c_attn.weight + p.c_attn.bias  # (B, T, 3D): [Q | K | V]
    q_all, k_all, v_all = np.split(qkv, 3, axis=-1)  # (B, T, D) each
    q = split_heads(q_all, cfg.n_head)  # (B, H, T, E)  attn.hook_q, shown as (B, T, H, E)
    k = split_heads(k_all, cfg.n_head)  # (B, H, T, E)  attn.hook_k
    v = split_heads(v_all, cfg.n_head)  # (B, H, T, E)  attn.hook_v
    scores = q @ k.swapaxes(-1, -2) * cfg.attention_scale(layer) + mask  # (B, H, T, T)  attn.hook_attn_scores
    pattern = softmax(scores)  # (B, H, T, T)  attn.hook_pattern
    z = pattern @ v  # (B, H, T, E)  attn.hook_z, shown as (B, T, H, E)
    out = merge_heads(z) @ p.c_proj.weight + p.c_proj.bias  # (B, T, D)  hook_attn_out
    return out


def mlp(x: np.ndarray, p: MLPParams) -> np.ndarray:
    """Position-wise feed-forward: (B, T, D) -> (B, T, d_mlp) -> GELU -> (B, T, D)."""
    pre = x @ p.c_fc.weight + p.c_fc.bias  # (B, T, d_mlp)  mlp.hook_pre
    post = gelu_new(pre)  # (B, T, d_mlp)  mlp.hook_post
    out = post @ p.c_proj.weight + p.c_proj.bias  # (B, T, D)  hook_mlp_out
    return out


def block(resid_pre: np.ndarray, p: BlockParams, cfg: GPT2Config, layer: int, mask: np.ndarray) -> np.ndarray:
    """One pre-LayerNorm transformer block, (B, T, D) -> (B, T, D): x + attn(ln_1(x)), then + mlp(ln_2(.))."""
    ln1 = layer_norm(resid_pre, p.ln_1, cfg.layer_norm_eps)  # (B, T, D)  ln1.hook_out
    attn_out = attention(ln1, p.attn, cfg, layer, mask)  # (B, T, D)  hook_attn_out
    resid_mid = resid_pre + attn_out  # (B, T, D)  hook_resid_mid
    ln2 = layer_norm(resid_mid, p.ln_2, cfg.layer_norm_eps)  # (B, T, D)  ln2.hook_out
    mlp_out = mlp(ln2, p.mlp)  # (B, T, D)  hook_mlp_out
    resid_post = resid_mid + mlp_out  # (B, T, D)  hook_resid_post
    return resid_post


def unembed(resid: np.ndarray, params: GPT2Params, cfg: GPT2Config) -> np.ndarray:
    """Final LayerNorm and the (tied) unembedding: (B, T, D) -> (B, T, V) logits."""
    final = layer_norm(resid, params.ln_f, cfg.layer_norm_eps)  # (B, T, D)  ln_final.hook_out
    logits = final @ params.lm_head.T  # (B, T, V)
    return logits
