"""Attention of the focus prompt: every head of every block on one sheet, and the chosen block's
queries, keys and values as heatmaps.

The sheet is one image: the (T, T) patterns tiled blocks x heads with a one-pixel gap, so that
144 heads cost one imshow, not 144 axes. Colour: the attention weight on a square-root scale
(as the one-block grid), row = query (the token attending), column = key.
Q, K, V: tokens x features (n_head * d_head, head by head), each on its own symmetric colour
scale; thin lines separate the heads.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

from ...store.activations import load_tensor, pattern_name
from ..drawing import token_label
from ._canvas import save_png

GAP = 1  # pixels between tiles
TILE_MAX = 128  # pixels a side of one head's tile: 12 x 12 heads of a 500-token prompt stay a few MB
LABELLED_TOKENS = 40


def shrink(tile: np.ndarray, limit: int = TILE_MAX) -> np.ndarray:
    """A (T, T) pattern at most `limit` pixels a side: the maximum over each square of
    ceil(T / limit) positions (a mean would hide the sharp attention a head pays one token)."""
    t = tile.shape[0]
    f = -(-t // limit)
    if f == 1:
        return tile
    m = -(-t // f) * f
    padded = np.zeros((m, m), dtype=tile.dtype)
    padded[:t, :t] = tile
    return padded.reshape(m // f, f, m // f, f).max(axis=(1, 3))


def mosaic(patterns: list[np.ndarray]) -> np.ndarray:
    """Tile (H, T, T) patterns, one per block, into one (blocks, heads) image, each tile shrunk to
    at most TILE_MAX pixels; gaps are NaN."""
    patterns = [np.stack([shrink(p) for p in pat]) for pat in patterns]
    n_block = len(patterns)
    h, t, _ = patterns[0].shape
    img = np.full((n_block * (t + GAP) - GAP, h * (t + GAP) - GAP), np.nan)
    for b, pat in enumerate(patterns):
        for j in range(h):
            img[b * (t + GAP):b * (t + GAP) + t, j * (t + GAP):j * (t + GAP) + t] = pat[j]
    return img


def all_blocks_sheet(plan, path: Path) -> None:
    patterns = [load_tensor(plan.act_path(plan.focus.id), pattern_name(b)) for b in range(plan.cfg.n_layer)]
    h, n_tokens, _ = patterns[0].shape
    img = mosaic(patterns)
    t = shrink(patterns[0][0]).shape[0]
    n_block = len(patterns)
    cell = min(0.75, 10.0 / h)
    fig, ax = plt.subplots(figsize=(cell * h + 1.8, cell * n_block + 1.4), layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # the gaps between tiles
    im = ax.imshow(img, cmap=cmap, norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0), interpolation="nearest")
    ax.set_xticks([j * (t + GAP) + (t - 1) / 2 for j in range(h)])
    ax.set_xticklabels([str(j) for j in range(h)], fontsize=8)
    ax.set_yticks([b * (t + GAP) + (t - 1) / 2 for b in range(n_block)])
    ax.set_yticklabels([str(b) for b in range(n_block)], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("head")
    ax.set_ylabel("block")
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.6, label="attention weight (square-root scale)")
    ax.set_title(f"Attention patterns of every head of every block, {plan.focus.id!r} ({n_tokens} tokens)\n"
                 "each tile: row = the token attending, column = the token attended to", fontsize=9)
    save_png(fig, path)


def qkv_name(block: int, which: str) -> str:
    return f"blocks.{block}.attn.hook_{which}"


def qkv_heatmaps(plan, tokens: list[str], path: Path) -> None:
    b = plan.attention_block
    mats = [load_tensor(plan.act_path(plan.focus.id), qkv_name(b, w)) for w in "qkv"]  # (T, H, E) each
    t, h, e = mats[0].shape
    fig, axes = plt.subplots(1, 3, figsize=(15, max(3.2, min(9.0, 0.12 * t + 1.8))), layout="constrained")
    for ax, which, m in zip(axes, ("queries Q", "keys K", "values V"), mats):
        flat = m.reshape(t, h * e).astype(np.float64)
        lim = float(np.nanmax(np.abs(flat))) or 1.0
        im = ax.imshow(flat, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        for j in range(1, h):
            ax.axvline(j * e - 0.5, color="black", lw=0.3)
        ax.set_title(f"{which}, block {b}", fontsize=9)
        ax.set_xlabel(f"feature ({h} heads x {e}; lines between heads)")
        if t <= LABELLED_TOKENS:
            ax.set_yticks(range(t))
            ax.set_yticklabels([token_label(x) for x in tokens], fontsize=5)
        else:
            ax.set_ylabel("token position")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"Queries, keys and values of block {b} for {plan.focus.id!r} (tokens x features)", fontsize=10)
    save_png(fig, path)
