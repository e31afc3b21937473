"""Profiling a raw frame: `profile` detects every data column's schema and converts the frame to
it in one go, `detect_schema` returns just the schema, with the `Profile` result and
`preview_rows`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema, FileSchema
from pipelines.ingest.profiling.common import DETECT_THREADS, SAMPLE_SIZE, SAMPLE_VALUES, Conversion
from pipelines.ingest.profiling.conversion import _convert, _few_distinct
from pipelines.ingest.profiling.detection import _detect_column
from pipelines.ingest.profiling.sampling import (
    _column_sample,
    _column_stats,
    _data_columns,
    _exact_distinct,
    _sample_rows,
)
from pipelines.ingest.readers import ROW_NUMBER


@dataclass(frozen=True)
class Profile:
    """A raw frame's detected schema (see `detect_schema`) and its conversion to those types."""

    schema: FileSchema
    conversion: Conversion


def detect_schema(frame: pl.DataFrame) -> FileSchema:
    """Detect type, format, nullability and uniqueness of every data column.

    Returns one `ColumnSchema` per column other than ``_row_number``, in frame order (its
    `to_json` is the stored shape, keys ``name dataType nullable unique precision scale format
    sampleValues`` first): the data type and format, `nullable`, `unique`, up to
    ``SAMPLE_VALUES`` distinct raw `sample_values`, `null_count` and `distinct_count` (blank
    cells count as null; the distinct count is None for a column longer than the sample whose
    sample already repeats a value: counting it would hash every cell for nothing), `id_like`,
    and where they apply `ambiguous` (DATE/TIMESTAMP whose day/month order the data never
    settles), `decimal_separator`/`grouping_separator` (INTEGER/DECIMAL), `currency_symbol` and
    `negative_parentheses` (DECIMAL). Types and formats come from a sample of rows (see
    `_sample_rows`); the counts, ``nullable`` and ``unique`` cover every row. The null count of
    a typed column comes from converting it (see `profile`), so this converts the frame too;
    when the typed frame is wanted as well, call `profile`.
    """
    return profile(frame).schema


def profile(frame: pl.DataFrame, stage: Callable[[str], None] | None = None) -> Profile:
    """Detect every data column's schema (see `detect_schema`) and convert the frame to it.

    One pass over all rows per need, no more: the sample settles types and formats; one
    parallel select counts nulls and distinct values of the STRING columns (and of the typed
    columns whose sample holds no repeat, the only ones that may be unique) and tells which
    STRING columns need stripping; `convert`'s one query then types every column, and a
    typed column's blank cells are its nulls less its failures (a non-blank cell that does
    not convert is a failure, a blank one is null and never a failure), so its cells are not
    scanned a second time. `stage(name)`, when given, is called once types are detected
    ("detect schema") and once the frame is converted ("convert types").
    """
    if ROW_NUMBER not in frame.columns:
        frame = frame.with_row_index(ROW_NUMBER, offset=1).with_columns(
            pl.col(ROW_NUMBER).cast(pl.Int64)
        )
    columns = _data_columns(frame)
    rows = _sample_rows(frame.height)

    def sample_and_detect(name: str) -> tuple[tuple[pl.Series, pl.Series], ColumnSchema]:
        column = frame.get_column(name)
        # raw nulls (free in polars) only size the sample; exact counts come below
        sample = _column_sample(column.cast(pl.String), rows, frame.height - column.null_count())
        return sample, _detect_column(name, sample[0], column)

    # Columns are detected side by side: each is a few dozen small polars calls on its
    # sample, which leave the other core idle (8 columns of 1M rows: 0.075 -> 0.04 s).
    with ThreadPoolExecutor(DETECT_THREADS, thread_name_prefix="recon-detect") as pool:
        detected_columns = dict(zip(columns, pool.map(sample_and_detect, columns), strict=True))
    samples = {name: sample for name, (sample, _) in detected_columns.items()}
    detections = {name: detection for name, (_, detection) in detected_columns.items()}
    sample_distinct = {name: sample[0].n_unique() for name, sample in samples.items()}
    sample_repeats = {
        name for name, sample in samples.items() if sample_distinct[name] < sample[0].len()
    }
    distinct_for = {
        name for name in columns if name not in sample_repeats or frame.height <= SAMPLE_SIZE
    }
    counted = [
        name for name in columns if detections[name].data_type == "STRING" or name in distinct_for
    ]
    stats, padded = _column_stats(frame, counted, distinct_for) if counted else ({}, set())
    for name in distinct_for:
        nulls, distinct = stats[name]
        if distinct is not None and distinct < frame.height - nulls:
            if name not in sample_repeats:
                # Fewer distinct hashes than values, but no repeat in the sample: a repeat
                # further on or a hash collision; only comparing the strings tells which.
                stats[name] = (nulls, _exact_distinct(frame, name))
    if stage is not None:
        stage("detect schema")

    specs = [detections[name] for name in columns]
    cache = {
        name: _few_distinct(stats[name][1] if name in stats else sample_distinct[name])
        for name in columns
    }
    unchanged = {name for name in counted if name not in padded}
    conversion = _convert(frame, specs, cache, unchanged)
    if stage is not None:
        stage("convert types")
    failed = dict(conversion.failures.get_column("column").value_counts().iter_rows())
    schema: list[ColumnSchema] = []
    for name in columns:
        _, raw = samples[name]
        if name in stats:
            nulls, distinct = stats[name]
        else:
            nulls = conversion.frame.get_column(name).null_count() - failed.get(name, 0)
            distinct = None
        non_null = frame.height - nulls
        column = replace(
            detections[name],
            nullable=nulls > 0,
            unique=distinct is not None and distinct == non_null,
            sample_values=tuple(raw.unique(maintain_order=True).head(SAMPLE_VALUES).to_list()),
            null_count=nulls,
            distinct_count=distinct,
        )
        schema.append(column)
    return Profile(schema=FileSchema(schema), conversion=conversion)


def preview_rows(frame: pl.DataFrame, limit: int = 100) -> list[list[str | None]]:
    """First `limit` rows as lists of raw cell strings, data columns only, in column order."""
    columns = _data_columns(frame)
    if not columns:
        return [[] for _ in range(min(limit, frame.height))]
    head = frame.head(max(limit, 0)).select(pl.col(name).cast(pl.String) for name in columns)
    return [list(row) for row in head.iter_rows()]
