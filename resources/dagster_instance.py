"""Dagster's instance on PostgreSQL: the environment `dagster.yaml` reads.

`dagster.yaml` (project root) keeps runs, event logs and schedules in the product database,
in a schema of their own (`dagster`), through dagster-postgres. It reads two variables that
`prepare_dagster_environment()` sets before any Dagster process starts: `RECON_DAGSTER_PG_URL`
(a `postgresql+psycopg2://` URL whose search_path is the `dagster` schema; dagster-postgres
needs psycopg2 for its LISTEN/NOTIFY) and `RECON_DAGSTER_STORAGE` (local artifacts and compute
logs under `RECON_HOME/dagster`). Child processes (webserver, daemon, run workers) inherit them.
"""

from __future__ import annotations

import os

import psycopg
from dagster import DagsterInstance
from psycopg import sql

from resources.database import libpq_url, resolve_database_url, with_driver
from resources.settings import DAGSTER_SCHEMA, PROJECT_ROOT, recon_home


def dagster_pg_url(url: str) -> str:
    """The dagster-postgres URL for the product database `url`, pinned to Dagster's schema."""
    return with_driver(url, "psycopg2", options=f"-csearch_path={DAGSTER_SCHEMA}")


def prepare_dagster_environment(url: str | None = None) -> dict[str, str]:
    """Create Dagster's schema and export the variables `dagster.yaml` reads; returns them."""
    url = url or resolve_database_url()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(DAGSTER_SCHEMA))
        )
    storage = recon_home() / "dagster" / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    env = {
        "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT),
        "RECON_DAGSTER_PG_URL": dagster_pg_url(url),
        "RECON_DAGSTER_STORAGE": str(storage),
    }
    os.environ.update(env)
    return env


def dagster_instance(url: str | None = None) -> DagsterInstance:
    """The Dagster instance on PostgreSQL, as `dagster.yaml` describes it."""
    env = prepare_dagster_environment(url)
    return DagsterInstance.from_config(env["DAGSTER_HOME"])
