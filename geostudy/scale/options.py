"""The options of the corpus-scale protocol (`--represent last|mean`), parsed and checked once,
before anything is loaded. The token study's options are geostudy/options.py's."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StudyError
from ..options import integer_option

REPRESENTATIONS = ("tokens", "last", "mean")  # tokens: the token study; last, mean: one point per sequence
REMAINDERS = ("drop", "keep")
DEFAULT_BATCH_SIZE = 64  # sequences per forward batch: part of the fingerprint (it fixes the arithmetic)
DEFAULT_SHARD_ROWS = 1024  # sequences per store chunk and per forward task
DEFAULT_SEED = 0

# The options that only mean something for one point per sequence, as the command line spells them.
SCALE_ONLY = {
    "window": "--window", "remainder": "--remainder", "max_sequences": "--max-sequences",
    "partitions": "--partitions", "partition_size": "--partition-size", "untrained": "--untrained",
    "text_column": "--text-column", "split": "--split", "batch_size": "--batch-size", "seed": "--seed",
    "store": "--store",
}


@dataclass(frozen=True)
class ScaleOptions:
    """The checked options of the corpus-scale protocol."""

    represent: str  # "last" or "mean"
    window: int | None  # tokens per sequence; None: each document is one sequence
    remainder: str  # what happens to a document's last, shorter window: "drop" or "keep"
    max_sequences: int | None  # a seeded uniform sample of at most this many sequences
    seed: int  # the sampling, the partitions and the untrained model
    text_column: str | None
    split: str | None
    partitions: int | None  # None: the default (5 when the corpus allows)
    partition_size: int | None  # None: the default (10,000 when the corpus allows)
    batch_size: int
    untrained: bool


def parse_represent(value) -> str:
    text = str(value).strip().lower() if value is not None else "tokens"
    if text not in REPRESENTATIONS:
        raise StudyError(f"--represent must be one of {', '.join(REPRESENTATIONS)}, got {value!r}")
    return text


def _optional_int(value, name: str, requirement: str, low: int) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "all")):
        return None
    return integer_option(value, name, requirement, low)


def validate_scale_options(
    *,
    represent="last",
    window=None,
    remainder="drop",
    max_sequences=None,
    seed=DEFAULT_SEED,
    text_column=None,
    split=None,
    partitions=None,
    partition_size=None,
    batch_size=DEFAULT_BATCH_SIZE,
    untrained=False,
) -> ScaleOptions:
    """Check every corpus-scale option that can be checked without the model; StudyError on the
    first problem (the window against the context is checked with the model)."""
    rep = parse_represent(represent)
    if rep == "tokens":
        raise StudyError("the corpus-scale protocol needs --represent last or mean (tokens is the token study)")
    rem = str(remainder).strip().lower()
    if rem not in REMAINDERS:
        raise StudyError(f"--remainder must be {' or '.join(REMAINDERS)}, got {remainder!r}")
    if text_column is not None and not str(text_column).strip():
        raise StudyError("--text-column must name a column, got an empty name")
    return ScaleOptions(
        represent=rep,
        window=_optional_int(window, "--window", "an integer >= 2 (tokens per sequence) or 'none'", 2),
        remainder=rem,
        max_sequences=_optional_int(max_sequences, "--max-sequences", "a positive integer or 'all'", 1),
        seed=integer_option(seed, "--seed", "an integer >= 0", 0),
        text_column=None if text_column is None else str(text_column),
        split=None if split is None else str(split),
        partitions=_optional_int(partitions, "--partitions", "a positive integer", 1),
        partition_size=_optional_int(partition_size, "--partition-size", "an integer >= 3", 3),
        batch_size=integer_option(batch_size, "--batch-size", "a positive integer", 1),
        untrained=bool(untrained),
    )


def refuse_scale_options_for_tokens(given: dict) -> None:
    """The token study was asked for (--represent tokens) with an option that only the
    corpus-scale protocol reads: say so, rather than ignore it."""
    used = [flag for key, flag in SCALE_ONLY.items() if given.get(key) not in (None, False)]
    if used:
        raise StudyError(
            f"{', '.join(used)} {'applies' if len(used) == 1 else 'apply'} to the corpus-scale protocol only; "
            "add --represent last or --represent mean (one point per sequence), or leave "
            f"{'it' if len(used) == 1 else 'them'} out for the token study"
        )
