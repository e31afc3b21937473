"""Dagster's instance lives in PostgreSQL: a materialization's run and events are rows there."""

from __future__ import annotations

import psycopg
from dagster import Definitions, materialize

from pipelines.database import database_schema
from pipelines.definitions import defs
from resources.dagster_instance import dagster_instance
from resources.database import DatabaseResource
from resources.settings import MIGRATIONS_DIR


def test_definitions_load() -> None:
    Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "database_schema",
        "uploaded_file",
        "canonical_file",
        "mapped_records",
        "record_links",
        "exceptions",
        "reconciliation_record",
        "exception_embeddings",
    } <= keys


def test_materialization_is_recorded_in_postgres(database_url: str) -> None:
    instance = dagster_instance(database_url)
    result = materialize(
        [database_schema], instance=instance, resources={"database": DatabaseResource()}
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    newest = max(p.stem for p in MIGRATIONS_DIR.glob("*.sql") if "rollback" not in p.stem)
    assert metadata["schema_version"].value == newest
    with psycopg.connect(database_url) as conn:
        organizations = conn.execute("SELECT count(*) FROM organizations").fetchone()[0]
    # the table of row counts in the metadata is the live one (other tests add rows)
    assert f"| organizations | {organizations} |" in metadata["tables"].value

    with psycopg.connect(database_url) as conn:
        status = conn.execute(
            "SELECT status FROM dagster.runs WHERE run_id = %s", (result.run_id,)
        ).fetchone()
        events = conn.execute(
            "SELECT dagster_event_type, asset_key FROM dagster.event_logs WHERE run_id = %s",
            (result.run_id,),
        ).fetchall()
    assert status == ("SUCCESS",)
    assert ("ASSET_MATERIALIZATION", '["database_schema"]') in events
    assert ("PIPELINE_SUCCESS", None) in events  # Dagster stores RUN_SUCCESS so
    # the instance read back from PostgreSQL knows the run too
    assert instance.get_run_by_id(result.run_id) is not None
