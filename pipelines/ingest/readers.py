"""Read one uploaded data file into a polars frame of strings, whatever its format and encoding.

`read_table` takes a stored file (CSV/TSV with any common delimiter, Parquet, Excel .xlsx or
JSON Lines, in UTF-8, UTF-8 with BOM, UTF-16/32 or a legacy 8-bit encoding such as
Windows-1252) and returns a `TableRead`: a frame whose first column `_row_number` is the 1-based
data row in the file and whose other columns are the file's columns in order, every cell as the
exact text of the file (nothing stripped, nothing evaluated, empty cells null), plus the
detected format, MIME type, encoding and delimiter. It writes nothing except, for text that is
not UTF-8, a temporary UTF-8 copy made chunk by chunk and deleted after parsing. Anything that
cannot be read as a table raises `FileFormatError`, whose message is one line naming the file,
the problem and, where known, the data row and field.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import charset_normalizer
import polars as pl

# every record keeps its 1-based data row number in its file under this column (the one
# definition; mapping, linkage, exceptions and lineage use it)
ROW_NUMBER = "_row_number"

CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jsonl": "application/x-ndjson",
}

# How much of a file is looked at to decide its format, encoding and delimiter.
_SAMPLE_BYTES = 1 << 20
_DELIMITER_SAMPLE_CHARS = 64 * 1024
_DELIMITER_SAMPLE_RECORDS = 200
# Chunk size for streaming transcoding and validation.
_CHUNK_BYTES = 4 << 20
# More columns than Excel allows is taken as a wrong delimiter or not a table at all.
_MAX_COLUMNS = 16_384
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


@dataclass(frozen=True)
class TableRead:
    """A file read as a table of strings, with what was detected about it."""

    frame: pl.DataFrame
    file_format: str
    content_type: str
    encoding: str | None
    delimiter: str | None


@dataclass(frozen=True)
class _Sniffed:
    file_format: str
    encoding: str | None = None
    # codec for decoding slices of the body (a BOM already skipped); differs for utf-16/32
    body_encoding: str | None = None
    delimiter: str | None = None
    cr_only: bool = False


def sniff_format(path: Path, original_name: str) -> str:
    """Return "csv", "tsv", "parquet", "xlsx" or "jsonl" for a stored file.

    Magic bytes decide first (PAR1 is Parquet, a zip is .xlsx), then the extension of
    `original_name` (.parquet, .xlsx, .jsonl...), then the content: text whose first line is a
    JSON object is JSON Lines, otherwise it is delimited text and a tab delimiter makes it
    "tsv". Raises FileFormatError for empty files, binary files of no known format and old .xls.
    """
    return _sniff(path, original_name).file_format


def read_table(path: Path, original_name: str | None = None) -> TableRead:
    """Read a stored file as a table of strings; see the module docstring.

    `original_name` is the user-facing file name used in error messages (default path.name).
    Raises FileFormatError (with the underlying error as __cause__) for anything that is not a
    readable table.
    """
    path = Path(path)
    name = original_name or path.name
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


# --- sniffing ------------------------------------------------------------------------------


def _sniff(path: Path, name: str) -> _Sniffed:
    size = path.stat().st_size
    if size == 0:
        raise _empty(name)
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    complete = size <= len(head)
    suffix = (Path(name).suffix or path.suffix).lower()

    if head.startswith(_PARQUET_MAGIC):
        return _Sniffed("parquet")
    if head.startswith(_ZIP_MAGICS):
        return _Sniffed("xlsx")
    if head.startswith(_OLE_MAGIC):
        raise FileFormatError(
            f"{name}: is an old binary Excel (.xls) or other OLE document, which is not "
            "supported; open it in Excel and save it as .xlsx or CSV"
        )
    if suffix in _PARQUET_EXTENSIONS:
        return _Sniffed("parquet")
    if suffix in _XLSX_EXTENSIONS:
        return _Sniffed("xlsx")

    encoding, body_encoding, text = _detect_encoding(head, complete, name)
    if not text.strip():
        if complete:
            raise _empty(name)
        raise FileFormatError(
            f"{name}: the first {_SAMPLE_BYTES // (1 << 20)} MB hold only whitespace; this is "
            "not a table - check that the right file was uploaded"
        )
    if _looks_binary(text):
        raise _not_a_table(name)
    cr_only = "\r" in text and "\n" not in text

    if suffix in _JSONL_EXTENSIONS or _starts_with_json_object(text):
        return _Sniffed("jsonl", encoding, body_encoding, None, cr_only)

    if not complete and "\n" not in text and "\r" not in text:
        raise FileFormatError(
            f"{name}: the first line is longer than {_SAMPLE_BYTES // (1 << 20)} MB without a "
            "line break, so it is not a header row; check that the file is a CSV/TSV table "
            "with one row per line"
        )
    delimiter, width = _sniff_delimiter(text, complete, _TEXT_EXTENSIONS.get(suffix, ","))
    if width > _MAX_COLUMNS:
        raise FileFormatError(
            f"{name}: the header has {width} {_DELIMITER_NAMES[delimiter]}-separated fields, "
            f"more than the {_MAX_COLUMNS} a table can have; check the delimiter and that the "
            "first line is a header row"
        )
    fmt = "tsv" if delimiter == "\t" else "csv"
    return _Sniffed(fmt, encoding, body_encoding, delimiter, cr_only)


def _detect_encoding(head: bytes, complete: bool, name: str) -> tuple[str, str, str]:
    """Return (encoding, encoding for BOM-less slices, decoded sample) for a text sample."""
    with_bom = [(enc, body) for bom, enc, body in _BOMS if head.startswith(bom)]
    if with_bom:
        encoding, body_encoding = with_bom[0]
    elif b"\x00" not in head and _decodes(head, "utf-8", complete):
        encoding = body_encoding = "utf-8"
    else:
        guessed = _guess_legacy_encoding(head, complete)
        if guessed is None:
            raise _not_a_table(name)
        encoding = body_encoding = guessed
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return encoding, body_encoding, decoder.decode(head, final=complete)


def _decodes(data: bytes, encoding: str, complete: bool) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(data, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _guess_legacy_encoding(head: bytes, complete: bool) -> str | None:
    """Ask charset-normalizer about a sample that is not UTF-8; None if it is not text.

    charset-normalizer often ranks another single-byte code page (cp1250, cp775...) first for
    Western European text, where the decoded text is the same or nearly so. Windows-1252 is by
    far the most common non-UTF-8 encoding of exported tables, so it wins whenever
    charset-normalizer finds it plausible and no less coherent than its own first choice.
    """
    sample = head
    if not complete and b"\n" in head:
        sample = head[: head.rfind(b"\n") + 1]  # no half line to skew the chaos measure
    matches = charset_normalizer.from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if match.encoding == "cp1252" or "cp1252" in match.could_be_from_charset:
            return "cp1252"
    if _decodes(sample, "cp1252", True):
        western = charset_normalizer.from_bytes(sample, cp_isolation=["cp1252"]).best()
        if western is not None and western.chaos <= best.chaos:
            return "cp1252"
    return codecs.lookup(best.encoding).name


def _looks_binary(text: str) -> bool:
    controls = len(_CONTROL_CHARS.findall(text))
    return "\x00" in text or controls > _MAX_CONTROL_SHARE * len(text)


def _starts_with_json_object(text: str) -> bool:
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return False
    first_line, newline, _ = stripped.partition("\n")
    if not newline:
        return True  # the first record is longer than the sample; let the reader decide
    try:
        return isinstance(json.loads(first_line), dict)
    except ValueError:
        return False


def _sniff_delimiter(text: str, complete: bool, preferred: str) -> tuple[str, int]:
    """Pick the delimiter that splits the header into fields and the rows into as many.

    Parses up to 200 records of the first 64 KB with the csv module once per candidate (so
    quoted delimiters and newlines are handled) and scores: header has more than one field,
    share of data records with the header's field count, then preference (the extension's
    delimiter first). Returns the delimiter and the header's field count with it.
    """
    block = text[:_DELIMITER_SAMPLE_CHARS]
    if (not complete or len(text) > len(block)) and "\n" in block:
        block = block[: block.rfind("\n") + 1]
    candidates = [preferred, *(d for d in _DELIMITERS if d != preferred)]
    best: tuple[tuple[bool, float, int], str, int] | None = None
    for rank, delimiter in enumerate(candidates):
        try:
            records = [
                row
                for row in itertools.islice(
                    csv.reader(io.StringIO(block, newline=""), delimiter=delimiter),
                    _DELIMITER_SAMPLE_RECORDS,
                )
                if row
            ]
        except csv.Error:
            continue
        if not records:
            continue
        width = len(records[0])
        data = records[1:]
        share = sum(len(row) == width for row in data) / len(data) if data else 1.0
        score = (width > 1, share, -rank)
        if best is None or score > best[0]:
            best = (score, delimiter, width)
    if best is None:
        return preferred, 1
    return best[1], best[2]


# --- text sources ----------------------------------------------------------------------------


@contextlib.contextmanager
def _utf8_source(path: Path, sniffed: _Sniffed, name: str) -> Iterator[Path]:
    """Yield a UTF-8 file with the same text: the file itself when it already is UTF-8.

    Other encodings (and old-Mac CR-only line ends) are transcoded chunk by chunk into a
    temporary file that is deleted afterwards, so memory stays bounded whatever the file size.
    """
    assert sniffed.encoding is not None and sniffed.body_encoding is not None
    if sniffed.encoding in ("utf-8", "utf-8-sig") and not sniffed.cr_only:
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix="recon-utf8-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:

            def write(text: str) -> None:
                if sniffed.cr_only:
                    text = text.replace("\r", "\n")
                out.write(text.encode("utf-8"))

            _decode_stream(src, sniffed.encoding, sniffed.body_encoding, name, write)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _decode_stream(
    src: BinaryIO,
    encoding: str,
    body_encoding: str,
    name: str,
    sink: Callable[[str], None] | None,
) -> None:
    """Decode `src` strictly in chunks, passing the text to `sink`.

    Raises FileFormatError naming the byte offset and line of the first byte sequence that is
    not valid in `encoding`.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    line = 1
    while True:
        chunk = src.read(_CHUNK_BYTES)
        final = not chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            pending = len(exc.object) - len(chunk)  # bytes held back from earlier chunks
            position = offset - pending + exc.start
            before = exc.object[: exc.start].decode(body_encoding, errors="replace")
            line += before.count("\n")
            label = codecs.lookup(encoding).name
            raise FileFormatError(
                f"{name}: byte {position} (line {line}) is not valid {label}, the encoding "
                "detected from the start of the file; the file mixes encodings or is damaged - "
                "re-save it as UTF-8"
            ) from exc
        line += text.count("\n")
        if sink is not None:
            sink(text)
        offset += len(chunk)
        if final:
            return


# --- delimited text ----------------------------------------------------------------------------


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


# --- common finishing -------------------------------------------------------------------------


def _assemble(name: str, raw_names: list[str | None], data: pl.DataFrame) -> pl.DataFrame:
    """Name the columns, number the rows and drop blank rows and nameless empty columns."""
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
