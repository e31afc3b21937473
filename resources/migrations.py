"""Versioned schema migrations: the `.sql` files in `sql/migrations/`, applied by yoyo-migrations.

Each migration `NNNN_name.sql` has a `NNNN_name.rollback.sql` beside it. yoyo keeps the applied
versions in its own tables (`_yoyo_migration`, `_yoyo_log`) and serialises concurrent runs with
its lock table. We add `recon_migration_checksums`, the SHA-256 of each migration file when it
was applied, so `verify()` can tell an edited migration from the one the database ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations
from yoyo.backends.base import DatabaseBackend
from yoyo.migrations import MigrationList

from resources.database import libpq_url, with_driver
from resources.settings import MIGRATIONS_DIR

CHECKSUM_TABLE = "recon_migration_checksums"


@dataclass(frozen=True)
class MigrationState:
    """One migration file and whether the database has applied it."""

    id: str
    applied: bool


def _backend(url: str) -> DatabaseBackend:
    return get_backend(with_driver(url, "psycopg"))


def _migrations(directory: Path = MIGRATIONS_DIR) -> MigrationList:
    return read_migrations(str(directory))


def _checksum(migration_id: str, directory: Path = MIGRATIONS_DIR) -> str:
    return hashlib.sha256((directory / f"{migration_id}.sql").read_bytes()).hexdigest()


def _ensure_checksum_table(conn: psycopg.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} ("
        " migration_id VARCHAR(255) PRIMARY KEY,"
        " sha256 CHAR(64) NOT NULL,"
        " applied_at TIMESTAMP NOT NULL DEFAULT NOW())"
    )


def status(url: str) -> list[MigrationState]:
    """Every migration on disk, in order, with whether it is applied."""
    backend = _backend(url)
    migrations = _migrations()
    pending = {m.id for m in backend.to_apply(migrations)}
    return [MigrationState(m.id, m.id not in pending) for m in migrations]


def migrate(url: str) -> list[str]:
    """Apply pending migrations in order; returns their ids (empty when up to date)."""
    backend = _backend(url)
    migrations = _migrations()
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        _ensure_checksum_table(conn)
        for migration in pending:
            conn.execute(
                f"INSERT INTO {CHECKSUM_TABLE} (migration_id, sha256) VALUES (%s, %s) "
                "ON CONFLICT (migration_id) DO UPDATE SET sha256 = EXCLUDED.sha256, "
                "applied_at = NOW()",
                (migration.id, _checksum(migration.id)),
            )
    return [m.id for m in pending]


def rollback(url: str, steps: int | None = 1) -> list[str]:
    """Roll back the last `steps` applied migrations (all when None); returns their ids."""
    backend = _backend(url)
    migrations = _migrations()
    with backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied if steps is None else applied[:steps]
        backend.rollback_migrations(chosen)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        _ensure_checksum_table(conn)
        conn.execute(
            f"DELETE FROM {CHECKSUM_TABLE} WHERE migration_id = ANY(%s)", ([m.id for m in chosen],)
        )
    return [m.id for m in chosen]


def verify(url: str) -> list[str]:
    """Problems that make the database disagree with the migrations on disk (empty when none)."""
    problems: list[str] = []
    states = status(url)
    problems += [f"{s.id} is not applied" for s in states if not s.applied]
    problems += [
        f"{s.id} has no rollback script {s.id}.rollback.sql"
        for s in states
        if not (MIGRATIONS_DIR / f"{s.id}.rollback.sql").exists()
    ]
    backend = _backend(url)
    on_disk = {m.hash for m in _migrations()}
    unknown = [h for h in backend.get_applied_migration_hashes() if h not in on_disk]
    problems += [f"the database has applied a migration not on disk (hash {h})" for h in unknown]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        _ensure_checksum_table(conn)
        recorded = dict(
            conn.execute(f"SELECT migration_id, sha256 FROM {CHECKSUM_TABLE}").fetchall()
        )
    for s in states:
        if s.applied and recorded.get(s.id) not in (None, _checksum(s.id)):
            problems.append(f"{s.id}.sql changed after it was applied (checksum differs)")
        if s.applied and s.id not in recorded:
            problems.append(f"{s.id} has no recorded checksum")
    return problems
