"""geostudy.cluster on a LocalCluster of 2 worker processes: the distributed neighbour search of
a cloud in a Zarr store equals idest's, array for array, also when a worker process is killed
during the search; the executor retries failed tasks and reports every finished one; connect
refuses, in one line and before any work, what it cannot use."""

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import idest  # noqa: E402
from geostudy.cluster import (  # noqa: E402
    DaskExecutor,
    ZarrCloud,
    check_packages,
    connect,
    distributed_knn,
    distributed_neighborhoods,
    versions,
)
from geostudy.cluster.connection import QUIET_MONITORING  # noqa: E402
from geostudy.errors import StudyError  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with connect("local:2") as c:
        yield c


def gpt2_like(n, d, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    X = np.tanh(z @ rng.standard_normal((5, 24))) @ rng.standard_normal((24, d)) + 500.0
    return X.astype(np.float32)


def with_copies(X):
    """Exact repeats and near-duplicates (a relative change of 3 eps), as the study's clouds have."""
    X = X.copy()
    X[-40:-20] = X[100:120]
    X[-20:] = X[200:220] * np.float32(1 + 3 * np.finfo(np.float32).eps)
    return X


def store(tmp_path, X, name="blocks.3.hook_resid_post"):
    group = zarr.open_group(str(tmp_path / "activations.zarr"), mode="w")
    arr = group.create_array(name, shape=X.shape, chunks=(1000, X.shape[1]), dtype=X.dtype)
    arr[...] = X
    return ZarrCloud(str(tmp_path / "activations.zarr"), name)


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def check_neighborhoods(nb, ref):
    for name in ("distances", "indices", "points", "point_index"):
        assert same(getattr(nb, name), getattr(ref, name)), name
    assert nb == ref


def test_connect_prints_the_dashboard_and_counts_the_workers(cluster, capsys):
    assert cluster.n_workers == 2 and cluster.local is not None
    assert cluster.dashboard.startswith("http")
    pids = cluster.client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # worker processes
    assert set(cluster.client.nthreads().values()) == {1}


def test_distributed_neighborhoods_equal_idest(cluster, tmp_path):
    X = with_copies(gpt2_like(3000, 48))
    source = store(tmp_path, X)
    ref = idest.neighborhoods(X, 16)
    assert ref.n_duplicates == 20 and ref.n_near_duplicates == 20
    done = []
    nb = distributed_neighborhoods(cluster.client, source, 16, block_rows=700, on_done=lambda: done.append(1))
    check_neighborhoods(nb, ref)
    # every search: 5 groups -> 15 pair tasks + 5 group tasks (one search per round of drops)
    assert len(done) >= 2 * 20 and len(done) % 20 == 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_distributed_knn_equals_idest_knn(cluster, tmp_path, metric):
    X = gpt2_like(3001, 40, seed=3)
    d, i = distributed_knn(cluster.client, store(tmp_path, X), 9, metric=metric)  # the default blocks
    d_ref, i_ref = idest.knn(X, 9, metric=metric)
    assert same(d, d_ref) and same(i, i_ref)


def test_a_worker_killed_during_the_search_changes_nothing(cluster, tmp_path):
    X = with_copies(gpt2_like(9000, 192, seed=5))
    source = store(tmp_path, X)
    ref = idest.neighborhoods(X, 10)
    client = cluster.client
    with ThreadPoolExecutor(1) as pool:
        search = pool.submit(distributed_neighborhoods, client, source, 10, block_rows=1500)
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and not search.done():
            busy = [w for w, keys in client.processing().items() if any("pair_task" in str(key) for key in keys)]
            if busy:
                victim = busy[0]
            else:
                time.sleep(0.002)
        assert victim is not None, "no pair task was seen running"
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        assert not search.done()  # killed while the search was running
        nb = search.result(timeout=300)
    check_neighborhoods(nb, ref)
    assert victim not in client.nthreads() or pid not in client.run(os.getpid).values()


def monitoring_settings():
    import dask

    return {key: dask.config.get(key) for key in QUIET_MONITORING}


def test_local_workers_monitor_quietly_also_when_restarted(cluster):
    client = cluster.client
    assert all(settings == QUIET_MONITORING for settings in client.run(monitoring_settings).values())
    victim, pid = next(iter(client.run(os.getpid).items()))
    os.kill(pid, signal.SIGKILL)  # its nanny starts a new worker process
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (victim in client.nthreads() or len(client.nthreads()) < 2):
        time.sleep(0.1)
    pids = client.run(os.getpid)
    assert len(pids) == 2 and pid not in pids.values()
    assert all(settings == QUIET_MONITORING for settings in client.run(monitoring_settings).values())
    import dask

    assert dask.config.get("distributed.worker.profile.enabled") is True  # this process's config is left as it was


def flaky(counter_path, value):
    """Fails the first two times it runs (a file counts the attempts across processes)."""
    with open(counter_path, "a") as f:
        f.write("x")
    with open(counter_path) as f:
        attempts = len(f.read())
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return value * 2


def test_the_executor_retries_and_reports_each_task(cluster, tmp_path):
    done = []
    lock = threading.Lock()

    def on_done():
        with lock:
            done.append(1)

    executor = DaskExecutor(cluster.client, retries=3, on_done=on_done)
    futures = [executor.submit(flaky, str(tmp_path / f"n{i}"), i) for i in range(3)]
    assert [f.result() for f in futures] == [0, 2, 4]
    for i in range(3):
        assert (tmp_path / f"n{i}").read_text() == "xxx"  # run three times: two failures retried
    with pytest.raises(RuntimeError, match="attempt 1 fails"):
        DaskExecutor(cluster.client, retries=0).submit(flaky, str(tmp_path / "once"), 1).result()
    deadline = time.monotonic() + 10
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 3


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def test_results_are_collected_as_the_cluster_finishes_them(cluster):
    """The progress bar follows the cluster's completions: the task submitted first but finished
    last is reported last; the results still come back in submission order."""
    from geostudy.pipeline.executor import collect_as_done

    executor = DaskExecutor(cluster.client)
    futures = [executor.submit(sleep_then, 1.5, "slow"), executor.submit(sleep_then, 0.0, "fast")]
    reported = []
    assert collect_as_done(futures, on_done=lambda i, r: reported.append((i, r))) == ["slow", "fast"]
    assert reported == [(1, "fast"), (0, "slow")]


def test_a_store_rewritten_at_the_same_path_is_read_again(cluster, tmp_path):
    """The workers keep the last cloud they read; a later search of another cloud written at the
    same path (a second run on a long-lived cluster) must not be served from that cache."""
    first, second = gpt2_like(600, 16, seed=1), gpt2_like(600, 16, seed=2)
    assert not np.array_equal(first, second)
    check_neighborhoods(distributed_neighborhoods(cluster.client, store(tmp_path, first), 8, block_rows=200),
                        idest.neighborhoods(first, 8))
    check_neighborhoods(distributed_neighborhoods(cluster.client, store(tmp_path, second), 8, block_rows=200),
                        idest.neighborhoods(second, 8))


def test_workers_with_other_packages_are_refused(cluster):
    mine = versions.package_versions()
    assert set(mine) >= {"gpt2np", "idest", "geostudy", "numpy"}
    check_packages(cluster.client)  # the same packages: no error
    with pytest.raises(StudyError, match=r"^Dask worker tcp://\S+ has numpy .*, this process 0\.0\.1; install the same") as err:
        check_packages(cluster.client, expected={**mine, "numpy": "0.0.1"})
    assert "\n" not in str(err.value)


def test_an_environment_address_is_used_and_left_running(cluster, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
    other = connect(None)
    assert other.local is None and other.address == cluster.address
    other.close()
    assert cluster.client.submit(sum, [1, 2], pure=False).result() == 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_within_seconds():
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(StudyError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:\d+ within 2 s") as err:
        connect(address, timeout=2)
    assert time.monotonic() - start < 15 and "\n" not in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ("local:0", "must be 1 to 1024"),
    ("local:two", "is not understood"),
    ("host:8786", "is not understood"),
    (None, "no cluster given"),
])
def test_bad_specs(spec, message, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(StudyError, match=message):
        connect(spec)


def test_without_dask_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(StudyError, match=r'pip install "gpt2-geometry\[cluster\]"'):
        connect("local:1")


def test_a_missing_array_is_a_study_error(tmp_path):
    source = store(tmp_path, gpt2_like(50, 4))
    with pytest.raises(StudyError, match="cannot open array 'nope'"):
        ZarrCloud(source.store, "nope").load()
