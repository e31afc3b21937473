"""Where Smart Reconciliation keeps its state, and the defaults of its configuration.

`RECON_HOME` (default `.recon/` in the working directory) holds the embedded PostgreSQL data
directory, Dagster's local artifacts, the landing zone and the file store.
`RECON_DATABASE_URL`, when set, names an existing PostgreSQL server to use instead.

The functions here read the environment when called (never at import): they are the `recon`
commands' defaults. Dagster's resources get the same settings as `EnvVar` fields, chosen once
in `pipelines/definitions.py` with the `DEFAULT_*` values below when a variable is unset.
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

DEFAULT_HOME = ".recon"
FEEDS_FILENAME = "feeds.yaml"
DEFAULT_SCHEDULE_CRON = "0 6 * * *"
DEFAULT_SCHEDULE_TIMEZONE = "UTC"
# embedding-cache entries without an explicit expiry go when unused this long
DEFAULT_CACHE_IDLE_DAYS = 90


def home_path(value: str | None) -> Path:
    """The state directory a RECON_HOME value names (blank: `.recon`), absolute and created."""
    home = Path((value or "").strip() or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def recon_home() -> Path:
    """The state directory, created if missing."""
    return home_path(os.environ.get("RECON_HOME"))


def configured_database_url() -> str | None:
    """`RECON_DATABASE_URL` when set and not blank, else None (use the embedded server)."""
    url = os.environ.get("RECON_DATABASE_URL", "").strip()
    return url or None


def feeds_path(value: str | None, home: Path) -> Path:
    """The feeds file a RECON_FEEDS_FILE value names (blank: `<home>/feeds.yaml`)."""
    configured = (value or "").strip()
    return Path(configured).expanduser().resolve() if configured else home / FEEDS_FILENAME


def feeds_file() -> Path:
    """The feeds file the pairing sensor loads: `RECON_FEEDS_FILE` or `RECON_HOME/feeds.yaml`."""
    return feeds_path(os.environ.get("RECON_FEEDS_FILE"), recon_home())
