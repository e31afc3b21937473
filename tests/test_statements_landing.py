"""Bank statements through the product: `recon land` lands an MT940 (PROCESSED, canonical parquet
keyed by the uploaded file's id, the `statement_balances` asset check warning with the
difference), a malformed statement is refused like any unreadable file, and `recon run`
reconciles a camt.053 against a ledger CSV with a rules file and without one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey
from helpers import run_recon

from pipelines.files import _balance_checks
from pipelines.ingest.readers import read_table
from resources.database import engine_for

DATA = Path(__file__).parent / "data" / "statements"

LEDGER_CSV = """entry_id,posting_date,amount,customer,invoice_ref,memo
GL-0001,31/01/2024,1500.00,Acme Trading BV,INV-1001,Invoice INV-1001 January deliveries
GL-0002,31/01/2024,-2300.50,Globex Ltd,PO-7781,PO 7781
GL-0003,31/01/2024,-12.00,Bank,FEE-2024-01,Monthly account fee
GL-0004,31/01/2024,-1000.00,J. Smith,SAL-2024-01-001,Salary January 2024
GL-0005,31/01/2024,-1200.00,M. Jones,SAL-2024-01-002,Salary January 2024
GL-0006,31/01/2024,-800.00,A. Brown,SAL-2024-01-003,Salary January 2024
GL-0007,31/01/2024,750.25,Initech Inc,RF-5521,Refund credit note RF-5521
GL-0008,30/01/2024,99.00,Unknown,INV-9999,Not in the bank
"""

RULES = """name: camt-vs-ledger
match_threshold: 0.8
field_mappings:
  - {source_field: reference, target_field: invoice_ref, transformation_type: TRIM}
  - source_field: booking_date
    target_field: posting_date
    transformation_type: DATE_FORMAT
    transformation_config: {format: yyyy-MM-dd}
  - {source_field: amount, target_field: amount, transformation_type: DIRECT}
  - {source_field: counterparty_name, target_field: customer, transformation_type: TRIM}
matching_rules:
  - {name: reference, match_type: EXACT, fields: [invoice_ref], weight: 1.0}
  - {name: amount, match_type: RANGE, fields: [amount], weight: 0.8, tolerance: 0.01}
  - {name: date, match_type: DATE_RANGE, fields: [posting_date], weight: 0.6, tolerance: 2}
  - {name: name, match_type: FUZZY, fields: [customer], weight: 0.4, threshold: 0.8}
"""


@pytest.fixture()
def home(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"RECON_HOME": str(tmp_path / "home"), "RECON_DATABASE_URL": database_url}


def _land(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_recon("land", *args, env=env, timeout=300)
    assert out.strip(), err
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_balance_check_result_warns_with_the_difference() -> None:
    [failing] = _balance_checks(read_table(DATA / "mt940pkg_jejik_abnamro.sta").statements, 7)
    assert failing.passed is False and failing.severity == AssetCheckSeverity.WARN
    assert (
        failing.metadata["failing"].value == 2 and failing.metadata["uploaded_file_id"].value == 7
    )
    assert failing.metadata["difference"].value[0]["difference"] == "-2038.00"
    assert "difference -2038.00" in (failing.description or "")
    [passing] = _balance_checks(read_table(DATA / "own_two_statements.sta").statements, 8)
    assert passing.passed is True and passing.metadata["checked"].value == 2
    [table] = _balance_checks(None, 9)  # not a statement: passed, with a note
    assert table.passed is True and "not a bank statement" in table.metadata["note"].value


def test_recon_land_an_mt940_and_refuse_a_malformed_one(
    home: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    statement = tmp_path / "abnamro-may.txt"  # told by content, not by the name
    statement.write_bytes((DATA / "mt940pkg_jejik_abnamro.sta").read_bytes())
    code, landed, err = _land(home, str(statement), "--org", org, "--data-source", "abn")
    assert code == 0, err
    assert landed["status"] == "PROCESSED" and landed["format"] == "mt940", landed
    assert landed["row_count"] == 10 and landed["invalid_row_count"] == 0
    file_id = landed["uploaded_file_id"]
    parquet = Path(home["RECON_HOME"]) / "store" / "canonical" / f"{file_id}.parquet"
    frame = pl.read_parquet(parquet)
    assert frame.height == 10
    assert frame.schema["amount"] == pl.Float64 and frame.schema["booking_date"] == pl.Date
    assert frame.schema["reference"] == pl.String and frame.schema["account"] == pl.String
    assert round(frame.get_column("amount").sum(), 2) == -345.93
    with engine_for(database_url).connect() as conn:
        content_type = conn.execute(
            sa.text("SELECT content_type FROM uploaded_files WHERE id = :i"), {"i": file_id}
        ).scalar_one()
    assert content_type == "application/x-swift-mt940"

    from resources.dagster_instance import dagster_instance

    instance = dagster_instance(database_url)
    key = AssetCheckKey(AssetKey("canonical_file"), "statement_balances")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
    evaluations = [
        record.event.dagster_event.event_specific_data
        for record in history
        if record.event is not None and record.event.dagster_event is not None
    ]
    # the database is shared with other tests: their files' evaluations (and planned checks,
    # without metadata) are in the history too
    ours = [
        e
        for e in evaluations
        if getattr(getattr(e, "metadata", {}).get("uploaded_file_id"), "value", None) == file_id
    ]
    assert ours and ours[0].passed is False and ours[0].severity == AssetCheckSeverity.WARN
    assert ours[0].metadata["difference"].value[0]["difference"] == "-2038.00"

    broken = tmp_path / "broken.sta"
    text = (DATA / "own_two_statements.sta").read_text()
    broken.write_text(text.replace(":61:2401300130D2300,50NTRF", ":61:2401300130D23OO,50NTRF"))
    code, refused, err = _land(home, str(broken), "--org", org, "--data-source", "abn")
    assert code == 1 and refused["status"] == "FAILED"
    assert refused["processing_error"].startswith(
        "broken.sta: entry 2, field :61: statement line: "
    )


@pytest.mark.slow
def test_recon_run_a_camt053_against_a_ledger_with_and_without_rules(
    database_url: str, tmp_path: Path
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    statement = tmp_path / "statement.xml"
    statement.write_bytes((DATA / "own_camt053_batched.xml").read_bytes())
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(LEDGER_CSV)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    base = ["run", "--source", str(statement), "--target", str(ledger), "--org", org]
    code, out, err = run_recon(*base, "--rules", str(rules), timeout=600)
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "COMPLETED", summary
    with engine_for(database_url).connect() as conn:
        pairs = {
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT source_row_number, target_row_number FROM reconciliation_matches "
                    "WHERE reconciliation_id = :r"
                ),
                {"r": summary["reconciliation_id"]},
            )
        }
    # the statement's rows 1-7 are the ledger's rows 1-7; ledger row 8 is not in the bank
    assert {(1, 1), (4, 4), (5, 5), (6, 6), (7, 7)} <= pairs
    assert all(target != 8 for _, target in pairs)

    code, out, err = run_recon(*base, "--name", "proposed", timeout=600)
    assert code == 0, err[-3000:]
    proposed = json.loads(out.strip().splitlines()[-1])
    assert proposed["status"] == "COMPLETED", proposed
    assert "source_field: counterparty_name" in err and "source_field: amount" in err
    with engine_for(database_url).connect() as conn:
        matched = conn.execute(
            sa.text("SELECT count(*) FROM reconciliation_matches WHERE reconciliation_id = :r"),
            {"r": proposed["reconciliation_id"]},
        ).scalar_one()
    assert matched >= 5
