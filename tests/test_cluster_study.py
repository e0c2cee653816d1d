"""Both studies on a Dask LocalCluster of 2 worker processes give the tables of the in-process
run, byte for byte: the token study (its pooled neighbour searches on the workers) and the
corpus-scale protocol (every task on the workers, its store in the run folder or at a file://
URL), also when a worker process is killed during the forward passes and during the neighbour
searches."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from word_corpus import write_word_documents

import geostudy
from geostudy.cli import main
from geostudy.cluster.connection import connect
from geostudy.cluster.executor import DaskExecutor
from geostudy.cluster.pooled import ClusterSearches

SCALE_TABLES = ["results.csv", "overlap.csv", "cka.csv", "partitions.csv", "spectra.csv", "skipped.csv"]
TOKEN_TABLES = ["results.csv", "lens_top_tokens.csv", "spectra.csv", "prompts.csv", "sites.csv", "skipped.csv"]


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    return write_word_documents(tmp_path_factory.mktemp("cluster_corpus") / "docs.jsonl", seed=3, n_docs=1500, words=(8, 40))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    chosen = [p for p in geostudy.load_corpus() if p.genre in ("prose_50", "word_list") and p.topic in ("nature", "music")]
    path = tmp_path_factory.mktemp("cluster_prompts") / "small.jsonl"
    path.write_text("\n".join(json.dumps(p.__dict__) for p in chosen) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cluster():
    with connect("local:2") as c:
        yield c


def _scale_options(vocab):
    return dict(tokenizer=vocab, represent="last", window=6, partitions=2, partition_size=250, shard_rows=128,
                untrained=True, plots=False, report=False, progress=False)


def _same_tables(a: Path, b: Path, names) -> None:
    for name in names:
        assert (a / "tables" / name).read_bytes() == (b / "tables" / name).read_bytes(), name


def _worker_pids(client) -> list[int]:
    return sorted(client.run(os.getpid).values())


def _kill_a_worker_while(client, running: threading.Thread, delay: float) -> bool:
    """SIGKILL one worker process `delay` seconds into `running` (its nanny starts a new one)."""
    time.sleep(delay)
    if not running.is_alive():
        return False
    os.kill(_worker_pids(client)[0], signal.SIGKILL)
    return True


@pytest.fixture(scope="module")
def scale_alone(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path_factory) -> Path:
    """The corpus-scale study in this process, its store in the run folder: the reference."""
    return geostudy.run_scale_study(tiny_model_dir, docs, tmp_path_factory.mktemp("scale_alone") / "alone",
                                    **_scale_options(gpt2_vocab_dir))


def test_scale_study_on_the_cluster_equals_in_process(tiny_model_dir, gpt2_vocab_dir, docs, cluster, scale_alone, tmp_path):
    opts = _scale_options(gpt2_vocab_dir)
    alone = scale_alone
    plan = geostudy.prepare_scale_study(tiny_model_dir, docs, tmp_path / "cluster", **opts)
    on_cluster = geostudy.execute_scale(plan, DaskExecutor(cluster.client))
    _same_tables(alone, on_cluster, SCALE_TABLES)

    # a worker killed during the forward passes: its tasks are run again, the tables do not change
    plan = geostudy.prepare_scale_study(tiny_model_dir, docs, tmp_path / "killed", **opts)
    result = {}
    run = threading.Thread(target=lambda: result.setdefault("out", geostudy.execute_scale(plan, DaskExecutor(cluster.client))))
    run.start()
    killed = _kill_a_worker_while(cluster.client, run, delay=1.0)
    run.join()
    assert killed, "the run ended before a worker could be killed: make the test's corpus larger"
    _same_tables(alone, result["out"], SCALE_TABLES)


def test_scale_study_on_the_cluster_with_a_file_url_store(tiny_model_dir, gpt2_vocab_dir, docs, cluster, scale_alone, tmp_path):
    """The store at a file:// URL (fsspec on every worker, no rename, no fsync): the same tables,
    the run folder without a store, the workers' rows in the store."""
    url = f"file://{tmp_path}/shared/acts.zarr"
    plan = geostudy.prepare_scale_study(tiny_model_dir, docs, tmp_path / "run", store=url, **_scale_options(gpt2_vocab_dir))
    on_cluster = geostudy.execute_scale(plan, DaskExecutor(cluster.client))
    _same_tables(scale_alone, on_cluster, SCALE_TABLES)
    assert not list(on_cluster.glob("activations*"))
    for name, where in (("activations.zarr", "acts.zarr"), ("activations-untrained.zarr", "acts-untrained.zarr")):
        local = zarr.open_group(str(scale_alone / name), mode="r")
        shared = zarr.open_group(f"file://{tmp_path}/shared/{where}", mode="r")
        assert np.array_equal(shared["blocks.1.hook_resid_post"][:], local["blocks.1.hook_resid_post"][:])


def test_token_study_with_pooled_searches_on_the_cluster(tiny_model_dir, gpt2_vocab_dir, prompts, cluster, tmp_path):
    opts = dict(tokenizer=gpt2_vocab_dir, lens_positions=8, plots=False, report=False, progress=False)
    alone = geostudy.run_study(tiny_model_dir, prompts, tmp_path / "alone", **opts)
    plan = geostudy.prepare_study(tiny_model_dir, prompts, tmp_path / "cluster", **opts)
    searched = []

    class Counting(ClusterSearches):
        def for_site(self, site):
            searched.append(site)
            return super().for_site(site)

    on_cluster = geostudy.execute(plan, pooled_searches=Counting(cluster.client, plan.out))
    assert len(searched) == len(plan.sites)
    _same_tables(alone, on_cluster, TOKEN_TABLES)
    assert not any((on_cluster / "pooled_clouds").glob("*.zarr")), "each pooled cloud's store is removed after its search"


def test_cluster_flag_errors_are_one_line(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path, capsys):
    base = ["--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir), "--corpus", str(docs), "--quiet",
            "--represent", "last", "--window", "6", "--partitions", "2", "--partition-size", "250"]
    for spec, expect in (("tcp://127.0.0.1:1", "cannot reach"), ("local:x", "not understood")):
        code = main([*base, "--out", str(tmp_path / spec.replace(":", "_").replace("/", "_")), "--cluster", spec])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and expect in err[-1] and len(err) == 1, err
