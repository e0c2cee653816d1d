"""Hostile text in the study's inputs, one input per test: what reaches a figure, a file name, a
table cell or the report must come out literally (or be refused before any work with one clear
line), never as a traceback after all the computing.

The study runs on a tiny random-weight GPT-2 (tests/conftest.py) and a corpus whose genres,
topics and texts hold dollar signs, backslashes, carets, underscores, braces, HTML and quotes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.animation import PillowWriter
from matplotlib.figure import Figure
from matplotlib.text import Text

import geostudy
from geostudy import StudyError, load_corpus
from geostudy.outputs import drawing
from geostudy.outputs import figures as figure_list
from geostudy.outputs.assemble import assemble_tables
from geostudy.outputs.drawing import TEXT_LABEL_CHARS, TOKEN_LABEL_CHARS, text_label, token_label
from geostudy.outputs.tables import TOP_TOKEN_COLUMNS, read_csv

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_prerun.py"
# the scripts import geostudy from the repository (they do not edit sys.path)
SCRIPT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

LONG_GENRE = "a very long genre name, " * 10  # 240 characters
HOSTILE_PROMPTS = [
    # the focus prompt (the first): 27 tokens, so the attention figure labels each one; ' $$' is one
    {"id": "dollars", "genre": "costs $5 and $6", "topic": "$$",
     "text": "It costs $$ and $5 or $6 here; \\alpha x^2_y {b} % # & ~ fine."},
    {"id": "slashes", "genre": "a\\b_c^d {x}", "topic": "x_{1}$",
     "text": "A back\\slash, an under_score, a caret^ and $x$ in maths, as $$\\frac{1}{2}$$ in TeX."},
    {"id": "under", "genre": "_leading underscore", "topic": "<b>&amp;</b>",
     "text": "Matplotlib leaves out of a legend every label that begins with an underscore, like this one."},
    {"id": "markup", "genre": "<script>alert('x')</script>", "topic": 'a "quoted", comma',
     "text": "Angle brackets <like these> & ampersands &amp; and \"quotes\" must stay text in the report."},
    {"id": "long-genre", "genre": LONG_GENRE, "topic": "%#&~\\",
     "text": "A genre of two hundred and forty characters is shortened in the legend, but kept whole in the tables."},
]
OPTIONS = dict(lens_positions=4, progress=False, sites="blocks.0.hook_resid_pre,blocks.*.hook_resid_post")
# Token strings the logit lens could list (GPT-2 has '$$', '\\', 64-dash runs, control bytes, ...)
HOSTILE_TOKENS = ["$$", " $x$", "\\", "^_^", "_under", "", "\n\t", "\x00\x1b", "-" * 80, "a\u2028b"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.json"
    path.write_text(json.dumps({"name": "hostile", "prompts": HOSTILE_PROMPTS}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "hostile"
    return geostudy.run_study(tiny_model_dir, corpus, out, tokenizer=gpt2_vocab_dir, **OPTIONS)


@pytest.fixture(scope="module")
def plan(run, tiny_model_dir, gpt2_vocab_dir, corpus):
    return geostudy.prepare_study(tiny_model_dir, corpus, run, tokenizer=gpt2_vocab_dir, **OPTIONS)


class _Drawn:
    """Every visible, non-empty text of every figure drawn while recording, by file name: what
    it says, and whether matplotlib renders it as maths or with LaTeX (asked the way the
    renderer asks, Text._preprocess_math)."""

    def __init__(self):
        self.texts: dict[str, list[tuple[str, bool]]] = {}
        self.legends: dict[str, list[str]] = {}
        self.ticks: dict[str, list[str]] = {}

    def record(self, name: str, fig) -> None:
        fig.canvas.draw()  # tick labels and legends get their final text when drawn
        for t in fig.findobj(Text):
            if t.get_visible() and t.get_text():
                rendered, is_maths = t._preprocess_math(t.get_text())
                self.texts.setdefault(name, []).append((t.get_text(), is_maths or t.get_usetex() or rendered != t.get_text()))
        self.legends[name] = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        self.ticks.setdefault(name, []).extend(
            t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text())


@pytest.fixture
def drawn(monkeypatch) -> _Drawn:
    """Record the texts of every PNG (at drawing._save and at Figure.savefig, which the gallery's
    figures use) and of every GIF frame (at grab_frame)."""
    record = _Drawn()
    real_save, real_grab = drawing._save, PillowWriter.grab_frame

    def save(fig, path, tight=True):
        record.record(Path(path).name, fig)
        real_save(fig, path, tight)

    def grab_frame(self, **kw):
        record.record("gif", self.fig)
        real_grab(self, **kw)

    def savefig(fig, fname, *args, **kw):  # the gallery's figures save through Figure.savefig
        name = Path(str(fname)).name
        final = re.fullmatch(r"\.(.+)\.tmp-\d+(\.\w+)", name)  # fsio's hidden temporary of the final file
        record.record(final.group(1) + final.group(2) if final else name, fig)
        return real_savefig(fig, fname, *args, **kw)

    real_savefig = Figure.savefig
    monkeypatch.setattr(drawing, "_save", save)
    monkeypatch.setattr(PillowWriter, "grab_frame", grab_frame)
    monkeypatch.setattr(Figure, "savefig", savefig)
    return record


def _not_literal(drawn: _Drawn) -> list[tuple[str, str]]:
    return [(name, text) for name, texts in drawn.texts.items() for text, parsed in texts if parsed]


# --------------------------------------------------------------------------------------------
# 1. Dollar signs, backslashes, carets and underscores in genres, topics, texts and tokens
# --------------------------------------------------------------------------------------------

def test_dollars_backslashes_and_underscores_in_the_corpus_do_not_stop_the_run(run):
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "complete"
    names = {p.name for p in (run / "plots").iterdir()}
    assert {"id_twonn.png", "lens_heatmap.png", f"lens_pair_{man['options']['focus']}.gif", "attention_block1.png"} <= names
    assert (run / "report.html").is_file()


def test_every_drawn_text_is_literal_and_every_genre_is_in_the_legend(run, plan, drawn, tmp_path):
    tables = assemble_tables(plan)
    figures = figure_list.make_plots(plan, tables, tmp_path / "plots", share=False)
    assert set(drawn.texts) >= {p.name for p, _ in figures.values() if p.suffix == ".png"} | {"gif"}
    assert _not_literal(drawn) == []
    # the legend lists every genre as written, a leading '_' included (shortened when long)
    genres = [p["genre"] for p in HOSTILE_PROMPTS]
    assert drawn.legends["id_twonn.png"] == [*genres[:4], LONG_GENRE[:TEXT_LABEL_CHARS - 1] + "…", "pooled corpus"]
    assert text_label(LONG_GENRE) == LONG_GENRE[:TEXT_LABEL_CHARS - 1] + "…"
    # the focus prompt's tokens label the attention figure: ' $$', ' \\', '^', '_' as they are
    tokens = json.loads(plan.result_path(plan.focus.id).read_text())["tokens"]
    assert " $$" in tokens and " \\" in tokens
    assert set(map(token_label, tokens)) <= set(drawn.ticks[f"attention_block{plan.attention_block}.png"])


def test_hostile_tokens_in_the_logit_lens_are_drawn_literally_and_short(plan, drawn, tmp_path):
    tables = assemble_tables(plan)
    rank, token = TOP_TOKEN_COLUMNS.index("rank"), TOP_TOKEN_COLUMNS.index("token")
    for row in tables["lens_top_tokens"]:  # each depth's top-k tokens become the hostile ones
        row[token] = HOSTILE_TOKENS[(row[rank] - 1) % len(HOSTILE_TOKENS)]
    for figure in figure_list._figures(plan, tables, tmp_path):
        if figure.key == "lens_heatmap" or figure.key.startswith("lens_pair_gif."):
            figure.render()  # what make_plots calls, in either process
    assert {"lens_heatmap.png", "gif"} <= set(drawn.texts)
    assert _not_literal(drawn) == []
    labels = [token_label(t) for t in HOSTILE_TOKENS]
    assert set(labels) <= set(drawn.ticks["lens_heatmap.png"]) and set(labels) <= set(drawn.ticks["gif"])
    assert token_label("-" * 80) == repr("-" * 80)[:TOKEN_LABEL_CHARS - 1] + "…"
    assert token_label("$$") == "'$$'" and token_label("\n\t") == "'\\n\\t'" and token_label("") == "''"
    drawn_texts = [text for texts in drawn.texts.values() for text, _ in texts]
    assert not [t for t in drawn_texts if "\x00" in t or "\x1b" in t or "\u2028" in t]


# --------------------------------------------------------------------------------------------
# The HTML report and the tables (these were already safe: checked on hostile strings)
# --------------------------------------------------------------------------------------------

class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.data = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.data.append(data)


def test_the_report_shows_hostile_genres_as_text(run):
    page = _Page()
    page.feed((run / "report.html").read_text(encoding="utf-8"))
    page.close()
    assert "script" not in page.tags
    text = "".join(page.data)
    for genre in (p["genre"] for p in HOSTILE_PROMPTS):
        assert genre in text, genre
    assert "<script>" not in (run / "report.html").read_text(encoding="utf-8")


def test_hostile_genres_and_topics_round_trip_through_every_table_format(run):
    want = [(p["id"], p["genre"], p["topic"]) for p in HOSTILE_PROMPTS]
    rows = read_csv(run / "tables" / "prompts.csv")
    assert [(r["prompt_id"], r["genre"], r["topic"]) for r in rows] == want
    frame = pd.read_csv(run / "tables" / "prompts.csv", keep_default_na=False)
    assert list(zip(frame.prompt_id, frame.genre, frame.topic)) == want
    records = json.loads((run / "tables" / "results.json").read_text(encoding="utf-8"))
    assert {(r["prompt_id"], r["genre"], r["topic"]) for r in records if r["prompt_id"] != "pooled"} == set(want)
    with open(run / "tables" / "results.csv", newline="", encoding="utf-8") as fh:
        assert {(r["prompt_id"], r["genre"], r["topic"]) for r in csv.DictReader(fh) if r["prompt_id"] != "pooled"} == set(want)


# --------------------------------------------------------------------------------------------
# 6a. Lone surrogates and undecodable bytes: a StudyError naming the prompt, and exit 2
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_lone_surrogate_escape_is_refused_naming_the_prompt(tmp_path, suffix):
    good, bad = '{"id": "fine", "text": "All right."}', '{"id": "broken", "topic": "t", "text": "half \\ud800 a pair"}'
    path = tmp_path / f"c{suffix}"
    path.write_text(f"[{good}, {bad}]" if suffix == ".json" else f"{good}\n{bad}\n", encoding="utf-8")
    where = "prompt #2" if suffix == ".json" else "line 2"
    with pytest.raises(StudyError, match=rf"{where} \(id 'broken'\): field 'text' holds a lone surrogate U\+D800 .*remove it"):
        load_corpus(path)


def test_a_lone_surrogate_in_the_corpus_name_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"name": "half \\udc80", "prompts": [{"id": "a", "text": "Some words."}]}', encoding="utf-8")
    with pytest.raises(StudyError, match=r"c\.json, the corpus: field 'name' holds a lone surrogate U\+DC80"):
        load_corpus(path)


def test_a_lone_surrogate_exits_2_with_one_line(tmp_path, tiny_model_dir, gpt2_vocab_dir):
    path = tmp_path / "c.json"
    path.write_text('[{"id": "a", "genre": "\\udfff", "text": "Some words here."}]', encoding="utf-8")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir),
                           "--corpus", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          env=SCRIPT_ENV)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "lone surrogate U+DFFF" in proc.stderr and "'genre'" in proc.stderr


def test_prompts_too_short_to_analyse_exit_2_with_one_line_naming_them(tmp_path, tiny_model_dir, gpt2_vocab_dir):
    path = tmp_path / "c.jsonl"
    rows = [{"id": f"short{i}", "text": "Hi"} for i in range(7)] + [{"id": "long", "text": "Enough words for this one."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir),
                           "--corpus", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          env=SCRIPT_ENV)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "short0 (1 tokens, 0 left)" in proc.stderr and "and 2 more" in proc.stderr and "--drop-positions" in proc.stderr


def test_undecodable_bytes_in_a_txt_file_name_the_prompt_line_and_the_fix(tmp_path):
    (tmp_path / "a.txt").write_text("Fine.", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"first line\nsecond line, caf" + b"\xe9 au lait")
    with pytest.raises(StudyError, match=r"b\.txt \(prompt 'b'\), line 2, byte 17 of the line: not UTF-8 .*save the file as UTF-8"):
        load_corpus(tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_text_and_hidden_files_are_not_prompts(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfWritten by Notepad.")
    (tmp_path / "._a.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")  # macOS metadata, not UTF-8
    corpus = load_corpus(tmp_path)
    assert corpus.ids == ["a"] and corpus[0].text == "Written by Notepad."
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"id": "a", "text": "Written by Notepad."}]).encode())
    assert load_corpus(path)[0].text == "Written by Notepad."


# --------------------------------------------------------------------------------------------
# 8. JSONL: a raw U+2028, U+2029 or U+0085 inside a string is valid JSON, not a line break
# --------------------------------------------------------------------------------------------

def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path):
    texts = ["one\u2028two", "three\u2029four", "five\x85six"]
    path = tmp_path / "c.jsonl"
    lines = [json.dumps({"id": f"p{i}", "genre": "g", "text": t}, ensure_ascii=False) for i, t in enumerate(texts)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))  # Windows line ends as well
    corpus = load_corpus(path)
    assert [p.text for p in corpus] == texts and corpus.ids == ["p0", "p1", "p2"]


# --------------------------------------------------------------------------------------------
# 9. Ids name files: the whole id is checked, and ids that one file system would merge are refused
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "ids, message",
    [
        (["a\n"], "ids name files, so they must be"),
        (["fine", "b\n"], r"prompt #2 \(id 'b\\n'\): ids name files"),
        (["Notes", "notes"], "'Notes' and 'notes' differ only in case"),
        (["nul"], "'nul' is a device name on Windows"),
        (["CON.txt"], "'CON' is a device name on Windows"),
    ],
)
def test_ids_that_cannot_name_a_file_everywhere_are_refused(tmp_path, ids, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"id": i, "text": "Some text."} for i in ids]))
    with pytest.raises(StudyError, match=message):
        load_corpus(path)


@pytest.mark.parametrize("label", ["two\nlines", "tab\there", "nul\x00", "carriage\rreturn", "para\u2029graph"])
@pytest.mark.parametrize("key", ["genre", "topic"])
def test_a_genre_or_topic_with_a_control_character_is_refused(tmp_path, key, label):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"id": "a", key: label, "text": "Some text."}]))
    with pytest.raises(StudyError, match=rf"prompt #1 \(id 'a'\): field '{key}' holds the control character U\+"):
        load_corpus(path)


def test_a_corpus_name_cannot_move_the_run_folder_out_of_the_runs_folder(tmp_path, tiny_model_dir, gpt2_vocab_dir):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "../../../escaped/x y", "prompts": [{"id": "a", "text": "Some words to read."}]}))
    assert load_corpus(path).name == "../../../escaped/x y"  # shown as written (the report escapes it)
    runs = tmp_path / "deep" / "er" / "runs"
    plan = geostudy.prepare_study(tiny_model_dir, path, None, tokenizer=gpt2_vocab_dir, runs_dir=runs, progress=False)
    assert plan.out.resolve().parent == runs.resolve()
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()


# --------------------------------------------------------------------------------------------
# 14b. The forked writer ends with its parent
# --------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    """Running, not a zombie left for a reaper that may never come (a container's PID 1)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Beside forks only on Linux")
def test_a_beside_child_dies_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent_code = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from geostudy.rundir.fsio import atomic_write_text
from geostudy.runtime.beside import Beside

def job():
    atomic_write_text({str(pid_file)!r}, str(os.getpid()))
    time.sleep(120)

Beside(job, "sleeping")
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    child = None
    try:
        deadline = time.time() + 60
        while not pid_file.is_file():
            assert parent.poll() is None and time.time() < deadline
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 2
        while _alive(child) and time.time() < deadline:
            time.sleep(0.02)
        assert not _alive(child), "the child outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)
