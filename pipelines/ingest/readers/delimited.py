"""Reading delimited text (CSV/TSV) with polars, and explaining why a file cannot be parsed."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from pipelines.ingest.readers.finishing import _check_size
from pipelines.ingest.readers.limits import (
    _DELIMITER_NAMES,
    _MAX_FIELD_CHARS,
    _MAX_LINE_CHARS,
    _QUOTED_FIELD,
    _QUOTED_SECTION,
    FileFormatError,
    _empty,
    _short,
)
from pipelines.ingest.readers.sniffing import _Sniffed
from pipelines.ingest.readers.sources import _decode_stream


def _read_delimited(
    source: Path, name: str, sniffed: _Sniffed
) -> tuple[list[str | None], pl.DataFrame]:
    delimiter = sniffed.delimiter
    assert delimiter is not None
    try:
        frame = pl.read_csv(
            source,
            has_header=False,
            separator=delimiter,
            quote_char='"',
            infer_schema=False,
            empty_string_is_null=True,
            null_values=[""],  # quoted empty fields ("") too
            raise_if_empty=False,
            truncate_ragged_lines=False,
        )
    except Exception as exc:
        raise _diagnose_delimited(source, name, sniffed, exc) from exc
    if frame.height == 0:
        raise _empty(name)
    raw_names: list[str | None] = list(frame.row(0))
    data = frame.slice(1)
    # a runaway cell is refused here, before the row checks below copy the file's lines
    _check_size(name, raw_names, data)
    # Rows with MORE fields than the header make polars raise (handled above). Rows with FEWER
    # fields are silently padded with nulls, and polars 2 gives a missing field the same value
    # as an empty one. Such a row necessarily has a null last column, so only the non-blank
    # rows with a null last column are suspects, and only their records are counted field by
    # field in the raw text (`_first_short_record`). Files whose last column is never empty
    # pay nothing for this check; others pay roughly one extra pass over the lines.
    if data.width > 1 and data.height and data.get_column(data.columns[-1]).null_count():
        last = data.columns[-1]
        suspects = data.select(
            pl.arg_where(pl.col(last).is_null() & pl.any_horizontal(pl.exclude(last).is_not_null()))
        ).to_series()
        if suspects.len():
            short = _first_short_record(source, delimiter, data.width, suspects + 1)
            if short is not None:
                row, fields = short
                raise FileFormatError(
                    f"{name}: data row {row} has {fields} field{'s' if fields != 1 else ''}, "
                    f"the header has {data.width}; fix that row (a missing delimiter, or a "
                    "value with the delimiter that needs double quotes)"
                )
    return raw_names, data


def _first_short_record(
    source: Path, delimiter: str, expected: int, records: pl.Series
) -> tuple[int, int] | None:
    """Return (data row, field count) of the first of `records` with fewer than `expected` fields.

    `records` are record numbers as polars counts rows (header 0, blank lines included).
    Works on the raw lines with polars expressions only. A line starts inside a quoted field
    when the quotes before it are odd in number (a quoted field spanning lines); such a line
    continues the previous record. Quoted sections are removed before delimiters are counted.
    This is exact for RFC 4180 quoting (doubled quotes inside quoted fields), which polars has
    already enforced by parsing the file. Lines end at LF (CRLF is fine; CR-only files are
    converted first). Memory: the lines of the file once more, as Arrow strings.
    """
    lines = pl.read_lines(source, name="line")
    quotes = lines.get_column("line").str.count_matches('"', literal=True).cast(pl.Int64)
    if quotes.sum() == 0:
        # No quoting at all: every line is one record.
        candidates = lines.with_columns(
            record=pl.int_range(pl.len(), dtype=pl.Int64), continues=pl.lit(False)
        ).filter(pl.col("record").is_in(records.cast(pl.Int64).implode()))
    else:
        continues = (quotes.cum_sum() - quotes) % 2 == 1
        candidates = (
            lines.with_columns(continues=continues)
            .with_columns(record=(~pl.col("continues")).cast(pl.Int64).cum_sum() - 1)
            .filter(pl.col("record").is_in(records.cast(pl.Int64).implode()))
        )
    line = pl.col("line")
    text = pl.when(pl.col("continues")).then(pl.lit('"') + line).otherwise(line)
    delimiters = (
        text.str.replace_all(_QUOTED_SECTION, "")
        .str.count_matches(delimiter, literal=True)
        .cast(pl.Int64)
    )
    bad = (
        candidates.group_by("record", maintain_order=True)
        .agg(fields=delimiters.sum() + 1)
        .filter(pl.col("fields") < expected)
        .head(1)
    )
    if bad.height == 0:
        return None
    return int(bad.item(0, "record")), int(bad.item(0, "fields"))


class _LineTooLong(Exception):
    """A physical line longer than _MAX_LINE_CHARS in the csv-module scan."""


class _RecordingLines:
    """Line iterator for csv.reader that remembers the raw lines of the current record.

    Lines longer than _MAX_LINE_CHARS raise _LineTooLong instead of being read whole.
    """

    def __init__(self, handle: io.TextIOWrapper) -> None:
        self._handle = handle
        self.lines: list[str] = []

    def __iter__(self) -> _RecordingLines:
        return self

    def __next__(self) -> str:
        line = self._handle.readline(_MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        if len(line) > _MAX_LINE_CHARS:
            raise _LineTooLong
        self.lines.append(line)
        return line


@contextlib.contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _diagnose_delimited(
    source: Path, name: str, sniffed: _Sniffed, cause: BaseException
) -> FileFormatError:
    """Explain why polars could not parse a delimited file; runs only after polars failed.

    Streams the file once through the csv module (strict quoting), one record in memory at a
    time, and reports the first of: bytes that are not UTF-8, a record whose field count
    differs from the header's, a quote that is opened and never closed (or runs on for more
    than 16 MB), a line longer than 16 MB, a misplaced quote. Speed is that of the csv module
    (seconds per million rows); memory stays within a few hundred MB.
    """
    delimiter = sniffed.delimiter or ","
    with source.open("rb") as raw:
        _decode_stream(raw, "utf-8", "utf-8", name, None)
    expected = 0
    record = -1
    header: list[str] = []
    with (
        _csv_field_limit(_MAX_FIELD_CHARS),
        source.open(encoding="utf-8-sig", newline="") as handle,
    ):
        lines = _RecordingLines(handle)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        while True:
            start_line = reader.line_num + 1
            lines.lines.clear()
            where = "the header" if record < 0 else f"data row {record + 1}"
            where += f" (line {start_line})"
            try:
                fields = next(reader)
            except StopIteration:
                break
            except _LineTooLong:
                return FileFormatError(
                    f"{name}: {where} runs into line {reader.line_num + 1}, which is longer "
                    f"than {_MAX_LINE_CHARS >> 20} MB; look for a quote that is never closed "
                    "or for missing line breaks"
                )
            except csv.Error as exc:
                message = str(exc)
                if "end of data" in message or "field larger than field limit" in message:
                    return FileFormatError(
                        f'{name}: {where} opens a quoted field (") that is never closed; '
                        "close the quote, or double quote characters inside a quoted value"
                    )
                return FileFormatError(
                    f"{name}: {where} has a misplaced quote character ({message}); a quote "
                    'may only start and end a field, and quotes inside it are written as ""'
                )
            record += 1
            if record == 0:
                expected = len(fields)
                header = fields
            elif fields and len(fields) != expected:
                return FileFormatError(
                    f"{name}: data row {record} has {len(fields)} field"
                    f"{'s' if len(fields) != 1 else ''}, the header has {expected}; fix that "
                    "row (an extra or missing delimiter, or a value with the delimiter that "
                    "needs double quotes)"
                )
            raw = "".join(lines.lines)
            if '"' in raw:
                field = _unquoted_field_with_quote(raw, delimiter)
                if field is not None:
                    column = f" ({header[field]!r})" if record > 0 and field < len(header) else ""
                    return FileFormatError(
                        f"{name}: {where}, field {field + 1}{column} has a quote character "
                        "inside a value that is not quoted; put the whole value in double "
                        'quotes and write the quote as ""'
                    )
    return FileFormatError(
        f"{name}: could not be read as a {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-"
        f"separated table ({_short(cause)}); check the quoting and that every row has the "
        "header's number of fields"
    )


def _unquoted_field_with_quote(raw: str, delimiter: str) -> int | None:
    """Return the 0-based index of the first field of a raw record that breaks RFC 4180 quoting."""
    text = raw.rstrip("\r\n")
    position = 0
    index = 0
    while True:
        if text.startswith('"', position):
            match = _QUOTED_FIELD.match(text, position)
            if match is None:
                return index
            position = match.end()
            if position < len(text) and text[position] != delimiter:
                return index
        else:
            end = text.find(delimiter, position)
            end = len(text) if end < 0 else end
            if '"' in text[position:end]:
                return index
            position = end
        if position >= len(text):
            return None
        position += 1
        index += 1
