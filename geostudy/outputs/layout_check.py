"""Does everything drawn lie inside the canvas? Measured on the renderer's own boxes.

A PNG cannot tell whether a legend was cut off at its edge; the figure, drawn, can. These
helpers draw a matplotlib figure (without writing a file), take the tight bounding box of each
thing on it (every axes with its title, tick labels, axis labels and inner legend; colorbars,
which are axes too; figure legends; figure texts such as the suptitle; sub-figures' contents),
and compare them with the canvas that savefig would write:

- `overflows(fig)`: the parts that stick out of the canvas, by how many pixels;
- `grow_to_fit(fig)`: widen/heighten the figure until nothing sticks out (the figure's layout
  engine, constrained layout in drawing.py, then re-places everything);
- `watch_savefig()`: a context manager that checks every figure on the very drawing that
  writes its file (PNG files and every GIF frame, which matplotlib's writers grab through
  savefig), for tests; it adds no drawing of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from matplotlib.figure import Figure, SubFigure
from matplotlib.transforms import Bbox

TOLERANCE_PX = 1.0  # anti-aliasing may spill a pixel past a box: not a clipped label


@dataclass(frozen=True)
class Overflow:
    """One part of a figure outside its canvas: what it is, and by how many pixels it sticks out
    on each side (left, bottom, right, top; 0 where it is inside)."""

    what: str
    sides: tuple[float, float, float, float]

    def __str__(self) -> str:
        names = ("left", "bottom", "right", "top")
        return f"{self.what}: " + ", ".join(f"{n} {v:.0f} px" for n, v in zip(names, self.sides) if v > 0)


def _describe(artist) -> str:
    """A short name for an artist in an error message: its kind and its visible text."""
    kind = type(artist).__name__
    if hasattr(artist, "get_title") and callable(artist.get_title):
        try:
            title = artist.get_title()
        except TypeError:
            title = ""
        if isinstance(title, str) and title:
            return f"{kind} {title!r}"
    if hasattr(artist, "get_texts"):  # a legend
        texts = [t.get_text() for t in artist.get_texts()][:3]
        return f"{kind} {texts!r}"
    if hasattr(artist, "get_text"):
        return f"{kind} {artist.get_text()!r}"
    return kind


def _parts(fig) -> Iterator:
    """Every top-level thing drawn on the figure (sub-figures opened up), background left out."""
    for child in fig.get_children():
        if child is fig.patch or not child.get_visible():
            continue
        if isinstance(child, SubFigure):
            yield from _parts(child)
        else:
            yield child


def _sides(box: Bbox, canvas: Bbox) -> tuple[float, float, float, float]:
    return (max(0.0, canvas.x0 - box.x0), max(0.0, canvas.y0 - box.y0),
            max(0.0, box.x1 - canvas.x1), max(0.0, box.y1 - canvas.y1))


def _boxes(fig, renderer) -> list[tuple[str, Bbox]]:
    boxes = []
    for part in _parts(fig):
        box = part.get_tightbbox(renderer)
        if box is not None and box.width > 0 and box.height > 0:
            boxes.append((_describe(part), box))
    return boxes


def part_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """(name, tight bounding box in display pixels) of every part, as drawn now (the figure is
    drawn first, so its layout engine has placed everything)."""
    fig.draw_without_rendering()
    return _boxes(fig, fig.canvas.get_renderer())


def _outside(boxes, canvas: Bbox, tolerance: float) -> list[Overflow]:
    found = []
    for name, box in boxes:
        sides = _sides(box, canvas)
        if max(sides) > tolerance:
            found.append(Overflow(name, sides))
    return found


def overflows(fig: Figure, tolerance: float = TOLERANCE_PX) -> list[Overflow]:
    """The parts of the figure that stick out of its canvas (fig.bbox) by more than `tolerance`
    pixels on some side."""
    return _outside(part_boxes(fig), fig.bbox, tolerance)


def grow_to_fit(fig: Figure, margin_px: float = 6.0, rounds: int = 4) -> None:
    """Enlarge the figure until every part lies inside it, with `margin_px` to spare, then fix
    the layout. The layout engine re-places the parts at each size; the figure only grows
    (never below its own size), by the largest overflow on each axis, twice over because a
    centred part (a suptitle, a legend below) sticks out on both sides. Once everything fits,
    the layout engine is switched off (the parts keep their places), so that saving does not
    lay the figure out once more: constrained layout costs about as much as drawing."""
    for _ in range(rounds):
        found = overflows(fig, tolerance=0.0)
        if not found:
            fig.set_layout_engine("none")
            return
        grow_x = max(s.sides[0] + s.sides[2] for s in found)
        grow_y = max(s.sides[1] + s.sides[3] for s in found)
        w, h = fig.get_size_inches()
        dpi = fig.dpi
        fig.set_size_inches(w + (grow_x + 2 * margin_px) / dpi if grow_x else w,
                            h + (grow_y + 2 * margin_px) / dpi if grow_y else h)


@dataclass
class SavedFigure:
    """What `watch_savefig` saw at one savefig: where it went, the canvas size in inches (times
    savefig's dpi: pixels in the file; before any crop), whether savefig cropped to the drawn
    content (bbox_inches="tight"), and what stuck out of the canvas of the file."""

    target: str
    size_inches: tuple[float, float]
    tight: bool
    overflows: list[Overflow]


@contextmanager
def watch_savefig() -> Iterator[list[SavedFigure]]:
    """Within the block, every Figure.savefig is checked on the drawing that writes the file:
    at each draw event the parts' boxes (with the renderer of that drawing, at the file's dpi)
    are compared with the canvas of that drawing (with bbox_inches="tight" the final drawing's
    canvas is the cropped one), and the last drawing counts. The list yielded gets one
    SavedFigure per call (GIF frames included: matplotlib's writers grab them with savefig)."""
    seen: list[SavedFigure] = []
    real = Figure.savefig

    def checked(self, fname, *args, **kwargs):
        drawn: list[list[Overflow]] = []
        cid = self.canvas.mpl_connect(
            "draw_event", lambda event: drawn.append(_outside(_boxes(self, event.renderer), self.bbox, TOLERANCE_PX)))
        try:
            result = real(self, fname, *args, **kwargs)
        finally:
            self.canvas.mpl_disconnect(cid)
        found = drawn[-1] if drawn else [Overflow("savefig drew nothing that could be checked", (0.0, 0.0, 0.0, 0.0))]
        seen.append(SavedFigure(str(fname), tuple(float(v) for v in self.get_size_inches()),
                                kwargs.get("bbox_inches") == "tight", found))
        return result

    Figure.savefig = checked
    try:
        yield seen
    finally:
        Figure.savefig = real
