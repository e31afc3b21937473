"""read_table and sniff_format on every supported format, encoding and kind of broken file."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import tempfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from pipelines.ingest import readers
from pipelines.ingest.readers import FileFormatError, TableRead, read_table, sniff_format

_STORED = itertools.count(1)


def write(tmp_path: Path, data: str | bytes, encoding: str = "utf-8", stored: str = "") -> Path:
    """Store a file under an opaque name, as the file store does (the real name is separate)."""
    path = tmp_path / (stored or f"stored-{next(_STORED)}")
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def rows(read: TableRead) -> list[dict[str, object]]:
    return read.frame.to_dicts()


def fails(path: Path, name: str) -> str:
    with pytest.raises(FileFormatError) as caught:
        read_table(path, name)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{name}: "), message
    return message


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delimiter", "suffix", "file_format", "content_type"),
    [
        (",", ".csv", "csv", "text/csv"),
        (";", ".csv", "csv", "text/csv"),
        ("|", ".csv", "csv", "text/csv"),
        ("\t", ".tsv", "tsv", "text/tab-separated-values"),
        ("\t", ".txt", "tsv", "text/tab-separated-values"),
    ],
)
def test_delimited_text(
    tmp_path: Path, delimiter: str, suffix: str, file_format: str, content_type: str
) -> None:
    text = "\n".join(
        delimiter.join(row)
        for row in [["id", "name", "amount"], ["1", "Ann", "3.50"], ["2", "Bob", "4,5"]]
    )
    if delimiter == ",":
        text = text.replace("4,5", '"4,5"')
    read = read_table(write(tmp_path, text + "\n"), f"people{suffix}")
    assert read.file_format == file_format
    assert read.content_type == content_type
    assert read.delimiter == delimiter
    assert read.encoding == "utf-8"
    assert read.frame.columns == ["_row_number", "id", "name", "amount"]
    assert read.frame.schema["_row_number"] == pl.Int64
    assert all(read.frame.schema[c] == pl.String for c in ("id", "name", "amount"))
    assert rows(read) == [
        {"_row_number": 1, "id": "1", "name": "Ann", "amount": "3.50"},
        {"_row_number": 2, "id": "2", "name": "Bob", "amount": "4,5"},
    ]


def test_quoted_fields_with_delimiter_newline_and_doubled_quotes(tmp_path: Path) -> None:
    text = (
        "id,text,n\r\n"
        '1,"a, b",x\r\n'
        '2,"line one\r\nline two",y\r\n'
        '3,"she said ""hi""",z\r\n'
        '4,"multi\n\nparagraph, with ""quotes""\n",w\r\n'
        "5,plain,v\r\n"
    )
    read = read_table(write(tmp_path, text), "quoted.csv")
    assert read.frame.get_column("text").to_list() == [
        "a, b",
        "line one\r\nline two",
        'she said "hi"',
        'multi\n\nparagraph, with "quotes"\n',
        "plain",
    ]
    # record numbers, not line numbers, and no stray \r from CRLF line ends
    assert read.frame.get_column("_row_number").to_list() == [1, 2, 3, 4, 5]
    assert read.frame.get_column("n").to_list() == ["x", "y", "z", "w", "v"]


def test_cells_are_kept_exactly(tmp_path: Path) -> None:
    text = (
        "code,amount,formula,note\n"
        '007,"$1,234.56",=SUM(A1:A3),  padded  \n'
        "0042,-0.10,=cmd|' /C calc'!A0,\n"
        "00,1e5,+1+1,NA\n"
        ",,@SUM(1),null\n"
    )
    read = read_table(write(tmp_path, text), "exact.csv")
    assert rows(read) == [
        {
            "_row_number": 1,
            "code": "007",
            "amount": "$1,234.56",
            "formula": "=SUM(A1:A3)",
            "note": "  padded  ",
        },
        {
            "_row_number": 2,
            "code": "0042",
            "amount": "-0.10",
            "formula": "=cmd|' /C calc'!A0",
            "note": None,
        },
        {"_row_number": 3, "code": "00", "amount": "1e5", "formula": "+1+1", "note": "NA"},
        {"_row_number": 4, "code": None, "amount": None, "formula": "@SUM(1)", "note": "null"},
    ]


def test_header_names_are_stripped_and_blank_names_numbered(tmp_path: Path) -> None:
    text = " id ,\tname\t,,amount,\n1,Ann,x,2,\n2,Bob,,3,\n"
    read = read_table(write(tmp_path, text), "names.csv")
    # column 3 has no name but data; column 5 has neither and is dropped
    assert read.frame.columns == ["_row_number", "id", "name", "column_3", "amount"]
    assert read.frame.get_column("column_3").to_list() == ["x", None]


def test_blank_lines_are_skipped_but_keep_row_numbers(tmp_path: Path) -> None:
    text = "a,b\n1,2\n\n,\n3,4\n\n\n"
    read = read_table(write(tmp_path, text), "blank.csv")
    assert rows(read) == [
        {"_row_number": 1, "a": "1", "b": "2"},
        {"_row_number": 4, "a": "3", "b": "4"},
    ]


def test_empty_last_column_is_not_a_short_row(tmp_path: Path) -> None:
    text = 'id,name,note\n1,"Ann\nSmith",\n2,Bob,""\n3,Cy,x\n'
    read = read_table(write(tmp_path, text), "notes.csv")
    assert read.frame.get_column("note").to_list() == [None, None, "x"]
    assert read.frame.get_column("_row_number").to_list() == [1, 2, 3]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "upload-1"
    pl.DataFrame(
        {
            "id": [1, 2, None],
            " code ": ["007", "", None],
            "tags": [[1, 2], None, []],
            "address": [{"city": "Köln", "zip": "01067"}, None, {"city": None, "zip": "1"}],
            "when": [datetime.date(2024, 1, 2), None, None],
        }
    ).write_parquet(path)
    assert sniff_format(path, "data.bin") == "parquet"
    read = read_table(path, "data.parquet")
    assert read.file_format == "parquet"
    assert read.content_type == "application/vnd.apache.parquet"
    assert read.encoding is None and read.delimiter is None
    assert read.frame.columns == ["_row_number", "id", "code", "tags", "address", "when"]
    assert all(dtype == pl.String for dtype in read.frame.drop("_row_number").dtypes)
    assert rows(read) == [
        {
            "_row_number": 1,
            "id": "1",
            "code": "007",
            "tags": "[1,2]",
            "address": '{"city":"Köln","zip":"01067"}',
            "when": "2024-01-02",
        },
        {"_row_number": 2, "id": "2", "code": None, "tags": None, "address": None, "when": None},
        {
            "_row_number": 3,
            "id": None,
            "code": None,
            "tags": "[]",
            "address": '{"city":null,"zip":"1"}',
            "when": None,
        },
    ]


def test_parquet_types_without_a_plain_cast(tmp_path: Path) -> None:
    path = tmp_path / "types"
    pl.DataFrame(
        {
            "wait": [datetime.timedelta(seconds=90)],
            "raw": [b"\x00\xff"],
            "price": pl.Series(["1.10"]).str.to_decimal(scale=2),
        }
    ).write_parquet(path)
    assert rows(read_table(path, "types.parquet")) == [
        {"_row_number": 1, "wait": "PT1M30S", "raw": "00ff", "price": "1.10"}
    ]


def _workbook(path: Path, table: list[list[object]], text_cells: tuple[str, ...] = ()) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in table:
        sheet.append(row)
    for cell in text_cells:
        sheet[cell].data_type = "s"  # stored as text, as Excel does for '=... typed as text
    workbook.create_sheet("second").append(["not", "read"])
    workbook.save(path)


def test_xlsx_first_sheet_cells_as_text(tmp_path: Path) -> None:
    path = tmp_path / "upload-2"
    _workbook(
        path,
        [
            ["id", " name ", "amount", "formula", "flag"],
            ["007", "Café €", 1234.5, "=SUM(A1:A3)", True],
            [None, None, None, None, None],
            [8, "  x  ", 3, "=cmd|' /C calc'!A0", False],
        ],
        text_cells=("D2", "D4"),
    )
    assert sniff_format(path, "book.csv") == "xlsx"  # magic bytes beat the extension
    read = read_table(path, "book.xlsx")
    assert read.file_format == "xlsx"
    assert read.content_type.endswith("spreadsheetml.sheet")
    assert read.encoding is None
    assert rows(read) == [
        {
            "_row_number": 1,
            "id": "007",
            "name": "Café €",
            "amount": "1234.5",
            "formula": "=SUM(A1:A3)",
            "flag": "true",
        },
        {
            "_row_number": 3,
            "id": "8",
            "name": "  x  ",
            "amount": "3",
            "formula": "=cmd|' /C calc'!A0",
            "flag": "false",
        },
    ]


def test_jsonl_with_nested_values(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "name": "Ann", "address": {"city": "Köln", "zip": "01067"}, "tags": ["a"]},
        {},
        {"id": "B2", "name": "", "extra": True, "tags": [1, {"x": None}]},
        {"id": 3, "address": None, "amount": 1.5},
    ]
    text = "\n".join(json.dumps(line) if line else "" for line in lines) + "\n"
    path = write(tmp_path, text)
    assert sniff_format(path, "export.txt") == "jsonl"  # by content
    read = read_table(path, "export.jsonl")
    assert read.file_format == "jsonl"
    assert read.content_type == "application/x-ndjson"
    assert read.frame.columns[:4] == ["_row_number", "id", "name", "address"]
    assert set(read.frame.columns) == {
        "_row_number",
        "id",
        "name",
        "address",
        "tags",
        "extra",
        "amount",
    }
    first, second, third = rows(read)
    assert first["id"] == "1" and first["name"] == "Ann"
    assert json.loads(str(first["address"])) == {"city": "Köln", "zip": "01067"}
    assert json.loads(str(first["tags"])) == ["a"]
    assert second["id"] == "B2" and second["name"] is None and second["extra"] == "true"
    assert json.loads(str(second["tags"])) == [1, {"x": None}]
    assert third["address"] is None and third["amount"] == "1.5"
    assert [r["_row_number"] for r in (first, second, third)] == [1, 2, 3]


# --- encodings -------------------------------------------------------------------------------

CAFE = "id;name;price\n1;Café €;3,50\n2;Crème brûlée;4\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (CAFE.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + CAFE.encode("utf-8"), "utf-8-sig"),
        (CAFE.encode("cp1252"), "cp1252"),
        (CAFE.encode("utf-16"), "utf-16"),
        (b"\xff\xfe" + CAFE.encode("utf-16-le"), "utf-16"),
        (b"\xfe\xff" + CAFE.encode("utf-16-be"), "utf-16"),
        (CAFE.encode("utf-32"), "utf-32"),
    ],
    ids=["utf-8", "utf-8-sig", "cp1252", "utf-16-native", "utf-16-le", "utf-16-be", "utf-32"],
)
def test_encodings(tmp_path: Path, data: bytes, expected: str) -> None:
    read = read_table(write(tmp_path, data), "prices.csv")
    assert read.encoding == expected
    assert read.delimiter == ";"
    assert read.frame.columns == ["_row_number", "id", "name", "price"]  # no BOM in "id"
    assert read.frame.get_column("name").to_list() == ["Café €", "Crème brûlée"]
    assert read.frame.get_column("price").to_list() == ["3,50", "4"]


def test_latin1(tmp_path: Path) -> None:
    text = "id,name,city\n1,Café,Zürich\n2,Øresund,Ålborg\n3,Señor,Málaga\n"
    read = read_table(write(tmp_path, text, "latin-1"), "cities.csv")
    assert read.encoding in ("cp1252", "iso8859-1")
    assert read.frame.get_column("city").to_list() == ["Zürich", "Ålborg", "Málaga"]
    assert read.frame.get_column("name").to_list() == ["Café", "Øresund", "Señor"]


def test_utf8_is_read_in_place_and_other_encodings_via_a_deleted_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        made.append(name)
        return fd, name

    monkeypatch.setattr(readers.tempfile, "mkstemp", recording_mkstemp)
    read_table(write(tmp_path, CAFE.encode("utf-8")), "a.csv")
    read_table(write(tmp_path, b"\xef\xbb\xbf" + CAFE.encode("utf-8")), "b.csv")
    assert made == []
    read_table(write(tmp_path, CAFE.encode("cp1252")), "c.csv")
    assert len(made) == 1
    assert list(scratch.iterdir()) == []


def test_large_non_utf8_file(tmp_path: Path) -> None:
    count = 200_000
    lines = ["id,name,amount\n"] + [f"{i},Müller € {i},{i}.50\n" for i in range(1, count + 1)]
    read = read_table(write(tmp_path, "".join(lines), "cp1252"), "big.csv")
    assert read.encoding == "cp1252"
    assert read.frame.height == count
    assert read.frame.get_column("_row_number").to_list()[-1] == count
    assert read.frame.row(-1, named=True)["name"] == f"Müller € {count}"
    assert read.frame.row(0, named=True) == {
        "_row_number": 1,
        "id": "1",
        "name": "Müller € 1",
        "amount": "1.50",
    }


def test_old_mac_line_ends(tmp_path: Path) -> None:
    read = read_table(write(tmp_path, "a,b\r1,2\r3,\r"), "mac.csv")
    assert rows(read) == [
        {"_row_number": 1, "a": "1", "b": "2"},
        {"_row_number": 2, "a": "3", "b": None},
    ]


# --- sniffing ----------------------------------------------------------------------------------


def test_sniff_format_by_magic_extension_and_content(tmp_path: Path) -> None:
    assert sniff_format(write(tmp_path, b"PAR1" + b"\x00" * 20), "x.csv") == "parquet"
    assert sniff_format(write(tmp_path, "a,b\n1,2\n"), "x.parquet") == "parquet"
    assert sniff_format(write(tmp_path, "a,b\n1,2\n"), "x.xlsx") == "xlsx"
    assert sniff_format(write(tmp_path, "a\tb\n1\t2\n"), "x") == "tsv"
    assert sniff_format(write(tmp_path, "a;b\n1,5;2\n"), "x.txt") == "csv"
    assert sniff_format(write(tmp_path, '{"a": 1}\n'), "x.txt") == "jsonl"
    assert sniff_format(write(tmp_path, "a,b\n1,2\n"), "x.jsonl") == "jsonl"


def test_single_column_and_tsv_with_commas(tmp_path: Path) -> None:
    single = read_table(write(tmp_path, "name\nAnn, Jr.\nBob\n"), "names.csv")
    assert single.frame.get_column("name").to_list() == ["Ann, Jr.", "Bob"]
    tsv = read_table(write(tmp_path, "id\tname\n1\tSmith, Ann\n2\tBob\n"), "x.tsv")
    assert tsv.delimiter == "\t"
    assert tsv.frame.get_column("name").to_list() == ["Smith, Ann", "Bob"]


def test_semicolon_beats_decimal_commas(tmp_path: Path) -> None:
    read = read_table(write(tmp_path, "id;amount;price\n1;3,50;4,20\n2;1,00;2,00\n"), "eu.csv")
    assert read.delimiter == ";"
    assert read.frame.get_column("amount").to_list() == ["3,50", "1,00"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"   \n\t\r\n  ", b"\xef\xbb\xbf\n", "\n \n".encode("utf-16")]
)
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    assert "the file is empty" in fails(write(tmp_path, data), "empty.csv")


def test_header_only(tmp_path: Path) -> None:
    message = fails(write(tmp_path, "id,name\n\n"), "header.csv")
    assert message == "header.csv: has a header but no data rows; upload the file with its data"


def test_header_only_parquet_and_xlsx(tmp_path: Path) -> None:
    parquet = tmp_path / "p"
    pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.String}).write_parquet(parquet)
    assert "has a header but no data rows" in fails(parquet, "p.parquet")
    book = tmp_path / "b"
    _workbook(book, [["a", "b"]])
    assert "has a header but no data rows" in fails(book, "b.xlsx")


def test_binary_garbage(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(20_000)
    message = fails(write(tmp_path, data), "garbage.csv")
    assert "is not a text table (CSV/TSV/JSON Lines), Parquet or Excel file" in message


def test_binary_with_nul_bytes_that_is_valid_utf8(tmp_path: Path) -> None:
    data = b"a,b\n" + b"\x00\x01\x02\x03" * 1000
    assert "is not a text table" in fails(write(tmp_path, data), "nul.csv")


def test_old_xls(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500
    assert ".xls" in fails(write(tmp_path, data), "old.xls")


def test_row_with_too_many_fields(tmp_path: Path) -> None:
    text = 'a,b,c\n1,2,3\n"x\ny",2,3\n4,5,6,7\n8,9,10\n'
    message = fails(write(tmp_path, text), "wide.csv")
    assert "data row 3 has 4 fields, the header has 3" in message
    with pytest.raises(FileFormatError) as caught:
        read_table(write(tmp_path, text), "wide.csv")
    assert isinstance(caught.value.__cause__, pl.exceptions.PolarsError)


def test_row_with_too_few_fields(tmp_path: Path) -> None:
    text = 'a,b,c,d\n1,2,3,4\n"x\ny",2,"3,3",4\n\n5,"6,6",7\n8,9,10,\n'
    message = fails(write(tmp_path, text), "short.csv")
    assert "data row 4 has 3 fields, the header has 4" in message


def test_row_with_too_few_fields_without_quotes(tmp_path: Path) -> None:
    text = "a|b|c\n" + "1|2|3\n" * 16 + "4|5\n" + "6|7|\n"
    assert "data row 17 has 2 fields, the header has 3" in fails(write(tmp_path, text), "p.csv")


def test_row_with_one_field_among_many(tmp_path: Path) -> None:
    text = "a,b,c\n1,2,3\njust text\n"
    assert "data row 2 has 1 field, the header has 3" in fails(write(tmp_path, text), "t.csv")


def test_unbalanced_quote(tmp_path: Path) -> None:
    text = 'a,b,c\n1,2,3\n"ok\nfine",5,6\n7,"never closed,8\n9,10,11\n12,13,14\n'
    message = fails(write(tmp_path, text), "quote.csv")
    assert "data row 3 (line 5)" in message
    assert "never closed" in message


def test_unbalanced_quote_in_last_field(tmp_path: Path) -> None:
    text = 'a,b,c\n1,2,"3\n4,5,6\n7,8,9\n'
    message = fails(write(tmp_path, text), "last.csv")
    assert "data row 1 (line 2)" in message and "never closed" in message


def test_quote_inside_unquoted_value(tmp_path: Path) -> None:
    text = 'id,size,price\n1,5" screen,3\n'
    message = fails(write(tmp_path, text), "stray.csv")
    assert "data row 1 (line 2), field 2 ('size')" in message
    assert "quote character inside a value that is not quoted" in message


def test_text_after_closing_quote(tmp_path: Path) -> None:
    text = 'id,name\n1,ok\n2,"Ann" Smith\n'
    message = fails(write(tmp_path, text), "after.csv")
    assert "data row 2 (line 3)" in message and "misplaced quote" in message


def test_duplicate_column_names(tmp_path: Path) -> None:
    message = fails(write(tmp_path, "id,name, id,Name,name\n1,2,3,4,5\n"), "dup.csv")
    assert "duplicate column names" in message
    assert "'id' (columns 1, 3)" in message and "'name' (columns 2, 5)" in message
    assert "'Name'" not in message


def test_reserved_column_name(tmp_path: Path) -> None:
    message = fails(write(tmp_path, "_row_number,a\n1,2\n"), "reserved.csv")
    assert "'_row_number'" in message


def test_enormous_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"x," * (10 << 20))  # 20 MB, no newline
    assert "first line is longer than 1 MB" in fails(path, "line.csv")


def test_enormous_data_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n" + b"x" * (20 << 20) + b"\n")
    # one 20 MB cell: refused as that, before the check for short rows copies every line
    message = fails(path, "long.csv")
    assert "data row 1, column 1 ('a') holds 20.0 MB, more than the 1.0 MB" in message


def test_enormous_unclosed_quote(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b\n1,"' + b"x" * (20 << 20))
    message = fails(path, "runaway.csv")
    assert "data row 1 (line 2)" in message and "longer than 16 MB" in message


def test_one_line_of_text(tmp_path: Path) -> None:
    message = fails(write(tmp_path, "qwpoeiru zxmcnv !@#$%^&*()"), "junk.csv")
    assert "has a header but no data rows" in message


def test_truncated_parquet(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    pl.DataFrame({"a": list(range(1000)), "b": [str(i) for i in range(1000)]}).write_parquet(whole)
    data = whole.read_bytes()
    half = write(tmp_path, data[: len(data) // 2])
    message = fails(half, "half.parquet")
    assert message.startswith("half.parquet: is not a readable Parquet file (")
    with pytest.raises(FileFormatError) as caught:
        read_table(half, "half.parquet")
    assert caught.value.__cause__ is not None


def test_garbage_with_parquet_extension(tmp_path: Path) -> None:
    message = fails(write(tmp_path, "a,b\n1,2\n"), "fake.parquet")
    assert "is not a readable Parquet file" in message


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_corrupt_xlsx(tmp_path: Path, cut: float) -> None:
    book = tmp_path / "book"
    _workbook(book, [["a", "b"], [1, 2]])
    data = book.read_bytes()
    message = fails(write(tmp_path, data[: int(len(data) * cut)]), "broken.xlsx")
    assert "is not a readable Excel .xlsx file" in message


def test_invalid_utf8_after_the_sample(tmp_path: Path) -> None:
    data = b"id,name\n" + b"1,abc\n" * 300_000 + b"2,caf\xe9\n"
    message = fails(write(tmp_path, data), "mixed.csv")
    assert "byte 1800013 (line 300002) is not valid utf-8" in message


def test_byte_undefined_in_cp1252(tmp_path: Path) -> None:
    data = "id,name\n1,Café\n".encode("cp1252") + b"1,abc\n" * 300_000 + b"2,x\x81y\n"
    message = fails(write(tmp_path, data), "undefined.csv")
    assert "byte 1800018 (line 300003) is not valid cp1252" in message


def test_truncated_utf16(tmp_path: Path) -> None:
    data = "a,b\n1,2\n3,4\n".encode("utf-16")[:-1]
    assert "is not valid utf-16" in fails(write(tmp_path, data), "odd.csv")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}\n{"a": 2\n', "line 2 is not valid JSON"),
        ('{"a": 1}\n\n[1, 2]\n', "line 3 is a JSON list, not an object"),
        ('{"a": 1}\n5\n', "line 2 is a JSON int, not an object"),
    ],
)
def test_bad_jsonl(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        read_table(write(tmp_path, text), "bad.jsonl")
    assert str(caught.value).startswith("bad.jsonl: ")
    assert expected in str(caught.value)
    assert isinstance(caught.value.__cause__, pl.exceptions.PolarsError)


def test_default_name_is_the_stored_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "", stored="upload-123.csv")
    with pytest.raises(FileFormatError, match=r"^upload-123\.csv: the file is empty"):
        read_table(path)


# --- limits: columns and cell size ------------------------------------------------------------


def test_the_column_limit_is_inclusive(tmp_path: Path) -> None:
    width = readers.MAX_COLUMNS
    text = ",".join(f"c{i}" for i in range(width)) + "\n" + ",".join(["1"] * width) + "\n"
    assert read_table(write(tmp_path, text), "widest.csv").frame.width == width + 1


@pytest.mark.parametrize("header_name", ["c{i}", "a_long_column_name_of_thirty_{i:05d}"])
def test_one_column_too_many_is_refused_before_parsing(tmp_path: Path, header_name: str) -> None:
    # the second header is ~140 KB: longer than the 64 KB the delimiter is sniffed on
    width = readers.MAX_COLUMNS + 1
    header = ",".join(header_name.format(i=i) for i in range(width))
    message = fails(write(tmp_path, header + "\n" + ",".join(["1"] * width) + "\n"), "wide.csv")
    assert message == (
        f"wide.csv: has {width:,} comma-separated fields, more than the "
        f"{readers.MAX_COLUMNS:,} columns a file may have; split it into files of fewer "
        "columns, or leave out the columns the reconciliation does not need"
    )


def test_too_many_columns_in_other_formats(tmp_path: Path) -> None:
    width = readers.MAX_COLUMNS + 1
    frame = pl.DataFrame({f"c{i}": [1] for i in range(width)})
    frame.write_parquet(tmp_path / "wide.parquet")
    message = fails(tmp_path / "wide.parquet", "wide.parquet")
    assert f"has {width:,} columns, more than the {readers.MAX_COLUMNS:,}" in message
    (tmp_path / "wide.jsonl").write_text(frame.write_ndjson())
    message = fails(tmp_path / "wide.jsonl", "wide.jsonl")
    assert f"has {width:,} distinct keys, more than the {readers.MAX_COLUMNS:,}" in message


def test_a_cell_over_the_limit_names_its_row_and_column(tmp_path: Path) -> None:
    limit = readers.MAX_CELL_BYTES
    fits = b"id,memo\n1,ok\n2," + b"m" * limit + b"\n"
    assert read_table(write(tmp_path, fits), "fits.csv").frame.height == 2
    quoted = b'id,memo\n1,ok\n2,"' + b"m" * (limit + 1) + b'"\n3,ok\n'
    assert fails(write(tmp_path, quoted), "big.csv") == (
        "big.csv: data row 2, column 2 ('memo') holds 1.0 MB, more than the 1.0 MB a cell may "
        "have; look for a quote that is never closed or missing line breaks, or leave that "
        "value out of the export"
    )
    pl.DataFrame({"id": ["1"], "h" * (limit + 1): ["2"]}).write_parquet(tmp_path / "h.parquet")
    assert "the header, column 2 holds 1.0 MB" in fails(tmp_path / "h.parquet", "h.parquet")
    frame = pl.DataFrame({"id": ["1"], "blob": ["b" * (limit + 10)]})
    frame.write_parquet(tmp_path / "big.parquet")
    assert "data row 1, column 2 ('blob')" in fails(tmp_path / "big.parquet", "big.parquet")
