"""The client of a cluster run killed with SIGKILL in the middle of the forward passes: its local
workers do not outlive it, and the same command resumes from the store and writes the tables of
an in-process run, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from word_corpus import write_word_documents

pytest.importorskip("distributed")

import geostudy  # noqa: E402

TABLES = ["results.csv", "overlap.csv", "cka.csv", "partitions.csv", "spectra.csv", "skipped.csv"]
OPTIONS = dict(represent="last", window=6, partitions=2, partition_size=400, untrained=True)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    """About 9,000 sequences of 6 tokens: 9 shards, enough to kill the client between two."""
    return write_word_documents(tmp_path_factory.mktemp("resume_corpus") / "docs.jsonl", seed=5, n_docs=1500, words=(12, 60))


def _command(model, vocab, docs, out) -> list[str]:
    opts = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items() if not isinstance(v, bool)]
    return [sys.executable, "-m", "geostudy", "--model", str(model), "--tokenizer", str(vocab), "--corpus", str(docs),
            "--out", str(out), *opts, "--untrained", "--no-plots", "--no-report", "--quiet", "--cluster", "local:2"]


def _finished_shards(out: Path) -> int:
    return len(list((out / "activations.zarr" / "_shards").glob("*/zarr.json")))


def test_a_killed_client_leaves_no_workers_and_the_same_command_resumes(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path):
    alone = geostudy.run_scale_study(tiny_model_dir, docs, tmp_path / "alone", tokenizer=gpt2_vocab_dir, plots=False,
                                     report=False, progress=False, **OPTIONS)
    out = tmp_path / "cluster"
    cmd = _command(tiny_model_dir, gpt2_vocab_dir, docs, out)
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while _finished_shards(out) < 1 and client.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = psutil.Process(client.pid).children(recursive=True)
    assert client.poll() is None, "the run ended before the client could be killed: make the corpus larger"
    assert workers, "the client started no worker processes"
    n_done = _finished_shards(out)
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    client.stderr.close()
    assert n_done < 9, "every shard was written before the kill: make the corpus larger"
    # the workers die with their client (a LocalCluster that outlived it would go on computing)
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"worker processes outlived the killed client: {[p.pid for p in alive]}"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in TABLES:
        assert (out / "tables" / name).read_bytes() == (alone / "tables" / name).read_bytes(), name
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["sessions"]) == 2
