"""The shape of a GPT-2 model, read from a Hugging Face `config.json` or a preset."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class GPT2Config:
    """Hyper-parameters of one GPT-2 model, in TransformerLens' vocabulary.

    `d_head = d_model // n_head`; `d_mlp` is `n_inner` in the Hugging Face config (4·d_model when
    absent). `scale_attn_weights` (divide scores by √d_head) is True and
    `scale_attn_by_inverse_layer_idx` False for every released GPT-2; both are honoured so that no
    config is silently misread.
    """

    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_mlp: int = 3072
    n_ctx: int = 1024
    d_vocab: int = 50257
    layer_norm_eps: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "d_mlp", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config field {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"d_model ({self.d_model}) is not divisible by n_head ({self.n_head}); "
                "every head must get the same number of dimensions"
            )
        if not _is_positive_finite(self.layer_norm_eps):
            raise ConfigError(f"config field layer_norm_eps must be a positive finite number, got {self.layer_norm_eps!r}")
        for name in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name} must be true or false, got {getattr(self, name)!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    def attention_scale(self, layer: int) -> float:
        """The factor the scores q·k of block `layer` are multiplied by (as transformers does)."""
        scale = self.d_head**-0.5 if self.scale_attn_weights else 1.0
        if self.scale_attn_by_inverse_layer_idx:
            scale /= float(layer + 1)
        return scale

    @classmethod
    def from_hf_dict(cls, hf: dict, source: str = "config") -> GPT2Config:
        """Translate a Hugging Face GPT-2 `config.json` dictionary."""
        model_type = hf.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ConfigError(f"{source}: model_type is {model_type!r}; gpt2np runs GPT-2 models only")
        activation = hf.get("activation_function", "gelu_new")
        if activation != "gelu_new":
            raise ConfigError(
                f"{source}: activation_function is {activation!r}; gpt2np implements GPT-2's "
                "'gelu_new' (the tanh approximation) only"
            )
        try:
            n_embd = hf.get("n_embd", 768)
            n_inner = hf.get("n_inner")
            return cls(
                n_layer=hf.get("n_layer", 12),
                n_head=hf.get("n_head", 12),
                d_model=n_embd,
                d_mlp=n_inner if n_inner is not None else 4 * n_embd,
                n_ctx=hf.get("n_positions", hf.get("n_ctx", 1024)),
                d_vocab=hf.get("vocab_size", 50257),
                layer_norm_eps=float(_hf_field(hf, "layer_norm_epsilon", 1e-5, _is_positive_finite, "a positive finite number")),
                scale_attn_weights=_hf_field(hf, "scale_attn_weights", True, _is_bool, "true or false"),
                scale_attn_by_inverse_layer_idx=_hf_field(hf, "scale_attn_by_inverse_layer_idx", False, _is_bool, "true or false"),
            )
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        except TypeError as err:  # e.g. n_embd given as a string
            raise ConfigError(f"{source}: malformed GPT-2 config ({err})") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> GPT2Config:
        path = Path(path)
        try:
            hf = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(hf, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(hf).__name__}")
        return cls.from_hf_dict(hf, source=str(path))


def _is_number(value) -> bool:
    """A JSON number (bool is a subclass of int in Python, but true is not a number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_finite(value) -> bool:
    return _is_number(value) and 0 < value <= sys.float_info.max  # NaN fails both comparisons


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def _hf_field(hf: dict, key: str, default, valid, expected: str):
    """hf[key] (or `default`), refused unless `valid`: a string "false" must not become True, nor
    a string "1e-5" pass for a number. Named by its config.json key, which is what the user sees."""
    value = hf.get(key, default)
    if not valid(value):
        raise ConfigError(f"config field {key} must be {expected}, got {value!r}")
    return value


# The released GPT-2 family (sizes from the checkpoints' config.json files).
PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(),
    "gpt2-medium": GPT2Config(n_layer=24, n_head=16, d_model=1024, d_mlp=4096),
    "gpt2-large": GPT2Config(n_layer=36, n_head=20, d_model=1280, d_mlp=5120),
    "gpt2-xl": GPT2Config(n_layer=48, n_head=25, d_model=1600, d_mlp=6400),
    "distilgpt2": GPT2Config(n_layer=6),
}
