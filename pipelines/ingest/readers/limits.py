"""Constants, limits and errors shared by the readers.

The row-number column (`ROW_NUMBER`, the one definition used across the pipelines), the MIME
type of each format, how much of a file is sampled, the size limits that keep reading bounded,
the signatures that identify formats, and `FileFormatError` with the helpers that build its
common messages. Imports nothing from the rest of the package, so any module can import it.
"""

from __future__ import annotations

import codecs
import re

# every record keeps its 1-based data row number in its file under this column (the one
# definition; mapping, linkage, exceptions and lineage use it)
ROW_NUMBER = "_row_number"

CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jsonl": "application/x-ndjson",
    # bank statements (pipelines/ingest/statements), told by their content
    "mt940": "application/x-swift-mt940",
    "mt942": "application/x-swift-mt942",
    "camt.052": "application/x-iso20022-camt.052+xml",
    "camt.053": "application/x-iso20022-camt.053+xml",
    "camt.054": "application/x-iso20022-camt.054+xml",
    "bai2": "application/x-bai2",
    "ofx": "application/x-ofx",
}

# How much of a file is looked at to decide its format, encoding and delimiter.
_SAMPLE_BYTES = 1 << 20
_DELIMITER_SAMPLE_CHARS = 64 * 1024
_DELIMITER_SAMPLE_RECORDS = 200
# Chunk size for streaming transcoding and validation.
_CHUNK_BYTES = 4 << 20
# The most columns a file may have (README, "Limits"). Reading, detection and validation are
# linear in columns x rows (bench/wide_bench.py); a wider file is refused with one line, and a
# header wider than this in the sniffed sample is refused before the file is parsed.
MAX_COLUMNS = 4_096
# The largest cell (header names included), in UTF-8 bytes: far above any real value (a memo,
# JSON of a nested Parquet value), far below what makes matching and embedding blow up. A
# longer cell is refused with its row and column, before the row checks copy the file's lines.
MAX_CELL_BYTES = 1 << 20
# Largest field and line the (error path only) csv-module scan accepts; a longer field is
# taken as a runaway quote. Keeps that scan within a few hundred MB whatever the file.
_MAX_FIELD_CHARS = 16 << 20
_MAX_LINE_CHARS = 16 << 20
# Decoded text with more than this share of control characters is binary, not a table.
_MAX_CONTROL_SHARE = 0.01

_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_TEXT_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
_JSONL_EXTENSIONS = {".jsonl", ".ndjson", ".json"}
_PARQUET_EXTENSIONS = {".parquet", ".pq"}
_XLSX_EXTENSIONS = {".xlsx", ".xlsm"}

_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    # (BOM, codec that strips it, codec for slices of the body without the BOM)
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# A quoted section of one physical line: from a quote to the next quote or the end of the line.
_QUOTED_SECTION = r'"[^"]*(?:"|$)'
_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"')


class FileFormatError(ValueError):
    """A file that cannot be read as a table.

    str(err) is one line a person can act on and names the file, and the row (1-based data row,
    header excluded) and field where known.
    """


def _short(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception message, shortened: polars may quote megabytes of data."""
    message = str(exc).strip()
    text = message.splitlines()[0] if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _empty(name: str) -> FileFormatError:
    return FileFormatError(
        f"{name}: the file is empty; upload a file with a header row and at least one data row"
    )


def _not_a_table(name: str) -> FileFormatError:
    return FileFormatError(
        f"{name}: is not a text table (CSV/TSV/JSON Lines), Parquet or Excel file - it looks "
        "like binary data; check that the right file was uploaded and export it as CSV or .xlsx"
    )


def _too_many_columns(name: str, count: int, what: str = "columns") -> FileFormatError:
    return FileFormatError(
        f"{name}: has {count:,} {what}, more than the {MAX_COLUMNS:,} columns a file may have; "
        "split it into files of fewer columns, or leave out the columns the reconciliation "
        "does not need"
    )


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MB"
