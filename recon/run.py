"""`recon run`: one reconciliation of two files through the same Dagster assets as the UI.

1. The rules file is validated, and checked against both files' columns, before anything is
   written (a bad rules file writes nothing).
2. Each file is dropped into the landing zone (`<org>/<data source>/`) and its partition of
   `uploaded_file` + `canonical_file` is materialized in process, exactly what the sensor
   launches; identical content landed before is recognised and reused.
3. The rule set version is stored, a PENDING reconciliation is created, and the `reconcile`
   assets run for it in process on the PostgreSQL-backed Dagster instance.
The result is the reconciliation's summary (`records.summary`), read back from the database.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest import landing
from pipelines.ingest.readers import ROW_NUMBER, FileFormatError, read_table
from pipelines.reconcile import records
from pipelines.reconcile.rules import (
    RuleSet,
    check_against_columns,
    load_rule_set_file,
    store_rule_set,
)
from recon.lifecycle import RECONCILIATION_TAG, instance_for, owner_tags
from resources.database import engine_for
from resources.errors import ReconError

DEFAULT_ORGANIZATION = "Default Organization"
# Dagster's console logger stays quiet here (errors come as one line): the run's full log,
# tracebacks included, is in its event log in the UI
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class RunRequest:
    """What to reconcile."""

    source: Path
    target: Path
    rules: Path | None = None
    organization: str = DEFAULT_ORGANIZATION
    name: str | None = None
    source_data_source: str | None = None
    target_data_source: str | None = None


def _columns(path: Path) -> list[str]:
    if not path.is_file():
        raise ReconError(f"{path}: no such file")
    try:
        frame = read_table(path, path.name).frame
    except FileFormatError as err:
        raise ReconError(str(err)) from None
    return [c for c in frame.columns if c != ROW_NUMBER]


def _data_source_name(path: Path, given: str | None, side: str) -> str:
    name = given or path.stem or side
    return landing.safe_display_name(name).replace("\\", "_")


def process_file_partition(instance: Any, key: str, tags: dict[str, str]) -> Any:
    """One `landed_files` partition's `uploaded_file` + `canonical_file` run, in process."""
    from dagster import materialize

    from pipelines.definitions import defs
    from pipelines.files import canonical_file, uploaded_file

    return materialize(
        [uploaded_file, canonical_file],
        partition_key=key,
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
        run_config=QUIET,
        tags={**tags, **owner_tags()},
    )


def land_and_process(url: str, instance: Any, path: Path, organization: str, source: str) -> int:
    """Land one file through the landing zone and its partition's assets; its file id."""
    from pipelines.files import LANDING_PATH_TAG, landed_files
    from resources.file_store import FileStoreResource

    zone = FileStoreResource().store().landing
    folder = zone / landing.folder_name(organization, "organization") / source
    folder.mkdir(parents=True, exist_ok=True)
    dropped = folder / path.name
    if dropped.exists():
        dropped = folder / f"{uuid.uuid4().hex[:8]}-{path.name}"
    shutil.copyfile(path, dropped)
    item = landing.parse_landing_path(zone, dropped)
    if item is None:
        raise ReconError(f"{dropped}: not a landing-zone path")
    # hashed once: the run trusts this fingerprint while the file's size and mtime match
    found = landing.fingerprint(dropped)
    key = landing.partition_key_for(item.relative, found.sha256)
    instance.add_dynamic_partitions(landed_files.name, [key])
    tags = {"recon/command": "run", LANDING_PATH_TAG: str(item.relative), **found.tags()}
    result = process_file_partition(instance, key, tags)
    landed = None
    try:
        landed = result.output_for_node("uploaded_file")
    except Exception:  # noqa: BLE001 - the run failed before landing: say why below
        landed = None
    if landed is None:
        raise ReconError(f"{path}: landing failed (Dagster run {result.run_id}); see `recon ui`")
    file_id = landed.duplicate_of or landed.uploaded_file_id
    with engine_for(url).connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, processing_error FROM uploaded_files WHERE id = :i"),
            {"i": file_id},
        ).first()
    if row is None or row.status != "PROCESSED":
        reason = row.processing_error if row is not None else "not recorded"
        raise ReconError(f"{path.name} could not be processed: {reason}")
    return file_id


def run_reconciliation(
    url: str,
    request: RunRequest,
    *,
    propose_rules: Callable[[Path, Path], RuleSet] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Reconcile two files end to end; returns the summary (status may be FAILED)."""
    landing.folder_name(request.organization, "organization")  # before anything is written
    if request.rules is not None:
        rule_set = load_rule_set_file(request.rules)
        ai_generated = False
    elif propose_rules is not None:
        say("no rules file: proposing a rule set from the two files")
        rule_set = propose_rules(request.source, request.target)
        ai_generated = True
        say("proposed rule set (save it as YAML to edit and reuse it):\n" + rule_set.to_yaml())
    else:
        raise ReconError("--rules is required (no rule proposal is available)")
    check_against_columns(rule_set, _columns(request.source), _columns(request.target))

    instance = instance_for(url, say)
    source_ds = _data_source_name(request.source, request.source_data_source, "source")
    target_ds = _data_source_name(request.target, request.target_data_source, "target")
    if source_ds == target_ds:
        target_ds = f"{target_ds}-target"
    say(f"landing {request.source.name} as data source {source_ds!r}")
    source_id = land_and_process(url, instance, request.source, request.organization, source_ds)
    say(f"landing {request.target.name} as data source {target_ds!r}")
    target_id = land_and_process(url, instance, request.target, request.organization, target_ds)
    return reconcile_files(
        url,
        instance,
        source_id,
        target_id,
        rule_set,
        name=request.name or f"{request.source.name} vs {request.target.name}",
        is_ai_generated=ai_generated,
        say=say,
    )


def reconcile_files(
    url: str,
    instance: Any,
    source_id: int,
    target_id: int,
    rule_set: RuleSet,
    *,
    name: str,
    is_ai_generated: bool = False,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Store the rule set version, create a PENDING reconciliation and run the reconcile assets."""
    from dagster import materialize

    from pipelines.definitions import defs
    from pipelines.reconciliation import RECONCILIATION_ASSETS

    engine = engine_for(url)
    with engine.connect() as conn:
        org_id = conn.execute(
            sa.text("SELECT organization_id FROM uploaded_files WHERE id = :i"), {"i": source_id}
        ).scalar_one()
    stored = store_rule_set(engine, org_id, rule_set, is_ai_generated=is_ai_generated)
    say(
        f"rule set {rule_set.name!r} version {stored.version} "
        f"({'new' if stored.created else 'unchanged'}, id {stored.id})"
    )
    same = {"name": name, "source_file_id": source_id, "target_file_id": target_id}
    rid = records.reopen_failed(engine, **same, rule_set_id=stored.id)
    if rid is not None:
        say(f"reconciliation {rid} had failed: running it again in place")
    else:
        rid = records.create_reconciliation(engine, **same, rule_set_id=stored.id)
    say(f"reconciliation {rid}: running")
    result = materialize(
        RECONCILIATION_ASSETS,
        instance=instance,
        resources=defs.resources,
        run_config={
            **QUIET,
            "ops": {"mapped_records": {"config": {"reconciliation_id": rid}}},
        },
        raise_on_error=False,
        tags={"recon/command": "run", RECONCILIATION_TAG: str(rid), **owner_tags()},
    )
    if not result.success:
        records.fail(engine, rid, f"Dagster run {result.run_id} failed; see `recon ui`")
    return records.summary(engine, rid)


def embed_exceptions(instance: Any, reconciliation_id: int) -> tuple[bool, str]:
    """Run `exception_embeddings` for a COMPLETED reconciliation (a Dagster run of its own)."""
    from dagster import materialize

    from pipelines.definitions import defs
    from pipelines.embeddings import exception_embeddings

    result = materialize(
        [exception_embeddings],
        instance=instance,
        resources=defs.resources,
        run_config={
            **QUIET,
            "ops": {"exception_embeddings": {"config": {"reconciliation_id": reconciliation_id}}},
        },
        raise_on_error=False,
        tags={"recon/command": "run", RECONCILIATION_TAG: str(reconciliation_id), **owner_tags()},
    )
    return result.success, result.run_id
