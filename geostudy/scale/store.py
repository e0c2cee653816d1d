"""The activation store of the corpus-scale study: `activations.zarr`, a Zarr v3 group, in a
local folder or at any fsspec URL the workers share (store_files.py: the two backends).

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
                                                sha256 as written. Written last.

A marker is a (tiny) Zarr group rather than a loose file so that listing the hierarchy with
Zarr never meets an unknown object. Shards are independent (their own chunk files and marker),
so any number of processes may write different shards at once. Zarr makes the metadata (the
zarr.json files, once, at creation); the chunks, being raw bytes, the store writes and reads
itself, hashing the bytes in memory as it writes or reads them (one pass, no second read).

Crash safety. Creation: in a local folder the store is built in a hidden temporary folder and
renamed into place, so an existing `activations.zarr` is always complete; at a URL it is created
in place with the group's zarr.json, which holds the layout, written last, so a location without
a readable layout (and holding nothing but this store's own names) is not complete and is
created again. Shards: write_shard removes the shard's marker, writes its chunks (locally each
through a temporary, fsynced and renamed; at a URL one PUT each), and only then the marker with
the sha256 of the bytes it wrote. A kill -9 at any moment leaves each shard either with a marker
matching its chunks or without one (a marker cut short is not valid JSON): finished_shards says
which to redo, and a chunk damaged later (bit flip, truncation, deletion) is found by its sha256.

Cost of checking: one sha256 pass over the chunks, on one core: about 0.6 s per GB at the 1.6
GB/s geostudy/rundir/integrity.py measured on an idle core (SHA-NI), up to 2.5 s per GB at the
0.4 GB/s measured with this 2-core machine shared by several busy processes; plus reading the
chunks. GPT-2 small's 13 sites x 50,000 sequences are 2 GB. In a local folder a process hashes a
chunk once while its file is unchanged (see _hashed_chunk), so the analyses' repeated reads of a
site do not pay it again; at a URL every read hashes what it read (fsspec offers no change token
for every file system; the network costs more than the hash).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import StudyError
from ..rundir.fsio import json_bytes
from ..rundir.integrity import checksum_bytes
from .store_files import FsspecFiles, LocalFiles, open_files

LAYOUT_KEY = "geostudy_store"
FORMAT_VERSION = 1
MARKERS = "_shards"
GROUP = "zarr.json"  # the group's metadata, holding the layout: written last at a URL
ANOTHER_STORE = "remove it, or choose another run folder (--out) or store (--store)"


class StoreDamagedError(StudyError):
    """A chunk of the store whose bytes differ from those recorded when it was written."""


def _damaged_message(chunk: str, why: str) -> str:
    return f"the activation chunk {chunk} is damaged ({why}): run the same command again to redo it"


# Local chunks this process has hashed, by path: their version (store_files.LocalFiles.version)
# when hashed -> (size, sha256). The analyses read each site's rows once per partition, i.e.
# every chunk several times; a chunk whose file has not changed since is not hashed again.
_HASHED: dict[str, tuple[object, tuple[int, str]]] = {}


def _hashed_chunk(files: LocalFiles | FsspecFiles, key: str) -> tuple[bytes, int, str]:
    """(bytes, size, sha256) of one chunk file; the sha256 remembered while its version holds."""
    before = files.version(key)
    data = files.read(key)
    unchanged = before is not None and files.version(key) == before  # nothing wrote it while read
    known = _HASHED.get(files.where(key))
    if unchanged and known is not None and known[0] == before:
        return data, *known[1]
    checksum = checksum_bytes(data)
    size, digest = checksum.size, checksum.sha256
    if unchanged:
        _HASHED[files.where(key)] = (before, (size, digest))
    return data, size, digest


def _marker_group(shard: int, record: dict) -> dict:
    """The zarr.json of a marker: an empty Zarr v3 group carrying the record as its attributes."""
    return {"attributes": {"shard": record}, "zarr_format": 3, "consolidated_metadata": None, "node_type": "group"}


class ActivationStore:
    """One (n_rows, width) array per site, filled shard by shard; see the module docstring."""

    def __init__(self, files: LocalFiles | FsspecFiles, layout: dict):
        self.files = files
        self.location: Path | str = files.location  # a local folder, or a URL
        self.sites: dict[str, int] = dict(layout["sites"])
        self.n_rows: int = layout["n_rows"]
        self.shard_rows: int = layout["shard_rows"]
        self.dtype: str = layout["dtype"]
        self.fingerprint: str = layout["fingerprint"]
        self.n_shards: int = -(-self.n_rows // self.shard_rows)
        self._disk_dtype = np.dtype(self.dtype).newbyteorder("<")  # Zarr's "bytes" codec, little-endian

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, location: Path | str, *, sites: dict[str, int], n_rows: int, shard_rows: int, dtype: str,
             fingerprint: str) -> ActivationStore:
        """Create the store (a local path or a URL), or reopen it when it was made with the same
        layout (StudyError if not)."""
        files = open_files(location)
        layout = _layout(sites, n_rows, shard_rows, dtype, fingerprint)
        if _needs_creation(files, layout):
            files.create(_documents(layout))
        found = _read_layout(files)
        if found != layout:
            raise StudyError(f"{files.where()} holds activations of another run ({_difference(found, layout)}): {ANOTHER_STORE}")
        return cls(files, layout)

    @classmethod
    def open_existing(cls, location: Path | str) -> ActivationStore:
        """Reopen a store with the layout it was created with (the writers' and readers' way in)."""
        files = open_files(location)
        return cls(files, _read_layout(files))

    # -- where things are --------------------------------------------------------------------
    def shard_rows_range(self, shard: int) -> tuple[int, int]:
        """Rows [start, stop) of a shard."""
        if not 0 <= shard < self.n_shards:
            raise StudyError(f"shard {shard} does not exist: the store has shards 0..{self.n_shards - 1}")
        return shard * self.shard_rows, min((shard + 1) * self.shard_rows, self.n_rows)

    def chunk_key(self, site: str, shard: int) -> str:
        """The chunk's key in the store: Zarr v3's default encoding, '/'-separated."""
        return f"{site}/c/{shard}/0"

    def marker_key(self, shard: int) -> str:
        return f"{MARKERS}/{shard:06d}/{GROUP}"

    def chunk_path(self, site: str, shard: int) -> Path:
        """The chunk's file (a store in a local folder)."""
        return self._local_path(self.chunk_key(site, shard))

    def marker_path(self, shard: int) -> Path:
        """The marker's file (a store in a local folder)."""
        return self._local_path(self.marker_key(shard))

    def _local_path(self, key: str) -> Path:
        if not isinstance(self.files, LocalFiles):
            raise StudyError(f"the store {self.location} is at a URL: its files have keys (chunk_key, marker_key), not paths")
        return self.files.root / key

    # -- shards ------------------------------------------------------------------------------
    def write_shard(self, shard: int, rows: dict[str, np.ndarray]) -> None:
        """Write the shard's rows of every site (chunks first, then the marker)."""
        r0, r1 = self.shard_rows_range(shard)
        if set(rows) != set(self.sites):
            raise StudyError(f"write_shard needs exactly the store's sites {sorted(self.sites)}, got {sorted(rows)}")
        for site, width in self.sites.items():
            if np.shape(rows[site]) != (r1 - r0, width):
                raise StudyError(f"shard {shard} of {site} must be {(r1 - r0, width)}, got {np.shape(rows[site])}")
        marker = self.marker_key(shard)
        self.files.remove(marker)  # from here until the new marker, the shard is unfinished
        self._remove_debris(shard)
        chunks = {}
        for site in self.sites:  # in the store's site order: the marker's bytes are deterministic
            key = self.chunk_key(site, shard)
            data = self._chunk_bytes(rows[site])
            self.files.write(key, data)
            chunks[site] = {"file": key, **checksum_bytes(data).as_dict()}
        record = {"rows": [r0, r1], "fingerprint": self.fingerprint, "chunks": chunks}
        self.files.write(marker, json_bytes(_marker_group(shard, record), indent=2))

    def _chunk_bytes(self, rows: np.ndarray) -> bytes:
        """A chunk as Zarr writes it: shard_rows rows in the little-endian dtype, padded with 0."""
        if len(rows) == self.shard_rows:
            return np.ascontiguousarray(rows, dtype=self._disk_dtype).tobytes()
        padded = np.zeros((self.shard_rows, np.shape(rows)[1]), dtype=self._disk_dtype)
        padded[: len(rows)] = rows
        return padded.tobytes()

    def _remove_debris(self, shard: int) -> None:
        """The temporaries a writer of this shard left when it was killed. Only the shard's own
        folders are touched, so writers of other shards are not disturbed."""
        for site in self.sites:
            self.files.remove_debris(self.chunk_key(site, shard).rpartition("/")[0])
        self.files.remove_debris(self.marker_key(shard).rpartition("/")[0])

    def _marker(self, shard: int) -> dict | None:
        try:
            record = json.loads(self.files.read(self.marker_key(shard)))["attributes"]["shard"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        r0, r1 = self.shard_rows_range(shard)
        if record.get("rows") != [r0, r1] or record.get("fingerprint") != self.fingerprint:
            return None
        return record

    def _checked_chunk(self, record: dict, site: str) -> tuple[bytes | None, tuple[str, str] | None]:
        """(the chunk's bytes, None) when they match the marker, else (None, (chunk, what is wrong))."""
        entry = record["chunks"].get(site)
        if entry is None:
            return None, (self.files.where(site), "the shard's marker does not list it")
        key = entry["file"]
        try:
            data, size, digest = _hashed_chunk(self.files, key)
        except FileNotFoundError:
            return None, (self.files.where(key), "the file is missing")
        if size != entry["bytes"]:
            return None, (self.files.where(key), f"{size} bytes, {entry['bytes']} were written")
        if digest != entry["sha256"]:
            return None, (self.files.where(key), "its sha256 differs from the one recorded when it was written")
        return data, None

    def finished_shards(self, verify: bool = True) -> list[bool]:
        """For each shard: its marker is present (and, with verify, every chunk matches the
        checksum it records). A damaged shard gives one warning naming its chunk file."""
        done = []
        for shard in range(self.n_shards):
            record = self._marker(shard)
            ok = record is not None
            if ok and verify:
                for site in self.sites:
                    _, problem = self._checked_chunk(record, site)
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
                raise StudyError(f"shard {shard} (rows {r0}..{r1 - 1}) of {self.location} is not written yet: run the same command again")
            data, problem = self._checked_chunk(record, site)
            if problem is not None:
                raise StoreDamagedError(_damaged_message(*problem))
            block = np.frombuffer(data, dtype=self._disk_dtype).reshape(self.shard_rows, self.sites[site])
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


def _recorded_layout(files: LocalFiles | FsspecFiles) -> dict | None:
    """The layout in the group's attributes; None when there is no readable one."""
    try:
        layout = json.loads(files.read(GROUP))["attributes"][LAYOUT_KEY]
        layout["sites"] = dict(layout["sites"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return layout


def _read_layout(files: LocalFiles | FsspecFiles) -> dict:
    """The recorded layout; StudyError when the location is not a store."""
    layout = _recorded_layout(files)
    if layout is None:
        raise StudyError(f"{files.where()} exists but is not an activation store written by geostudy: {ANOTHER_STORE}")
    return layout


def _needs_creation(files: LocalFiles | FsspecFiles, layout: dict) -> bool:
    """A local store is created when its folder does not exist (it appears complete or not at
    all). At a URL, a location holding nothing, or only this store's own names without a
    readable layout (a creation that was killed), is created (again) in place; anything else is
    left for _read_layout to judge, so another run's store or foreign files are never written over."""
    if isinstance(files, LocalFiles):
        return not files.present()
    if _recorded_layout(files) is not None:
        return False
    return set(files.names()) <= {GROUP, MARKERS, *layout["sites"]}


def _documents(layout: dict) -> dict[str, bytes]:
    """The empty store's metadata files as Zarr writes them, {key: bytes}, the group (with the
    layout) last. Zarr builds them in memory, so no file system needs Zarr's support."""
    import zarr  # here only: the processes that write and read shards never need it
    from zarr.storage import MemoryStore

    built: dict = {}
    memory = MemoryStore(built)
    group = zarr.open_group(memory, mode="w", zarr_format=3)
    for site, width in layout["sites"].items():
        group.create_array(
            site, shape=(layout["n_rows"], width), chunks=(layout["shard_rows"], width), dtype=layout["dtype"],
            compressors=None, filters=None, fill_value=0,
        )
    zarr.open_group(memory, path=MARKERS, mode="w", zarr_format=3)
    group.attrs[LAYOUT_KEY] = layout
    documents = {key: buf.to_bytes() for key, buf in built.items() if key != GROUP}
    documents[GROUP] = built[GROUP].to_bytes()
    return documents
