"""The exact k-nearest-neighbour engine, internal to idest: the geometry it searches in,
the search itself (``search``'s docstring says how float32 products give exact
neighbours), its Numba kernels, and the duplicate and near-duplicate detection built on it.

Its API for the rest of idest is the names below; nothing else is imported from outside
this package (the tests reach further in).
"""

from .duplicates import (
    COSINE_ZERO_SQ_CHORD,
    NEAR_DUPLICATE_TOL,
    describe,
    near_duplicates,
    repeated_rows,
    zero_distance_repeats,
)
from .geometry import Geometry, prepare, user_distances
from .search import nearest

__all__ = [
    "COSINE_ZERO_SQ_CHORD",
    "NEAR_DUPLICATE_TOL",
    "Geometry",
    "describe",
    "near_duplicates",
    "nearest",
    "prepare",
    "repeated_rows",
    "user_distances",
    "zero_distance_repeats",
]
