"""The activation store of the corpus-scale study: `activations.zarr`, a Zarr v3 group.

Layout (every file is plain Zarr v3, so Zarr, Dask and xarray read it directly):

    activations.zarr/zarr.json                  the group; its attributes["geostudy_store"] hold the
                                                layout (sites and widths, rows, shard rows, dtype,
                                                the fingerprint of the sequences)
    activations.zarr/<site>/zarr.json           one (n_rows, width) array per site, named by its
    activations.zarr/<site>/c/<shard>/0         hook name; one chunk per shard: shard_rows rows x
                                                the full width, raw little-endian bytes (no
                                                compression: the bytes are a function of the
                                                values alone); the last chunk is padded with 0
    activations.zarr/_shards/<shard>/zarr.json  the shard's marker: a Zarr group whose attributes
                                                record, for each site, the chunk file's size and
                                                sha256 as written. Written last, atomically.

A marker is a (tiny) Zarr group rather than a loose file so that listing the hierarchy with
Zarr never meets an unknown object. Shards are independent (their own chunk files and marker),
so any number of processes may write different shards at once.

Crash safety: the store is created in a hidden temporary folder and renamed into place, so an
existing `activations.zarr` is always complete. write_shard removes the shard's marker, writes
its chunks (Zarr writes each through a temporary file and a rename), fsyncs them, hashes them
as they are on disk and only then writes the marker. A kill -9 at any moment leaves each shard
either with a marker matching its chunks or without one: finished_shards says which to redo.

Cost of checking: one sha256 pass over the chunks, on one core: about 0.6 s per GB at the 1.6
GB/s geostudy/rundir/integrity.py measured on an idle core (SHA-NI), up to 2.5 s per GB at the
0.4 GB/s measured with this 2-core machine shared by several busy processes; plus reading the
chunks from disk when they are not in the page cache. GPT-2 small's 13 sites x 50,000 sequences
are 2 GB. A process hashes a chunk once while its file is unchanged (see _checked_sha256), so
the analyses' repeated reads of a site do not pay it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import zarr

from ..errors import StudyError
from ..rundir.fsio import TMP_MARK, atomic_write_json, read_json

LAYOUT_KEY = "geostudy_store"
FORMAT_VERSION = 1
MARKERS = "_shards"
_READ = 16 * 2**20  # hashing reads: large enough that hashlib releases the GIL


class StoreDamagedError(StudyError):
    """A chunk of the store whose bytes differ from those recorded when it was written."""


def _damaged_message(chunk: Path, why: str) -> str:
    return f"the activation chunk {chunk} is damaged ({why}): run the same command again to redo it"


def _sha256_file(path: Path, fsync: bool = False) -> tuple[int, str]:
    """(size, sha256) of a file; with fsync=True also forces it to disk (the writer's check)."""
    h, size = hashlib.sha256(), 0
    buf = bytearray(_READ)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
        if fsync:
            os.fsync(fh.fileno())
    return size, h.hexdigest()


# Chunks this process has hashed, by path: (inode, size, mtime, ctime) when hashed -> (size, sha256).
# The analyses read each site's rows once per partition, i.e. every chunk several times; a chunk
# whose file has not changed since (any write changes its ctime, which no program can set back)
# is not hashed again. File times come from a coarse clock (a few ms), so a write just after the
# hash could keep the same ctime: a hash is remembered only when the file's ctime was more than
# a second old when hashing started, so that any later write must show a later ctime.
_HASHED: dict[str, tuple[tuple[int, int, int, int], tuple[int, str]]] = {}
_SETTLED_NS = 10**9


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _checked_sha256(path: Path) -> tuple[int, str]:
    """_sha256_file, remembered for chunks that have not changed since this process hashed them."""
    started, key = time.time_ns(), _stat_key(path)
    known = _HASHED.get(str(path))
    if known is not None and known[0] == key:
        return known[1]
    result = _sha256_file(path)
    if started - key[3] > _SETTLED_NS and _stat_key(path) == key:
        _HASHED[str(path)] = (key, result)
    return result


def _marker_group(shard: int, record: dict) -> dict:
    """The zarr.json of a marker: an empty Zarr v3 group carrying the record as its attributes."""
    return {"attributes": {"shard": record}, "zarr_format": 3, "consolidated_metadata": None, "node_type": "group"}


class ActivationStore:
    """One (n_rows, width) array per site, filled shard by shard; see the module docstring."""

    def __init__(self, path: Path, layout: dict):
        self.path = Path(path)
        self.sites: dict[str, int] = dict(layout["sites"])
        self.n_rows: int = layout["n_rows"]
        self.shard_rows: int = layout["shard_rows"]
        self.dtype: str = layout["dtype"]
        self.fingerprint: str = layout["fingerprint"]
        self.n_shards: int = -(-self.n_rows // self.shard_rows)
        self._group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
        self._arrays = {site: self._group[site] for site in self.sites}

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, sites: dict[str, int], n_rows: int, shard_rows: int, dtype: str,
             fingerprint: str) -> ActivationStore:
        """Create the store, or reopen it when it was made with the same layout (StudyError if not)."""
        path = Path(path)
        layout = _layout(sites, n_rows, shard_rows, dtype, fingerprint)
        if not path.exists():
            _create(path, layout)
        found = _read_layout(path)
        if found != layout:
            raise StudyError(
                f"{path} holds activations of another run ({_difference(found, layout)}): remove it or choose another run folder"
            )
        return cls(path, layout)

    @classmethod
    def open_existing(cls, path: Path) -> ActivationStore:
        """Reopen a store with the layout it was created with (the writers' and readers' way in)."""
        return cls(Path(path), _read_layout(Path(path)))

    # -- shards ------------------------------------------------------------------------------
    def shard_rows_range(self, shard: int) -> tuple[int, int]:
        """Rows [start, stop) of a shard."""
        if not 0 <= shard < self.n_shards:
            raise StudyError(f"shard {shard} does not exist: the store has shards 0..{self.n_shards - 1}")
        return shard * self.shard_rows, min((shard + 1) * self.shard_rows, self.n_rows)

    def chunk_path(self, site: str, shard: int) -> Path:
        key = self._arrays[site].metadata.chunk_key_encoding.encode_chunk_key((shard, 0))
        return self.path / site / key

    def marker_path(self, shard: int) -> Path:
        return self.path / MARKERS / f"{shard:06d}" / "zarr.json"

    def write_shard(self, shard: int, rows: dict[str, np.ndarray]) -> None:
        """Write the shard's rows of every site (chunks first, then the marker)."""
        r0, r1 = self.shard_rows_range(shard)
        if set(rows) != set(self.sites):
            raise StudyError(f"write_shard needs exactly the store's sites {sorted(self.sites)}, got {sorted(rows)}")
        for site, width in self.sites.items():
            if np.shape(rows[site]) != (r1 - r0, width):
                raise StudyError(f"shard {shard} of {site} must be {(r1 - r0, width)}, got {np.shape(rows[site])}")
        marker = self.marker_path(shard)
        marker.unlink(missing_ok=True)  # from here until the new marker, the shard is unfinished
        self._remove_debris(shard)
        chunks = {}
        for site in self.sites:  # in the store's site order: the marker's bytes are deterministic
            chunk = self.chunk_path(site, shard)
            # Zarr merges a partial (last) chunk with the chunk on disk, which may be a damaged one
            chunk.unlink(missing_ok=True)
            self._arrays[site][r0:r1] = np.asarray(rows[site], dtype=self.dtype)
            size, digest = _sha256_file(chunk, fsync=True)
            chunks[site] = {"file": chunk.relative_to(self.path).as_posix(), "bytes": size, "sha256": digest}
        record = {"rows": [r0, r1], "fingerprint": self.fingerprint, "chunks": chunks}
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, _marker_group(shard, record), indent=2)

    def _remove_debris(self, shard: int) -> None:
        """The temporaries a writer of this shard left when it was killed: Zarr's
        `<chunk>.<uuid>.partial` files and fsio's hidden marker temporaries. Only the shard's own
        folders are touched, so writers of other shards are not disturbed."""
        for site in self.sites:
            chunk = self.chunk_path(site, shard)
            for debris in chunk.parent.glob(f"{chunk.name}.*.partial"):
                debris.unlink(missing_ok=True)
        marker = self.marker_path(shard)
        for debris in marker.parent.glob(f".*{TMP_MARK}*"):
            debris.unlink(missing_ok=True)

    def _marker(self, shard: int) -> dict | None:
        try:
            record = read_json(self.marker_path(shard))["attributes"]["shard"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        r0, r1 = self.shard_rows_range(shard)
        if record.get("rows") != [r0, r1] or record.get("fingerprint") != self.fingerprint:
            return None
        return record

    def _chunk_problem(self, record: dict, site: str) -> tuple[Path, str] | None:
        """(chunk file, what is wrong) when the site's chunk does not match the marker."""
        entry = record["chunks"].get(site)
        if entry is None:
            return self.path / site, "the shard's marker does not list it"
        chunk = self.path / entry["file"]
        try:
            size, digest = _checked_sha256(chunk)
        except FileNotFoundError:
            return chunk, "the file is missing"
        if size != entry["bytes"]:
            return chunk, f"{size} bytes, {entry['bytes']} were written"
        if digest != entry["sha256"]:
            return chunk, "its sha256 differs from the one recorded when it was written"
        return None

    def finished_shards(self, verify: bool = True) -> list[bool]:
        """For each shard: its marker is present (and, with verify, every chunk matches the
        checksum it records). A damaged shard gives one warning naming its chunk file."""
        done = []
        for shard in range(self.n_shards):
            record = self._marker(shard)
            ok = record is not None
            if ok and verify:
                for site in self.sites:
                    problem = self._chunk_problem(record, site)
                    if problem is not None:
                        warnings.warn(f"shard {shard} is redone: {_damaged_message(*problem)}", stacklevel=2)
                        ok = False
                        break
            done.append(ok)
        return done

    # -- reading -----------------------------------------------------------------------------
    def read(self, site: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """The rows (all, a slice, or an index array in any order) of one site, (len, width), after
        checking the sha256 of every chunk they lie in (StoreDamagedError if one differs)."""
        if site not in self.sites:
            raise StudyError(f"the store has no site {site!r}; it has {', '.join(self.sites)}")
        index = _row_index(rows, self.n_rows)
        out = np.empty((index.size, self.sites[site]), dtype=self.dtype)
        shard_of = index // self.shard_rows
        for shard in np.unique(shard_of):
            shard = int(shard)
            record = self._marker(shard)
            r0, r1 = self.shard_rows_range(shard)
            if record is None:
                raise StudyError(f"shard {shard} (rows {r0}..{r1 - 1}) of {self.path} is not written yet: run the same command again")
            problem = self._chunk_problem(record, site)
            if problem is not None:
                raise StoreDamagedError(_damaged_message(*problem))
            block = self._arrays[site][r0:r1]
            where = np.flatnonzero(shard_of == shard)
            out[where] = block[index[where] - r0]
        return out


def _row_index(rows, n_rows: int) -> np.ndarray:
    if rows is None:
        return np.arange(n_rows)
    if isinstance(rows, slice):
        return np.arange(n_rows)[rows]
    index = np.asarray(rows)
    if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
        raise StudyError(f"rows must be a 1-D array of row numbers, a slice or None, got {index.dtype} {index.shape}")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= n_rows):
        raise StudyError(f"rows must be in 0..{n_rows - 1}")
    return index


def _layout(sites: dict[str, int], n_rows: int, shard_rows: int, dtype: str, fingerprint: str) -> dict:
    if n_rows < 1 or shard_rows < 1:
        raise StudyError(f"a store needs at least one row and one row per shard, got n_rows={n_rows}, shard_rows={shard_rows}")
    if not sites:
        raise StudyError("a store needs at least one site")
    return {"version": FORMAT_VERSION, "sites": {str(s): int(w) for s, w in sites.items()}, "n_rows": int(n_rows),
            "shard_rows": int(shard_rows), "dtype": np.dtype(dtype).name, "fingerprint": str(fingerprint)}


def _difference(found: dict | None, wanted: dict) -> str:
    if found is None:
        return "no layout recorded"
    keys = [k for k in wanted if found.get(k) != wanted[k]]
    return "differs in " + ", ".join(keys)


def _read_layout(path: Path) -> dict | None:
    """The layout recorded in the group's attributes; StudyError when `path` is not a store."""
    try:
        layout = read_json(path / "zarr.json")["attributes"][LAYOUT_KEY]
    except (OSError, ValueError, KeyError, TypeError):
        raise StudyError(
            f"{path} exists but is not an activation store written by geostudy: remove it or choose another run folder"
        ) from None
    layout["sites"] = dict(layout["sites"])
    return layout


def _create(path: Path, layout: dict) -> None:
    """Build the empty store in a hidden temporary folder beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}{TMP_MARK}*"):  # a creation killed earlier
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for site, width in layout["sites"].items():
        group.create_array(
            site, shape=(layout["n_rows"], width), chunks=(layout["shard_rows"], width), dtype=layout["dtype"],
            compressors=None, filters=None, fill_value=0, config={"write_empty_chunks": True},
        )
    zarr.open_group(str(tmp / MARKERS), mode="w", zarr_format=3)
    group.attrs[LAYOUT_KEY] = layout  # last: a store with its layout recorded is complete
    os.replace(tmp, path)
