"""`recon demo` end to end: sample files, an ad-hoc reconciliation, two daily feeds, a backfill."""

from __future__ import annotations

from pathlib import Path

import psycopg
from helpers import run_recon

# the session's database is shared: other tests' feeds are there too
DEMO_FEEDS = "f.name IN ('bank-vs-ledger', 'invoices-vs-payments')"


def test_demo_lands_reconciles_and_shows_feeds(database_url: str, recon_home: Path) -> None:
    env = {"RECON_HOME": str(recon_home), "RECON_FEEDS_FILE": str(recon_home / "feeds.yaml")}
    code, out, err = run_recon("demo", "--days", "3", env=env, timeout=600)
    assert code == 0, err[-2000:]
    assert "bank_export.csv: PROCESSED" in out and "ledger.csv: PROCESSED" in out
    assert "pairing sensor: 6 feed business dates have both sides validated" in out
    assert "next: `recon ui`" in out and "Runs > Backfills" in out and "feed_pairing_sensor" in out
    assert (recon_home / "feeds.yaml").is_file() and (recon_home / "rules").is_dir()
    query = (
        "SELECT f.original_filename, f.status, f.row_count FROM uploaded_files f "
        "JOIN organizations o ON o.id = f.organization_id "
        "WHERE o.name = 'Demo Organization' AND f.original_filename IN "
        "('bank_export.csv', 'ledger.csv') ORDER BY f.original_filename"
    )
    with psycopg.connect(database_url) as conn:
        statuses = conn.execute(query).fetchall()
        files = conn.execute(
            "SELECT count(*) FROM uploaded_files f JOIN organizations o "
            "ON o.id = f.organization_id WHERE o.name = 'Demo Organization'"
        ).fetchone()[0]
        feed_runs = conn.execute(
            "SELECT f.name, count(*), count(*) FILTER (WHERE r.status = 'COMPLETED') "
            "FROM reconciliations r JOIN reconciliation_feeds f ON f.id = r.feed_id "
            f"WHERE {DEMO_FEEDS} GROUP BY f.name ORDER BY f.name"
        ).fetchall()
        backfills = conn.execute("SELECT count(*) FROM dagster.bulk_actions").fetchone()[0]
    assert statuses == [("bank_export.csv", "PROCESSED", 189), ("ledger.csv", "PROCESSED", 192)]
    assert files == 2 + 3 * 4
    assert feed_runs == [("bank-vs-ledger", 3, 3), ("invoices-vs-payments", 3, 3)]
    assert backfills >= 1
    # a second demo is safe: identical files are recognised, nothing is duplicated
    code, out, err = run_recon("demo", "--days", "3", env=env, timeout=600)
    assert code == 0, err[-2000:]
    with psycopg.connect(database_url) as conn:
        again = conn.execute(
            "SELECT count(*) FROM uploaded_files f JOIN organizations o "
            "ON o.id = f.organization_id WHERE o.name = 'Demo Organization'"
        ).fetchone()[0]
        reconciliations = conn.execute(
            "SELECT count(*) FROM reconciliations r JOIN reconciliation_feeds f "
            f"ON f.id = r.feed_id WHERE {DEMO_FEEDS}"
        ).fetchone()[0]
    assert again == files and reconciliations == 6
