"""The forward pass of full runs (`model(ids)`, `run_with_cache`, `run_with_hooks`).

The same arithmetic as forward.py, stage by stage, plus what a full run needs: a `trace` that keeps
or patches the named tensors (see trace.py), room for large results from the model's buffer pool
(recycle.py), causal attention in row blocks that skip the masked triangle and a softmax spread
over the cores (causal.py), and in-place element-wise passes. Arrays here may be overwritten once
nothing outside can see them (the scores become the pattern). To read or step through the model,
use forward.py instead: tests/test_gpt2np_stepping.py checks that both give the same tensors.

Shapes: B batch, T positions, D d_model, H heads, E d_head, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from . import causal
from .config import GPT2Config
from .ops import GELU_C, layer_norm_scale, merge_heads, split_heads
from .params import AttentionParams, BlockParams, GPT2Params, LayerNormParams, MLPParams
from .trace import Trace


def rows_matmul(x: np.ndarray, weight: np.ndarray, out: np.ndarray) -> np.ndarray:
    """x @ weight for x of shape (..., K) and a 2-D weight, into `out` (contiguous, (..., N)), as
    ONE product of all the rows. NumPy treats a (B, T, K) @ (K, N) matmul as B stacked products
    and, with the weight broadcast over the stack, does not call BLAS but its own loop: at B = 64,
    T = 20 on GPT-2 small's c_fc that was 18x slower than the same rows as one (B·T, K) product."""
    flat_out = out.reshape(-1, out.shape[-1])  # a view: `out` is contiguous
    np.matmul(x.reshape(-1, x.shape[-1]), weight, out=flat_out)  # x's reshape copies only if x is not contiguous
    return out


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray) -> np.ndarray:
    """GPT-2's `Conv1D`, x @ weight + bias, written into `out` (memory from the pool)."""
    out = rows_matmul(x, weight, out)
    out += bias
    return out


# Elements per piece of an element-wise chain: small enough (256 KiB of float32) that the chain's
# nine passes over a piece find it in the CPU's L2 cache instead of memory. At B·T = 1,280 rows
# of d_mlp = 3,072 this took the GELU from 35 to 24 ms a block.
PIECE = 1 << 16


def gelu_new_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """ops.gelu_new computed in `out`, piece by piece (the same values: it is element-wise)."""
    if x.size <= PIECE or not (x.flags.c_contiguous and out.flags.c_contiguous):
        return _gelu_new_piece(x, out)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for start in range(0, flat_x.size, PIECE):
        _gelu_new_piece(flat_x[start:start + PIECE], flat_out[start:start + PIECE])
    return out


def _gelu_new_piece(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """ops.gelu_new in place in `out`, one pass at a time, without temporaries."""
    inner = np.multiply(x, x, out=out)
    inner *= x
    inner *= 0.044715
    inner += x
    inner *= x.dtype.type(GELU_C)
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= x
    inner *= 0.5
    return inner


def embed(ids: np.ndarray, params: GPT2Params, trace: Trace) -> np.ndarray:
    """Token plus position embedding: (B, T) ids -> (B, T, D) residual stream."""
    positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    token = trace("hook_embed", params.wte[ids])  # (B, T, D)
    position = trace("hook_pos_embed", params.wpe[positions])  # (B, T, D)
    return token + position


def layer_norm(x: np.ndarray, p: LayerNormParams, eps: float, trace: Trace, prefix: str) -> np.ndarray:
    """LayerNorm over D with biased variance (torch.nn.LayerNorm): (B, T, D) -> (B, T, D)."""
    if not (trace.needs(prefix + "hook_scale") or trace.needs(prefix + "hook_normalized")) and x.flags.c_contiguous:
        return trace(prefix + "hook_out", _layer_norm_pieces(x, p, eps, out=trace.rows(x, x.shape[-1])))
    centred = x - np.mean(x, axis=-1, keepdims=True)
    scale = trace(prefix + "hook_scale", layer_norm_scale(centred, eps))  # (B, T, 1)
    normalized = np.divide(centred, scale, out=trace.rows(x, x.shape[-1]))  # (B, T, D), before weight and bias
    if trace.needs(prefix + "hook_normalized"):
        normalized = trace(prefix + "hook_normalized", normalized)
        out = np.multiply(normalized, p.weight, out=trace.rows(x, x.shape[-1]))  # the kept array stays as it is
    else:
        out = normalized
        out *= p.weight
    out += p.bias
    return trace(prefix + "hook_out", out)


def _layer_norm_pieces(x: np.ndarray, p: LayerNormParams, eps: float, out: np.ndarray) -> np.ndarray:
    """layer_norm's arithmetic, step for step, on pieces of rows that stay in the CPU cache
    (when nothing outside needs its intermediate tensors). Every row is reduced alone, so the
    values are those of the whole-array passes."""
    d = x.shape[-1]
    rows, flat = x.reshape(-1, d), out.reshape(-1, d)
    step = max(1, PIECE // d)
    for r0 in range(0, rows.shape[0], step):
        piece = rows[r0:r0 + step]
        centred = piece - np.mean(piece, axis=-1, keepdims=True)
        normalized = np.divide(centred, layer_norm_scale(centred, eps), out=flat[r0:r0 + step])
        normalized *= p.weight
        normalized += p.bias
    return out


def attention(
    x: np.ndarray, p: AttentionParams, cfg: GPT2Config, layer: int, mask: np.ndarray, trace: Trace, prefix: str,
) -> np.ndarray:
    """Causal multi-head self-attention: (B, T, D) -> (B, T, D).

    `mask` is additive, 0 where a query may look and -inf where it may not: (T, T) for the causal
    mask alone, (B, 1, T, T) when padded keys are hidden too.
    """
    qkv = conv1d(x, p.c_attn.weight, p.c_attn.bias, out=trace.rows(x, 3 * cfg.d_model))  # (B, T, 3D)
    q, k, v = np.split(qkv, 3, axis=-1)  # (B, T, D) each
    q = trace.heads(prefix + "hook_q", split_heads(q, cfg.n_head))  # (B, H, T, E)
    k = trace.heads(prefix + "hook_k", split_heads(k, cfg.n_head))
    v = trace.heads(prefix + "hook_v", split_heads(v, cfg.n_head))

    scores_name, pattern_name = prefix + "hook_attn_scores", prefix + "hook_pattern"
    b, h, t, _ = q.shape
    scores = causal.scores(q, k, cfg.attention_scale(layer), mask, out=trace.empty((b, h, t, t), q.dtype))
    scores = trace(scores_name, scores)  # (B, H, T, T)
    # Overwrite the scores with the pattern unless someone outside still holds them. A hook may
    # have written into the masked triangle: then every entry is computed.
    out = trace.empty(scores.shape, scores.dtype) if trace.needs(scores_name) else scores
    pattern = trace(pattern_name, causal.pattern(scores, out=out, full=scores_name in trace.hooks))
    z = causal.weighted_values(pattern, v, full=pattern_name in trace.hooks)  # (B, H, T, E)
    z = trace.heads(prefix + "hook_z", z)
    if trace.needs(prefix + "hook_result"):
        w_o = p.c_proj.weight.reshape(cfg.n_head, cfg.d_head, cfg.d_model)  # (H, E, D)
        result = trace.heads(prefix + "hook_result", z @ w_o)  # (B, H, T, D)
        if prefix + "hook_result" in trace.hooks:
            # The heads were patched: the output must be built from them.
            return result.sum(axis=1) + p.c_proj.bias
    return conv1d(merge_heads(z), p.c_proj.weight, p.c_proj.bias, out=trace.rows(x, cfg.d_model))


def mlp(x: np.ndarray, p: MLPParams, trace: Trace, prefix: str) -> np.ndarray:
    """Position-wise feed-forward: (B, T, D) -> (B, T, d_mlp) -> GELU -> (B, T, D)."""
    d_mlp = p.c_fc.weight.shape[1]
    pre = trace(prefix + "hook_pre", conv1d(x, p.c_fc.weight, p.c_fc.bias, out=trace.rows(x, d_mlp)))
    post = trace(prefix + "hook_post", gelu_new_into(pre, out=trace.rows(pre, d_mlp)))
    return conv1d(post, p.c_proj.weight, p.c_proj.bias, out=trace.rows(x, x.shape[-1]))


def block(resid: np.ndarray, p: BlockParams, cfg: GPT2Config, layer: int, mask: np.ndarray, trace: Trace) -> np.ndarray:
    """One pre-LayerNorm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(·))."""
    name = f"blocks.{layer}."
    resid_pre = trace(name + "hook_resid_pre", resid)
    ln1 = layer_norm(resid_pre, p.ln_1, cfg.layer_norm_eps, trace, name + "ln1.")
    attn_out = trace(name + "hook_attn_out", attention(ln1, p.attn, cfg, layer, mask, trace, name + "attn."))
    resid_mid = trace(name + "hook_resid_mid", resid_pre + attn_out)
    ln2 = layer_norm(resid_mid, p.ln_2, cfg.layer_norm_eps, trace, name + "ln2.")
    mlp_out = trace(name + "hook_mlp_out", mlp(ln2, p.mlp, trace, name + "mlp."))
    return trace(name + "hook_resid_post", resid_mid + mlp_out)


def final_layer_norm(resid: np.ndarray, params: GPT2Params, cfg: GPT2Config, trace: Trace) -> np.ndarray:
    return layer_norm(resid, params.ln_f, cfg.layer_norm_eps, trace, "ln_final.")


def unembed(resid: np.ndarray, params: GPT2Params, cfg: GPT2Config, trace: Trace) -> np.ndarray:
    """Final LayerNorm and the (tied) unembedding: (B, T, D) -> (B, T, V) logits."""
    final = final_layer_norm(resid, params, cfg, trace)
    return rows_matmul(final, params.lm_head.T, out=trace.rows(final, cfg.d_vocab))  # (B, T, V)
