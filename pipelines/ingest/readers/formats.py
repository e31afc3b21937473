"""Readers for JSON Lines, Parquet and Excel .xlsx files, every value as text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from pipelines.ingest.readers.finishing import _empty_to_null
from pipelines.ingest.readers.limits import (
    MAX_COLUMNS,
    FileFormatError,
    _empty,
    _short,
    _too_many_columns,
)

# --- JSON Lines ------------------------------------------------------------------------------


def _read_jsonl(source: Path, name: str) -> tuple[list[str | None], pl.DataFrame]:
    """Read JSON Lines with every key as a String column; nested values become JSON text.

    Column names are the keys in order of first appearance (polars' schema inference over the
    whole file, or a streaming pass with the json module when values of one key have types
    polars cannot unify). Blank lines are skipped, so rows count records, not lines.
    """
    try:
        names = pl.scan_ndjson(source, infer_schema_length=None).collect_schema().names()
    except Exception as exc:
        try:
            names = _jsonl_keys(source, name)
        except FileFormatError as err:
            raise err from exc
    if len(names) > MAX_COLUMNS:
        raise _too_many_columns(name, len(names), "distinct keys")
    if not names:
        raise FileFormatError(
            f"{name}: the JSON Lines objects have no keys, so there are no columns; each line "
            'must be an object such as {"id": 1, "name": "x"}'
        )
    try:
        frame = pl.read_ndjson(source, schema=dict.fromkeys(names, pl.String))
    except Exception as exc:
        raise _diagnose_jsonl(source, name, exc) from exc
    return list(names), _empty_to_null(frame)


def _iter_json_objects(source: Path, name: str) -> Iterator[dict[str, object]]:
    with source.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise FileFormatError(
                    f"{name}: line {number} is not valid JSON ({_short(exc)}); JSON Lines needs "
                    "one complete JSON object per line"
                ) from exc
            if not isinstance(value, dict):
                raise FileFormatError(
                    f"{name}: line {number} is a JSON {type(value).__name__}, not an object; "
                    'JSON Lines needs one object per line, such as {"id": 1}'
                )
            yield value


def _jsonl_keys(source: Path, name: str) -> list[str]:
    keys: dict[str, None] = {}
    for value in _iter_json_objects(source, name):
        keys.update(dict.fromkeys(value))
    return list(keys)


def _diagnose_jsonl(source: Path, name: str, cause: BaseException) -> FileFormatError:
    """Explain a polars JSON Lines failure by the first bad line the json module finds."""
    try:
        for _ in _iter_json_objects(source, name):
            pass
    except FileFormatError as err:
        return err
    return FileFormatError(
        f"{name}: could not be read as JSON Lines ({_short(cause)}); check for numbers too "
        "large for 64 bits and that every line is one JSON object"
    )


# --- binary formats -----------------------------------------------------------------------------


def _read_parquet(path: Path, name: str) -> tuple[list[str | None], pl.DataFrame]:
    try:
        width = len(pl.read_parquet_schema(path))
    except Exception:
        width = 0  # a damaged file: reading it below says so
    if width > MAX_COLUMNS:
        raise _too_many_columns(name, width)
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise FileFormatError(
            f"{name}: is not a readable Parquet file ({_short(exc)}); it may be truncated or "
            "damaged - export it again"
        ) from exc
    if frame.width == 0:
        raise _empty(name)
    raw_names: list[str | None] = list(frame.columns)
    columns: list[pl.Series] = []
    for column, dtype in frame.schema.items():
        try:
            columns.append(frame.select(_as_text(column, dtype)).to_series())
        except Exception as exc:
            raise FileFormatError(
                f"{name}: column {column!r} has Parquet type {dtype}, which cannot be read as "
                f"text ({_short(exc)}); export that column as text"
            ) from exc
    return raw_names, _empty_to_null(pl.DataFrame(columns))


def _as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Expression turning one Parquet column into text; nested values become JSON."""
    if dtype == pl.String:
        return pl.col(column)
    if isinstance(dtype, pl.Struct):
        encoded = pl.col(column).struct.json_encode()
        return pl.when(pl.col(column).is_null()).then(None).otherwise(encoded).alias(column)
    if isinstance(dtype, (pl.List, pl.Array)):
        wrapped = pl.struct(pl.col(column).alias("v")).struct.json_encode()
        encoded = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
        return pl.when(pl.col(column).is_null()).then(None).otherwise(encoded).alias(column)
    if dtype == pl.Binary:
        return pl.col(column).bin.encode("hex")
    if isinstance(dtype, pl.Duration):
        return pl.col(column).dt.to_string("iso")
    return pl.col(column).cast(pl.String)


def _read_xlsx(path: Path, name: str) -> tuple[list[str | None], pl.DataFrame]:
    """Read the first sheet with calamine, every cell as text.

    Cells are read as stored: text that looks like a formula stays text, and real formula cells
    give their cached result (never evaluated here). Numbers come as calamine formats them
    ("1234.5", dates "2024-01-02 00:00:00").
    """
    try:
        frame = pl.read_excel(
            path,
            engine="calamine",
            sheet_id=1,
            has_header=False,
            read_options={"header_row": None, "dtypes": "string"},
            drop_empty_rows=False,
            drop_empty_cols=False,
            raise_if_empty=False,
        )
    except Exception as exc:
        raise FileFormatError(
            f"{name}: is not a readable Excel .xlsx file ({_short(exc)}); open it in Excel and "
            "save it again as .xlsx, or export the sheet as CSV"
        ) from exc
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0 or frame.width == 0:
        raise FileFormatError(
            f"{name}: the first sheet is empty; put the table (a header row, then data rows) "
            "on the first sheet"
        )
    frame = frame.select(pl.all().cast(pl.String))
    raw_names: list[str | None] = list(frame.row(0))
    return raw_names, _empty_to_null(frame.slice(1))
