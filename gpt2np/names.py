"""The names of the intermediate tensors (TransformerLens' convention) and the filter over them.

The names and their meanings follow TransformerLens 3.x `HookedTransformer` (checked against 3.9
in tests/test_gpt2np_reference.py), with the weights unprocessed (nothing folded or centred). Its
LayerNorm hooks: `hook_scale` is sqrt(var + eps) and `hook_normalized` is (x - mean) / scale,
BEFORE the LayerNorm's weight and bias (TransformerLens 2.x hooked it after them). The
LayerNorm's output, after weight and bias, has no hook there; it is named `hook_out` here, as
TransformerLens 4's bridge names it (`blocks.{i}.ln1.hook_out`, `ln2.hook_out`,
`ln_final.hook_out`).

Shapes are for one sequence of T tokens; a batch adds a leading B axis to every one.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable

from .config import GPT2Config
from .errors import UnknownNameError

# (name relative to its block or the model, shape, meaning), in the order they are computed.
EMBED_SITES = [
    ("hook_embed", "(T, d_model)", "token embedding wte[ids]"),
    ("hook_pos_embed", "(T, d_model)", "position embedding wpe[0..T-1]"),
]
BLOCK_SITES = [
    ("hook_resid_pre", "(T, d_model)", "residual stream entering the block"),
    ("ln1.hook_scale", "(T, 1)", "ln_1's divisor sqrt(var + eps)"),
    ("ln1.hook_normalized", "(T, d_model)", "(resid_pre - mean) / scale: ln_1 before its weight and bias"),
    ("ln1.hook_out", "(T, d_model)", "ln_1's output: normalized * weight + bias (TransformerLens 4's name)"),
    ("attn.hook_q", "(T, n_head, d_head)", "queries"),
    ("attn.hook_k", "(T, n_head, d_head)", "keys"),
    ("attn.hook_v", "(T, n_head, d_head)", "values"),
    ("attn.hook_attn_scores", "(n_head, T, T)", "q·k scaled by 1/sqrt(d_head), causal mask -inf, before softmax"),
    ("attn.hook_pattern", "(n_head, T, T)", "attention pattern (softmax of the scores)"),
    ("attn.hook_z", "(T, n_head, d_head)", "pattern-weighted values, per head"),
    ("attn.hook_result", "(T, n_head, d_model)", "each head's output through c_proj (no bias); only when asked for"),
    ("hook_attn_out", "(T, d_model)", "attention output: c_proj of the merged heads, with bias"),
    ("hook_resid_mid", "(T, d_model)", "resid_pre + attn_out"),
    ("ln2.hook_scale", "(T, 1)", "ln_2's divisor"),
    ("ln2.hook_normalized", "(T, d_model)", "ln_2 before its weight and bias"),
    ("ln2.hook_out", "(T, d_model)", "ln_2's output"),
    ("mlp.hook_pre", "(T, d_mlp)", "c_fc output, before GELU"),
    ("mlp.hook_post", "(T, d_mlp)", "after GELU (tanh form)"),
    ("hook_mlp_out", "(T, d_model)", "MLP output (mlp.c_proj)"),
    ("hook_resid_post", "(T, d_model)", "resid_mid + mlp_out: the block's output"),
]
FINAL_SITES = [
    ("ln_final.hook_scale", "(T, 1)", "ln_f's divisor"),
    ("ln_final.hook_normalized", "(T, d_model)", "ln_f before its weight and bias"),
    ("ln_final.hook_out", "(T, d_model)", "ln_f's output; logits = this @ wte.T"),
]

# Kept only when a filter asks for it by name or pattern: n_head times the size of hook_attn_out.
OPT_IN_SUFFIXES = ("attn.hook_result",)

NamesFilter = None | str | Iterable[str] | Callable[[str], bool]


def hook_names(cfg: GPT2Config) -> list[str]:
    """Every tensor name of a model with this config, in the order the forward pass makes them."""
    names = [n for n, _, _ in EMBED_SITES]
    for i in range(cfg.n_layer):
        names += [f"blocks.{i}.{n}" for n, _, _ in BLOCK_SITES]
    names += [n for n, _, _ in FINAL_SITES]
    return names


def _is_pattern(s: str) -> bool:
    return any(c in s for c in "*?[")


def unknown_name_message(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"no tensor is named {name!r}.{hint} gpt2np.hook_names(model.cfg) lists them all."


def resolve_names(names: NamesFilter, cfg: GPT2Config) -> frozenset[str]:
    """The set of tensor names a `names` argument selects.

    None: everything except the opt-in `attn.hook_result`. A string or a list of strings: exact
    names or glob patterns (`"blocks.*.hook_resid_post"`); each must match at least one name. A
    callable: called with each name, keeps those for which it returns True.
    """
    valid = hook_names(cfg)
    if names is None:
        return frozenset(n for n in valid if not n.endswith(OPT_IN_SUFFIXES))
    if callable(names):
        return frozenset(n for n in valid if names(n))
    if isinstance(names, str):
        names = [names]
    chosen: set[str] = set()
    valid_set = set(valid)
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"names must hold strings, got {item!r} of type {type(item).__name__}")
        if _is_pattern(item):
            matched = fnmatch.filter(valid, item)
            if not matched:
                raise UnknownNameError(f"the pattern {item!r} matches no tensor name. gpt2np.hook_names(model.cfg) lists them all.")
            chosen.update(matched)
        elif item in valid_set:
            chosen.add(item)
        else:
            raise UnknownNameError(unknown_name_message(item, valid))
    return frozenset(chosen)
