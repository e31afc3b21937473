"""Bank statement files: SWIFT MT940/MT942, ISO 20022 camt.052/053/054, BAI2 and OFX/QFX.

`read_statement(path, name)` tells a statement by its content (`detection.detect_format`,
never by the file name) and returns None for anything else, which the table readers then read.
A statement is parsed by its format's module (`mt94x`: the `mt-940` package; `bai`: `bai2`;
`camt`: ElementTree through `defusedxml`, see its docstring for why; `ofx`: our own small
SGML/XML reader `ofx_tree`, as the OFX package is GPL) into a `ParsedStatements`, and turned
into the canonical table (`canonical.COLUMNS`, one row per booked entry, `_row_number` in file
order). A statement file is read whole, so it may be at most `MAX_STATEMENT_BYTES`; the cell
size limit of every file applies to its fields. A malformed statement raises `FileFormatError`,
one line naming the file, the entry and the field where known, refused like any unreadable file.
`balance.check_balances` checks opening + entries = closing per statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.ingest.readers.limits import FileFormatError, _megabytes
from pipelines.ingest.statements import bai, camt, mt94x, ofx
from pipelines.ingest.statements.balance import BalanceResult, check_balances
from pipelines.ingest.statements.canonical import COLUMNS, to_frame
from pipelines.ingest.statements.detection import (
    STATEMENT_CONTENT_TYPES,
    detect_file,
    detect_format,
)
from pipelines.ingest.statements.model import Entry, ParsedStatements, Statement

__all__ = [
    "COLUMNS",
    "MAX_STATEMENT_BYTES",
    "STATEMENT_CONTENT_TYPES",
    "BalanceResult",
    "Entry",
    "ParsedStatements",
    "Statement",
    "StatementRead",
    "check_balances",
    "detect_file",
    "detect_format",
    "parse_statement",
    "read_statement",
]

# A statement is parsed whole in memory (the parsers need the whole text): a daily corporate
# statement is kilobytes to a few MB; 128 MB is ~280,000 camt.053 entries (~1.5 GB peak) or
# ~800,000 MT940 entries.
MAX_STATEMENT_BYTES = 128 << 20

_PARSERS: dict[str, Callable[[bytes, str, str], ParsedStatements]] = {
    "mt940": mt94x.parse,
    "mt942": mt94x.parse,
    "camt.052": camt.parse,
    "camt.053": camt.parse,
    "camt.054": camt.parse,
    "bai2": bai.parse,
    "ofx": ofx.parse,
}


@dataclass(frozen=True)
class StatementRead:
    """A statement file read: the canonical table, the parsed statements and the format."""

    frame: pl.DataFrame
    parsed: ParsedStatements
    file_format: str
    content_type: str


def parse_statement(path: Path, name: str, file_format: str) -> ParsedStatements:
    """Parse a file already detected as `file_format`; bounded by `MAX_STATEMENT_BYTES`."""
    size = Path(path).stat().st_size
    if size > MAX_STATEMENT_BYTES:
        raise FileFormatError(
            f"{name}: is a {file_format} bank statement of {_megabytes(size)}, more than the "
            f"{_megabytes(MAX_STATEMENT_BYTES)} a statement file may have; ask the bank for "
            "statements of shorter periods"
        )
    return _PARSERS[file_format](Path(path).read_bytes(), name, file_format)


def read_statement(path: Path, name: str) -> StatementRead | None:
    """The canonical table of a bank statement file, or None if the file is not one."""
    file_format = detect_file(path)
    if file_format is None:
        return None
    parsed = parse_statement(path, name, file_format)
    return StatementRead(
        frame=to_frame(parsed, name),
        parsed=parsed,
        file_format=file_format,
        content_type=STATEMENT_CONTENT_TYPES[file_format],
    )
