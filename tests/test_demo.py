"""`recon demo` runs end to end: database, sample files landed and processed through Dagster."""

from __future__ import annotations

from pathlib import Path

import psycopg
from helpers import run_recon


def test_demo_lands_and_processes_the_sample_files(database_url: str, recon_home: Path) -> None:
    code, out, err = run_recon("demo", env={"RECON_HOME": str(recon_home)}, timeout=300)
    assert code == 0, err[-2000:]
    assert "bank_export.csv: PROCESSED" in out and "ledger.csv: PROCESSED" in out
    with psycopg.connect(database_url) as conn:
        statuses = conn.execute(
            "SELECT f.original_filename, f.status, f.row_count FROM uploaded_files f "
            "JOIN organizations o ON o.id = f.organization_id "
            "WHERE o.name = 'Demo Organization' ORDER BY f.original_filename"
        ).fetchall()
        runs = conn.execute("SELECT count(*) FROM dagster.runs").fetchone()[0]
    assert statuses == [("bank_export.csv", "PROCESSED", 189), ("ledger.csv", "PROCESSED", 192)]
    assert runs >= 3
    # a second demo is safe: identical files are recognised, nothing is duplicated
    code, out, err = run_recon("demo", env={"RECON_HOME": str(recon_home)}, timeout=300)
    assert code == 0, err[-2000:]
    with psycopg.connect(database_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM uploaded_files f JOIN organizations o "
            "ON o.id = f.organization_id WHERE o.name = 'Demo Organization'"
        ).fetchone()[0]
    assert count == 2
