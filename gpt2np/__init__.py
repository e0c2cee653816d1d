"""gpt2np: a transparent NumPy GPT-2 that exposes every intermediate tensor.

    import gpt2np
    model = gpt2np.load_model("gpt2")
    tok = gpt2np.load_tokenizer("gpt2")
    logits, cache = model.run_with_cache(tok.encode("The quick brown fox"))
    cache["blocks.5.attn.hook_pattern"]   # (n_head, T, T)
"""

from .config import PRESETS, GPT2Config
from .errors import ConfigError, InputError, ModelNotFoundError, UnknownNameError, WeightsError
from .init import init_params, untrained_model
from .loading import load_model
from .model import GPT2, ActivationCache
from .names import hook_names
from .tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "load_model", "load_tokenizer", "init_params", "untrained_model", "GPT2", "GPT2Config", "PRESETS", "ActivationCache", "Tokenizer",
    "hook_names", "ConfigError", "InputError", "ModelNotFoundError", "UnknownNameError", "WeightsError",
]
