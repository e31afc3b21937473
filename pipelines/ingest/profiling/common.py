"""Shared settings and results of profiling: the data types, the sampling and detection
thresholds, the polars engine of `convert`, the detection thread count, the failure-row schema
and the `Conversion` result."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

DATA_TYPES = ("STRING", "INTEGER", "DECIMAL", "DATE", "TIMESTAMP", "BOOLEAN")

SAMPLE_HEAD = 2_000
"""Detection samples the first rows of the file..."""
SAMPLE_RANDOM = 3_000
"""...plus this many rows drawn at random from the rest."""
SAMPLE_SIZE = SAMPLE_HEAD + SAMPLE_RANDOM
SAMPLE_MIN_VALUES = 1_000
"""A column with fewer sampled non-blank values also samples its first SAMPLE_SIZE values."""
SAMPLE_SEED = 20_240_601
TYPE_THRESHOLD = 0.98
"""Share of sampled non-blank values that must parse for a column to take a type."""
SAMPLE_VALUES = 5
PRUNE_MARGIN = 50
"""Candidate formats are first tried on the first (allowed failures + PRUNE_MARGIN) values;
those that already fail more than the sample may are dropped before the whole sample."""

ENGINE = "streaming"
"""Polars engine of `convert`'s one query over every row: with polars 2.1 the streaming engine
splits each column into morsels on both cores (the money column's parse alone: 0.12 s on one
core in memory, 0.05 s streaming; all of `convert` on 1M rows 0.21 -> 0.15 s). The counts of
`detect_schema` stay eager (measured faster: 0.08 vs 0.11 s)."""
DETECT_THREADS = 4
"""Columns whose samples are detected at once (more than the cores: each waits on small calls)."""
PARSE_CACHE_MAX_DISTINCT = 1_000
"""Date columns with at most this many distinct values (`distinctCount`, else the sample's) parse
each text once."""

_FAILURE_SCHEMA = {
    "row_number": pl.Int64,
    "column": pl.String,
    "check": pl.String,
    "value": pl.String,
}


@dataclass(frozen=True)
class Conversion:
    """Typed frame plus one row per non-blank input cell that failed to convert."""

    frame: pl.DataFrame
    failures: pl.DataFrame
