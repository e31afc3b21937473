"""SWIFT MT940/MT942 statements: the canonical table from files written to the specification and
from the `mt-940` package's real bank samples (ABN AMRO, ING, Rabobank, Triodos, mBank,
Sberbank), the banks' dialects (mBank's fields and `:61:` type text, Sberbank's `:NS:` lines),
the balance check, detection by content and a malformed file's error."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.ingest.readers import FileFormatError, read_table
from pipelines.ingest.statements import COLUMNS, check_balances, detect_file
from pipelines.ingest.statements.mt94x import parse

DATA = Path(__file__).parent / "data" / "statements"


def _total(frame) -> Decimal:  # noqa: ANN001
    return sum((Decimal(a) for a in frame.get_column("amount")), Decimal(0))


def test_two_statements_in_one_file_read_into_the_canonical_table() -> None:
    read = read_table(DATA / "own_two_statements.sta")
    frame = read.frame
    assert read.file_format == "mt940" and read.content_type == "application/x-swift-mt940"
    assert frame.columns == ["_row_number", *COLUMNS]
    assert frame.height == 7 and frame.get_column("_row_number").to_list() == list(range(1, 8))
    assert _total(frame) == Decimal("-1024.75")
    first, second, fee = (
        frame.row(0, named=True),
        frame.row(1, named=True),
        frame.row(2, named=True),
    )
    assert first["amount"] == "1500.00" and first["counterparty_name"] == "ACME TRADING B.V."
    assert first["counterparty_account"] == "DE89370400440532013000"
    assert first["reference"] == "INV-1001"  # the EREF, wrapped over two lines
    assert first["bank_reference"] == "BR24013000001"
    assert first["description"] == "Invoice INV-1001 January deliveries"
    assert first["booking_date"] == first["value_date"] == "2024-01-30"
    assert second["amount"] == "-2300.50" and second["reference"] is None  # NONREF, NOTPROVIDED
    assert fee["amount"] == "-12.00" and fee["transaction_code"] == "NCHG"
    ing = frame.row(3, named=True)  # ING's /CNTP/account/bic/name/city/
    assert ing["counterparty_name"] == "J. SMITH"
    assert ing["counterparty_account"] == "NL20INGB0001234567"
    reversal = frame.row(5, named=True)
    assert reversal["amount"] == "40.00"  # RD: a reversed debit puts money back
    assert set(frame.get_column("statement_id")) == {"STMT240130 30/1", "STMT240131 31/1"}
    assert set(frame.get_column("account")) == {"NL91ABNA0417164300"}
    results = check_balances(read.statements)
    assert [(r.entries, r.checked, r.passed) for r in results] == [(3, True, True), (4, True, True)]
    assert results[1].opening_balance == Decimal("9187.50")


@pytest.mark.parametrize(
    ("name", "rows", "total", "balances"),
    [
        ("mt940pkg_jejik_abnamro.sta", 10, "-345.93", [False, False]),
        ("mt940pkg_jejik_ing.sta", 7, "-45.59", [False]),
        ("mt940pkg_jejik_rabobank.sta", 5, "-1589.09", [False, True, False, True]),
        ("mt940pkg_jejik_rabobank-iban.sta", 4, "-70.00", [True, True]),
        ("mt940pkg_jejik_triodos.sta", 2, "-715.70", [False]),
        ("mt940pkg_mBank_mt940.sta", 3, "0.03", [True]),
        ("mt940pkg_sberbank_171011_01234945.sta", 3, "-9437.00", [True]),
    ],
)
def test_real_bank_samples(name: str, rows: int, total: str, balances: list[bool]) -> None:
    read = read_table(DATA / name)
    assert read.file_format == "mt940"
    assert read.frame.height == rows and _total(read.frame) == Decimal(total)
    assert read.frame.get_column("amount").null_count() == 0
    assert read.frame.get_column("booking_date").null_count() == 0
    assert [r.passed for r in check_balances(read.statements)] == balances


def test_dialects_give_counterparties_and_descriptions() -> None:
    rabo = read_table(DATA / "mt940pkg_jejik_rabobank-iban.sta").frame.row(1, named=True)
    assert rabo["counterparty_name"] == "JOHN DOE"  # /BENM//NAME/
    assert rabo["description"] == "Reference 201301234"  # /REMI/
    triodos = read_table(DATA / "mt940pkg_jejik_triodos.sta").frame.row(1, named=True)
    assert triodos["description"] == "HUUR KANTOOR - FEB 2010"  # >20 >21 sub-fields
    mbank = read_table(DATA / "mt940pkg_mBank_mt940.sta").frame.row(0, named=True)
    assert mbank["bank_reference"] == "MB170119012058"


def test_mbank_fields_and_not_its_transaction_type_as_the_counterparty() -> None:
    frame = read_table(DATA / "mt940pkg_mBank_mt940.sta").frame
    first = frame.row(0, named=True)
    # the :61: supplement "911-TRANSAKCJA IPH" is the bank's type text, not a name;
    # OD: gives the name (its second line is the address), Z RACH.: the account, TYT.: the title
    assert set(frame.get_column("counterparty_name")) == {"JAN NOWAK"}
    assert first["counterparty_account"] == "56114010810000267002001001"
    assert first["description"] == "PRZELEW SRODKOW"
    text = (DATA / "mt940pkg_mBank_mt940.sta").read_text()
    free_text = re.sub(r":86:.*?(?=\n:)", ":86:PRZELEW", text, flags=re.S)
    [statement] = parse(free_text.encode(), "free.sta", "mt940").statements
    assert statement.entries[0].counterparty_name is None  # the type text is still no name
    assert statement.entries[0].description == "PRZELEW"
    no_details = re.sub(r":86:.*?(?=\n:)\n", "", text, flags=re.S)
    [statement] = parse(no_details.encode(), "bare.sta", "mt940").statements
    assert statement.entries[0].counterparty_name is None
    assert statement.entries[0].description == "911-TRANSAKCJA IPH"


def test_sberbank_non_swift_lines_give_counterparty_and_description() -> None:
    frame = read_table(DATA / "mt940pkg_sberbank_171011_01234945.sta").frame
    assert frame.get_column("counterparty_name").to_list() == [
        "ERGO Versicherung AG Fioktelep",  # 15 + 16, cut at a fixed width
        "ERGO Eletbiztosito Zrt.",
        "ERGO Versicherung AG Fioktelep",
    ]
    assert frame.row(1, named=True)["counterparty_account"] == "109180010000002595841185"
    assert frame.row(1, named=True)["description"].startswith("Tranz. Illet")


def test_an_abn_amro_balance_failure_carries_the_difference() -> None:
    read = read_table(DATA / "mt940pkg_jejik_abnamro.sta")
    first = check_balances(read.statements)[0]
    assert first.checked and not first.passed
    assert first.opening_balance == Decimal("3236.28")
    assert first.closing_balance == Decimal("876.84")
    assert first.difference == first.closing_balance - (first.opening_balance + first.entries_total)
    assert first.as_data()["difference"] == "-2038.00"


def test_mt942_interim_report_is_read_without_a_balance_check() -> None:
    read = read_table(DATA / "mt940pkg_mBank_mt942.sta")
    assert read.file_format == "mt942" and read.frame.height == 3
    assert _total(read.frame) == Decimal("0.03")
    assert [r.checked for r in check_balances(read.statements)] == [False]


def test_detected_by_content_whatever_the_name(tmp_path: Path) -> None:
    renamed = tmp_path / "export.txt"
    shutil.copy(DATA / "own_two_statements.sta", renamed)
    assert detect_file(renamed) == "mt940"
    read = read_table(renamed)
    assert read.file_format == "mt940" and read.frame.height == 7
    csv = tmp_path / "bank.csv"
    csv.write_text("txn_id,booking_date,amount\n:20:x,2024-01-01,1.00\n")
    assert detect_file(csv) is None and read_table(csv).file_format == "csv"


def test_a_malformed_entry_names_file_entry_and_field(tmp_path: Path) -> None:
    text = (DATA / "own_two_statements.sta").read_text()
    broken = tmp_path / "broken.sta"
    broken.write_text(text.replace(":61:2401310131C750,25NTRF", ":61:2401310131C7X0,25NTRF"))
    with pytest.raises(FileFormatError) as err:
        read_table(broken)
    message = str(err.value)
    assert message.startswith("broken.sta: entry 5, field :61: statement line: ")
    assert "\n" not in message


GERMAN_RETURNS = """:20:STARTUMS
:25:37040044/0532013000
:28C:1/1
:60F:C240301EUR1000,00
:61:2403010301CR300,00NTRFTFNr 40005//0724710345313905
:86:159?00RETOURE?100399?20EREF+TFNR 40005 00005?21MTLG:Grund nicht s
pezifiziert Reject ?22aus SEPA-Ueberweisung?34914
:61:2403010301CR120,00NTRFNONREF//0724710345313906
:86:166?00GUTSCHRIFT?100399?20EREF+AB-2024-0311-KUNDE-778?21A1B2C3D4E5F6G?22MTLG:Teilzahlung
 Rechnung 4711?32ACME GMBH
:61:2403010301CR80,00NTRFNONREF//0724710345313907
:86:166?00GUTSCHRIFT?100399?20EREF+RE-4712?21SVWZ+Rechnung 4712?32GLOBEX AG
:62F:C240301EUR1500,00
"""


def test_german_structured_reference_takes_only_its_own_sub_fields(tmp_path: Path) -> None:
    # a return's `?21MTLG:...` has no SEPA keyword of its own: it was glued onto the EREF+
    # reference (82 characters where SEPA allows 35), so the ledger's reference never matched
    path = tmp_path / "returns.sta"
    path.write_text(GERMAN_RETURNS)
    frame = read_table(path).frame
    assert frame.get_column("reference").to_list() == [
        "TFNR 40005 00005",
        # a full ?20 (27 characters) goes on into ?21, the one after it does not
        "AB-2024-0311-KUNDE-778A1B2C3D4E5F6G",
        "RE-4712",
    ]
    assert frame.row(0, named=True)["description"] == (
        "MTLG:Grund nicht spezifiziert Reject aus SEPA-Ueberweisung"
    )
    assert frame.row(1, named=True)["description"].startswith("MTLG:Teilzahlung")
    assert frame.row(2, named=True)["description"] == "Rechnung 4712"


def test_a_line_the_package_cannot_read_names_its_own_entry(tmp_path: Path) -> None:
    # the second :61: carries an 18-character customer reference and a line under it, which
    # the package refuses; the error named the entry after it
    path = tmp_path / "asn.sta"
    path.write_text(
        ":20:STMT1\n:25:NL81ASNB0000000001\n:28C:1/1\n:60F:C200101EUR444,29\n"
        ":61:2001020102D10,00NTRFNONREF\n:86:fee\n"
        ":61:2001010101D65,00NOVBNL47INGB0000000002\nmr jansen\n:86:NL47INGB0000000002\n"
        ":62F:C200102EUR369,29\n"
    )
    with pytest.raises(FileFormatError, match=r"^asn\.sta: entry 2, field :61: tag: cannot read"):
        read_table(path)


def test_a_whole_amount_without_its_decimal_comma_is_read(tmp_path: Path) -> None:
    # Knab writes `C500NTRF`: SWIFT wants `500,`; the file was refused whole
    path = tmp_path / "knab.sta"
    path.write_text(
        ":20:STMT1\n:25:NL02KNAB0000000001\n:28C:1/1\n:60F:C140728EUR0,00\n"
        ":61:1407290729C500NTRFNONREF//1\n:86:deposit\n"
        ":61:1407290729D12,50NCHGNONREF//2\n:86:fee\n:62F:C140729EUR487,50\n"
    )
    frame = read_table(path).frame
    assert frame.get_column("amount").to_list() == ["500.00", "-12.50"]
