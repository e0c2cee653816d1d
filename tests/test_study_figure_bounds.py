"""Nothing drawn is cut off: for every figure the study writes, in the default run and in the
README's residual-stream-only run, every part (titles, legends, tick and axis labels, colorbars,
texts) lies inside the canvas, measured on the renderer's boxes at the moment each file (and
each GIF frame) is saved. The checker itself is shown to catch the layout that used to clip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import geostudy  # noqa: E402
from geostudy import load_corpus  # noqa: E402
from geostudy.outputs import drawing  # noqa: E402
from geostudy.outputs import figures as figure_list  # noqa: E402
from geostudy.outputs.assemble import assemble_tables  # noqa: E402
from geostudy.outputs.layout_check import grow_to_fit, overflows, watch_savefig  # noqa: E402

RESIDUAL_ONLY = "blocks.0.hook_resid_pre,blocks.*.hook_resid_post"  # the README's fast run
LONG_GENRE = "a genre whose name is forty characters!!"  # TEXT_LABEL_CHARS: the longest legend entry


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Every shipped genre (the first 30 words of one prompt each) plus a genre with a
    40-character name: the widest legend the figures get."""
    chosen, seen = [], {}
    for p in load_corpus():
        if seen.get(p.genre, 0) < 1:
            seen[p.genre] = seen.get(p.genre, 0) + 1
            chosen.append({"id": p.id, "genre": p.genre, "topic": p.topic, "text": " ".join(p.text.split()[:30])})
    chosen.append({"id": "long-genre", "genre": LONG_GENRE, "topic": "music",
                   "text": "A prompt of a genre with a long name, drawn in every legend of the depth figures."})
    path = tmp_path_factory.mktemp("corpus") / "genres.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in chosen) + "\n", encoding="utf-8")
    return path


# Figures drawn from inputs that --sites does not change (the focus prompt's logit lens at the
# fixed lens sites, its attention patterns and distances at the scatter site): checked in the
# default run, and left out of the residual-only run's drawing (test_residual_only_... checks that
# those inputs are the same in both plans).
SITE_INDEPENDENT = ("lens_heatmap", "attention", "attention_all_blocks", "attention_qkv",
                    "distances_focus", "tsne_focus", "lens_cosine", "lens_pair_gif.")


def _site_independent(key: str) -> bool:
    return key in SITE_INDEPENDENT or key.startswith(SITE_INDEPENDENT[-1])


def _draw_watched(tiny_model_dir, gpt2_vocab_dir, corpus, out: Path, skip=lambda key: False, **options):
    """Run the study without figures, then draw its figures with the study's own code (the list
    make_plots draws, each rendered as make_plots renders it) in this process, every savefig
    checked (a forked child's savefig would not be seen)."""
    opts = dict(tokenizer=gpt2_vocab_dir, progress=False, lens_positions=8, **options)
    run = geostudy.run_study(tiny_model_dir, corpus, out, plots=False, report=False, **opts)
    plan = geostudy.prepare_study(tiny_model_dir, corpus, run, **opts)
    folder = out / "checked_plots"
    folder.mkdir()
    chosen = [f for f in figure_list._figures(plan, assemble_tables(plan), folder) if not skip(f.key)]
    with watch_savefig() as seen:
        for f in chosen:
            f.render()
    return plan, {f.key: (f.path, f.caption) for f in chosen}, seen


@pytest.fixture(scope="module")
def default_run(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory):
    return _draw_watched(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory.mktemp("default") / "run")


@pytest.fixture(scope="module")
def residual_run(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory):
    return _draw_watched(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory.mktemp("resid") / "run",
                         skip=_site_independent, sites=RESIDUAL_ONLY)


def _file_name(target: str) -> str:
    """The file a savefig wrote to: files are written atomically, through ".name.tmp-PID.png"."""
    name = Path(target).name
    match = re.fullmatch(r"\.(.+)\.tmp-\d+(\.\w+)", name)
    return match.group(1) + match.group(2) if match else name


def _check_every_figure(figures, seen) -> None:
    assert seen, "no figure was saved"
    saved = {_file_name(s.target) for s in seen}
    for path, _caption in figures.values():
        if path.suffix == ".png":
            assert path.name in saved, f"{path.name} was not seen being saved"
    problems = [f"{Path(s.target).name}: {o}" for s in seen for o in s.overflows]
    assert not problems, "parts outside the canvas:\n" + "\n".join(problems)


def test_default_run_every_figure_inside_its_canvas(default_run):
    _, figures, seen = default_run
    _check_every_figure(figures, seen)
    gif_frames = [s for s in seen if not s.target.endswith(".png")]
    assert gif_frames, "the GIF frames are checked too"


def test_residual_only_run_every_figure_inside_its_canvas(residual_run, default_run):
    plan, figures, seen = residual_run
    _check_every_figure(figures, seen)
    full = default_run[0]
    assert len(plan.sites) < len(full.sites)
    assert (plan.lens_sites, plan.focus, plan.attention_block, plan.scatter_site) == \
        (full.lens_sites, full.focus, full.attention_block, full.scatter_site)
    # the one-panel depth figure is at least MIN_WIDTH wide and holds its seven-entry legend
    one_panel = [s for s in seen if _file_name(s.target) == "id_twonn.png"]
    assert one_panel and one_panel[0].size_inches[0] >= drawing.MIN_WIDTH


def test_lens_heatmap_is_readable_at_the_report_width(default_run):
    """Shown unscaled in the report (at most 1200 px wide at the save dpi), its cell numbers at
    LENS_CELL_POINTS (>= 7 pt)."""
    _, _, seen = default_run
    heat = [s for s in seen if _file_name(s.target) == "lens_heatmap.png"]
    assert heat
    assert heat[0].size_inches[0] * drawing.DPI <= drawing.REPORT_WIDTH_PX
    assert drawing.LENS_CELL_POINTS >= 7


def test_lens_heatmap_splits_many_tokens_into_panels():
    """30 tokens: three panels of ten, not thirty narrow columns."""
    assert [len(r) for r in drawing._chunks(30, 10)] == [10, 10, 10]
    assert [len(r) for r in drawing._chunks(11, 10)] == [6, 5]
    assert [len(r) for r in drawing._chunks(10, 10)] == [10]


def test_the_checker_catches_the_old_one_panel_layout_and_growing_fixes_it(tmp_path):
    """The layout before: one panel 5 in wide, a seven-column legend below and tight_layout,
    saved as it is: the legend runs off both edges. The checker must say so, and
    grow_to_fit must make room."""
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    for i in range(7):
        ax.plot([0, 1], [i, i + 1], label=f"genre number {i} of seven")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=7, frameon=False)
    fig.suptitle("Logit lens over positions: how often the top-1 token already equals the model's output")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    found = overflows(fig)
    assert any("Legend" in o.what and o.sides[0] > 0 and o.sides[2] > 0 for o in found), found
    assert any("Text" in o.what and "Logit lens" in o.what for o in found), found  # the suptitle
    with watch_savefig() as seen:  # the same, seen on the drawing that writes a file
        fig.savefig(tmp_path / "old.png", dpi=drawing.DPI)
    assert {o.what for o in seen[0].overflows} == {o.what for o in found}
    grow_to_fit(fig)
    assert overflows(fig) == []
    with watch_savefig() as seen:
        fig.savefig(tmp_path / "new.png", dpi=drawing.DPI)
        fig.savefig(tmp_path / "tight.png", dpi=drawing.DPI, bbox_inches="tight")
    assert [s.overflows for s in seen] == [[], []] and seen[1].tight
    plt.close(fig)
