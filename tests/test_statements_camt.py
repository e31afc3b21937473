"""ISO 20022 camt.053/052/054: the canonical table from files written to the specification
(batched entries split by `TxDtls`, pending entries left out), the balance check passing and
failing, detection by content, and hostile or malformed XML refused with a clear error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.ingest.readers import FileFormatError, read_table
from pipelines.ingest.statements import COLUMNS, check_balances, detect_file

DATA = Path(__file__).parent / "data" / "statements"


def _total(frame) -> Decimal:  # noqa: ANN001
    return sum((Decimal(a) for a in frame.get_column("amount")), Decimal(0))


def test_camt053_with_a_batched_entry() -> None:
    read = read_table(DATA / "own_camt053_batched.xml")
    frame = read.frame
    assert read.file_format == "camt.053"
    assert frame.columns == ["_row_number", *COLUMNS]
    assert frame.height == 7 and _total(frame) == Decimal("-3062.25")  # the pending entry is out
    credit = frame.row(0, named=True)
    assert credit["counterparty_name"] == "ACME TRADING B.V."  # the debtor of a credit
    assert credit["counterparty_account"] == "DE89370400440532013000"
    assert credit["description"] == "Invoice INV-1001 January deliveries"  # Ustrd lines joined
    assert credit["transaction_code"] == "PMNT-RCDT-ESCT"
    debit = frame.row(1, named=True)
    assert debit["counterparty_name"] == "GLOBEX LTD"  # the creditor of a debit
    assert debit["reference"] is None  # NOTPROVIDED
    assert (debit["booking_date"], debit["value_date"]) == ("2024-01-31", "2024-02-01")
    fee = frame.row(2, named=True)
    assert fee["amount"] == "-12.00" and fee["description"] == "MONTHLY ACCOUNT FEE JANUARY 2024"
    batch = frame.slice(3, 3)
    assert batch.get_column("amount").to_list() == ["-1000.00", "-1200.00", "-800.00"]
    assert batch.get_column("reference").to_list() == [
        "SAL-2024-01-001",
        "SAL-2024-01-002",
        "SAL-2024-01-003",
    ]
    assert batch.get_column("counterparty_account").to_list()[2] == "0417164300"  # Othr/Id
    assert set(batch.get_column("bank_reference")) == {"BR24013100004"}
    assert frame.row(6, named=True)["reference"] == "RF-5521"
    [result] = check_balances(read.statements)
    assert result.checked and result.passed
    assert (result.opening_balance, result.closing_balance) == (
        Decimal("10000.00"),
        Decimal("6937.75"),
    )


def test_a_closing_balance_that_does_not_add_up_fails_with_the_difference(tmp_path: Path) -> None:
    text = (DATA / "own_camt053_batched.xml").read_text()
    off = tmp_path / "off.xml"
    off.write_text(text.replace('<Amt Ccy="EUR">6937.75</Amt>', '<Amt Ccy="EUR">6940.00</Amt>'))
    [result] = check_balances(read_table(off).statements)
    assert result.checked and not result.passed
    assert result.difference == Decimal("2.25")
    assert result.as_data()["expected_closing"] == "6937.75"


def test_camt052_intraday_report_checks_its_interim_balances() -> None:
    read = read_table(DATA / "own_camt052_report.xml")
    assert read.file_format == "camt.052"
    assert read.frame.height == 2 and _total(read.frame) == Decimal("1380.10")
    first = read.frame.row(0, named=True)
    assert first["booking_date"] == "2024-01-31"  # from a DtTm
    assert first["account"] == "0417164300" and first["transaction_code"] == "NTRF+166"
    [result] = check_balances(read.statements)
    assert result.opening_balance == Decimal("-250.00") and result.passed


def test_camt054_notification_splits_a_batch_and_keeps_a_mismatched_one_whole() -> None:
    read = read_table(DATA / "own_camt054_notification.xml")
    frame = read.frame
    assert read.file_format == "camt.054"
    assert frame.height == 3 and _total(frame) == Decimal("4164.60")
    assert frame.get_column("reference").to_list()[:2] == [
        "210000000003139471430009017",
        "210000000003139471430009025",
    ]
    whole = frame.row(2, named=True)  # TxDtls of 80.00 + 4.40 under an entry of 85.40
    assert whole["amount"] == "-85.40" and whole["description"] == "Mobile January Roaming"
    assert set(frame.get_column("currency")) == {"CHF"}
    assert [r.checked for r in check_balances(read.statements)] == [False]


def test_detected_by_the_namespace_not_the_name(tmp_path: Path) -> None:
    for version in ("001.02", "001.13"):
        text = (DATA / "own_camt053_batched.xml").read_text().replace("001.08", version)
        renamed = tmp_path / f"statement-{version}.dat"
        renamed.write_text(text)
        assert detect_file(renamed) == "camt.053"
        assert read_table(renamed).frame.height == 7
    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?><Document xmlns="urn:example"><a>1</a></Document>')
    assert detect_file(other) is None


def test_entity_expansion_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<Stmt><Id>&b;</Id></Stmt></BkToCstmrStmt></Document>"
    )
    with pytest.raises(FileFormatError, match=r"^bomb.xml: the XML declares a DTD"):
        read_table(bomb)


def test_a_malformed_amount_names_file_entry_and_field(tmp_path: Path) -> None:
    text = (DATA / "own_camt053_batched.xml").read_text()
    broken = tmp_path / "broken.xml"
    broken.write_text(
        text.replace('<Amt Ccy="EUR">2300.50</Amt>', '<Amt Ccy="EUR">2.300,5O</Amt>', 1)
    )
    with pytest.raises(FileFormatError) as err:
        read_table(broken)
    assert str(err.value).startswith("broken.xml: entry 2, field Amt: '2.300,5O' is not an amount")
    truncated = tmp_path / "truncated.xml"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(FileFormatError, match=r"^truncated.xml: is not well-formed XML"):
        read_table(truncated)


def test_a_statement_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.ingest.statements as statements

    monkeypatch.setattr(statements, "MAX_STATEMENT_BYTES", 1024)
    with pytest.raises(FileFormatError, match=r"^own_camt053_batched.xml: is a camt.053 bank"):
        read_table(DATA / "own_camt053_batched.xml")
