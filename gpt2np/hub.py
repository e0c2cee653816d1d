"""Find model files: a local path, or the Hugging Face Hub through its standard cache.

Files fetched from the Hub land in the cache transformers uses (`HF_HOME`, default
~/.cache/huggingface), so nothing is downloaded twice; `HF_HUB_OFFLINE=1` uses the cache only.
When the Hub cannot be reached we fail within seconds with instructions, instead of letting the
client retry for half a minute.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelNotFoundError

# Short names of the released checkpoints -> their repositories on the Hub.
HUB_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_PROBE_TIMEOUT_S = 3.0


def looks_like_path(source: str) -> bool:
    """A local path, as opposed to a Hub name like "gpt2" or "org/name"."""
    if Path(source).expanduser().exists():
        return True
    return source.startswith(("/", ".", "~")) or source.endswith((".safetensors", ".json")) or source.count("/") > 1


def repo_id(source: str) -> str:
    return HUB_ALIASES.get(source, source)


def _hub_reachable() -> bool:
    """A quick TCP connection to the Hub's endpoint (DNS failure or no route answer at once)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_file(repo: str, filename: str, revision: str | None = None, cache_dir: str | None = None, required: bool = True) -> Path | None:
    """Path of `filename` from Hub repository `repo`, downloading it into the cache if needed.

    Returns None for a missing optional file (`required=False`).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
        RepositoryNotFoundError, RevisionNotFoundError,
    )

    local_only = _offline() or not _hub_reachable()
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir, local_files_only=local_only))
    except LocalEntryNotFoundError:
        if not required:
            return None
        why = "HF_HUB_OFFLINE is set" if _offline() else "the Hugging Face Hub cannot be reached"
        raise ModelNotFoundError(
            f"{filename} of {repo!r} is not in the local Hugging Face cache and {why}. Either "
            f"connect and retry (it is then cached under $HF_HOME), or pass a local folder holding "
            f"model.safetensors and config.json (or a .safetensors file) instead of the Hub name."
        ) from None
    except HFValidationError as err:
        raise ModelNotFoundError(f"{repo!r} is neither an existing local path nor a valid Hub repository name ({err})") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelNotFoundError(f"the Hub has no repository {repo!r} at revision {revision or 'main'}: {err}") from None
    except EntryNotFoundError:
        if not required:
            return None
        raise ModelNotFoundError(f"the Hub repository {repo!r} has no file {filename}") from None
    except HfHubHTTPError as err:
        raise ModelNotFoundError(f"downloading {filename} of {repo!r} failed: {err}") from None
