"""Which tensors the study looks at ("sites"), their depth order and their names in words.

Site names are gpt2np's (TransformerLens') names, e.g. ``blocks.5.hook_resid_mid``. A site is a
token cloud: a (T, width) array, one point per token. Per-head tensors (queries, keys, values,
z) are flattened to (T, n_head * d_head); tensors that are not one vector per token (layer-norm
scales, attention scores and patterns, per-head results) are not sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import gpt2np
from gpt2np.names import resolve_names

from .errors import StudyError

# The sub-layers the original study looked at, per block.
DEFAULT_BLOCK_SUFFIXES = (
    "ln1.hook_out",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
EMBEDDINGS_SITE = "blocks.0.hook_resid_pre"  # token + position embedding, the input of block 0

# Where the logit lens reads the residual stream: after each block's attention and after each block.
LENS_SUFFIXES = ("hook_resid_mid", "hook_resid_post")

_WORDS = {
    "hook_embed": "token embeddings",
    "hook_pos_embed": "position embeddings",
    "hook_resid_pre": "residual stream entering the block",
    "ln1.hook_out": "after the first layer norm",
    "attn.hook_q": "attention queries",
    "attn.hook_k": "attention keys",
    "attn.hook_v": "attention values",
    "attn.hook_z": "attention heads' weighted values",
    "hook_attn_out": "attention output",
    "hook_resid_mid": "after attention + residual",
    "ln2.hook_out": "after the second layer norm",
    "mlp.hook_pre": "MLP hidden layer before GELU",
    "mlp.hook_post": "MLP hidden layer after GELU",
    "hook_mlp_out": "MLP output",
    "hook_resid_post": "after the block (attention + MLP + residual)",
    "ln_final.hook_out": "after the final layer norm",
}
_SHORT = {
    "hook_embed": "tok emb",
    "hook_pos_embed": "pos emb",
    "hook_resid_pre": "resid pre",
    "ln1.hook_out": "LN1",
    "attn.hook_q": "q",
    "attn.hook_k": "k",
    "attn.hook_v": "v",
    "attn.hook_z": "z",
    "hook_attn_out": "attn out",
    "hook_resid_mid": "attn + resid",
    "ln2.hook_out": "LN2",
    "mlp.hook_pre": "MLP pre",
    "mlp.hook_post": "MLP post-GELU",
    "hook_mlp_out": "MLP out",
    "hook_resid_post": "block out",
    "ln_final.hook_out": "LN final",
}
CLOUD_SUFFIXES = tuple(_WORDS)


@dataclass(frozen=True)
class Site:
    name: str  # gpt2np / TransformerLens name
    block: int  # block index; -1 for the embeddings, n_layer for the final layer norm
    sublayer: str  # the name without its "blocks.N." prefix
    depth: int  # index in gpt2np.hook_names: orders sites as the forward pass makes them
    label: str  # in words, e.g. "after attention + residual, block 5"
    short: str  # short words for legends, e.g. "attn + resid"


def _split(name: str, n_layer: int) -> tuple[int, str]:
    if name.startswith("blocks."):
        _, idx, rest = name.split(".", 2)
        return int(idx), rest
    if name.startswith("ln_final."):
        return n_layer, name
    return -1, name


def site_info(name: str, cfg) -> Site:
    order = gpt2np.hook_names(cfg)
    if name not in order:
        raise StudyError(f"{name!r} is not a tensor of this model")
    block, sub = _split(name, cfg.n_layer)
    if sub not in _WORDS:
        raise StudyError(f"{name!r} is not a token cloud (one vector per token); sites are {_allowed_help()}")
    if name == EMBEDDINGS_SITE:
        label, short = "embeddings (token + position), entering block 0", "embeddings"
    elif block < 0 or block >= cfg.n_layer:
        label, short = _WORDS[sub], _SHORT[sub]
    else:
        label, short = f"{_WORDS[sub]}, block {block}", _SHORT[sub]
    return Site(name=name, block=block, sublayer=sub, depth=order.index(name), label=label, short=short)


def _allowed_help() -> str:
    return "names ending in " + ", ".join(CLOUD_SUFFIXES)


def default_site_names(cfg) -> list[str]:
    names = [EMBEDDINGS_SITE]
    for i in range(cfg.n_layer):
        names += [f"blocks.{i}.{s}" for s in DEFAULT_BLOCK_SUFFIXES]
    return names


def all_site_names(cfg) -> list[str]:
    return [n for n in gpt2np.hook_names(cfg) if _split(n, cfg.n_layer)[1] in _WORDS]


def lens_site_names(cfg) -> list[str]:
    return [f"blocks.{i}.{s}" for i in range(cfg.n_layer) for s in LENS_SUFFIXES]


def resolve_sites(spec, cfg) -> list[Site]:
    """The sites a user asked for, in depth order.

    spec: None or "default" (the embeddings, and per block: ln1, attention output, attention +
    residual, MLP hidden after GELU, MLP output, block output), "all" (every token cloud), or a
    list (or comma-separated string) of exact names and glob patterns such as
    ``blocks.*.hook_resid_post``. Raises StudyError for a name the model does not have (with
    suggestions) or one that is not a token cloud."""
    if spec is None:
        spec = ["default"]
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    if not spec:
        raise StudyError("no site was given; use 'default', 'all' or names such as blocks.5.hook_resid_post")
    chosen: set[str] = set()
    allowed = set(all_site_names(cfg))
    for item in spec:
        if item == "default":
            chosen.update(default_site_names(cfg))
            continue
        if item == "all":
            chosen.update(allowed)
            continue
        try:
            matched = resolve_names([item], cfg)
        except KeyError as err:  # gpt2np.UnknownNameError: has suggestions in its message
            raise StudyError(f"unknown site: {err}") from None
        if any(c in item for c in "*?["):
            kept = {m for m in matched if m in allowed}
            if not kept:
                raise StudyError(f"the pattern {item!r} matches no token cloud; sites are {_allowed_help()}")
            chosen.update(kept)
        else:
            if item not in allowed:
                raise StudyError(f"{item!r} is not a token cloud (one vector per token); sites are {_allowed_help()}")
            chosen.add(item)
    order = gpt2np.hook_names(cfg)
    return [site_info(n, cfg) for n in sorted(chosen, key=order.index)]


def site_width(site: Site, cfg) -> int:
    if site.sublayer.startswith("mlp.hook_"):
        return cfg.d_mlp
    return cfg.d_model


def as_cloud(array):
    """(T, ...) -> (T, width): per-head tensors are flattened head by head."""
    return array.reshape(array.shape[0], -1)
