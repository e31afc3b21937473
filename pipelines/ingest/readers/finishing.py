"""Common finishing of a read table: the column and cell limits, column names, row numbers,
blank rows and empty cells."""

from __future__ import annotations

import polars as pl

from pipelines.ingest.readers.limits import (
    MAX_CELL_BYTES,
    MAX_COLUMNS,
    ROW_NUMBER,
    FileFormatError,
    _megabytes,
    _too_many_columns,
)


def _assemble(name: str, raw_names: list[str | None], data: pl.DataFrame) -> pl.DataFrame:
    """Name the columns, number the rows and drop blank rows and nameless empty columns."""
    _check_size(name, raw_names, data)
    names = _column_names(name, raw_names)
    data.columns = names
    frame = data.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER), pl.all())
    # Blank rows (blank lines, ",,,", empty spreadsheet rows) are dropped; the row numbers of
    # the others stay those of the file. Skipped cheaply when some column has no nulls.
    if data.width and min(column.null_count() for column in data.iter_columns()) > 0:
        frame = frame.filter(pl.any_horizontal(pl.exclude(ROW_NUMBER).is_not_null()))
    if frame.height == 0:
        raise FileFormatError(
            f"{name}: has a header but no data rows; upload the file with its data"
        )
    # A column with neither a name nor any value (a trailing delimiter, formatted empty cells)
    # carries nothing and is dropped.
    empty_unnamed = [
        column
        for column, raw in zip(names, raw_names, strict=True)
        if _clean_name(raw) == "" and frame.get_column(column).null_count() == frame.height
    ]
    return frame.drop(empty_unnamed)


def _check_size(name: str, raw_names: list[str | None], data: pl.DataFrame) -> None:
    """Refuse more than MAX_COLUMNS columns, or a cell or header name over MAX_CELL_BYTES.

    One select over every column (a string's length is stored beside it: no cell is scanned);
    only when some cell is too long is the first such cell looked for. `data` holds the data
    rows of the file in order (its row i is data row i + 1).
    """
    if len(raw_names) > MAX_COLUMNS:
        raise _too_many_columns(name, len(raw_names))
    for position, raw in enumerate(raw_names, start=1):
        size = len(str(raw).encode("utf-8", "replace")) if raw is not None else 0
        if size > MAX_CELL_BYTES:
            raise _cell_too_long(name, "the header", f"column {position}", size)
    if data.width == 0 or data.height == 0:
        return
    longest = data.select(pl.all().cast(pl.String).str.len_bytes().max()).row(0)
    for position, longest_size in enumerate(longest):
        if longest_size is not None and longest_size > MAX_CELL_BYTES:
            sizes = data.get_column(data.columns[position]).cast(pl.String).str.len_bytes()
            row = int(sizes.gt(MAX_CELL_BYTES).arg_true()[0])
            label = raw_names[position] if position < len(raw_names) else None
            where = f"column {position + 1}" + (f" ({str(label)[:60]!r})" if label else "")
            raise _cell_too_long(name, f"data row {row + 1}", where, int(sizes[row]))


def _cell_too_long(name: str, row: str, column: str, size: int) -> FileFormatError:
    return FileFormatError(
        f"{name}: {row}, {column} holds {_megabytes(size)}, more than the "
        f"{_megabytes(MAX_CELL_BYTES)} a cell may have; look for a quote that is never closed or "
        "missing line breaks, or leave that value out of the export"
    )


def _empty_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    """Empty strings become null, as the CSV reader does for empty fields."""
    return frame.with_columns(
        pl.when(pl.col(column) == "").then(None).otherwise(pl.col(column)).alias(column)
        for column in frame.columns
    )


def _clean_name(raw: object) -> str:
    if raw is None:
        return ""
    return str(raw).strip().strip("\ufeff").strip()


def _column_names(name: str, raw_names: list[str | None]) -> list[str]:
    """Stripped header names; blanks become column_<n>; duplicates are an error."""
    names = [_clean_name(raw) or f"column_{i}" for i, raw in enumerate(raw_names, start=1)]
    positions: dict[str, list[int]] = {}
    for i, column in enumerate(names, start=1):
        positions.setdefault(column, []).append(i)
    duplicated = {column: where for column, where in positions.items() if len(where) > 1}
    if duplicated:
        listed = "; ".join(
            f"{column!r} (columns {', '.join(map(str, where))})"
            for column, where in duplicated.items()
        )
        raise FileFormatError(
            f"{name}: the header has duplicate column names: {listed}; rename them so every "
            "column name is unique"
        )
    if ROW_NUMBER in positions:
        raise FileFormatError(
            f"{name}: has a column named {ROW_NUMBER!r}, which is reserved for row numbers; "
            "rename that column"
        )
    return names
