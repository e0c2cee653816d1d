"""A streamed corpus cut into the token sequences of the corpus-scale protocol.

`build_sequences` reads the documents once, tokenizes them in batches, cuts each into windows,
removes duplicates and samples, holding only the sequences it keeps and one 16-byte digest per
distinct sequence (never the documents).

Windows (``window=W``): a document's token ids are cut into consecutive windows of exactly W
tokens starting at 0, W, 2W, ...; the last, shorter piece is dropped (``remainder="drop"``, so a
document shorter than W gives nothing) or kept as a shorter sequence (``"keep"``, right-padded in
`ids`). ``window=None``: each document is one sequence, and a document longer than the model's
context is cut into windows of n_ctx tokens, the rule above applying to its last piece. A
document that encodes to no token gives nothing.

Stream order is (document index, start). Duplicates: a sequence identical to an earlier one
token for token (same length, same ids; compared by a 128-bit BLAKE2b digest of its int32 ids) is
removed and counted in `n_duplicates`; the first one is kept.

Sampling (``max_sequences=k``): a uniform sample without replacement of k of the distinct
sequences, drawn in one pass by reservoir sampling (Vitter's algorithm R): the first k are
kept; the i-th (0-based, i >= k) draws u from numpy's Generator(PCG64(seed)) and replaces the
kept sequence in slot floor(u * (i + 1)) when that is below k. Each distinct sequence consumes
exactly one draw once the reservoir is full, so the sample depends on the stream and the seed
only (not on how the documents are batched). The sample is returned sorted back into stream
order; with k at least the number of distinct sequences it is all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numba as nb
import numpy as np

from ..errors import StudyError
from .sources import Document, DocumentSource

REMAINDERS = ("drop", "keep")
DOCUMENTS_PER_BATCH = 256  # documents tokenized together (tokenizers' encode_batch runs them on all cores)


@dataclass
class SequenceSet:
    ids: np.ndarray  # (N, W) int32, right-padded with 0 where a sequence is shorter than W
    lengths: np.ndarray  # (N,) int32, every length >= 1
    document: np.ndarray  # (N,) int64: index of the source document
    start: np.ndarray  # (N,) int64: token offset of the sequence in its document
    n_documents: int  # documents read
    n_candidates: int  # sequences the corpus gave before removing duplicates and sampling
    n_duplicates: int  # identical sequences removed (token for token; the first one is kept)
    window: int | None
    remainder: str
    seed: int

    def __len__(self) -> int:
        return int(self.lengths.size)

    def sha256(self) -> str:
        """Of ids, lengths, document and start (dtypes and shapes included)."""
        digest = hashlib.sha256()
        for name in ("ids", "lengths", "document", "start"):
            a = np.ascontiguousarray(getattr(self, name))
            digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            digest.update(a.tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------- argument checks

def _check_arguments(window, remainder, max_sequences, seed, n_ctx) -> None:
    """StudyError on a bad argument, before any document is read."""
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int | np.integer) or n_ctx < 1:
        raise StudyError(f"the model's context must be a positive integer, got {n_ctx!r}")
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int | np.integer):
            raise StudyError(f"--window must be a whole number of tokens, got {window!r}")
        if window < 2:
            raise StudyError(f"--window must be at least 2 tokens (one token has no context to represent), got {window}")
        if window > n_ctx:
            raise StudyError(f"--window {window} is longer than the model's context of {n_ctx} tokens; use at most {n_ctx}")
    if remainder not in REMAINDERS:
        raise StudyError(f"--remainder must be {' or '.join(REMAINDERS)}, got {remainder!r}")
    if max_sequences is not None and (isinstance(max_sequences, bool) or not isinstance(max_sequences, int | np.integer)
                                      or max_sequences < 1):
        raise StudyError(f"--max-sequences must be a positive integer (or none for all), got {max_sequences!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise StudyError(f"--seed must be a non-negative integer, got {seed!r}")


# ---------------------------------------------------------------- tokenizing in batches

def _batches(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in documents:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_batch(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids (int32) of each text, equal to tokenizer.encode(text) text by text. A
    gpt2np.Tokenizer's `tokenizers` backend encodes a batch on every core (encode_batch_fast: no
    character offsets); any other tokenizer is called text by text."""
    own = getattr(tokenizer, "encode_batch", None)
    if own is not None:
        return [np.asarray(ids, dtype=np.int32) for ids in own(texts)]
    backend = getattr(tokenizer, "_tok", None)  # gpt2np.Tokenizer has no batch method of its own
    fast = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
    if fast is not None:
        return [np.asarray(e.ids, dtype=np.int32) for e in fast(texts)]
    return [np.asarray(tokenizer.encode(t), dtype=np.int32) for t in texts]


# ---------------------------------------------------------------- windows

def window_starts(n_tokens: int, size: int, remainder: str) -> list[tuple[int, int]]:
    """(start, length) of the consecutive windows of `size` tokens of a document of `n_tokens`;
    its last shorter piece kept only with remainder "keep"."""
    full = n_tokens // size
    pieces = [(k * size, size) for k in range(full)]
    if remainder == "keep" and n_tokens > full * size:
        pieces.append((full * size, n_tokens - full * size))
    return pieces


def document_pieces(n_tokens: int, window: int | None, remainder: str, n_ctx: int) -> list[tuple[int, int]]:
    """The sequences of one document (see the module's docstring): windows, or the whole
    document (cut at the context when longer)."""
    if window is None:
        if n_tokens <= n_ctx:
            return [(0, n_tokens)] if n_tokens else []
        return window_starts(n_tokens, n_ctx, remainder)
    return window_starts(n_tokens, window, remainder)


# ---------------------------------------------------------------- kept sequences

class _Rows:
    """Growable columns of kept sequences (ids right-padded to the widest so far): memory is
    O(sequences kept), doubling when full."""

    def __init__(self, width: int, max_rows: int | None = None):
        self.n, self.max_rows = 0, max_rows  # max_rows: never more (the reservoir's size)
        self.ids = np.zeros((16, max(width, 1)), dtype=np.int32)
        self.lengths = np.zeros(16, dtype=np.int32)
        self.document = np.zeros(16, dtype=np.int64)
        self.start = np.zeros(16, dtype=np.int64)

    def _fit(self, rows: int, width: int) -> None:
        cap, cols = self.ids.shape
        if rows <= cap and width <= cols:
            return
        new_cap = cap if rows <= cap else max(2 * cap, rows)
        if self.max_rows is not None:
            new_cap = max(min(new_cap, self.max_rows), rows)
        new_cols = max(cols, width)
        ids = np.zeros((new_cap, new_cols), dtype=np.int32)
        ids[:self.n, :cols] = self.ids[:self.n]
        self.ids = ids
        for name in ("lengths", "document", "start"):
            old = getattr(self, name)
            grown = np.zeros(new_cap, dtype=old.dtype)
            grown[:self.n] = old[:self.n]
            setattr(self, name, grown)

    def put(self, slots: np.ndarray, seq: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Write sequences (ids, lengths, document, start) into row `slots` (appending when a
        slot is self.n or beyond)."""
        ids, lengths, document, start = seq
        if slots.size == 0:
            return
        self._fit(int(slots.max()) + 1, ids.shape[1])
        self.ids[slots] = 0
        self.ids[slots, :ids.shape[1]] = ids
        self.lengths[slots], self.document[slots], self.start[slots] = lengths, document, start
        self.n = max(self.n, int(slots.max()) + 1)

    def in_stream_order(self, width: int | None) -> tuple[np.ndarray, ...]:
        order = np.lexsort((self.start[:self.n], self.document[:self.n]))
        lengths = self.lengths[order]
        cols = width if width is not None else int(lengths.max())
        return np.ascontiguousarray(self.ids[order, :cols]), lengths, self.document[order], self.start[order]


class _Collector:
    """The distinct sequences, all of them or a reservoir sample of `limit` (algorithm R)."""

    def __init__(self, width: int, limit: int | None, seed: int):
        self.rows = _Rows(width, limit)
        self.limit = limit
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.n_seen = 0  # distinct sequences offered so far

    def offer(self, seq: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        m = seq[1].size
        first = self.n_seen
        self.n_seen += m
        if self.limit is None:
            self.rows.put(np.arange(first, first + m), seq)
            return
        fill = max(0, min(m, self.limit - first))  # while the reservoir is not full: no draw
        self.rows.put(np.arange(first, first + fill), tuple(a[:fill] for a in seq))
        if fill == m:
            return
        i = np.arange(first + fill, first + m, dtype=np.float64)
        slot = np.floor(self.rng.random(m - fill) * (i + 1)).astype(np.int64)
        chosen = np.flatnonzero(slot < self.limit)
        # a later sequence replaces an earlier one drawn into the same slot: keep the last per slot
        _, last_first = np.unique(slot[chosen][::-1], return_index=True)
        chosen = chosen[chosen.size - 1 - last_first]
        self.rows.put(slot[chosen], tuple(a[fill:][chosen] for a in seq))


# ---------------------------------------------------------------- the digests seen (speed and memory: one place)

@nb.njit(cache=True, nogil=True)
def _insert_digests(table: np.ndarray, digests: np.ndarray, is_new: np.ndarray) -> int:
    """Insert each digest (a row of two uint64) into the open-addressing table (rows of two
    uint64, (0, 0) empty, a power-of-two number of rows, linear probing); is_new[r] says whether
    digest r was absent (a digest repeated within `digests` is new once). Returns how many were."""
    mask = np.uint64(table.shape[0] - 1)
    added = 0
    for r in range(digests.shape[0]):
        hi, lo = digests[r, 0], digests[r, 1]
        if hi == 0 and lo == 0:  # the empty marker: stored as (0, 1) (merging two digests with probability 2^-128)
            lo = np.uint64(1)
        slot = hi & mask  # the digest's bits are uniform: its first word is the hash
        while True:
            if table[slot, 0] == 0 and table[slot, 1] == 0:
                table[slot, 0], table[slot, 1] = hi, lo
                is_new[r] = True
                added += 1
                break
            if table[slot, 0] == hi and table[slot, 1] == lo:
                is_new[r] = False
                break
            slot = (slot + np.uint64(1)) & mask
    return added


class DigestSet:
    """The 128-bit BLAKE2b digests of the sequences seen, in a flat table of 16-byte rows at most
    70% full: 23-46 bytes per distinct sequence, where a Python set of bytes takes about 83."""

    MAX_LOAD = 0.7

    def __init__(self, capacity: int = 1 << 12):
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"the capacity must be a power of two, got {capacity}")  # the kernel masks, not divides
        self.table = np.zeros((capacity, 2), dtype=np.uint64)
        self.count = 0

    def _grow(self, needed: int) -> None:
        rows = self.table.shape[0]
        while needed > self.MAX_LOAD * rows:
            rows *= 2
        if rows == self.table.shape[0]:
            return
        old = self.table[(self.table[:, 0] != 0) | (self.table[:, 1] != 0)]
        self.table = np.zeros((rows, 2), dtype=np.uint64)
        _insert_digests(self.table, old, np.empty(old.shape[0], dtype=np.bool_))

    def add(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Whether each sequence of int32 ids is seen for the first time, in order (the digest is
        of the ids' bytes: the caller passes int32 arrays, as encode_batch makes them)."""
        blake2b = hashlib.blake2b
        raw = b"".join([blake2b(p.tobytes(), digest_size=16).digest() for p in sequences])
        digests = np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy()  # writable: one compiled signature
        self._grow(self.count + digests.shape[0])
        is_new = np.empty(digests.shape[0], dtype=np.bool_)
        self.count += _insert_digests(self.table, digests, is_new)
        return is_new


def _batch_sequences(batch: list[Document], tokens: list[np.ndarray], window, remainder, n_ctx):
    """The candidate sequences of a batch of documents, in stream order, as (ids padded to
    the batch's widest, lengths, document, start) plus the list of unpadded id arrays."""
    pieces, doc_index, starts, lengths = [], [], [], []
    for doc, t in zip(batch, tokens):
        for start, length in document_pieces(int(t.size), window, remainder, n_ctx):
            pieces.append(t[start:start + length])
            doc_index.append(doc.index)
            starts.append(start)
            lengths.append(length)
    if not pieces:
        return None, []
    lengths_a = np.asarray(lengths, dtype=np.int32)
    ids = np.zeros((len(pieces), int(lengths_a.max())), dtype=np.int32)
    for row, p in enumerate(pieces):
        ids[row, :p.size] = p
    return (ids, lengths_a, np.asarray(doc_index, dtype=np.int64), np.asarray(starts, dtype=np.int64)), pieces


def _no_sequence_message(n_documents: int, window: int | None, remainder: str, source: DocumentSource) -> str:
    if n_documents == 0:
        return f"the corpus ({source.description}) holds no documents"
    if window is None:
        return f"{n_documents} documents gave no sequence: every one encodes to no token ({source.description})"
    hint = "; use a shorter --window" + (" or --remainder keep" if remainder == "drop" else "")
    return f"{n_documents} documents gave no window of {window} tokens ({source.description}){hint}"


def build_sequences(source: DocumentSource, tokenizer, *, window: int | None, remainder: str = "drop",
                    max_sequences: int | None = None, seed: int = 0, n_ctx: int,
                    progress: Callable[[int, int], None] | None = None,
                    documents_per_batch: int = DOCUMENTS_PER_BATCH) -> SequenceSet:
    """The sequences of `source` (see the module's docstring for windows, duplicates and the
    sampling). `progress(documents read, distinct sequences)` is called after each batch.
    StudyError before reading on a bad argument (a window over n_ctx or under 2, ...), and after
    reading when the corpus gives no sequence."""
    _check_arguments(window, remainder, max_sequences, seed, n_ctx)
    collector = _Collector(window if window is not None else 1, max_sequences, int(seed))
    seen = DigestSet()
    n_documents = n_candidates = n_duplicates = 0
    for batch in _batches(source, max(int(documents_per_batch), 1)):
        n_documents += len(batch)
        seq, pieces = _batch_sequences(batch, encode_batch(tokenizer, [d.text for d in batch]), window, remainder, n_ctx)
        n_candidates += len(pieces)
        if pieces:
            new = seen.add(pieces)
            n_duplicates += int(new.size - new.sum())
            collector.offer(tuple(a[new] for a in seq))
        if progress is not None:
            progress(n_documents, collector.n_seen)
    if collector.rows.n == 0:
        raise StudyError(_no_sequence_message(n_documents, window, remainder, source))
    ids, lengths, document, start = collector.rows.in_stream_order(window)
    return SequenceSet(ids=ids, lengths=lengths, document=document, start=start, n_documents=n_documents,
                       n_candidates=n_candidates, n_duplicates=n_duplicates, window=window, remainder=remainder, seed=int(seed))
