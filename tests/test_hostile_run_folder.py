"""The study's run folder under hostile conditions, one test per hostile input (issue 10):

- a corpus name that climbs out of --runs-dir, or is too long for a file name;
- a second run on a folder another run holds, and the lock of a run that was killed;
- finished files damaged or deleted before a resume (activations, results, markers, pooled);
- a full disk, in this process, in the forked table writer, and on a real tiny tmpfs;
- a run killed between creating its folder and writing its manifest;
- the same activations saved twice (must be the same bytes).

Each run here is a small study (tiny random GPT-2, three short prompts, three sites) compared
byte for byte with one undamaged reference run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save

import geostudy
import idest
from geostudy import StudyError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_prerun.py"
# the scripts import geostudy from the repository (they do not edit sys.path)
SCRIPT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
SITES = "blocks.0.hook_resid_pre,blocks.1.mlp.hook_post,blocks.1.hook_resid_post"
POOLED_SITE = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def corpus_prompts() -> list[dict]:
    shipped = {p.id: p for p in geostudy.load_corpus()}
    chosen = [shipped["nature-prose_50"], shipped["music-word_list"]]
    prompts = [dict(p.__dict__) for p in chosen]
    prompts.append({"id": "short-one", "genre": "short", "topic": "misc", "text": "A short line of eleven words for the smallest test."})
    return prompts


@pytest.fixture(scope="module")
def corpus(corpus_prompts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "three.json"
    path.write_text(json.dumps({"name": "three", "prompts": corpus_prompts}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def options(gpt2_vocab_dir) -> dict:
    return dict(tokenizer=gpt2_vocab_dir, sites=SITES, lens_positions=8, progress=False, plots=False,
                report=False, workers=2)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, corpus, options, tmp_path_factory) -> Path:
    return geostudy.run_study(tiny_model_dir, corpus, tmp_path_factory.mktemp("reference") / "run", **options)


def _cli(tiny_model_dir, gpt2_vocab_dir, corpus, out) -> list[str]:
    return ["--model", str(tiny_model_dir), "--tokenizer", str(gpt2_vocab_dir), "--corpus", str(corpus),
            "--out", str(out), "--sites", SITES, "--lens-positions", "8", "--workers", "2", "--no-plots", "--quiet"]


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").iterdir())}


def _activations(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "activations").glob("*.safetensors"))}


def _assert_same_results(out: Path, reference: Path) -> None:
    assert _tables(out) == _tables(reference)
    assert _activations(out) == _activations(reference)
    assert not list(out.rglob(".*.tmp-*"))


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    return out


def _flip_bytes(path: Path, at_fraction: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at_fraction)
    data[i:i + 4] = bytes(b ^ 0x5A for b in data[i:i + 4])
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------
# 2. The default run folder stays inside --runs-dir
# --------------------------------------------------------------------------------------------

def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_a_corpus_named_with_dot_dot_slashes_writes_nothing_outside_its_run_folder(
        tiny_model_dir, corpus_prompts, options, tmp_path):
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps({"name": "../../../x", "prompts": corpus_prompts}), encoding="utf-8")
    runs_dir = tmp_path / "deep" / "er" / "runs"
    run = geostudy.run_study(tiny_model_dir, hostile, None, runs_dir=runs_dir, **options)
    assert run.parent == runs_dir and "/" not in run.name and ".." not in run.name
    assert (run / "tables" / "results.csv").is_file()
    outside = {p for p in _files_under(tmp_path) - {hostile} if run not in p.parents}
    assert not outside, sorted(map(str, outside))


@pytest.mark.parametrize("name", ["/etc/cron.d/x", "a" * 300, "tab\tnew\nline\x00nul", "é" * 200])
def test_a_hostile_corpus_name_gives_one_safe_folder_name(name, tiny_model_dir, corpus_prompts, options, tmp_path):
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps({"name": name, "prompts": corpus_prompts}), encoding="utf-8")
    runs_dir = tmp_path / "runs"
    plan = geostudy.prepare_study(tiny_model_dir, hostile, None, runs_dir=runs_dir, **options)
    assert plan.out.parent == runs_dir and plan.out.is_dir()
    assert len(os.fsencode(plan.out.name)) <= 100
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in plan.out.name)


# --------------------------------------------------------------------------------------------
# 3. One run at a time in a run folder
# --------------------------------------------------------------------------------------------

_HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from geostudy.rundir.lock import RunFolderLock
RunFolderLock(sys.argv[2]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


def _hold(folder: Path) -> subprocess.Popen:
    """A process that holds the run folder's lock until its stdin closes (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ROOT), str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.communicate()
    return proc


def test_a_second_run_on_a_held_folder_exits_2_at_once_naming_the_holder(
        reference, tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "tables")
    theirs = out / "prompts" / f".short-one.tmp-{os.getpid() + 1}.json"  # the holder's file being written
    theirs.write_text("{")
    holder = _hold(out)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(SCRIPT), *_cli(tiny_model_dir, gpt2_vocab_dir, corpus, out)],
                              capture_output=True, text=True, timeout=120, env=SCRIPT_ENV)
        elapsed = time.perf_counter() - t0
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the run folder") and "Traceback" not in proc.stderr
    assert f"process {holder.pid}" in lines[0]
    assert theirs.is_file(), "only the lock holder may sweep temporaries"
    assert not (out / "tables").exists(), "the refused run did work"
    assert elapsed < 60


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(reference, tiny_model_dir, corpus, options, tmp_path):
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "tables")
    holder = _hold(out)
    with pytest.raises(StudyError, match=f"in use by process {holder.pid}"):
        geostudy.run_study(tiny_model_dir, corpus, out, **options)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    _assert_same_results(out, reference)


def test_two_runs_started_on_one_folder_one_works_the_other_is_refused(
        reference, tiny_model_dir, gpt2_vocab_dir, corpus, options, tmp_path):
    out = tmp_path / "shared"
    second = geostudy.prepare_study(tiny_model_dir, corpus, out, **options)  # ready before the first starts
    first = subprocess.Popen([sys.executable, str(SCRIPT), *_cli(tiny_model_dir, gpt2_vocab_dir, corpus, out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SCRIPT_ENV)
    deadline = time.time() + 120
    while not (out / "manifest.json").is_file():  # the first file a run writes, holding the lock
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline
        time.sleep(0.005)
    with pytest.raises(StudyError, match=f"in use by process {first.pid}"):
        geostudy.execute(second)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    _assert_same_results(out, reference)


def test_a_file_system_that_cannot_lock_runs_unlocked_with_a_warning(
        reference, tiny_model_dir, corpus, options, tmp_path, monkeypatch, capsys):
    import geostudy.rundir.lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(geostudy.rundir.lock.fcntl, "flock", no_locks)
    out = tmp_path / "nfs"
    capsys.readouterr()
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    warnings = _warnings(capsys.readouterr().err)
    assert len(warnings) == 1 and "cannot lock files" in warnings[0]
    _assert_same_results(out, reference)


# --------------------------------------------------------------------------------------------
# 4. Damaged files are found on resume and redone
# --------------------------------------------------------------------------------------------

def _damage(out: Path, how: str) -> str:
    """Damage a finished run; returns the file the warning must name."""
    act = out / "activations" / "music-word_list.safetensors"
    if how == "activation file truncated":
        with open(act, "r+b") as fh:
            fh.truncate(act.stat().st_size // 2)
        return "activations/music-word_list.safetensors"
    if how == "activation file deleted":
        act.unlink()
        return "activations/music-word_list.safetensors"
    if how == "activation bytes flipped, pooled deleted":
        _flip_bytes(act)
        shutil.rmtree(out / "pooled")
        return "activations/music-word_list.safetensors"
    if how == "results file bytes flipped":
        _flip_bytes(out / "prompts" / "nature-prose_50.json")
        return "prompts/nature-prose_50.json"
    if how == "marker garbled":
        (out / "prompts" / "short-one.done").write_text("{not json")
        return "short-one.done"
    if how == "pooled result bytes flipped":
        _flip_bytes(out / "pooled" / f"{POOLED_SITE}.json", 0.5)
        return f"pooled/{POOLED_SITE}.json"
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "activation file truncated", "activation file deleted", "activation bytes flipped, pooled deleted",
    "results file bytes flipped", "marker garbled", "pooled result bytes flipped",
])
def test_a_damaged_finished_file_is_redone_with_one_warning(how, reference, tiny_model_dir, corpus, options, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    named = _damage(out, how)
    capsys.readouterr()
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    warnings = _warnings(capsys.readouterr().err)
    assert len(warnings) == 1 and named in warnings[0], warnings
    _assert_same_results(out, reference)
    man = json.loads((out / "manifest.json").read_text())
    assert man["sessions"][-1]["prompts_already_done"] == (3 if "pooled" in how and "deleted" not in how else 2)


def test_pooled_results_are_redone_when_their_inputs_changed(reference, tiny_model_dir, corpus, options, tmp_path, capsys):
    """A prompt redone with other activations (as another version of the code would give) makes
    the pooled results of every site stale: they are recomputed from the current files."""
    from geostudy.rundir.integrity import checksum_file, write_marker
    from geostudy.store.activations import load_cloud, save_activations

    out = _copy(reference, tmp_path)
    plan = geostudy.prepare_study(tiny_model_dir, corpus, out, **options)
    p = plan.corpus.by_id("nature-prose_50")
    with safe_open(str(plan.act_path(p.id)), framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "token_ids"}
        ids = f.get_tensor("token_ids")
    noise = np.random.default_rng(7).standard_normal(tensors[POOLED_SITE].shape).astype(np.float32)
    tensors[POOLED_SITE] = tensors[POOLED_SITE] + noise
    save_activations(plan.act_path(p.id), tensors, ids, {"prompt_id": p.id})
    write_marker(plan.marker_path(p.id), out, {f: checksum_file(f) for f in (plan.act_path(p.id), plan.result_path(p.id))},
                 prompt_id=p.id, n_tokens=int(ids.size))
    capsys.readouterr()
    geostudy.execute(plan)
    warnings = _warnings(capsys.readouterr().err)
    assert len(warnings) == 3 and all("computed from other activation files" in w for w in warnings), warnings
    X = np.concatenate([load_cloud(plan.act_path(q.id), POOLED_SITE, k) for q, k in zip(plan.corpus, plan.kept)])
    rows = [r for r in geostudy.tables.read_csv(out / "tables" / "results.csv")
            if (r["prompt_id"], r["site"], r["quantity"]) == ("pooled", POOLED_SITE, "id_twonn")]
    assert len(rows) == 1 and float(rows[0]["value"]) == idest.twonn(X).dimension
    assert _tables(out)["results.csv"] != _tables(reference)["results.csv"]


def test_reading_a_damaged_activation_file_names_it(reference, tmp_path):
    from geostudy.store.activations import load_cloud

    path = tmp_path / "damaged.safetensors"
    data = (reference / "activations" / "music-word_list.safetensors").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StudyError, match=f"{path}.*run the same command again"):
        load_cloud(path, POOLED_SITE)


# --------------------------------------------------------------------------------------------
# 6c. A full disk: exit 2, one line, how much space is needed; the same command resumes
# --------------------------------------------------------------------------------------------

def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _fail_on_call(real, n: int):
    """`real`, except that its n-th call raises ENOSPC (as a full disk would)."""
    calls = []

    def writer(path, *args, **kw):
        calls.append(path)
        if len(calls) == n:
            raise _enospc(path)
        return real(path, *args, **kw)

    return writer


def test_a_full_disk_while_saving_activations_stops_with_one_line_then_resumes(
        reference, tiny_model_dir, corpus, options, tmp_path, monkeypatch):
    import geostudy.store.activations

    out = tmp_path / "full"
    monkeypatch.setattr(geostudy.store.activations, "write_safetensors", _fail_on_call(geostudy.store.activations.write_safetensors, 2))
    with pytest.raises(StudyError) as err:
        geostudy.run_study(tiny_model_dir, corpus, out, **options)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"no space left on the disk of the run folder {out}")
    assert "activations/" in message and "the rest of this run needs about" in message
    assert "Nothing finished is lost" in message and "run the same command again to resume" in message
    assert not list(out.rglob(".*.tmp-*"))
    monkeypatch.undo()
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    _assert_same_results(out, reference)


_FULL_DISK_DRIVER = """
import errno, os, sys
sys.path.insert(0, sys.argv[1])
sys.argv = [sys.argv[2]] + sys.argv[3:]
import geostudy.store.activations
def full(path, *args, **kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
geostudy.store.activations.write_safetensors = full
sys.path.insert(0, os.path.dirname(sys.argv[0]))
import run_prerun
sys.exit(run_prerun.main())
"""


def test_the_script_on_a_full_disk_exits_2_with_one_line(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    out = tmp_path / "full"
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK_DRIVER, str(ROOT), str(SCRIPT),
                           *_cli(tiny_model_dir, gpt2_vocab_dir, corpus, out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the disk"), proc.stderr
    assert "needs about" in lines[0] and "resume" in lines[0]


def test_a_full_disk_in_the_forked_table_writer_gives_one_line_and_no_traceback(
        reference, tiny_model_dir, corpus, options, tmp_path, monkeypatch, capfd):
    import geostudy.rundir.fsio

    real = geostudy.rundir.fsio.atomic_write_with

    def tables_full(path, write):
        if Path(path).parent.name == "tables":
            return real(path, lambda tmp: (_ for _ in ()).throw(_enospc(tmp)))
        return real(path, write)

    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "tables")
    monkeypatch.setattr(geostudy.rundir.fsio, "atomic_write_with", tables_full)
    capfd.readouterr()
    with pytest.raises(StudyError, match=r"no space left on the disk .*\(writing .*tables/.*resume") as err:
        geostudy.run_study(tiny_model_dir, corpus, out, **options)
    assert "\n" not in str(err.value)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    monkeypatch.undo()
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    _assert_same_results(out, reference)


def test_too_little_free_space_is_refused_before_any_work(tiny_model_dir, corpus, options, tmp_path, monkeypatch):
    import geostudy.pipeline.resume
    import geostudy.rundir.diskspace

    monkeypatch.setattr(geostudy.pipeline.resume, "free_bytes", lambda folder: 50_000)
    monkeypatch.setattr(geostudy.rundir.diskspace, "free_bytes", lambda folder: 50_000)
    out = tmp_path / "small"
    with pytest.raises(StudyError, match=r"^not enough free space on the disk .* needs about .* and 48\.8 KiB is free"):
        geostudy.run_study(tiny_model_dir, corpus, out, **options)
    assert not list((out / "activations").iterdir())


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real tmpfs of 1 MiB (only where this process may mount one: root in a container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the monkeypatched full-disk tests cover the logic")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_exits_2_with_one_line_and_resumes_once_there_is_room(
        reference, tiny_model_dir, gpt2_vocab_dir, corpus, options, tiny_tmpfs):
    out = tiny_tmpfs / "run"
    plan = geostudy.prepare_study(tiny_model_dir, corpus, out, **options)
    # room for the activation files (so that the early check lets the run start), not for the rest
    room = geostudy.pipeline.resume.space_needed(plan).activations + 2**16
    subprocess.run(["mount", "-o", f"remount,size={room}", str(tiny_tmpfs)], check=True)
    args = [sys.executable, str(SCRIPT), *_cli(tiny_model_dir, gpt2_vocab_dir, corpus, out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=SCRIPT_ENV)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the disk"), proc.stderr
    assert not list(out.rglob(".*.tmp-*"))
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_tmpfs)], check=True)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=SCRIPT_ENV)
    assert proc.returncode == 0, proc.stderr
    _assert_same_results(out, reference)


# --------------------------------------------------------------------------------------------
# 7. A run killed between creating its folder and writing its manifest
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("left", ["lock file", "write probe", "manifest being written", "empty sub-folders"])
def test_a_folder_left_before_the_manifest_is_resumed(left, reference, tiny_model_dir, corpus, options, tmp_path):
    out = tmp_path / "early"
    out.mkdir()
    if left == "lock file":
        (out / ".lock").write_text("")
    elif left == "write probe":
        (out / ".write-test.tmp-4242").write_bytes(b"ok")
    elif left == "manifest being written":
        (out / ".lock").write_text("")
        (out / ".manifest.tmp-4242.json").write_text('{"geostudy_form')
    elif left == "empty sub-folders":  # what older versions made before the manifest
        for sub in ("activations", "prompts", "pooled"):
            (out / sub).mkdir()
        (out / "prompts" / ".short-one.tmp-4242.json").write_text("{")
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    _assert_same_results(out, reference)


def test_a_run_killed_before_its_manifest_resumes(reference, tiny_model_dir, corpus, options, tmp_path, monkeypatch):
    import geostudy.pipeline.study

    def killed(*args, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "killed"
    monkeypatch.setattr(geostudy.pipeline.study, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        geostudy.run_study(tiny_model_dir, corpus, out, **options)
    monkeypatch.undo()
    geostudy.run_study(tiny_model_dir, corpus, out, **options)
    _assert_same_results(out, reference)


# --------------------------------------------------------------------------------------------
# 14a. Activation files are byte-reproducible
# --------------------------------------------------------------------------------------------

def test_the_same_activations_saved_twice_are_the_same_bytes(tmp_path):
    from geostudy.store.activations import save_activations

    rng = np.random.default_rng(3)
    tensors = {"blocks.1.hook_resid_post": rng.standard_normal((9, 64)).astype(np.float32),
               "blocks.0.hook_resid_pre": rng.standard_normal((9, 64)).astype(np.float32),
               "blocks.1.attn.hook_pattern": rng.random((4, 9, 9)).astype(np.float32)}
    ids = np.arange(9) * 1000
    meta = {"prompt_id": "p", "format": "geostudy-activations-1"}
    saved = set()
    for k in range(20):
        path = tmp_path / f"a{k}.safetensors"
        save_activations(path, tensors, ids, meta)
        saved.add(path.read_bytes())
    assert len(saved) == 1
    # what the safetensors library reads back
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == meta
        assert set(f.keys()) == set(tensors) | {"token_ids"}
        for name, a in tensors.items():
            np.testing.assert_array_equal(f.get_tensor(name), a)
        np.testing.assert_array_equal(f.get_tensor("token_ids"), ids)
    # and, with one metadata key (which the library cannot reorder), exactly the library's bytes
    one = tmp_path / "one.safetensors"
    save_activations(one, tensors, ids, {"prompt_id": "p"})
    assert one.read_bytes() == save({**tensors, "token_ids": ids.astype(np.int64)}, metadata={"prompt_id": "p"})


def test_a_whole_run_twice_gives_identical_activation_files(tiny_model_dir, options, tmp_path):
    # twelve small prompts: twelve files that must each come out the same (the library's
    # metadata order was a coin toss per file)
    lines = [f"Line {k} of a small test corpus, about {k} things and a few more words." for k in range(12)]
    corpus = tmp_path / "twelve.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{k:02d}", "text": t}) + "\n" for k, t in enumerate(lines)))
    first = geostudy.run_study(tiny_model_dir, corpus, tmp_path / "first", **{**options, "sites": POOLED_SITE})
    again = geostudy.run_study(tiny_model_dir, corpus, tmp_path / "again", **{**options, "sites": POOLED_SITE})
    assert len(_activations(first)) == 12
    assert _activations(again) == _activations(first)
    assert _tables(again) == _tables(first)
