"""Dagster's instance lives in PostgreSQL: a materialization's run and events are rows there;
it is built without changing this process's environment, and `recon ui`'s children get the
variables `dagster.yaml` reads in theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from dagster import Definitions, materialize

from pipelines.database import database_schema
from resources.dagster_instance import dagster_instance, dagster_process_environment
from resources.database import DatabaseResource
from resources.settings import MIGRATIONS_DIR


def test_definitions_load() -> None:
    from pipelines.definitions import defs

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
    environ = dict(os.environ)
    instance = dagster_instance(database_url)
    result = materialize(
        [database_schema], instance=instance, resources={"database": DatabaseResource()}
    )
    assert result.success
    assert dict(os.environ) == environ  # no variable exported to build the instance
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


# a Dagster process started with `recon ui`'s environment: the instance dagster.yaml describes
CHILD = """
import sys
from dagster import DagsterInstance
instance = DagsterInstance.get()
print(type(instance.run_storage).__name__, instance.get_run_by_id(sys.argv[1]) is not None)
"""


def test_the_ui_children_get_the_dagster_variables(database_url: str, tmp_path: Path) -> None:
    environ = dict(os.environ)
    env = dagster_process_environment(database_url, base={"PATH": os.environ["PATH"], "KEEP": "1"})
    assert dict(os.environ) == environ  # computed, not exported
    assert env["KEEP"] == "1" and env["PATH"] == os.environ["PATH"]
    assert env["RECON_DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    assert "search_path%3Ddagster" in env["RECON_DAGSTER_PG_URL"]
    assert Path(env["RECON_DAGSTER_STORAGE"]).is_dir()
    assert Path(env["RECON_HOME"]).is_absolute()
    assert Path(env["RECON_HOME"]) == Path(os.environ["RECON_HOME"]).resolve()
    assert (Path(env["DAGSTER_HOME"]) / "dagster.yaml").is_file()

    instance = dagster_instance(database_url)
    run = materialize(
        [database_schema], instance=instance, resources={"database": DatabaseResource()}
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, run.run_id],
        cwd=tmp_path,  # not the project: the variables alone find the instance
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["PostgresRunStorage", "True"]
