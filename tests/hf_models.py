"""Random-weight GPT-2 models built with transformers, saved in both key layouts.

The official Hub checkpoints cannot be reached from CI, so every gpt2np test runs against a
transformers GPT2LMHeadModel (eager attention) with random weights of a given shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config as HFConfig
from transformers import GPT2LMHeadModel

GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024)
SMALL_OTHER = dict(n_layer=3, n_head=4, n_embd=64, vocab_size=300, n_positions=96)


@dataclass
class Reference:
    torch_model: GPT2LMHeadModel  # float64, eager attention
    hf_dir: Path  # save_pretrained output: transformer.-prefixed keys, config.json
    official_file: Path  # the same weights in the official layout (h.N..., attn.bias buffers)
    config_file: Path


def build_reference(shape: dict, folder: Path, seed: int = 0) -> Reference:
    torch.manual_seed(seed)
    cfg = HFConfig(**shape, bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        # The default init has LayerNorm weight 1 and zero biases, which would hide a swapped or
        # missing parameter: perturb every tensor so each one matters.
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf_dir = folder / "hf"
    model.save_pretrained(hf_dir)
    official = folder / "official" / "model.safetensors"
    official.parent.mkdir(parents=True)
    save_file(official_layout(model), str(official))
    return Reference(model.double(), hf_dir, official, hf_dir / "config.json")


def official_layout(model: GPT2LMHeadModel) -> dict[str, np.ndarray]:
    """The tensors as openai-community/gpt2's model.safetensors stores them: no `transformer.`
    prefix, no lm_head, and the causal-mask buffers `h.N.attn.bias` (1, 1, n_ctx, n_ctx)."""
    n_ctx = model.config.n_positions
    mask = np.tril(np.ones((n_ctx, n_ctx), np.float32))[None, None]
    tensors = {}
    for key, value in model.transformer.state_dict().items():
        tensors[key] = value.detach().float().numpy().copy()
    for i in range(model.config.n_layer):
        tensors[f"h.{i}.attn.bias"] = mask
    return tensors


def torch_forward(model: GPT2LMHeadModel, ids: np.ndarray, attention_mask=None):
    """transformers' outputs with hidden states and attention patterns, as float64 NumPy."""
    with torch.no_grad():
        out = model(
            torch.as_tensor(np.atleast_2d(ids)),
            attention_mask=None if attention_mask is None else torch.as_tensor(np.atleast_2d(attention_mask)),
            output_hidden_states=True,
            output_attentions=True,
        )
    return (
        out.logits.numpy(),
        [h.numpy() for h in out.hidden_states],
        [a.numpy() for a in out.attentions],
    )


def torch_intermediates(model: GPT2LMHeadModel, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor gpt2np names, captured from transformers' modules with forward hooks, under
    gpt2np's names and shapes (one sequence, no batch axis)."""
    cfg = model.config
    n_head, d_head = cfg.n_head, cfg.n_embd // cfg.n_head
    eps = cfg.layer_norm_epsilon
    got: dict[str, np.ndarray] = {}
    handles = []

    def keep_output(name, transform=lambda x: x):
        def hook(module, inputs, output):
            got[name] = transform(output[0].detach().numpy())
        return hook

    def keep_input(name):
        def hook(module, inputs):
            got[name] = inputs[0][0].detach().numpy()
        return hook

    def heads(x):  # (T, D) -> (T, H, E)
        return x.reshape(x.shape[0], n_head, d_head)

    tf = model.transformer
    handles.append(tf.wte.register_forward_hook(keep_output("hook_embed")))
    handles.append(tf.wpe.register_forward_hook(keep_output("hook_pos_embed")))
    for i, blk in enumerate(tf.h):
        p = f"blocks.{i}."
        handles += [
            blk.ln_1.register_forward_pre_hook(keep_input(p + "hook_resid_pre")),
            blk.ln_1.register_forward_hook(keep_output(p + "ln1.hook_out")),
            blk.attn.c_attn.register_forward_hook(keep_output(p + "attn.qkv")),
            blk.attn.c_proj.register_forward_pre_hook(keep_input(p + "attn.merged_z")),
            blk.attn.c_proj.register_forward_hook(keep_output(p + "hook_attn_out")),
            blk.ln_2.register_forward_pre_hook(keep_input(p + "hook_resid_mid")),
            blk.ln_2.register_forward_hook(keep_output(p + "ln2.hook_out")),
            blk.mlp.c_fc.register_forward_hook(keep_output(p + "mlp.hook_pre")),
            blk.mlp.act.register_forward_hook(keep_output(p + "mlp.hook_post")),
            blk.mlp.c_proj.register_forward_hook(keep_output(p + "hook_mlp_out")),
        ]
    handles.append(tf.ln_f.register_forward_pre_hook(keep_input("ln_final.input")))
    handles.append(tf.ln_f.register_forward_hook(keep_output("ln_final.hook_out")))
    try:
        ids = np.atleast_2d(ids)
        with torch.no_grad():
            out = model(torch.as_tensor(ids), output_attentions=True)
    finally:
        for h in handles:
            h.remove()

    t = ids.shape[1]
    causal = np.triu(np.ones((t, t), bool), k=1)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        q, k, v = np.split(got.pop(p + "attn.qkv"), 3, axis=-1)
        got[p + "attn.hook_q"], got[p + "attn.hook_k"], got[p + "attn.hook_v"] = heads(q), heads(k), heads(v)
        qh, kh = q.reshape(t, n_head, d_head).transpose(1, 0, 2), k.reshape(t, n_head, d_head).transpose(1, 0, 2)
        scores = qh @ kh.transpose(0, 2, 1) * d_head**-0.5
        scores[:, causal] = -np.inf
        got[p + "attn.hook_attn_scores"] = scores
        got[p + "attn.hook_pattern"] = out.attentions[i][0].numpy()
        z = heads(got.pop(p + "attn.merged_z"))
        got[p + "attn.hook_z"] = z
        w_o = blk_weight(model, i).reshape(n_head, d_head, cfg.n_embd)
        got[p + "attn.hook_result"] = np.einsum("the,hed->thd", z, w_o)
        for ln_name, source in (("ln1", p + "hook_resid_pre"), ("ln2", p + "hook_resid_mid")):
            x = got[source]
            got[p + ln_name + ".hook_scale"] = np.sqrt(((x - x.mean(-1, keepdims=True)) ** 2).mean(-1, keepdims=True) + eps)
            got[p + ln_name + ".hook_normalized"] = (x - x.mean(-1, keepdims=True)) / got[p + ln_name + ".hook_scale"]
        nxt = f"blocks.{i + 1}.hook_resid_pre"
        got[p + "hook_resid_post"] = got[nxt] if i + 1 < cfg.n_layer else got["ln_final.input"]
    x = got.pop("ln_final.input")
    got["ln_final.hook_scale"] = np.sqrt(((x - x.mean(-1, keepdims=True)) ** 2).mean(-1, keepdims=True) + eps)
    got["ln_final.hook_normalized"] = (x - x.mean(-1, keepdims=True)) / got["ln_final.hook_scale"]
    got["logits"] = out.logits[0].numpy()
    return got


def blk_weight(model: GPT2LMHeadModel, i: int) -> np.ndarray:
    return model.transformer.h[i].attn.c_proj.weight.detach().numpy()
