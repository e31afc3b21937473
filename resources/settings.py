"""Where Smart Reconciliation keeps its state, read from the environment.

`RECON_HOME` (default `.recon/` in the working directory) holds the embedded PostgreSQL data
directory, Dagster's local artifacts and, later, the landing zone and file store.
`RECON_DATABASE_URL`, when set, names an existing PostgreSQL server to use instead.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"

# The embedding model's dimension; document_embeddings.embedding is sized for it.
EMBEDDING_DIMENSIONS = 384
DAGSTER_SCHEMA = "dagster"
EMBEDDED_DATABASE = "recon"


def recon_home() -> Path:
    """The state directory, created if missing."""
    home = Path(os.environ.get("RECON_HOME") or ".recon").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def configured_database_url() -> str | None:
    """`RECON_DATABASE_URL` when set and not blank, else None (use the embedded server)."""
    url = os.environ.get("RECON_DATABASE_URL", "").strip()
    return url or None


def feeds_file() -> Path:
    """The feeds file the pairing sensor loads: `RECON_FEEDS_FILE` or `RECON_HOME/feeds.yaml`."""
    configured = os.environ.get("RECON_FEEDS_FILE", "").strip()
    return Path(configured).expanduser().resolve() if configured else recon_home() / "feeds.yaml"
