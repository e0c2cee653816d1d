"""Find model files: a local path, or the Hugging Face Hub through its standard cache.

Files fetched from the Hub land in the cache transformers uses (`HF_HOME`, default
~/.cache/huggingface), so nothing is downloaded twice; `HF_HUB_OFFLINE=1` uses the cache only.

When the Hub does not answer we fail within seconds with instructions, instead of letting the
client retry. huggingface_hub retries an unanswered metadata request with a 60-second timeout and
backoff, so a server that accepts connections and never answers (a captive portal, a broken
proxy) would hang `load_model` for minutes. We therefore ask once, with the user's own metadata
timeout (`HF_HUB_ETAG_TIMEOUT`, 10 s by default), and use the cache alone if nothing answers.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ModelNotFoundError

# Short names of the released checkpoints -> their repositories on the Hub.
HUB_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}


def looks_like_path(source: str) -> bool:
    """A local path, as opposed to a Hub name like "gpt2" or "org/name"."""
    if Path(source).expanduser().exists():
        return True
    return source.startswith(("/", ".", "~")) or source.endswith((".safetensors", ".json")) or source.count("/") > 1


def repo_id(source: str) -> str:
    return HUB_ALIASES.get(source, source)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _answer_timeout() -> float:
    """Seconds to wait for the Hub's answer: huggingface_hub's own metadata timeout, which is
    HF_HUB_ETAG_TIMEOUT when the user set it (it reads the variable at import)."""
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


class _DoNotFollow(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer; following it (to a CDN) would only cost another connection."""

    def redirect_request(self, *args, **kwargs):
        return None


def _hub_answers(url: str) -> bool:
    """Whether the server behind `url` answers one HEAD request within the metadata timeout.

    Any HTTP status counts (what it means is hf_hub_download's to report), and so does a TLS
    failure: that server is talking, and huggingface_hub's client (with its own certificates)
    reports what is wrong. urllib honours the same proxy variables as that client.
    """
    opener = urllib.request.build_opener(_DoNotFollow)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "gpt2np"})
    try:
        with opener.open(request, timeout=_answer_timeout()):
            return True
    except urllib.error.HTTPError:  # 3xx, 4xx, 5xx: the server answered
        return True
    except urllib.error.URLError as err:  # refused, no route, DNS failure, TLS trouble
        return isinstance(err.reason, ssl.SSLError)
    except (OSError, http.client.HTTPException):  # a timeout, a reset, a reply that is not HTTP
        return False


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2, httpx or
    requests, by version), which hf_hub_download lets through when a download stalls. A client
    that was never imported cannot have raised anything, so nothing is imported here."""
    found = []
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        loaded = sys.modules.get(module)
        found += [getattr(loaded, n) for n in names if loaded is not None and hasattr(loaded, n)]
    return tuple(found)


class HubRepo:
    """Files of one Hub repository at one revision. The first file asks whether the Hub answers;
    the answer holds for the others, so a silent Hub costs one timeout per load, not one per file."""

    def __init__(self, repo: str, revision: str | None = None, cache_dir: str | None = None):
        self.repo = repo
        self.revision = revision
        self.cache_dir = cache_dir
        self._local_only: bool | None = None

    def _use_cache_only(self, filename: str) -> bool:
        if self._local_only is None:
            from huggingface_hub import hf_hub_url

            self._local_only = _offline() or not _hub_answers(hf_hub_url(self.repo, filename, revision=self.revision))
        return self._local_only

    def _cache_folder(self) -> str:
        """The cache folder really used: cache_dir, else huggingface_hub's (HF_HUB_CACHE, else
        $HF_HOME/hub, else ~/.cache/huggingface/hub)."""
        from huggingface_hub import constants

        return str(Path(self.cache_dir or constants.HF_HUB_CACHE).expanduser())

    def _cached_file(self, filename: str, required: bool) -> Path | None:
        """The file from the local cache, without a network request. (hf_hub_download with
        local_files_only would still build request headers, and huggingface_hub 2.4 fetches a
        registry from the Hub to build them: 3 more seconds against a silent Hub.)"""
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo, filename, cache_dir=self.cache_dir, revision=self.revision)
        if isinstance(cached, str):
            return Path(cached)
        if not required:
            return None
        why = "HF_HUB_OFFLINE is set" if _offline() else "the Hugging Face Hub cannot be reached (it did not answer)"
        if cached is not None:  # the cache remembers that the repository has no such file
            raise ModelNotFoundError(f"the Hub repository {self.repo!r} has no file {filename} (so says the local cache; {why})")
        raise ModelNotFoundError(
            f"{filename} of {self.repo!r} is not in the local Hugging Face cache and {why}. Either "
            f"connect and retry (it is then cached in {self._cache_folder()}), or pass a local folder holding "
            f"model.safetensors and config.json (or a .safetensors file) instead of the Hub name."
        )

    def file(self, filename: str, required: bool = True) -> Path | None:
        """Path of `filename`, downloaded into the cache if needed; None for a missing optional file."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        repo, revision = self.repo, self.revision
        try:
            if self._use_cache_only(filename):
                return self._cached_file(filename, required)
            return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=self.cache_dir))
        except LocalEntryNotFoundError:  # the Hub stopped answering after the first file
            return self._cached_file(filename, required)
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
        except _transport_errors() as err:
            raise ModelNotFoundError(
                f"downloading {filename} of {repo!r} failed: the connection stalled or broke ({err}). "
                f"Retry (on a slow connection with a larger HF_HUB_DOWNLOAD_TIMEOUT), or pass a local "
                f"folder holding model.safetensors and config.json instead of the Hub name."
            ) from None
