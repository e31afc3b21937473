"""Database helpers: URL handling for each driver, and COPY bulk writes."""

from __future__ import annotations

import psycopg

from resources.dagster_instance import dagster_pg_url
from resources.database import copy_rows, engine_for, libpq_url, redacted, with_driver


def test_urls_for_each_driver() -> None:
    url = "postgresql://u:p%40ss@/recon?host=/tmp/x/pg"
    assert libpq_url(url) == "postgresql://u:p%40ss@/recon?host=/tmp/x/pg"
    assert with_driver(url, "psycopg").startswith("postgresql+psycopg://u:p%40ss@/recon?")
    assert redacted(url) == "postgresql://u:***@/recon?host=%2Ftmp%2Fx%2Fpg"
    dagster = dagster_pg_url(url)
    assert dagster.startswith("postgresql+psycopg2://")
    assert "options=-csearch_path%3Ddagster" in dagster


def test_copy_rows_writes_in_the_callers_transaction(database_url: str) -> None:
    engine = engine_for(database_url)
    rows = [(f"copy-org-{i}", f"made by COPY {i}") for i in range(500)]
    with engine.begin() as conn:
        assert copy_rows(conn, "organizations", ["name", "description"], rows) == 500
    with psycopg.connect(database_url, autocommit=True) as conn:
        count = conn.execute(
            "SELECT count(*) FROM organizations WHERE name LIKE 'copy-org-%%'"
        ).fetchone()[0]
        conn.execute("DELETE FROM organizations WHERE name LIKE 'copy-org-%%'")
    assert count == 500


def test_recon_db_up_never_prints_the_password(database_url: str) -> None:
    from helpers import run_recon

    secret = "planted-s3cret-42"
    with_password = database_url.replace(
        "postgresql://postgres@", f"postgresql://postgres:{secret}@"
    )
    assert secret in with_password
    code, out, err = run_recon("db", "up", env={"RECON_DATABASE_URL": with_password})
    assert code == 0, err
    assert "database ready" in out and "postgres:***@" in out
    assert secret not in out + err
    # printing the URL is `recon db url`'s job
    code, out, _ = run_recon("db", "url", env={"RECON_DATABASE_URL": with_password})
    assert code == 0 and secret in out
