"""Sniffing a stored file: its format, text encoding and delimiter, from a sample of its bytes."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer

from pipelines.ingest.readers.limits import (
    _BOMS,
    _CONTROL_CHARS,
    _DELIMITER_NAMES,
    _DELIMITER_SAMPLE_CHARS,
    _DELIMITER_SAMPLE_RECORDS,
    _DELIMITERS,
    _JSONL_EXTENSIONS,
    _MAX_CONTROL_SHARE,
    _OLE_MAGIC,
    _PARQUET_EXTENSIONS,
    _PARQUET_MAGIC,
    _SAMPLE_BYTES,
    _TEXT_EXTENSIONS,
    _XLSX_EXTENSIONS,
    _ZIP_MAGICS,
    MAX_COLUMNS,
    FileFormatError,
    _empty,
    _not_a_table,
    _too_many_columns,
)


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
    width = max(width, _first_line_width(text, delimiter))
    if width > MAX_COLUMNS:
        raise _too_many_columns(name, width, f"{_DELIMITER_NAMES[delimiter]}-separated fields")
    fmt = "tsv" if delimiter == "\t" else "csv"
    return _Sniffed(fmt, encoding, body_encoding, delimiter, cr_only)


def _first_line_width(text: str, delimiter: str) -> int:
    """Fields of the first line of the sample (0 when it does not end in the sample).

    The delimiter is sniffed on the first 64 KB, which may cut a wide header short; the whole
    first line (up to the 1 MB sample) tells its width before the file is parsed.
    """
    line, newline, _ = text.partition("\n")
    if not newline:
        return 0
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except (csv.Error, StopIteration):
        return 0


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
