"""The logit lens of the last token, as the original study drew it: a GIF per prompt, each frame
one block with the top-k tokens read after its attention (resid_mid) and after the block
(resid_post) side by side. After the last block the lens is the model's own output (ln_f and the
unembedding of the last block's output). From the lens_top_tokens table; one x axis (log
probability) for every frame of a GIF, so that bars compare across depth.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullLocator

from ..drawing import token_label
from ._canvas import save_gif

# the lens_top_tokens table's columns used here (see outputs/tables.py TOP_TOKEN_COLUMNS)
_PROMPT, _SITE, _RANK, _TOKEN, _PROB = 0, 3, 8, 10, 11
_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")  # the log scale's own labels would be maths ("10^{-2}")


def top_by_site(top_rows, prompt_id: str) -> dict[str, list[tuple[int, str, float]]]:
    """{site: [(rank, token, probability), ...] by rank} of one prompt."""
    out: dict[str, list] = defaultdict(list)
    for r in top_rows:
        if r[_PROMPT] == prompt_id:
            out[r[_SITE]].append((r[_RANK], r[_TOKEN], r[_PROB]))
    return {s: sorted(v) for s, v in out.items()}


def lens_pair_gif(plan, top_rows, prompt_id: str, path: Path) -> None:
    tops = top_by_site(top_rows, prompt_id)
    n = plan.cfg.n_layer
    k = max(len(v) for v in tops.values())
    lo = max(min(p for v in tops.values() for _, _, p in v) / 2, 1e-12)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 0.28 * k + 2.0))
    fig.subplots_adjust(left=0.17, right=0.97, wspace=0.75, top=0.8, bottom=0.16)  # room for 24-character labels
    head = fig.suptitle("", fontsize=10)

    def panel(ax, site: str, title: str, colour) -> None:
        ax.clear()
        items = tops.get(site, [])[::-1]
        probs = [p for _, _, p in items]
        ax.barh(range(len(items)), [p - lo for p in probs], left=lo, color=colour)
        ax.set_xscale("log")
        ax.set_xlim(lo, 1.0)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(_PLAIN)
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels([token_label(t) for _, t, _ in items], fontsize=8)
        ax.set_ylim(-0.6, k - 0.4)
        ax.set_xlabel("probability (log scale)", fontsize=8)
        ax.set_title(title, fontsize=9)

    def frame(b: int) -> None:
        colour = plt.get_cmap("viridis")(0.1 + 0.8 * b / max(1, n - 1))
        panel(axes[0], f"blocks.{b}.hook_resid_mid", f"after attention + residual, block {b}", colour)
        last = "the model's output" if b == n - 1 else f"after block {b}"
        panel(axes[1], f"blocks.{b}.hook_resid_post", last, colour)
        head.set_text(f"Logit lens, last token of {prompt_id!r}: top-{k} next tokens\nblock {b} ({b + 1}/{n})")

    save_gif(fig, path, n, frame, fps=1.0)
