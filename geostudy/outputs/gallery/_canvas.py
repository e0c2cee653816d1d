"""What every gallery figure shares: the files (PNG cropped to what is drawn, GIF on a fixed
canvas, both deterministic), seeded samples, and the study's sites grouped for small multiples.

Text is drawn literally (figures.Figure.render applies drawing.LITERAL_TEXT); user text goes
through drawing.token_label / text_label, as in every other figure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

from ...rundir.fsio import atomic_write_with  # noqa: E402
from ...sites import EMBEDDINGS_SITE, site_info  # noqa: E402
from ..drawing import DPI  # noqa: E402

GIF_DPI = 72
PAD_INCHES = 0.12
SAMPLE_SEED = 0
# No "Software" entry (matplotlib's version): the same data gives the same bytes whatever draws it.
PNG_METADATA = {"Software": None}


def save_png(fig, path: Path) -> None:
    """Write the figure cropped to everything drawn (bbox "tight": no title, legend or label can
    fall off the canvas), then close it."""
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight",
                                                    pad_inches=PAD_INCHES, metadata=PNG_METADATA))
    plt.close(fig)


def save_gif(fig, path: Path, n_frames: int, draw_frame: Callable[[int], None], fps: float = 1.5) -> None:
    """An animated GIF: draw_frame(i) updates the figure for frame i; the canvas is fixed, so the
    caller lays the figure out to hold its widest frame."""
    def write(tmp):
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(tmp), dpi=GIF_DPI):
            for i in range(n_frames):
                draw_frame(i)
                writer.grab_frame()

    atomic_write_with(path, write)
    plt.close(fig)


def _grab(fig, dynamic: list, background) -> Image.Image:
    """One frame: the static background, the frame's own artists drawn over it (blitting), as an
    RGB image."""
    fig.canvas.restore_region(background)
    for artist in dynamic:
        fig.draw_artist(artist)
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())


def save_gif_blit(fig, path: Path, n_frames: int, update: Callable[[int], None], dynamic: list, fps: float = 1.5) -> None:
    """An animated GIF whose frames change only the `dynamic` artists (their data, colour, text):
    everything else (axes, ticks, labels) is drawn once and each frame is drawn over a copy of it,
    about ten times faster than a full draw per frame. The dynamic artists are left out of the
    background; the canvas is fixed, so the caller lays the figure out to hold every frame."""
    fig.set_dpi(GIF_DPI)
    for artist in dynamic:
        artist.set_animated(True)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    frames = []
    for i in range(n_frames):
        update(i)
        frames.append(_grab(fig, dynamic, background))

    def write(tmp):
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)

    atomic_write_with(path, write)
    plt.close(fig)


def sample_rows(n: int, limit: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted indices of a seeded random sample of at most `limit` of n rows (all when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def site_names(plan) -> list[str]:
    return [s.name for s in plan.sites]


def depth_label(plan, name: str) -> str:
    """A short label of a site for a row of small multiples: 'emb', or 'b5 attn out'."""
    if name == EMBEDDINGS_SITE:
        return "embeddings"
    info = site_info(name, plan.cfg)
    return f"block {info.block}: {info.short}" if 0 <= info.block < plan.cfg.n_layer else info.short


def sublayer_rows(plan, names: list[str]) -> list[tuple[str, list[tuple[int, str]]]]:
    """The sites grouped by sub-layer in forward order: [(title, [(block, site), ...])], the
    embeddings (block -1) at the start of every group that has sites of block 0."""
    groups: dict[str, list[tuple[int, str]]] = {}
    titles: dict[str, str] = {}
    embeds = [n for n in names if n == EMBEDDINGS_SITE]
    for name in names:
        if name == EMBEDDINGS_SITE:
            continue
        info = site_info(name, plan.cfg)
        groups.setdefault(info.sublayer, []).append((info.block, name))
        titles[info.sublayer] = info.label.rsplit(", block", 1)[0]
    out = [(titles[k], [(-1, e) for e in embeds] + pts) for k, pts in groups.items()]
    return out or ([("embeddings", [(-1, e) for e in embeds])] if embeds else [])


def depth_colour(block: int, n_layer: int):
    """The embeddings grey, blocks from dark to light along viridis."""
    if block < 0:
        return (0.45, 0.45, 0.45, 1.0)
    return plt.get_cmap("viridis")(0.05 + 0.85 * block / max(1, n_layer - 1))


def depth_colourbar(fig, axes, n_layer: int, label: str = "block") -> None:
    """A colourbar of depth_colour's block colours."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    colours = ListedColormap([depth_colour(b, n_layer) for b in range(n_layer)])
    bar = fig.colorbar(ScalarMappable(Normalize(-0.5, n_layer - 0.5), colours), ax=axes, shrink=0.8, aspect=30)
    bar.set_label(label + " (grey lines: the embeddings)")
    step = max(1, n_layer // 12)
    bar.set_ticks(list(range(0, n_layer, step)))


def plain_log_labels(axis, decimal: bool = True) -> None:
    """Plain-number labels on a log axis (its own formatter writes maths, "10^{2}", which is shown
    as source text under LITERAL_TEXT), and no labels on its minor ticks. `decimal`: ticks at 1, 2
    and 5 of every decade, so that a range inside one decade still has labels."""
    if decimal:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
