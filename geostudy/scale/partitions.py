"""Disjoint partitions of the sequences, as in Cheng et al. (ICLR 2025): the estimators run on
each partition separately and the study reports the mean with the spread across partitions.

    plan = plan_partitions(n_sequences, partitions=None, partition_size=None)   # 5 x 10,000 by default
    partition_of = draw_partitions(n_sequences, plan, seed)                    # (n_sequences,) int32, -1 unused
    rows = partition_rows(partition_of, 2)                                     # partition 2's rows, increasing

The defaults follow Cheng et al.: 5 partitions of 10,000 points. A corpus too small for that
gets 5 equal partitions of n // 5 (the plan's note says so, for the report). Which sequence goes
where is a seeded uniform permutation (numpy Generator(PCG64(seed))): partition p takes the
permutation's entries [p * size, (p + 1) * size); the rest are in no partition (-1). Within a
partition the rows are used in increasing row order (= stream order), so the points handed to
idest, and hence every result, do not depend on the permutation's order inside a partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import StudyError

DEFAULT_PARTITIONS = 5
DEFAULT_PARTITION_SIZE = 10_000
# GRIDE's largest order at the default range_max (64) needs 65 distinct points; twice that leaves
# room for the identical points idest drops (e.g. the embeddings of one token at one position).
MIN_PARTITION_SIZE = 128


@dataclass(frozen=True)
class PartitionPlan:
    partitions: int
    size: int
    note: str  # one sentence for the report: how many, how large, and why if not the default


def _positive(flag: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise StudyError(f"{flag} must be a positive integer, not {value!r}")
    return int(value)


def _need(n: int, partitions: int, size: int) -> None:
    if partitions * size > n:
        raise StudyError(
            f"the corpus gives {n:,} sequences; {partitions} partitions of {size:,} need {partitions * size:,}: "
            "give a larger corpus, or fewer or smaller partitions (--partitions, --partition-size)"
        )


def _check_size(n: int, partitions: int, size: int) -> None:
    if size < MIN_PARTITION_SIZE:
        raise StudyError(
            f"the corpus gives {n:,} sequences, so {partitions} partitions would hold {size:,} each; the estimators need "
            f"at least {MIN_PARTITION_SIZE} points per partition: give a larger corpus or fewer partitions (--partitions)"
        )


def plan_partitions(n_sequences: int, partitions: int | None, partition_size: int | None) -> PartitionPlan:
    """How many partitions of how many sequences (see the module docstring for the defaults).

    Neither given: 5 x 10,000 when the corpus has 50,000 sequences, else 5 of n // 5.
    Only --partitions P: P of min(10,000, n // P). Only --partition-size s: min(5, n // s) of s.
    Both: exactly those (StudyError when P * s > n). Fewer than MIN_PARTITION_SIZE points per
    partition is a StudyError."""
    n = int(n_sequences)
    if n < 0:
        raise StudyError(f"the number of sequences must be >= 0, not {n}")
    P = None if partitions is None else _positive("--partitions", partitions)
    s = None if partition_size is None else _positive("--partition-size", partition_size)
    if s is not None and n < s:
        raise StudyError(
            f"the corpus gives {n:,} sequences, fewer than one partition of {s:,}: give a larger corpus or a smaller --partition-size"
        )
    if P is None and s is None:
        if n >= DEFAULT_PARTITIONS * DEFAULT_PARTITION_SIZE:
            P, s, why = DEFAULT_PARTITIONS, DEFAULT_PARTITION_SIZE, "the default"
        else:
            P, s = DEFAULT_PARTITIONS, n // DEFAULT_PARTITIONS
            need = DEFAULT_PARTITIONS * DEFAULT_PARTITION_SIZE
            why = f"the largest equal ones the corpus allows: the default {DEFAULT_PARTITIONS} x {DEFAULT_PARTITION_SIZE:,} needs {need:,}"
    elif s is None:
        s = min(DEFAULT_PARTITION_SIZE, n // P)
        why = "as asked" if s == DEFAULT_PARTITION_SIZE else "the largest the corpus allows for that many partitions"
    elif P is None:
        P = min(DEFAULT_PARTITIONS, n // s)
        why = "as asked" if P == DEFAULT_PARTITIONS else "as many as the corpus allows at that size"
    else:
        why = "as asked"
    _check_size(n, P, s)
    _need(n, P, s)
    note = f"{P} disjoint partitions of {s:,} sequences ({why}), {P * s:,} of the {n:,} sequences used"
    return PartitionPlan(partitions=P, size=s, note=note)


def draw_partitions(n_sequences: int, plan: PartitionPlan, seed: int) -> np.ndarray:
    """The partition of each sequence (n_sequences,) int32: 0 .. P-1, or -1 when unused."""
    n = int(n_sequences)
    _need(n, plan.partitions, plan.size)
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    partition_of = np.full(n, -1, dtype=np.int32)
    used = plan.partitions * plan.size
    partition_of[order[:used]] = np.repeat(np.arange(plan.partitions, dtype=np.int32), plan.size)
    return partition_of


def partition_rows(partition_of: np.ndarray, partition: int) -> np.ndarray:
    """The rows (sequence indices) of one partition, in increasing order, int64."""
    return np.flatnonzero(np.asarray(partition_of) == partition).astype(np.int64)
