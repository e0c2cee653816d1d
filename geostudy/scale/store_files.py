"""Where the files of an activation store live: a local folder, or any fsspec URL (file://,
memory://, s3://, ...), behind one small interface. A key is a '/'-separated path inside the
store ("zarr.json", "blocks.0.hook_resid_pre/c/3/0", "_shards/000003/zarr.json").

    read(key) -> bytes          FileNotFoundError when the file is not there
    write(key, data)            the whole file in one go (see each backend for what a crash leaves)
    remove(key)                 a missing file is fine
    names(folder) -> [str]      the entries of a folder ([] when there is none)
    present() -> bool           the store's location holds anything at all
    create(documents)           the empty store's files, {key: bytes}, the layout last
    remove_debris(folder)       what a killed writer left in one folder
    version(key)                a token that changes whenever the file's bytes may have changed,
                                or None when the backend cannot promise one (then every read hashes)
    where(key) -> str           the file's path or URL, for messages

`LocalFiles` keeps the store's crash safety of a plain folder: every write goes through a hidden
temporary that is fsynced and renamed over the file (geostudy/rundir/fsio.py), and the store is
built in a hidden temporary folder renamed into place, so a store that exists is complete.

`FsspecFiles` writes each file with one call (one PUT on an object store, which is atomic there)
and creates the store in place, the group's zarr.json (which holds the layout) last. A URL may
offer neither rename nor fsync (file:// through fsspec is a plain open-write-close), so the store
relies on neither: every chunk is checked against the sha256 its marker records, a marker or a
layout cut short is not valid JSON (so not finished), and a location holding only the pieces of
a creation that did not finish is created again (see store.py).

fsspec comes with Dask (the `cluster` extra), not with the base install: it is imported only
for a URL, and its absence is a one-line StudyError.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from ..errors import StudyError
from ..rundir.fsio import TMP_MARK, atomic_write_bytes, is_temporary

INSTALL_HINT = 'pip install "gpt2-geometry[cluster]" (or pip install fsspec)'
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*(://|::)")  # "s3://...", or a chain "simplecache::s3://..."

# A local file's stat is a valid version only once its ctime is this old: file times come from a
# coarse clock (a few ms), so a write just after a read could keep the same ctime; a file whose
# ctime was more than a second old when it was stat'ed must show a later ctime after any write.
_SETTLED_NS = 10**9


def is_url(location) -> bool:
    """A string naming a URL (a protocol and ://, or an fsspec chain with ::); a Path never is."""
    return isinstance(location, str) and bool(_URL.match(location))


def check_location(location) -> Path | str:
    """The store's location, checked before any work: a local path (expanded, absolute, so that
    workers started elsewhere find it) or a URL (without a trailing /) whose protocol fsspec
    knows. One-line StudyError when fsspec is missing, the protocol unknown, its package not
    installed, or the location is the top of its file system (a store needs a folder of its
    own: the untrained control's goes beside it)."""
    if not is_url(location):
        path = Path(location).expanduser().absolute()
        if path.parent == path:
            raise StudyError(f"the store cannot be the root folder {path}: name a folder for it, e.g. {path / 'activations.zarr'}")
        return path
    url = _without_trailing_slash(location)
    fs, root = _filesystem(url)
    if not url.rpartition("://")[2].strip("/") or not root.strip("/") or fs._parent(root) == "":  # memory://, s3://bucket
        raise StudyError(f"the store {location} is the top of its file system: name a folder in it, e.g. {url}/activations.zarr")
    return url


def open_files(location) -> LocalFiles | FsspecFiles:
    """The backend of a store's location: a URL through fsspec, anything else a local folder."""
    if is_url(location):
        url = check_location(location)
        return FsspecFiles(url, *_filesystem(url))
    return LocalFiles(Path(location))


def _without_trailing_slash(url: str) -> str:
    """s3://bucket/acts.zarr/ -> s3://bucket/acts.zarr (keys are joined with /); memory:// stays."""
    head, sep, path = url.rpartition("://")
    return f"{head}{sep}{path.rstrip('/')}"


def _filesystem(url: str):
    """(fsspec filesystem, path inside it) of a URL; one-line StudyError when it cannot be opened."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise StudyError(f"the store {url} is a URL, which needs fsspec: {INSTALL_HINT}") from None
    try:
        return url_to_fs(url)
    except ImportError as err:  # a known protocol whose package is missing, e.g. s3fs for s3://
        raise StudyError(f"the store {url} cannot be opened: {_first_line(err)}") from None
    except ValueError as err:  # "Protocol not known: ..."
        raise StudyError(f"the store {url} is not a URL fsspec can open ({_first_line(err)}): "
                         "use a local path or a protocol fsspec knows (file://, memory://, s3://, ...)") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class LocalFiles:
    """A store in a local folder: atomic, durable writes and an atomic creation."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location: Path | str = self.root

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def where(self, key: str = "") -> str:
        return str(self._path(key))

    def present(self) -> bool:
        return self.root.exists()

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)  # a hidden temporary, fsynced, renamed over the file

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def names(self, folder: str = "") -> list[str]:
        path = self._path(folder)
        return sorted(e.name for e in path.iterdir()) if path.is_dir() else []

    def remove_debris(self, folder: str) -> None:
        """fsio's hidden temporaries, and the `<chunk>.<uuid>.partial` files Zarr left when
        geostudy wrote chunks through it (stores written before the store wrote its own bytes)."""
        for name in self.names(folder):
            if is_temporary(name) or name.endswith(".partial"):
                self._path(f"{folder}/{name}").unlink(missing_ok=True)

    def version(self, key: str) -> tuple[int, int, int, int] | None:
        """(inode, size, mtime, ctime) once the file's ctime has settled (no program can set a
        ctime back, so any later write shows in it); None before."""
        st = os.stat(self._path(key))
        if time.time_ns() - st.st_ctime_ns <= _SETTLED_NS:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def create(self, documents: dict[str, bytes]) -> None:
        """Build the store in a hidden temporary folder beside it, then rename it into place."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.root.parent.glob(f".{self.root.stem}{TMP_MARK}*"):  # a creation killed earlier
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root.with_name(f".{self.root.stem}{TMP_MARK}{os.getpid()}{self.root.suffix}")
        for key, data in documents.items():
            (tmp / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp / key).write_bytes(data)
        os.replace(tmp, self.root)


class FsspecFiles:
    """A store at an fsspec URL: one call per file, created in place (see the module docstring)."""

    def __init__(self, url: str, fs, root: str):
        self.url, self.fs, self.root = url, fs, root
        self.location: Path | str = url

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def where(self, key: str = "") -> str:
        return f"{self.url}/{key}" if key else self.url

    def present(self) -> bool:
        return bool(self.names())

    def read(self, key: str) -> bytes:
        return self.fs.cat_file(self._path(key))

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self.fs.pipe_file(path, data)
        except FileNotFoundError:  # a file system with real folders (file://): make them, once
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
            self.fs.pipe_file(path, data)

    def remove(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def names(self, folder: str = "") -> list[str]:
        path = self._path(folder)
        self.fs.invalidate_cache(path)  # listings may be cached (object stores): ask again
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rpartition("/")[2] for e in entries)

    def remove_debris(self, folder: str) -> None:
        """Nothing to do: no file is written through a temporary."""

    def version(self, key: str) -> None:
        """None: fsspec promises no change token for every file system, so every read hashes the
        bytes it read (cheaper than reading them over a network)."""
        return None

    def create(self, documents: dict[str, bytes]) -> None:
        """Write the documents in place, in their order (the caller puts the layout last)."""
        for key, data in documents.items():
            self.write(key, data)
