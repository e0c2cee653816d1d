"""The command line's first-hour experience (issue 11) and the pipeline's executor interface:
--help says each default once, --list-sites works offline from the config alone, an unknown
site points to --list-sites, --no-plots still writes the report, the report reads its settings,
`geostudy` / `python -m geostudy` run the same main, and any object with submit() runs the tasks."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import Future
from pathlib import Path

import pytest

import geostudy
import gpt2np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_prerun.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
TWO_PROMPTS = [
    {"id": "first", "genre": "prose", "topic": "nature", "text": "The river ran quietly under the old stone bridge at dawn, "
     "carrying leaves and light towards the sea while the town slept."},
    {"id": "second", "genre": "list", "topic": "music", "text": "violin, cello, drum, flute, harp, trumpet, piano, oboe, "
     "guitar, bass, horn, clarinet, tuba, lute"},
]


def _cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "two.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in TWO_PROMPTS), encoding="utf-8")
    return path


def _flag_helps(text: str) -> dict[str, str]:
    """{flag: its help text, on one line} from argparse's --help output."""
    helps, flag = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)", line)
        if m:
            flag = m.group(1)
            helps[flag] = line
        elif flag and line.startswith("    "):
            helps[flag] += " " + line.strip()
        else:
            flag = None
    return helps


def test_help_says_each_default_once():
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    helps = _flag_helps(done.stdout)
    assert {"--model", "--sites", "--list-sites", "--focus", "--lens-positions", "--no-plots"} <= set(helps)
    for flag, text in helps.items():
        text = re.sub(r"\s+", " ", text)
        assert text.count("(default") <= 1 and "default: None" not in text, (flag, text)
    assert "default: gpt2" in helps["--model"] and "default: 32" in re.sub(r"\s+", " ", helps["--lens-positions"])
    assert "report" in helps["--no-plots"]  # says what --no-plots leaves in


def _sites_listed(stdout: str) -> list[tuple[str, str]]:
    return [(line[0], line[2:].split()[0]) for line in stdout.splitlines() if line[:2] in ("* ", "  ") and line.strip()]


def _offline_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in ENV.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    return {**env, "HF_HOME": str(tmp_path / "empty_hf_home"), "HF_HUB_OFFLINE": "1"}


def test_list_sites_reads_only_the_config(tiny_model_dir, tmp_path):
    reference = _cli("--model", tiny_model_dir, "--list-sites")
    assert reference.returncode == 0, reference.stderr
    expected = _sites_listed(reference.stdout)
    cfg = gpt2np.GPT2Config.from_json_file(tiny_model_dir / "config.json")
    assert [n for _, n in expected] == [n for n in gpt2np.hook_names(cfg) if n in set(geostudy.sites.all_site_names(cfg))]
    assert {n for star, n in expected if star == "*"} == set(geostudy.default_site_names(cfg))
    # a folder whose weights cannot be read: the config is enough
    folder = tmp_path / "config_only"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    done = _cli("--model", folder, "--list-sites", env=_offline_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert _sites_listed(done.stdout) == expected
    # a bare .safetensors file (no config.json beside it): its header's shapes
    bare = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_model_dir / "model.safetensors", bare)
    done = _cli("--model", bare, "--list-sites", env=_offline_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert _sites_listed(done.stdout) == expected


def test_list_sites_of_a_hub_name_works_offline_without_a_cache(tmp_path):
    done = _cli("--model", "gpt2-medium", "--list-sites", env=_offline_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = gpt2np.PRESETS["gpt2-medium"]
    listed = _sites_listed(done.stdout)
    assert [n for _, n in listed] == geostudy.sites.all_site_names(cfg)
    assert ("*", f"blocks.{cfg.n_layer - 1}.hook_resid_post") in listed


def test_an_unknown_site_points_to_list_sites(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    done = _cli("--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--corpus", corpus,
                "--sites", "blocks.1.hook_resid_psot", "--out", tmp_path / "o")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown site" in lines[0] and "--list-sites" in lines[0], done.stderr
    done = _cli("--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--corpus", corpus,
                "--sites", "blocks.1.attn.hook_pattern", "--out", tmp_path / "o")
    assert done.returncode == 2 and "not a token cloud" in done.stderr and "--list-sites" in done.stderr


def test_no_plots_still_writes_the_report_without_figures(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    out = tmp_path / "run"
    done = _cli("--model", tiny_model_dir, "--tokenizer", gpt2_vocab_dir, "--corpus", corpus, "--out", out,
                "--sites", "blocks.0.hook_resid_pre,blocks.*.hook_resid_post", "--no-plots", "--quiet")
    assert done.returncode == 0, done.stderr
    assert not (out / "plots").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<img" not in page and "<table>" in page and "blocks.1.hook_resid_post" in page
    assert "report.html" in done.stdout


def test_the_report_reads_the_estimator_settings(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    settings = geostudy.EstimatorSettings(gride_range_max=8, pca_levels=(0.5, 0.8), pca_solver="svd")
    out = geostudy.run_study(tiny_model_dir, corpus, tmp_path / "run", tokenizer=gpt2_vocab_dir, progress=False,
                             sites="blocks.*.hook_resid_post", plots=False, settings=settings)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "GRIDE n1=4" in page and "GRIDE n1=8" not in page  # n2 = 8 is the largest order computed
    assert "PCA 80%" in page and "PCA 90%" not in page
    assert "50 and 80% of the variance" in page and "75, 80, 85, 90 and 95%" not in page
    assert 'solver="svd"' in page and 'solver="covariance"' not in page
    rows = geostudy.tables.read_csv(out / "tables" / "results.csv")
    assert {r["param"] for r in rows if r["prompt_id"] == "pooled" and r["quantity"] == "id_gride"} >= {"4"}


def test_the_console_script_and_python_m_run_the_same_main(tmp_path):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["geostudy"]
    module, _, function = declared.partition(":")
    main = getattr(__import__(module, fromlist=[function]), function)
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    done = subprocess.run([sys.executable, "-m", "geostudy", "--help"], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stdout == _cli("--help").stdout.replace("run_prerun.py", "geostudy")
    for script in sorted((ROOT / "scripts").glob("*.py")):  # no script touches sys.path
        tree = ast.parse(script.read_text())
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "path"
                and isinstance(n.value, ast.Name) and n.value.id == "sys"]
        assert uses == [], script.name


class _RecordingExecutor:
    """The smallest executor: runs each task at once in this thread, and names it."""

    def __init__(self):
        self.tasks: list[str] = []

    def submit(self, fn, /, *args):
        self.tasks.append(fn.__name__)
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # noqa: BLE001 - handed over through the future
            future.set_exception(err)
        return future


def test_any_executor_runs_the_pipeline_with_the_same_results(tiny_model_dir, gpt2_vocab_dir, corpus, tmp_path):
    options = dict(tokenizer=gpt2_vocab_dir, progress=False, sites="blocks.*.hook_resid_post", plots=False, report=False)
    threads = geostudy.run_study(tiny_model_dir, corpus, tmp_path / "threads", **options, workers=2)
    plan = geostudy.prepare_study(tiny_model_dir, corpus, tmp_path / "recorded", **options)
    executor = _RecordingExecutor()
    out = geostudy.execute(plan, executor=executor)
    n_prompts, n_sites = len(TWO_PROMPTS), len(plan.sites)
    assert executor.tasks.count("forward") == n_prompts and executor.tasks.count("lens") == n_prompts
    assert executor.tasks.count("analyse_site") == n_prompts * n_sites
    assert executor.tasks.count("analyse_pooled_site") == n_sites
    for table in sorted((threads / "tables").iterdir()):
        assert (out / "tables" / table.name).read_bytes() == table.read_bytes(), table.name
