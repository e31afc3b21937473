"""Read one uploaded data file into a polars frame of strings, whatever its format and encoding.

`read_table` takes a stored file (CSV/TSV with any common delimiter, Parquet, Excel .xlsx or
JSON Lines, in UTF-8, UTF-8 with BOM, UTF-16/32 or a legacy 8-bit encoding such as
Windows-1252) and returns a `TableRead`: a frame whose first column `_row_number` is the 1-based
data row in the file and whose other columns are the file's columns in order, every cell as the
exact text of the file (nothing stripped, nothing evaluated, empty cells null), plus the
detected format, MIME type, encoding and delimiter. It writes nothing except, for text that is
not UTF-8, a temporary UTF-8 copy made chunk by chunk and deleted after parsing. Anything that
cannot be read as a table, or is wider than `MAX_COLUMNS` columns or has a cell over
`MAX_CELL_BYTES`, raises `FileFormatError`, whose message is one line naming the file,
the problem and, where known, the data row and field. A bank statement (MT940/MT942, camt,
BAI2, OFX: told by content, `pipelines.ingest.statements`) is read as its canonical table, and
the parsed statements ride along in `TableRead.statements` for the balance check.
"""

from __future__ import annotations

# the package's modules use the tempfile module; tests patch it as readers.tempfile
import tempfile  # noqa: F401
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipelines.ingest.readers.delimited import _read_delimited
from pipelines.ingest.readers.finishing import _assemble
from pipelines.ingest.readers.formats import _read_jsonl, _read_parquet, _read_xlsx
from pipelines.ingest.readers.limits import (
    CONTENT_TYPES,
    MAX_CELL_BYTES,
    MAX_COLUMNS,
    ROW_NUMBER,
    FileFormatError,
)
from pipelines.ingest.readers.sniffing import _sniff, sniff_format
from pipelines.ingest.readers.sources import _utf8_source

if TYPE_CHECKING:
    from pipelines.ingest.statements import ParsedStatements

__all__ = [
    "CONTENT_TYPES",
    "MAX_CELL_BYTES",
    "MAX_COLUMNS",
    "ROW_NUMBER",
    "FileFormatError",
    "TableRead",
    "read_table",
    "sniff_format",
]


@dataclass(frozen=True)
class TableRead:
    """A file read as a table of strings, with what was detected about it."""

    frame: pl.DataFrame
    file_format: str
    content_type: str
    encoding: str | None
    delimiter: str | None
    # a bank statement's parsed statements (balances, entries); None for a table
    statements: ParsedStatements | None = None


def read_table(path: Path, original_name: str | None = None) -> TableRead:
    """Read a stored file as a table of strings; see the module docstring.

    `original_name` is the user-facing file name used in error messages (default path.name).
    Raises FileFormatError (with the underlying error as __cause__) for anything that is not a
    readable table.
    """
    from pipelines.ingest.statements import read_statement  # imports readers' submodules

    path = Path(path)
    name = original_name or path.name
    if path.is_file() and path.stat().st_size > 0:
        statement = read_statement(path, name)
        if statement is not None:
            return TableRead(
                statement.frame,
                statement.file_format,
                statement.content_type,
                None,
                None,
                statement.parsed,
            )
    sniffed = _sniff(path, name)
    fmt = sniffed.file_format
    if fmt == "parquet":
        raw_names, data = _read_parquet(path, name)
    elif fmt == "xlsx":
        raw_names, data = _read_xlsx(path, name)
    else:
        with _utf8_source(path, sniffed, name) as source:
            if fmt == "jsonl":
                raw_names, data = _read_jsonl(source, name)
            else:
                raw_names, data = _read_delimited(source, name, sniffed)
    return TableRead(
        frame=_assemble(name, raw_names, data),
        file_format=fmt,
        content_type=CONTENT_TYPES[fmt],
        encoding=sniffed.encoding,
        delimiter=sniffed.delimiter,
    )
