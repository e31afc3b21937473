"""Migrations round-trip: apply, re-apply (a no-op), verify, roll back, apply again; API and CLI."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from helpers import run_recon

from resources import migrations
from resources.settings import MIGRATIONS_DIR

ALL = sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql") if not p.stem.endswith(".rollback"))


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_twice_is_a_noop_and_verify_passes(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    assert migrations.verify(url) == [f"{m} is not applied" for m in ALL]
    assert migrations.migrate(url) == ALL
    assert migrations.migrate(url) == []
    assert migrations.verify(url) == []
    assert {"organizations", "reconciliation_matches", "embedding_cache"} <= _tables(url)


def test_rollback_and_migrate_round_trip(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrations.migrate(url)
    assert migrations.rollback(url, steps=len(ALL) - 1) == ALL[:0:-1]
    tables = _tables(url)
    assert "reconciliation_matches" not in tables and "organizations" in tables
    assert migrations.verify(url) == [f"{m} is not applied" for m in ALL[1:]]
    assert migrations.rollback(url, steps=None) == ["0001_documented_schema"]
    assert not {"organizations", "reconciliations"} & _tables(url)
    assert migrations.migrate(url) == ALL
    assert migrations.verify(url) == []
    with psycopg.connect(url) as conn:
        names = conn.execute("SELECT name FROM organizations").fetchall()
    assert names == [("Default Organization",)]


def test_verify_detects_an_edited_migration(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrations.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE recon_migration_checksums SET sha256 = repeat('0', 64) "
            "WHERE migration_id = '0001_documented_schema'"
        )
    problems = migrations.verify(url)
    assert problems == [
        "0001_documented_schema.sql changed after it was applied (checksum differs)"
    ]


def test_cli_round_trip_through_recon_database_url(fresh_database: Callable[[], str]) -> None:
    env = {"RECON_DATABASE_URL": fresh_database()}
    code, out, err = run_recon("db", "migrate", "--verify", env=env)
    assert code == 1 and "FAIL 0001_documented_schema is not applied" in err
    code, out, _ = run_recon("db", "migrate", env=env)
    assert code == 0 and out.strip() == f"applied: {', '.join(ALL)}"
    code, out, _ = run_recon("db", "migrate", env=env)
    assert code == 0 and out.strip() == "applied: nothing (up to date)"
    code, out, _ = run_recon("db", "migrate", "--verify", env=env)
    assert code == 0 and out.startswith(f"ok: {len(ALL)} migrations applied")
    code, out, _ = run_recon("db", "migrate", "--rollback", "--all", env=env)
    assert code == 0 and out.strip() == f"rolled back: {', '.join(reversed(ALL))}"
    code, out, _ = run_recon("db", "up", env=env)
    assert code == 0 and "RECON_DATABASE_URL" in out
    code, out, _ = run_recon("db", "status", env=env)
    assert out.split() == [word for m in ALL for word in ("applied", m)]
