"""Aggregate matching end to end (issue 16): `recon run` with an `aggregation:` rules file
writes each group as rows sharing `match_group`, and `recon lineage` follows an exception on a
group (or on one member pair) to the receipt and every invoice, as the organization only.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import run_recon

from pipelines.reconcile.lineage import exception_lineage, format_lineage
from resources.database import engine_for
from resources.errors import ReconError
from resources.file_store import FileStoreResource

DAY = date(2024, 3, 1)

RULES = """\
name: e2e-receipts-{tag}
match_threshold: 0.9
field_mappings:
  - {{source_field: Reference, target_field: invoice_number, transformation_type: UPPERCASE}}
  - {{source_field: Value Date, target_field: invoice_date, transformation_type: DATE_FORMAT,
     transformation_config: {{format: dd/MM/yyyy}}}}
  - {{source_field: Amount, target_field: amount}}
  - {{source_field: Payer, target_field: customer_name}}
matching_rules:
  - {{name: invoice, match_type: EXACT, fields: [invoice_number]}}
  - {{name: amount, match_type: RANGE, fields: [amount], tolerance: 0.01}}
  - {{name: date, match_type: DATE_RANGE, fields: [invoice_date], tolerance: 10}}
  - {{name: customer, match_type: FUZZY, fields: [customer_name], threshold: 0.85, weight: 0.5}}
aggregation:
  - {{name: receipts, many_side: target, group_by: [customer_name], amount_field: amount,
     date_field: invoice_date, date_window_days: 10, max_group_size: 5, tolerance: 0.01,
     reference_field: Remittance, reference_target_field: invoice_number}}
"""
NAMES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]


def write_receipts(folder: Path) -> dict[str, Any]:
    """Forty customers' receipts: every third settles three invoices (the last short by 7.50),
    the others one; returns what was planted (bank row -> invoice rows)."""
    rng = random.Random(16)
    bank, invoices, planted = [], [], {}
    number = 1000
    for i in range(40):
        name = f"{NAMES[i % len(NAMES)]} {['Trading', 'Works', 'Foods', 'Labs', 'Group'][i // 8]}"
        paid = DAY + timedelta(days=rng.randint(0, 60))
        count = 3 if i % 3 == 0 else 1
        rows = []
        for _ in range(count):
            number += 1
            amount = round(rng.uniform(100, 5000), 2)
            invoices.append(
                f"INV{number},{name} Ltd,{amount:.2f},"
                f"{paid - timedelta(days=rng.randint(0, 6)):%Y-%m-%d}"
            )
            rows.append((len(invoices), amount))
        total = round(sum(a for _, a in rows) - (7.5 if i == 39 else 0.0), 2)
        bank.append(f"{paid:%d/%m/%Y},{total:.2f},{name.upper()} LIMITED,,BACS {i}")
        planted[len(bank)] = {r for r, _ in rows}
    (folder / "bank.csv").write_text(
        "Value Date,Amount,Payer,Reference,Remittance\n" + "\n".join(bank) + "\n"
    )
    (folder / "invoices.csv").write_text(
        "invoice_number,customer_name,amount,invoice_date\n" + "\n".join(invoices) + "\n"
    )
    (folder / "rules.yaml").write_text(RULES.format(tag=uuid.uuid4().hex[:6]))
    return planted


@dataclass
class ReceiptsRun:
    folder: Path
    planted: dict[int, set[int]]
    summary: dict[str, Any]
    org: str


@pytest.fixture(scope="module")
def receipts_run(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> ReceiptsRun:
    """One `recon run` of `write_receipts`' files with the aggregation rules file."""
    tmp_path = tmp_path_factory.mktemp("receipts")
    planted = write_receipts(tmp_path)
    org = f"agg-{uuid.uuid4().hex[:8]}"
    code, out, err = run_recon(
        "run",
        "--no-embed",
        "--source",
        str(tmp_path / "bank.csv"),
        "--target",
        str(tmp_path / "invoices.csv"),
        "--rules",
        str(tmp_path / "rules.yaml"),
        "--org",
        org,
        timeout=300,
    )
    assert code == 0, err[-3000:]
    return ReceiptsRun(tmp_path, planted, json.loads(out.strip().splitlines()[-1]), org)


def test_recon_run_writes_groups_with_a_shared_match_group(
    database_url: str, receipts_run: ReceiptsRun
) -> None:
    planted, summary = receipts_run.planted, receipts_run.summary
    multi = {s: t for s, t in planted.items() if len(t) > 1}
    assert summary["status"] == "COMPLETED"
    assert summary["matched_groups"] == len(multi) == 14
    assert summary["records_in_groups"] == 4 * len(multi)
    assert summary["matched_records"] == 40  # one match per receipt: pairs and groups
    assert summary["unmatched_source_records"] == 0
    assert summary["unmatched_target_records"] == 0
    assert summary["exceptions_by_type"] == {"AMOUNT_MISMATCH": 1}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT source_row_number, target_row_number, match_kind, match_group "
            "FROM reconciliation_matches WHERE reconciliation_id = %s",
            (summary["reconciliation_id"],),
        ).fetchall()
        (statistics,) = conn.execute(
            "SELECT statistics FROM reconciliations WHERE id = %s",
            (summary["reconciliation_id"],),
        ).fetchone()
        (exception,) = conn.execute(
            "SELECT source_row_number, target_row_number, source_data, target_data "
            "FROM reconciliation_exceptions WHERE reconciliation_id = %s",
            (summary["reconciliation_id"],),
        ).fetchall()
    found: dict[int, set[int]] = {}
    group_of: dict[int, set[int]] = {}
    for s, t, kind, group in rows:
        found.setdefault(s, set()).add(t)
        assert (kind == "AGGREGATE") == (group is not None)
        if group is not None:
            group_of.setdefault(s, set()).add(group)
    assert found == planted
    assert set(group_of) == set(multi)
    assert all(len(g) == 1 for g in group_of.values())  # one group id per receipt
    assert len({g for gs in group_of.values() for g in gs}) == len(multi)
    assert statistics["matchedGroups"] == 14
    assert statistics["matchesByKind"]["AGGREGATE"] == 42
    assert statistics["matchDistribution"]["unmatched"] == 0.0
    assert exception[0] == 40 and exception[1] is None
    assert exception[2]["_row_number"] == 40
    assert sorted(m["_row_number"] for m in exception[3]["members"]) == sorted(planted[40])


def test_lineage_follows_a_group_to_the_receipt_and_every_invoice(
    database_url: str, receipts_run: ReceiptsRun
) -> None:
    """The short-paid group's AMOUNT_MISMATCH, and an exception on one member pair, lead to
    the group id, the receipt and each invoice with its file, row number and row read back;
    as the organization only."""
    rec_id, planted = receipts_run.summary["reconciliation_id"], receipts_run.planted
    with psycopg.connect(database_url) as conn:
        (org_id,) = conn.execute(
            "SELECT id FROM organizations WHERE name = %s", (receipts_run.org,)
        ).fetchone()
        (mismatch,) = conn.execute(
            "SELECT id FROM reconciliation_exceptions WHERE reconciliation_id = %s "
            "AND type = 'AMOUNT_MISMATCH'",
            (rec_id,),
        ).fetchone()
        # a reviewer's exception on one member pair of another group (receipt 1, an invoice)
        member = min(planted[1])
        (on_member,) = conn.execute(
            "INSERT INTO reconciliation_exceptions (reconciliation_id, organization_id, type, "
            "severity, description, source_row_number, target_row_number) "
            "VALUES (%s, %s, 'DATE_MISMATCH', 'LOW', 'member pair', 1, %s) RETURNING id",
            (rec_id, org_id, member),
        ).fetchone()
        single = next(r for r, rows in planted.items() if len(rows) == 1)
        (one_to_one,) = conn.execute(
            "INSERT INTO reconciliation_exceptions (reconciliation_id, organization_id, type, "
            "severity, description, source_row_number, target_row_number) "
            "VALUES (%s, %s, 'DATE_MISMATCH', 'LOW', 'one-to-one pair', %s, %s) RETURNING id",
            (rec_id, org_id, single, min(planted[single])),
        ).fetchone()
        other_org = conn.execute(
            "INSERT INTO organizations (name) VALUES (%s) RETURNING id",
            (f"agg-other-{uuid.uuid4().hex[:8]}",),
        ).fetchone()[0]
    invoices = (receipts_run.folder / "invoices.csv").read_text().splitlines()[1:]
    bank = (receipts_run.folder / "bank.csv").read_text().splitlines()[1:]
    engine, store = engine_for(database_url), FileStoreResource().store()
    groups = []
    for exception_id, receipt in ((mismatch, 40), (on_member, 1)):
        chain = exception_lineage(engine, store, exception_id, organization_id=org_id)
        group = chain["group"]
        assert (group["one_side"], group["many_side"]) == ("source", "target")
        one = group["one"]
        assert one["row_number"] == receipt
        assert one["file"]["original_filename"] == "bank.csv"
        assert one["row"]["Remittance"] == bank[receipt - 1].split(",")[-1]
        members = group["members"]
        assert [m["row_number"] for m in members] == sorted(planted[receipt])
        for m in members:
            assert m["file"]["original_filename"] == "invoices.csv"
            assert m["row"]["invoice_number"] == invoices[m["row_number"] - 1].split(",")[0]
            assert m["row"]["_row_number"] == m["row_number"]
        text = format_lineage(chain)
        assert f"aggregate group {group['match_group']}: source row {receipt} of #" in text
        for m in members:
            assert f"member target row {m['row_number']}: invoice_number=" in text
        groups.append(group["match_group"])
        json.dumps(chain, default=str)  # what `recon lineage --json` prints
    assert groups[0] != groups[1]
    with psycopg.connect(database_url) as conn:
        (expected,) = conn.execute(
            "SELECT DISTINCT match_group FROM reconciliation_matches "
            "WHERE reconciliation_id = %s AND source_row_number = 40",
            (rec_id,),
        ).fetchone()
    assert groups[0] == expected
    # a one-to-one exception has no group; another organization cannot see the rows
    plain = exception_lineage(engine, store, one_to_one, organization_id=org_id)
    assert plain["group"] is None and plain["target"]["row_number"] == min(planted[single])
    assert "aggregate group" not in format_lineage(plain)
    with pytest.raises(ReconError, match="does not exist"):
        exception_lineage(engine, store, mismatch, organization_id=other_org)
    code, out, err = run_recon("lineage", str(mismatch), "--json", "--org", receipts_run.org)
    assert code == 0, err[-2000:]
    shown = json.loads(out)
    assert [m["row_number"] for m in shown["group"]["members"]] == sorted(planted[40])
    engine.dispose()
