"""Turn the tensors of a GPT-2 safetensors file into validated `GPT2Params`.

Two key layouts exist: the official checkpoints (`h.0.attn.c_attn.weight`, `wte.weight`, ...,
with `h.N.attn.bias` causal-mask buffers and no `lm_head`) and `save_pretrained` output
(`transformer.` prefix, maybe `lm_head.weight`). Both are accepted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .config import GPT2Config
from .errors import ConfigError, WeightsError
from .params import AttentionParams, BlockParams, Conv1DParams, GPT2Params, LayerNormParams, MLPParams
from .safetensors_mmap import open_safetensors, to_float

# Buffers some checkpoints carry that are not parameters (the causal mask is rebuilt at run time).
_IGNORED = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


def expected_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of a GPT-2 with this config, in the official key layout."""
    d, d_mlp = cfg.d_model, cfg.d_mlp
    shapes = {"wte.weight": (cfg.d_vocab, d), "wpe.weight": (cfg.n_ctx, d)}
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, d_mlp), p + "mlp.c_fc.bias": (d_mlp,),
            p + "mlp.c_proj.weight": (d_mlp, d), p + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def _official_name(key: str) -> str:
    return key[len("transformer."):] if key.startswith("transformer.") else key


def _n_blocks_in(names) -> int:
    blocks = {int(m.group(1)) for n in names if (m := re.match(r"h\.(\d+)\.", n))}
    return max(blocks) + 1 if blocks else 0


def _check_consistency(path: Path, cfg: GPT2Config, found: dict[str, tuple]) -> None:
    """Raise a precise error when the file and the config describe different models."""
    n_blocks = _n_blocks_in(found)
    if n_blocks != cfg.n_layer:
        raise ConfigError(
            f"{path}: the config says n_layer={cfg.n_layer} but the file has tensors for "
            f"{n_blocks} blocks (h.0 ... h.{n_blocks - 1}). Pass the config.json that belongs "
            "to these weights."
        )
    expected = expected_shapes(cfg)
    missing = [name for name in expected if name not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise WeightsError(f"{path}: missing tensor(s) {', '.join(missing[:5])}{more}")
    unexpected = [n for n in found if n not in expected and n != "lm_head.weight" and not _IGNORED.fullmatch(n)]
    if unexpected:
        raise WeightsError(
            f"{path}: unexpected tensor(s) {', '.join(unexpected[:5])}: this does not look like "
            "a GPT-2 checkpoint"
        )
    if "lm_head.weight" in found:
        expected = {**expected, "lm_head.weight": (cfg.d_vocab, cfg.d_model)}
    for name, shape in expected.items():
        if found[name][1].shape != shape:
            raise ConfigError(
                f"{path}: tensor {name} has shape {found[name][1].shape} but the config implies "
                f"{shape}. The config does not belong to these weights (a bare .safetensors file "
                "is assumed to be GPT-2 small unless you pass config=...)."
            )


def load_params(path: str | Path, cfg: GPT2Config, dtype=np.float32, check_finite: bool = True) -> GPT2Params:
    """Map the weights in `path` and return them as `dtype` arrays (zero-copy when they match)."""
    path = Path(path)
    dtype = np.dtype(dtype)
    found = {_official_name(k): v for k, v in open_safetensors(path).items()}
    if not found:
        raise WeightsError(f"{path}: the file holds no tensors")
    _check_consistency(path, cfg, found)

    def get(name: str) -> np.ndarray:
        code, array = found[name]
        try:
            array = to_float(code, array, dtype)
        except WeightsError as err:
            raise WeightsError(f"{path}: tensor {name}: {err}") from None
        if check_finite and not np.isfinite(array).all():
            raise WeightsError(f"{path}: tensor {name} contains NaN or infinite values")
        return array

    def ln(prefix: str) -> LayerNormParams:
        return LayerNormParams(get(prefix + ".weight"), get(prefix + ".bias"))

    def conv(prefix: str) -> Conv1DParams:
        return Conv1DParams(get(prefix + ".weight"), get(prefix + ".bias"))

    blocks = tuple(
        BlockParams(
            ln_1=ln(f"h.{i}.ln_1"),
            attn=AttentionParams(c_attn=conv(f"h.{i}.attn.c_attn"), c_proj=conv(f"h.{i}.attn.c_proj")),
            ln_2=ln(f"h.{i}.ln_2"),
            mlp=MLPParams(c_fc=conv(f"h.{i}.mlp.c_fc"), c_proj=conv(f"h.{i}.mlp.c_proj")),
        )
        for i in range(cfg.n_layer)
    )
    wte = get("wte.weight")
    # save_pretrained writes lm_head.weight only when it is not tied; when it is written and equal
    # to wte, sharing one array keeps a single copy in memory.
    lm_head = wte
    if "lm_head.weight" in found:
        head = get("lm_head.weight")
        if not np.array_equal(head, wte):
            lm_head = head
    return GPT2Params(wte=wte, wpe=get("wpe.weight"), h=blocks, ln_f=ln("ln_f"), lm_head=lm_head)
