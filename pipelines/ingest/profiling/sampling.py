"""Sampling and whole-column counts: the rows detection looks at, each column's cleaned sample,
and the null and distinct counts over every row, with the check for cells that cleaning would
change."""

from __future__ import annotations

import random
from typing import Any

import polars as pl

from pipelines.ingest.profiling.common import (
    SAMPLE_HEAD,
    SAMPLE_MIN_VALUES,
    SAMPLE_RANDOM,
    SAMPLE_SEED,
    SAMPLE_SIZE,
)
from pipelines.ingest.profiling.detection import _clean
from pipelines.ingest.readers import ROW_NUMBER


def _sample_rows(height: int) -> pl.Series:
    """Row positions detection looks at: the first rows plus random rows of the rest.

    The first ``SAMPLE_HEAD`` rows, then ``SAMPLE_RANDOM`` rows drawn (with a fixed seed, so the
    result is reproducible) from the remaining rows, in file order.
    """
    head = list(range(min(height, SAMPLE_HEAD)))
    rest = range(SAMPLE_HEAD, height)
    drawn = random.Random(SAMPLE_SEED).sample(rest, min(len(rest), SAMPLE_RANDOM))
    return pl.Series(head + sorted(drawn), dtype=pl.Int64)


def _column_sample(raw: pl.Series, rows: pl.Series, non_null: int) -> tuple[pl.Series, pl.Series]:
    """Cleaned non-blank values of one raw column at `rows`, with their raw text.

    A sparse column whose sampled rows hold fewer than ``SAMPLE_MIN_VALUES`` values (of its
    `non_null`) also gets its first ``SAMPLE_SIZE`` non-blank values.
    """
    picked = raw.gather(rows).to_frame("raw").with_columns(v=_clean(pl.col("raw")))
    picked = picked.with_columns(row=rows).filter(pl.col("v").is_not_null())
    if picked.height < min(SAMPLE_MIN_VALUES, non_null):
        first = (
            raw.to_frame("raw")
            .select(pl.arg_where(_clean(pl.col("raw")).is_not_null()).head(SAMPLE_SIZE))
            .to_series()
            .cast(pl.Int64)
        )
        rows = pl.concat([first, picked.get_column("row")]).unique().sort()
        picked = raw.gather(rows).to_frame("raw").with_columns(v=_clean(pl.col("raw")))
    return picked.get_column("v"), picked.get_column("raw")


# A cell that `_clean` changes is empty or starts or ends with a White_Space character (what
# str.strip_chars removes): ASCII 9-13 and 32, or a UTF-8 sequence whose lead byte is C2, E1, E2
# or E3 and whose last byte is 80-BF. Comparing bytes is much cheaper than stripping.
_WHITESPACE_FIRST_BYTES = [9, 10, 11, 12, 13, 32, 0xC2, 0xE1, 0xE2, 0xE3]
_WHITESPACE_LAST_BYTES = [9, 10, 11, 12, 13, 32, *range(0x80, 0xC0)]


def _may_change_when_cleaned(name: str) -> pl.Expr:
    """False only when no cell of the column is empty or has surrounding whitespace."""
    raw = pl.col(name).cast(pl.String)
    data = raw.cast(pl.Binary)
    return (
        data.bin.get(0, null_on_oob=True).is_in(_WHITESPACE_FIRST_BYTES).any()
        | data.bin.get(-1, null_on_oob=True).is_in(_WHITESPACE_LAST_BYTES).any()
        | (raw.str.len_bytes() == 0).any()
    )


def _column_stats(
    frame: pl.DataFrame, columns: list[str], distinct_for: set[str] | None = None
) -> tuple[dict[str, tuple[int, int | None]], set[str]]:
    """Null count and distinct count (nulls left out) of every column once cleaned.

    Also returns the columns that cleaning could change (some cell empty or with surrounding
    whitespace); `convert` strips only those among its STRING columns.

    Distinct values are counted only for the columns in `distinct_for` (all when None; None
    for the others): hashing every cell is the expensive part, and a column whose sample
    already repeats a value cannot be unique. One parallel select over all rows counts nulls
    and distinct values of the raw columns and tells whether cleaning could change any cell;
    only the columns where it could are cleaned and counted again. Distinct values are
    counted through their 64-bit hashes, several times cheaper than hashing and comparing
    strings; a hash collision between two different values (odds about 1e-8 for a million
    distinct values) would make the count one low. `unique` stays exact: as many distinct
    hashes as values proves the values distinct, and `detect_schema` compares strings
    (`_exact_distinct`) when there are fewer distinct hashes but its sample shows no repeat.
    """

    wanted = set(columns) if distinct_for is None else distinct_for

    def counts(source: pl.DataFrame, names: list[str], extra: list[pl.Expr]) -> dict[str, Any]:
        values = [pl.col(name).cast(pl.String) for name in names]
        return source.select(
            *[value.null_count().alias(f"n{i}") for i, value in enumerate(values)],
            *[
                value.hash(seed=SAMPLE_SEED).n_unique().alias(f"d{i}")
                for i, value in enumerate(values)
                if names[i] in wanted
            ],
            *extra,
        ).row(0, named=True)

    def distinct(row: dict[str, Any], i: int, name: str, nulls: int) -> int | None:
        if name not in wanted:
            return None
        return int(row[f"d{i}"]) - int(nulls > 0)  # n_unique counts null once

    checks = [_may_change_when_cleaned(name).alias(f"c{i}") for i, name in enumerate(columns)]
    row = counts(frame, columns, checks)
    padded = [name for i, name in enumerate(columns) if row[f"c{i}"]]
    stats: dict[str, tuple[int, int | None]] = {}
    for i, name in enumerate(columns):
        nulls = int(row[f"n{i}"])
        stats[name] = (nulls, distinct(row, i, name, nulls))
    if padded:
        row = counts(frame.select(_clean(pl.col(name)) for name in padded), padded, [])
        for i, name in enumerate(padded):
            nulls = int(row[f"n{i}"])
            stats[name] = (nulls, distinct(row, i, name, nulls))
    return stats, set(padded)


def _exact_distinct(frame: pl.DataFrame, name: str) -> int:
    """Exact distinct count of a column once cleaned (nulls left out), comparing strings."""
    return int(frame.select(_clean(pl.col(name)).drop_nulls().n_unique()).item())


def _data_columns(frame: pl.DataFrame) -> list[str]:
    return [name for name in frame.columns if name != ROW_NUMBER]
