"""Exporting a filtered list of exceptions to CSV (polars) or XLSX (openpyxl).

polars' own `write_excel` needs xlsxwriter, which is not in constraints.txt; openpyxl is (it is
a dependency already), so XLSX is written with its write-only workbook: one header row, then a
row per exception, the age and dates as numbers and dates a spreadsheet can sort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from resources.errors import ReconError

COLUMNS = (
    "id",
    "reconciliation_id",
    "type",
    "severity",
    "status",
    "age_days",
    "assignee",
    "reason_code",
    "description",
    "resolution",
    "resolved_by",
    "resolved_at",
    "created_at",
    "source_row_number",
    "target_row_number",
)
FORMATS = ("csv", "xlsx")


def exceptions_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The listed exceptions as a frame with COLUMNS (typed even when empty)."""
    schema = {
        "id": pl.Int64,
        "reconciliation_id": pl.Int64,
        "type": pl.String,
        "severity": pl.String,
        "status": pl.String,
        "age_days": pl.Int64,
        "assignee": pl.String,
        "reason_code": pl.String,
        "description": pl.String,
        "resolution": pl.String,
        "resolved_by": pl.String,
        "resolved_at": pl.Datetime("us"),
        "created_at": pl.Datetime("us"),
        "source_row_number": pl.Int64,
        "target_row_number": pl.Int64,
    }
    return pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema)


def export_exceptions(rows: list[dict[str, Any]], path: Path, file_format: str) -> int:
    """Write the rows to `path` as `csv` or `xlsx`; returns how many were written."""
    file_format = file_format.lower()
    if file_format not in FORMATS:
        raise ReconError(f"unknown export format {file_format!r}: use csv or xlsx")
    frame = exceptions_frame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "csv":
        frame.write_csv(path)
        return frame.height
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("exceptions")
    sheet.append(list(frame.columns))
    for row in frame.iter_rows():
        sheet.append(list(row))
    book.save(path)
    return frame.height
