"""BAI2 balance reports: the canonical table from a file written to the specification and from
the `bai2` package's real samples, the opening/closing ledger check, and a file whose record
counts do not add up refused with a clear error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.ingest.readers import FileFormatError, read_table
from pipelines.ingest.statements import COLUMNS, check_balances, detect_file

DATA = Path(__file__).parent / "data" / "statements"


def _total(frame) -> Decimal:  # noqa: ANN001
    return sum((Decimal(a) for a in frame.get_column("amount")), Decimal(0))


def test_two_accounts_with_credits_debits_and_a_continuation() -> None:
    read = read_table(DATA / "own_daily.bai2")
    frame = read.frame
    assert read.file_format == "bai2" and frame.columns == ["_row_number", *COLUMNS]
    assert frame.height == 5 and _total(frame) == Decimal("425.50")
    assert frame.get_column("amount").to_list() == [
        "1500.00",
        "1000.00",
        "-1500.00",
        "-74.50",
        "-500.00",
    ]  # cents scaled; 400-699 type codes are debits
    first = frame.row(0, named=True)
    assert first["reference"] == "INV-3001" and first["bank_reference"] == "BR0001"
    assert first["booking_date"] == "2024-01-30" and first["transaction_code"] == "165"
    assert "INVOICE INV-3002" in frame.row(1, named=True)["description"]  # the 88 record
    assert frame.row(1, named=True)["reference"] is None  # blank customer reference
    assert frame.get_column("account").to_list()[-1] == "0007654321"
    results = check_balances(read.statements)
    assert [(r.checked, r.passed) for r in results] == [(True, True), (True, True)]
    assert results[0].opening_balance == Decimal("10000.00")


@pytest.mark.parametrize(
    ("name", "rows", "total", "passed"),
    [
        ("bai2pkg_nwb_example.bai2", 5, "-26.76", [True]),
        ("bai2pkg_svb_us_example.bai2", 2, "13959.96", [True, True]),
        ("bai2pkg_citi_example.bai2", 1, "0.01", [False]),
    ],
)
def test_real_samples(name: str, rows: int, total: str, passed: list[bool]) -> None:
    read = read_table(DATA / name)
    assert read.file_format == "bai2"
    assert read.frame.height == rows and _total(read.frame) == Decimal(total)
    results = check_balances(read.statements)
    assert [r.passed for r in results] == passed
    if not all(passed):
        assert results[0].difference == Decimal("-0.01")


def test_detected_by_content_and_a_csv_is_not_bai2(tmp_path: Path) -> None:
    renamed = tmp_path / "report.txt"
    renamed.write_bytes((DATA / "own_daily.bai2").read_bytes())
    assert detect_file(renamed) == "bai2"
    lookalike = tmp_path / "codes.csv"
    lookalike.write_text("01,alpha,1\n02,beta,2\n03,gamma,3\n")
    assert detect_file(lookalike) is None and read_table(lookalike).file_format == "csv"


def test_wrong_record_counts_are_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bai2"
    broken.write_text(
        (DATA / "own_daily.bai2").read_text().replace("49,2907450,8/", "49,2907450,7/")
    )
    with pytest.raises(FileFormatError) as err:
        read_table(broken)
    assert str(err.value).startswith("broken.bai2: cannot be read as BAI2 (Invalid number of")
