"""Every code block of README.md runs, as a reader would run it.

The Hub cannot be reached here, so the test lays out what the blocks expect around them: a
Hugging Face cache (HF_HOME, HF_HUB_OFFLINE=1) in which "gpt2" is a small random-weight GPT-2
(6 blocks, width 64) with the real GPT-2 vocabulary, and the placeholder paths the blocks name
(`path/to/model_dir`, `my.jsonl`) as real files. The python blocks run in order in one
interpreter, as in a notebook; the bash blocks run line by line, except `pip install` (done
before the tests) and the test command itself. Blocks marked ```text are transcripts, not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README.read_text(encoding="utf-8")) if kind == lang]


def commands(block: str) -> list[str]:
    """The shell commands of a bash block: comments dropped, `pip install ... &&` prefixes
    dropped (the test runs after the install), the test command itself left out."""
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("&&")]
        parts = [p for p in parts if not p.startswith("pip install") and "pytest" not in p]
        out += parts
    return out


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory, gpt2_vocab_dir) -> Path:
    """A working folder with a Hub cache holding "gpt2" and the README's placeholder files."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    work = tmp_path_factory.mktemp("reader")
    torch.manual_seed(7)
    cfg = GPT2Config(n_layer=6, n_head=4, n_embd=64, vocab_size=50257, n_positions=1024,
                     bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(cfg).eval()
    revision = "0" * 40
    repo = work / "hf_home" / "hub" / "models--openai-community--gpt2"
    snapshot = repo / "snapshots" / revision
    model.save_pretrained(snapshot)
    shutil.copy(gpt2_vocab_dir / "encoder.json", snapshot / "vocab.json")
    shutil.copy(gpt2_vocab_dir / "vocab.bpe", snapshot / "merges.txt")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    # the placeholders of the README's commands
    model.save_pretrained(work / "path" / "to" / "model_dir")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(snapshot / name, work / "path" / "to" / "model_dir" / name)
    lines = [{"id": f"doc{i}", "text": f"Document {i} is about the number {i} and what follows it. " * 3}
             for i in range(4)]
    (work / "my.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    # the corpus-scale examples' docs.jsonl: 1,500 documents of 20-60 words (about 2,800 windows of 20 tokens)
    rng = np.random.default_rng(11)
    words = ("river stone light music number garden winter engine market theory ocean signal forest paper glass "
             "thunder silver planet letter island orbit valley mirror castle bridge candle meadow harbor").split()
    docs = [{"text": " ".join(rng.choice(words, size=int(rng.integers(20, 61))))} for _ in range(1500)]
    (work / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return work


def reader_env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(work / "hf_home"), HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def test_the_readme_has_the_blocks_this_test_runs():
    assert len(code_blocks("bash")) >= 2 and len(code_blocks("python")) >= 3


def test_the_python_blocks_run_in_order(reader_dir):
    script = "\n\n".join(code_blocks("python"))
    done = subprocess.run([sys.executable, "-c", script], cwd=reader_dir, env=reader_env(reader_dir),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("command", [c for b in code_blocks("bash") for c in commands(b)])
def test_each_bash_command_runs(reader_dir, command):
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    if argv[0].endswith(".py") or (len(argv) > 1 and argv[1].startswith("scripts/")):
        argv = [a if not a.startswith("scripts/") else str(ROOT / a) for a in argv]
    done = subprocess.run(argv, cwd=reader_dir, env=reader_env(reader_dir), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{command}\n{done.stderr[-4000:]}"


def test_requirements_txt_lists_the_packaged_dependencies():
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(listed) == sorted(declared)
