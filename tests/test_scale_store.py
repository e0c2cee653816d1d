"""geostudy.scale.store: the Zarr v3 activation store, its per-shard checksum markers, kill -9
at random moments while writing, and damaged chunks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from geostudy.errors import StudyError
from geostudy.scale.store import ActivationStore, StoreDamagedError

SITES = {"blocks.0.hook_resid_pre": 24, "blocks.0.hook_resid_post": 16}
N_ROWS, SHARD_ROWS = 45, 10  # 5 shards, the last one partial


def rows_of(site: str, n_rows: int = N_ROWS, width: int | None = None) -> np.ndarray:
    """Deterministic data of a site, a function of the site's name and the row (not the shard)."""
    width = width or SITES[site]
    seed = sum(site.encode())
    return np.random.default_rng(seed).standard_normal((n_rows, width)).astype(np.float32)


def open_store(path: Path, **changes) -> ActivationStore:
    args = dict(sites=SITES, n_rows=N_ROWS, shard_rows=SHARD_ROWS, dtype="float32", fingerprint="seq-abc")
    return ActivationStore.open(path, **{**args, **changes})


def fill(store: ActivationStore, shards=None) -> None:
    data = {site: rows_of(site, store.n_rows, width) for site, width in store.sites.items()}
    for k in (range(store.n_shards) if shards is None else shards):
        a, b = store.shard_rows_range(k)
        store.write_shard(k, {site: d[a:b] for site, d in data.items()})


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_round_trip_and_plain_zarr(tmp_path):
    store = open_store(tmp_path / "activations.zarr")
    assert store.n_shards == 5 and store.shard_rows_range(4) == (40, 45)
    assert store.finished_shards() == [False] * 5
    fill(store)
    assert store.finished_shards() == [True] * 5
    for site in SITES:
        want = rows_of(site)
        assert np.array_equal(store.read(site), want)
        assert np.array_equal(store.read(site, slice(7, 33)), want[7:33])
        pick = np.array([44, 0, 13, 13, 29])
        assert np.array_equal(store.read(site, pick), want[pick])
        # any Zarr reader sees the same array, one chunk per shard, rows in order
        plain = zarr.open_array(str(tmp_path / "activations.zarr"), path=site, mode="r")
        assert plain.chunks == (SHARD_ROWS, SITES[site]) and plain.dtype == np.float32
        assert np.array_equal(plain[:], want)
    reopened = ActivationStore.open_existing(tmp_path / "activations.zarr")
    assert reopened.sites == SITES and reopened.finished_shards(verify=False) == [True] * 5


def test_same_rows_same_bytes_in_any_shard_order(tmp_path):
    a, b = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    fill(a)
    fill(b, shards=[3, 0, 4, 2, 1])
    fill(b, shards=[2])  # a shard written twice
    assert tree(tmp_path / "a.zarr") == tree(tmp_path / "b.zarr")


def test_reopening_with_another_layout_is_refused(tmp_path):
    path = tmp_path / "activations.zarr"
    open_store(path)
    for change in ({"fingerprint": "other"}, {"n_rows": 46}, {"shard_rows": 9}, {"dtype": "float64"},
                   {"sites": {**SITES, "blocks.1.hook_resid_post": 16}}, {"sites": {"blocks.0.hook_resid_pre": 23}}):
        with pytest.raises(StudyError, match="another run"):
            open_store(path, **change)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.txt").write_text("not a store")
    with pytest.raises(StudyError, match="not an activation store"):
        open_store(tmp_path / "other")


def test_bad_writes_and_reads(tmp_path):
    store = open_store(tmp_path / "activations.zarr")
    with pytest.raises(StudyError, match="must be"):
        store.write_shard(0, {site: np.zeros((9, w)) for site, w in SITES.items()})
    with pytest.raises(StudyError, match="exactly the store's sites"):
        store.write_shard(0, {"blocks.0.hook_resid_pre": np.zeros((10, 24))})
    with pytest.raises(StudyError, match="shard 5"):
        store.shard_rows_range(5)
    with pytest.raises(StudyError, match="not written yet"):
        store.read("blocks.0.hook_resid_pre")
    fill(store)
    with pytest.raises(StudyError, match="no site"):
        store.read("blocks.7.hook_resid_post")
    with pytest.raises(StudyError, match="rows"):
        store.read("blocks.0.hook_resid_pre", np.array([45]))


def _flip_a_bit(chunk: Path) -> None:
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


def _truncate(chunk: Path) -> None:
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) - 4])


@pytest.mark.parametrize("damage", [_flip_a_bit, _truncate, Path.unlink], ids=["bit-flip", "truncation", "deletion"])
def test_a_damaged_chunk_is_detected_and_redone(tmp_path, damage):
    store = open_store(tmp_path / "activations.zarr")
    fill(store)
    site = "blocks.0.hook_resid_post"
    assert np.array_equal(store.read(site), rows_of(site))  # hashes (and may remember) every chunk
    chunk = store.chunk_path(site, 2)
    damage(chunk)
    with pytest.warns(UserWarning, match=r"shard 2 is redone: .*c/2/0.*run the same command again"):
        assert store.finished_shards(verify=True) == [True, True, False, True, True]
    assert store.finished_shards(verify=False) == [True] * 5  # the marker alone does not see it
    with pytest.raises(StoreDamagedError, match=r"c/2/0 is damaged .*run the same command again to redo it"):
        store.read(site)
    assert np.array_equal(store.read(site, np.arange(0, 20)), rows_of(site)[:20])  # other chunks still read
    fill(store, shards=[2])
    assert store.finished_shards() == [True] * 5
    assert np.array_equal(store.read(site), rows_of(site))


def test_a_damaged_marker_makes_the_shard_unfinished(tmp_path):
    store = open_store(tmp_path / "activations.zarr")
    fill(store)
    marker = store.marker_path(1)
    marker.write_bytes(marker.read_bytes()[:20])
    assert store.finished_shards() == [True, False, True, True, True]


# -- kill -9 ---------------------------------------------------------------------------------
# The child creates (or reopens) a store of 30 shards and writes the unfinished ones, saying so
# after each; a shard takes a few ms (one fsync per chunk and per marker), so a kill at a random
# moment inside one lands in the chunks, between them, or in the marker. The same at a file://
# URL, through fsspec: no rename, no fsync, the store created in place; its shards are written
# so much faster that the child gets 300 of them, or it could finish before the kill.
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from geostudy.scale.store import ActivationStore

    location = sys.argv[1] if "://" in sys.argv[1] else Path(sys.argv[1])
    n_rows = int(sys.argv[2])
    sites = {f"blocks.{i}.hook_resid_post": 96 for i in range(4)}
    store = ActivationStore.open(location, sites=sites, n_rows=n_rows, shard_rows=40, dtype="float32",
                                 fingerprint="kill")
    data = {s: np.random.default_rng(i).standard_normal((n_rows, 96)).astype(np.float32) for i, s in enumerate(sites)}
    print("open", flush=True)
    for k, done in enumerate(store.finished_shards(verify=True)):
        if not done:
            a, b = store.shard_rows_range(k)
            store.write_shard(k, {s: d[a:b] for s, d in data.items()})
            print("shard", k, flush=True)
    print("done", flush=True)
""")


def _start_child(path: Path, as_url: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    location, n_rows = (f"file://{path}", 11990) if as_url else (str(path), 1190)  # 300 or 30 shards
    return subprocess.Popen([sys.executable, "-W", "ignore", "-c", CHILD, location, str(n_rows)], stdout=subprocess.PIPE, env=env)


def _kill(proc: subprocess.Popen) -> bool:
    """kill -9 now; True if the child had not finished."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL and b"done" not in out


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_kill_9_at_random_moments_then_resume(tmp_path, as_url):
    reference = tmp_path / "reference.zarr"
    t0 = time.perf_counter()
    proc = _start_child(reference, as_url)
    assert proc.stdout.readline() == b"open\n"
    startup = time.perf_counter() - t0
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.endswith(b"done\n")
    per_shard = (time.perf_counter() - t0 - startup) / ActivationStore.open_existing(reference).n_shards

    killed = tmp_path / "killed.zarr"
    location = f"file://{killed}" if as_url else killed
    rng = random.Random(13)
    proc = _start_child(killed, as_url)  # killed while starting: in the imports or while creating the store
    time.sleep(rng.uniform(0.6, 1.0) * startup)
    _kill(proc)
    kills = inside = attempts = 0
    # at least 6 kills, 2 of them inside a shard's writing (where a kill lands is chance: the
    # machine's load moves it, so more attempts are made until 2 have landed there)
    while attempts < 6 or (inside < 2 and attempts < 30):
        attempts += 1
        proc = _start_child(killed, as_url)
        assert proc.stdout.readline() == b"open\n"
        for _ in range(rng.randint(0, 3)):  # a few whole shards, then a random moment inside the next
            proc.stdout.readline()
        time.sleep(rng.uniform(0, 1.0) * per_shard)
        kills += _kill(proc)
        store = ActivationStore.open_existing(location)
        finished = store.finished_shards(verify=False)
        # a shard with chunks on disk but no marker: the kill landed inside a shard
        inside += any(not done and (killed / store.chunk_key("blocks.0.hook_resid_post", k)).exists()
                      for k, done in enumerate(finished))
    assert kills == attempts and inside >= 2, (attempts, kills, inside)
    proc = _start_child(killed, as_url)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.endswith(b"done\n")
    store = ActivationStore.open_existing(location)
    assert store.finished_shards(verify=True) == [True] * store.n_shards
    # byte-identical to the uninterrupted store, file for file; the killed writers' debris is gone
    assert tree(killed) == tree(reference)
    assert not list(tmp_path.glob(".killed*"))
