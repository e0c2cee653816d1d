"""The activation store at an fsspec URL (file://, memory://): the same chunk bytes and markers
as in a local folder, plain Zarr that zarr reads back, damage found, a shard left unfinished or
a creation killed half-way redone; the study with --store at a URL gives the tables of the
default run byte for byte, its tasks touch nothing but the store, and bad locations are one
line before any work."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import zarr
from fsspec.core import url_to_fs
from word_corpus import write_word_documents

import geostudy
from geostudy.cli import main
from geostudy.errors import StudyError
from geostudy.scale.layout import ScaleLayout
from geostudy.scale.store import ActivationStore, StoreDamagedError

SITES = {"blocks.0.hook_resid_pre": 24, "blocks.0.hook_resid_post": 16}
N_ROWS, SHARD_ROWS = 45, 10  # 5 shards, the last one partial
TABLES = ["results.csv", "overlap.csv", "cka.csv", "partitions.csv", "spectra.csv", "skipped.csv"]
WORDS = "river stone light music number garden winter engine market theory ocean signal forest paper".split()


def rows_of(site: str) -> np.ndarray:
    """Deterministic data of a site, a function of the site's name and the row."""
    return np.random.default_rng(sum(site.encode())).standard_normal((N_ROWS, SITES[site])).astype(np.float32)


def open_store(location, **changes) -> ActivationStore:
    args = dict(sites=SITES, n_rows=N_ROWS, shard_rows=SHARD_ROWS, dtype="float32", fingerprint="seq-abc")
    return ActivationStore.open(location, **{**args, **changes})


def fill(store: ActivationStore, shards=None) -> None:
    data = {site: rows_of(site) for site in store.sites}
    for k in range(store.n_shards) if shards is None else shards:
        a, b = store.shard_rows_range(k)
        store.write_shard(k, {site: d[a:b] for site, d in data.items()})


def local_tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def url_tree(url: str) -> dict[str, bytes]:
    """Every file under the URL with its bytes, read through fsspec (not through the store)."""
    fs, root = url_to_fs(url)
    return {name[len(root) + 1:]: fs.cat_file(name) for name in sorted(fs.find(root))}


@pytest.fixture(params=["file", "memory"])
def url(request, tmp_path) -> str:
    """A store's URL: a file:// URL of a temporary folder, or a fresh memory:// one (removed after)."""
    if request.param == "file":
        yield f"file://{tmp_path}/shared/activations.zarr"
        return
    folder = f"memory://geostudy-test-{uuid.uuid4().hex}"
    yield f"{folder}/activations.zarr"
    fs, root = url_to_fs(folder)
    fs.rm(root, recursive=True)


@pytest.fixture
def reference(tmp_path) -> dict[str, bytes]:
    """The files of the same store, filled in a local folder."""
    store = open_store(tmp_path / "local.zarr")
    fill(store)
    return local_tree(tmp_path / "local.zarr")


def test_same_files_as_a_local_path_and_plain_zarr(url, reference):
    store = open_store(url)
    assert store.location == url and store.finished_shards() == [False] * 5
    assert set(url_tree(url)) == {"zarr.json", "_shards/zarr.json", *(f"{s}/zarr.json" for s in SITES)}
    fill(store, shards=[4, 1, 0, 3, 2])
    assert url_tree(url) == reference  # every chunk, marker and zarr.json: the same bytes
    assert store.finished_shards() == [True] * 5
    for site in SITES:
        assert np.array_equal(store.read(site), rows_of(site))
        assert np.array_equal(store.read(site, np.array([44, 0, 13])), rows_of(site)[[44, 0, 13]])
        plain = zarr.open_group(url, mode="r")[site]  # any Zarr reader sees the same array
        assert plain.chunks == (SHARD_ROWS, SITES[site]) and np.array_equal(plain[:], rows_of(site))
    reopened = ActivationStore.open_existing(url + "/")  # a trailing slash names the same store
    assert reopened.location == url and reopened.finished_shards(verify=False) == [True] * 5


def _flip_a_bit(fs, path: str) -> None:
    data = bytearray(fs.cat_file(path))
    data[len(data) // 2] ^= 0x10
    fs.pipe_file(path, bytes(data))


def _truncate(fs, path: str) -> None:
    fs.pipe_file(path, fs.cat_file(path)[:-4])


def _delete(fs, path: str) -> None:
    fs.rm_file(path)


@pytest.mark.parametrize("damage", [_flip_a_bit, _truncate, _delete], ids=["bit-flip", "truncation", "deletion"])
def test_a_damaged_chunk_is_detected_and_redone(url, damage):
    store = open_store(url)
    fill(store)
    site = "blocks.0.hook_resid_post"
    assert np.array_equal(store.read(site), rows_of(site))
    fs, root = url_to_fs(url)
    damage(fs, f"{root}/{store.chunk_key(site, 2)}")
    with pytest.warns(UserWarning, match=rf"shard 2 is redone: .*{url}/{site}/c/2/0.*run the same command again"):
        assert store.finished_shards(verify=True) == [True, True, False, True, True]
    with pytest.raises(StoreDamagedError, match=r"c/2/0 is damaged .*run the same command again to redo it"):
        store.read(site)
    assert np.array_equal(store.read(site, np.arange(0, 20)), rows_of(site)[:20])  # other chunks still read
    fill(store, shards=[2])
    assert store.finished_shards() == [True] * 5 and np.array_equal(store.read(site), rows_of(site))


class Killed(Exception):
    """Stands for a kill -9 of the writer at that moment."""


def _killed_at(store: ActivationStore, key: str, monkeypatch) -> None:
    """From now on the store's writes stop at `key`: half of its bytes are written (as a
    non-atomic write cut short leaves them), then the writer dies."""
    write = store.files.write

    def write_until(k, data):
        if k == key:
            write(k, data[: len(data) // 2])
            raise Killed(k)
        write(k, data)

    monkeypatch.setattr(store.files, "write", write_until)


@pytest.mark.parametrize("killed_in", ["second chunk", "marker"])
def test_a_shard_left_unfinished_is_redone(url, reference, monkeypatch, killed_in):
    store = open_store(url)
    fill(store)
    key = store.chunk_key("blocks.0.hook_resid_post", 2) if killed_in == "second chunk" else store.marker_key(2)
    with monkeypatch.context() as m:
        _killed_at(store, key, m)
        with pytest.raises(Killed):
            fill(store, shards=[2])
    again = open_store(url)  # the next run reopens the store
    assert again.finished_shards(verify=True) == [True, True, False, True, True]
    with pytest.raises(StudyError, match="shard 2 .* not written yet"):
        again.read("blocks.0.hook_resid_pre")
    fill(again, shards=[k for k, done in enumerate(again.finished_shards()) if not done])
    assert url_tree(url) == reference


def test_a_creation_killed_half_way_is_created_again(url, reference, monkeypatch):
    with monkeypatch.context() as m:  # the group's zarr.json, holding the layout, is written last
        from geostudy.scale import store_files

        original = store_files.FsspecFiles.write

        def write(self, key, data):
            if key == "zarr.json":
                raise Killed(key)
            original(self, key, data)

        m.setattr(store_files.FsspecFiles, "write", write)
        with pytest.raises(Killed):
            open_store(url)
    assert "zarr.json" not in url_tree(url) and url_tree(url)  # the arrays' metadata, without the layout
    with pytest.raises(StudyError, match="not an activation store"):
        ActivationStore.open_existing(url)
    store = open_store(url)
    fill(store)
    assert url_tree(url) == reference


def test_another_runs_store_or_foreign_files_are_refused(url):
    open_store(url)
    with pytest.raises(StudyError, match="holds activations of another run .*--store"):
        open_store(url, fingerprint="other")
    foreign = url.replace("activations.zarr", "mine")
    fs, root = url_to_fs(foreign)
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root}/notes.txt", b"not a store")
    with pytest.raises(StudyError, match="not an activation store"):
        open_store(foreign)
    assert url_tree(foreign) == {"notes.txt": b"not a store"}  # nothing written over


@pytest.mark.parametrize("location, expect", [
    ("nosuch://bucket/acts.zarr", "not a URL fsspec can open"),
    ("memory://", "top of its file system"),
    ("file:///", "top of its file system"),
])
def test_bad_locations_are_one_line_errors(location, expect):
    with pytest.raises(StudyError, match=expect) as err:
        open_store(location)
    assert "\n" not in str(err.value)


def test_a_url_without_fsspec_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(StudyError, match=r'needs fsspec: pip install "gpt2-geometry\[cluster\]"') as err:
        open_store("s3://bucket/run/acts.zarr")
    assert "\n" not in str(err.value)
    open_store(tmp_path / "local.zarr")  # a local path does not need it


def test_the_untrained_store_goes_beside_the_trained_one(tmp_path):
    run = tmp_path / "run"
    assert ScaleLayout(run).store_location("trained") == run / "activations.zarr"
    assert ScaleLayout(run).store_location("untrained") == run / "activations-untrained.zarr"
    for store, untrained in [("s3://b/run/acts.zarr", "s3://b/run/acts-untrained.zarr"),
                             ("memory://x/acts", "memory://x/acts-untrained"),
                             (tmp_path / "elsewhere" / "a.zarr", tmp_path / "elsewhere" / "a-untrained.zarr")]:
        assert ScaleLayout(run, store).store_location("trained") == store
        assert ScaleLayout(run, store).store_location("untrained") == untrained


# -- the study ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    return write_word_documents(tmp_path_factory.mktemp("url_corpus") / "docs.jsonl", seed=5, n_docs=900, words=(6, 24),
                                vocabulary=WORDS)


OPTIONS = dict(represent="last", window=6, partitions=2, partition_size=200, untrained=True, plots=False, report=False,
               progress=False)


@pytest.fixture(scope="module")
def default_run(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path_factory) -> Path:
    return geostudy.run_scale_study(tiny_model_dir, docs, tmp_path_factory.mktemp("url_runs") / "default",
                                    tokenizer=gpt2_vocab_dir, **OPTIONS)


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert (a / "tables" / name).read_bytes() == (b / "tables" / name).read_bytes(), name


def _stores_only_at(run: Path, url: str) -> None:
    assert not list(run.glob("activations*")), "the run folder holds no store"
    assert json.loads((run / "manifest.json").read_text())["stores"] == {
        "trained": url, "untrained": url.replace("acts.zarr", "acts-untrained.zarr")}
    assert zarr.open_group(url, mode="r")["blocks.1.hook_resid_post"].shape[0] > 0


_WATCHED = threading.local()  # the run folder whose files a running task must not touch


def _audit(event: str, args: tuple) -> None:
    root = getattr(_WATCHED, "root", None)
    if root is None or event not in ("open", "os.rename", "os.remove", "os.mkdir", "os.listdir", "os.scandir"):
        return
    for arg in args[:2]:
        if isinstance(arg, (str, Path)) and str(arg).startswith(root):
            _WATCHED.touched.append((event, str(arg)))


class WatchingExecutor:
    """Runs each task at once, in this thread, noting every file of the run folder it opens,
    lists, writes, renames or removes."""

    hooked = False

    def __init__(self, run_folder: Path):
        if not WatchingExecutor.hooked:  # once per process (a hook cannot be removed): inert outside tasks
            sys.addaudithook(_audit)
            WatchingExecutor.hooked = True
        self.root = str(run_folder)
        self.touched: list[tuple[str, str]] = []
        self.tasks = 0

    def submit(self, fn, *args) -> Future:
        self.tasks += 1
        future: Future = Future()
        _WATCHED.root, _WATCHED.touched = self.root, self.touched
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        finally:
            _WATCHED.root = None
        return future


def test_study_with_a_memory_store_touches_nothing_but_the_store(default_run, tiny_model_dir, gpt2_vocab_dir, docs, tmp_path):
    url = f"memory://geostudy-test-{uuid.uuid4().hex}/acts.zarr"
    out = tmp_path / "run"
    try:
        plan = geostudy.prepare_scale_study(tiny_model_dir, docs, out, tokenizer=gpt2_vocab_dir, store=url, **OPTIONS)
        watching = WatchingExecutor(out)
        geostudy.execute_scale(plan, watching)
        assert watching.tasks > 0 and watching.touched == [], watching.touched[:5]
        _same_tables(default_run, out)
        _stores_only_at(out, url)
        # resuming the finished run redoes nothing: the files the client wrote are valid markers
        plan = geostudy.prepare_scale_study(tiny_model_dir, docs, out, tokenizer=gpt2_vocab_dir, store=url, **OPTIONS)
        again = WatchingExecutor(out)
        geostudy.execute_scale(plan, again)
        assert again.tasks == 0
        _same_tables(default_run, out)
    finally:
        fs, root = url_to_fs(url.rpartition("/")[0])
        fs.rm(root, recursive=True)


def _cli_args(model_dir, vocab, corpus, out, *extra) -> list[str]:
    return ["--model", str(model_dir), "--tokenizer", str(vocab), "--corpus", str(corpus), "--out", str(out),
            "--represent", "last", "--window", "6", "--partitions", "2", "--partition-size", "200", "--untrained",
            "--no-plots", "--no-report", "--quiet", *extra]


def test_cli_with_a_file_url_store(default_run, tiny_model_dir, gpt2_vocab_dir, docs, tmp_path, capsys):
    url = f"file://{tmp_path}/shared/acts.zarr"
    assert main(_cli_args(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path / "run", "--store", url)) == 0
    _same_tables(default_run, tmp_path / "run")
    _stores_only_at(tmp_path / "run", url)
    # the same --store for another study (another window: other sequences) is refused in one line
    code = main(_cli_args(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path / "other", "--store", url, "--window", "7"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds activations of another run" in err[0], err


@pytest.mark.parametrize("store, expect", [
    ("memory://", "top of its file system"),
    ("nosuch://bucket/acts.zarr", "not a URL fsspec can open"),
])
def test_cli_bad_store_exits_2_with_one_line_before_any_work(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path, capsys,
                                                              store, expect):
    out = tmp_path / "run"
    code = main(_cli_args(tiny_model_dir, gpt2_vocab_dir, docs, out, "--store", store))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not out.exists()


def test_cli_store_without_fsspec_exits_2_before_any_work(tiny_model_dir, gpt2_vocab_dir, docs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    out = tmp_path / "run"
    code = main(_cli_args(tiny_model_dir, gpt2_vocab_dir, docs, out, "--store", "s3://bucket/acts.zarr"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'pip install "gpt2-geometry[cluster]"' in err[0], err
    assert not out.exists()


def test_store_is_refused_in_the_token_study(tiny_model_dir, gpt2_vocab_dir, tmp_path, capsys):
    code = main(["--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir), "--out", str(tmp_path / "x"),
                 "--store", "memory://x/acts.zarr", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--store" in err[0] and "--represent" in err[0], err
