"""`load_model`: from a Hub name, a local folder or a bare .safetensors file to a `GPT2`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import PRESETS, GPT2Config
from .errors import ConfigError, ModelNotFoundError
from .hub import HubRepo, looks_like_path, repo_id
from .model import GPT2
from .weights import load_params

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_DTYPES = {"float32": np.float32, "float64": np.float64}


def model_dtype(dtype) -> np.dtype:
    """The compute dtype a model may have: float32 or float64 (a name or a NumPy dtype);
    ValueError for anything else."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(_DTYPES[name])


def _as_config(config) -> GPT2Config | None:
    if config is None or isinstance(config, GPT2Config):
        return config
    if isinstance(config, dict):
        return GPT2Config.from_hf_dict(config)
    if isinstance(config, (str, Path)):
        return GPT2Config.from_json_file(config)
    raise ConfigError(f"config must be a GPT2Config, a config.json dict or a path to one, got {type(config).__name__}")


def resolve_model_files(source: str | Path, revision: str | None = None, cache_dir: str | None = None) -> tuple[Path, Path | None]:
    """(weights file, config file or None) for a Hub name, a folder or a .safetensors file."""
    source_str = str(source)
    if isinstance(source, Path) or looks_like_path(source_str):
        path = Path(source_str).expanduser()
        if path.is_dir():
            weights = path / WEIGHTS_FILE
            if not weights.is_file():
                raise ModelNotFoundError(
                    f"{path} has no {WEIGHTS_FILE}; pass the folder that save_pretrained wrote, or the .safetensors file itself"
                )
            config = path / CONFIG_FILE
            return weights, config if config.is_file() else None
        if path.is_file():
            sibling = path.parent / CONFIG_FILE
            # A bare file is GPT-2 small unless told otherwise; a config.json beside a
            # model.safetensors is that file's own.
            return path, sibling if path.name == WEIGHTS_FILE and sibling.is_file() else None
        raise ModelNotFoundError(f"no such file or folder: {path}")
    hub = HubRepo(repo_id(source_str), revision, cache_dir)
    return hub.file(WEIGHTS_FILE), hub.file(CONFIG_FILE)


def load_model(
    source: str | Path = "gpt2", dtype: str = "float32", config=None, revision: str | None = None,
    cache_dir: str | None = None, check_finite: bool = True,
) -> GPT2:
    """Load GPT-2 weights into a NumPy model.

    source: a Hub name ("gpt2", "gpt2-medium", ..., or any "org/name" GPT-2 repository), a local
        folder with model.safetensors (+ config.json), or a .safetensors file.
    dtype: "float32" (default) or "float64" (for exact comparisons). fp16/bf16 files are upcast.
    config: overrides the config: a GPT2Config, a config.json dict or path. Without one, a folder's
        config.json is used, and a bare .safetensors file is taken to be GPT-2 small.
    revision, cache_dir: passed to the Hub client (cache_dir defaults to $HF_HOME's hub cache).
    check_finite: reject weights holding NaN or inf (reads every weight once).
    """
    dt = model_dtype(dtype)
    weights, config_file = resolve_model_files(source, revision, cache_dir)
    cfg = _as_config(config)
    if cfg is None:
        cfg = GPT2Config.from_json_file(config_file) if config_file else PRESETS["gpt2"]
    params = load_params(weights, cfg, dt, check_finite=check_finite)
    return GPT2(params, cfg, source=str(source))
