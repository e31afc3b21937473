"""Records as exceptions carry them: the original row as JSON, with and without its row number.

`records_as_json(records, rows)` picks the rows with these `_row_number`s (a LazyFrame reads
only those from its parquet) and returns `_row_number`, `_json` (every column, the row number
included: an exception's `source_data` / `target_data`) and `_content` (without it: what a
record's fingerprint is computed from).
"""

from __future__ import annotations

import polars as pl

from pipelines.reconcile.mapping import ROW


def records_as_json(records: pl.DataFrame | pl.LazyFrame, rows: pl.Series) -> pl.DataFrame:
    """`_row_number`, `_json` and `_content` of the records with these row numbers."""
    picked = records.filter(pl.col(ROW).is_in(rows.drop_nulls().implode()))
    frame = picked.collect() if isinstance(picked, pl.LazyFrame) else picked
    data = frame.drop("_valid", strict=False)
    columns = [c for c in data.columns if c != ROW]
    return data.select(
        pl.col(ROW).cast(pl.Int64),
        pl.struct([*columns, ROW]).struct.json_encode().alias("_json"),
        pl.struct(columns).struct.json_encode().alias("_content"),
    )
