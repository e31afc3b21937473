"""OFX/QFX statements, SGML 1.x and XML 2.x: the canonical table from files written to the
specification and from the `ofxparse` package's real samples, no balance check (OFX has no
opening balance), detection by content, a malformed amount's error, and the hand-written SGML/XML
reader (`ofx_tree`) on unclosed and closed leaves, entities, CDATA, cut-short and too-deep files,
DTDs and unknown charsets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.ingest.readers import FileFormatError, read_table
from pipelines.ingest.statements import COLUMNS, check_balances, detect_file
from pipelines.ingest.statements.ofx import parse

DATA = Path(__file__).parent / "data" / "statements"


def _total(frame) -> Decimal:  # noqa: ANN001
    return sum((Decimal(a) for a in frame.get_column("amount")), Decimal(0))


def test_sgml_checking_statement() -> None:
    read = read_table(DATA / "own_checking.ofx")
    frame = read.frame
    assert read.file_format == "ofx" and frame.columns == ["_row_number", *COLUMNS]
    assert frame.height == 4 and _total(frame) == Decimal("639.80")
    cheque = frame.row(1, named=True)
    assert cheque["amount"] == "-845.20" and cheque["reference"] == "1042"
    assert (cheque["booking_date"], cheque["value_date"]) == ("2024-01-10", "2024-01-08")
    assert cheque["counterparty_name"] == "SOYLENT SUPPLY CO"
    transfer = frame.row(3, named=True)
    assert transfer["counterparty_account"] == "4000999999" and transfer["reference"] == "TRF-7788"
    assert frame.row(2, named=True)["reference"] is None
    [result] = check_balances(read.statements)
    assert not result.checked and result.closing_balance == Decimal("5639.80")


def test_xml_credit_card_statement() -> None:
    read = read_table(DATA / "own_creditcard.qfx")
    assert read.file_format == "ofx"
    assert read.frame.height == 3 and _total(read.frame) == Decimal("-814.99")
    assert set(read.frame.get_column("currency")) == {"GBP"}
    assert set(read.frame.get_column("account")) == {"5555444433331111"}


@pytest.mark.parametrize(
    ("name", "rows", "total"),
    [
        ("ofxparse_checking.ofx", 3, "-59.50"),
        ("ofxparse_bank_medium.ofx", 3, "-345.27"),
        ("ofxparse_suncorp.ofx", 1, "-16.85"),
        ("ofxparse_anzcc.ofx", 1, "-5.50"),
    ],
)
def test_real_samples(name: str, rows: int, total: str) -> None:
    read = read_table(DATA / name)
    assert read.file_format == "ofx"
    assert read.frame.height == rows and _total(read.frame) == Decimal(total)
    assert read.frame.get_column("bank_reference").null_count() == 0  # FITID


def test_every_list_of_transactions_is_read(tmp_path: Path) -> None:
    # some exporters write one BANKTRANLIST per transaction under one statement: none is
    # dropped (only the first was read, and the file reconciled as if the rest were missing)
    text = (DATA / "own_checking.ofx").read_text()
    split = tmp_path / "split.ofx"
    split.write_text(
        text.replace(
            "</STMTTRN>\n<STMTTRN>", "</STMTTRN>\n</BANKTRANLIST>\n<BANKTRANLIST>\n<STMTTRN>"
        )
    )
    assert split.read_text().count("<BANKTRANLIST>") == 4
    whole, parts = read_table(DATA / "own_checking.ofx"), read_table(split)
    assert parts.frame.height == 4 and _total(parts.frame) == Decimal("639.80")
    assert parts.frame.drop("_row_number").equals(whole.frame.drop("_row_number"))
    # the statement's period runs from the first list's start to the last one's end
    assert [s.statement_id for s in parts.statements.statements] == [
        s.statement_id for s in whole.statements.statements
    ]


def test_detected_by_content(tmp_path: Path) -> None:
    renamed = tmp_path / "download.txt"
    renamed.write_bytes((DATA / "own_creditcard.qfx").read_bytes())
    assert detect_file(renamed) == "ofx"


def test_a_thousands_separator_in_an_amount_names_entry_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.qfx"
    text = (DATA / "own_creditcard.qfx").read_text()
    broken.write_text(text.replace("<TRNAMT>-1250.00</TRNAMT>", "<TRNAMT>-1,250.00</TRNAMT>"))
    with pytest.raises(FileFormatError) as err:
        read_table(broken)
    assert str(err.value).startswith(
        "broken.qfx: entry 2, field TRNAMT: '-1,250.00' is not an amount"
    )


_SGML_HEADER = (
    "OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\nENCODING:USASCII\r\n"
    "CHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\nNEWFILEUID:NONE\r\n\r\n"
)


def _sgml(
    transactions: str, tail: str = "</BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>"
) -> bytes:
    body = (
        "<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STMTRS><CURDEF>EUR"
        "<BANKACCTFROM><BANKID>1<ACCTID>NL01TEST<ACCTTYPE>CHECKING</BANKACCTFROM>"
        f"<BANKTRANLIST>{transactions}{tail}"
    )
    return (_SGML_HEADER + body).encode("cp1252")


def test_hand_written_sgml_reader_handles_what_banks_write() -> None:
    data = _sgml(
        # an empty unclosed MEMO must not swallow NAME; closed leaves; entities; CDATA; cp1252
        "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240105<TRNAMT>-1.50<FITID>A1<MEMO><NAME>Caf\u00e9 "
        "M&amp;S &#60;Ltd&gt;</STMTTRN>"
        "<STMTTRN><TRNTYPE>CREDIT</TRNTYPE><DTPOSTED>20240106</DTPOSTED><TRNAMT>2.00</TRNAMT>"
        "<FITID>A2</FITID><MEMO><![CDATA[a <b> & c]]></MEMO></STMTTRN>"
    )
    [statement] = parse(data, "mixed.ofx", "ofx").statements
    first, second = statement.entries
    assert first.counterparty_name == "Caf\u00e9 M&S <Ltd>" and first.description is None
    assert second.amount == Decimal("2.00") and second.description == "a <b> & c"
    assert statement.account == "NL01TEST" and statement.currency == "EUR"


@pytest.mark.parametrize(
    ("transactions", "tail", "message"),
    [
        (
            "<STMTTRN><TRNTYPE>DEBIT<TRNAMT>-1.00<FITID>1</STMTTRN>"
            "<STMTTRN><TRNTYPE>DEBIT<TRNAMT>-2.00</BANKACCTFROM></STMTTRN>",
            "</BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>",
            "cut.ofx: entry 2, field BANKACCTFROM: </BANKACCTFROM> closes no open element",
        ),
        (
            "<STMTTRN><TRNTYPE>DEBIT<TRNAMT>-1.00<FITID>1</STMTTRN><STMTTRN><TRNTYPE>DEBIT",
            "",
            "cut.ofx: entry 2, field STMTTRN: ends inside <STMTTRN> (the file is cut short)",
        ),
        (
            "<STMTTRN>" + "<X>" * 80 + "</STMTTRN>",
            "",
            "cut.ofx: field X: nests elements more than 64 deep",
        ),
    ],
)
def test_a_broken_sgml_file_names_entry_and_tag(transactions: str, tail: str, message: str) -> None:
    with pytest.raises(FileFormatError) as err:
        parse(_sgml(transactions, tail), "cut.ofx", "ofx")
    assert str(err.value).startswith(message)


def test_xml_with_a_dtd_or_entities_is_refused(tmp_path: Path) -> None:
    text = (DATA / "own_creditcard.qfx").read_text()
    hostile = text.replace(
        "<OFX>\n", '<!DOCTYPE OFX [<!ENTITY big "xxxxxxxxxx">]>\n<OFX>\n', 1
    ).replace("OFFICE SUPPLIES LTD", "&big;")
    path = tmp_path / "hostile.qfx"
    path.write_text(hostile)
    with pytest.raises(FileFormatError, match=r"^hostile.qfx: is XML with a DTD or entities"):
        read_table(path)


def test_an_unknown_charset_is_refused() -> None:
    data = _sgml("").replace(b"CHARSET:1252", b"CHARSET:EBCDIC-37")
    with pytest.raises(FileFormatError, match=r"^x.ofx: field ENCODING: declares ENCODING:USASCII"):
        parse(data, "x.ofx", "ofx")
