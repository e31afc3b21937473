"""`recon run`: one reconciliation of two files through the same Dagster assets as the UI.

1. The rules file is validated, and checked against both files' columns, before anything is
   written (a bad rules file writes nothing).
2. Each file is dropped into the landing zone (`<org>/<data source>/`) and its partition of
   `uploaded_file` + `canonical_file` is materialized in process, exactly what the sensor
   launches; identical content landed before is recognised and reused.
3. The rule set version is stored, a PENDING reconciliation is created, and the `reconcile`
   assets run for it in process on the PostgreSQL-backed Dagster instance.
Acting as a user (`as_user`), a new rule-set version needs ADMIN (checked before anything is
written, `pipelines.work.admin`); an identical stored version may be reused by anyone.
The result is the reconciliation's summary (`records.summary`), read back from the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest import landing
from pipelines.ingest.readers import ROW_NUMBER, FileFormatError, read_table
from pipelines.reconcile import records
from pipelines.reconcile.rule_store import store_rule_set
from pipelines.reconcile.rules import RuleSet, check_against_columns, load_rule_set_file
from pipelines.work import admin, audit
from pipelines.work.users import Actor
from recon.execution import execute
from recon.land import land_and_process
from recon.lifecycle import RECONCILIATION_TAG, instance_for
from resources.database import engine_for
from resources.errors import ReconError

DEFAULT_ORGANIZATION = "Default Organization"


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
    as_user: str | None = None  # an email; None: the organization's system user
    engine: str | None = None  # duckdb or spark; None: the linkage_engine resource's


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
    actor = admin.actor_in(engine_for(url), request.organization, request.as_user)
    admin.check_rule_set(engine_for(url), actor, rule_set)

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
        actor=actor,
        linkage_engine=request.engine,
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
    actor: Actor | None = None,
    linkage_engine: str | None = None,
) -> dict[str, Any]:
    """Store the rule set version, create a PENDING reconciliation and run the reconcile assets.

    A new version stored is audited as `actor` (default: the system user). `linkage_engine`
    (duckdb or spark) overrides the `linkage_engine` resource's for this run; the summary's
    `engine` says which ran.

    The reconciliation is a partition of the reconcile assets (key: its id), added here.
    """
    from pipelines.partitions import add_keys, reconciliations
    from pipelines.reconciliation import RECONCILIATION_ASSETS

    engine = engine_for(url)
    with engine.connect() as conn:
        org_id = conn.execute(
            sa.text("SELECT organization_id FROM uploaded_files WHERE id = :i"), {"i": source_id}
        ).scalar_one()
    with audit.acting_as(actor):
        stored = store_rule_set(engine, org_id, rule_set, is_ai_generated=is_ai_generated)
    say(
        f"rule set {rule_set.name!r} version {stored.version} "
        f"({'new' if stored.created else 'unchanged'}, id {stored.id})"
    )
    same = {"name": name, "source_file_id": source_id, "target_file_id": target_id}
    again = records.reopen_same(engine, **same, rule_set_id=stored.id)
    if again is not None:
        rid, was = again
        say(
            f"reconciliation {rid} ({was}) has these files, rules and name: running it again "
            "in place, resolved and ignored exceptions kept (another --name makes a new one)"
        )
    else:
        rid = records.create_reconciliation(engine, **same, rule_set_id=stored.id)
    add_keys(instance, reconciliations, [str(rid)])
    say(f"reconciliation {rid}: running")
    result = execute(
        instance,
        url,
        RECONCILIATION_ASSETS,
        partition_key=str(rid),
        tags={"recon/command": "run", RECONCILIATION_TAG: str(rid)},
        run_config=(
            {"resources": {"linkage_engine": {"config": {"engine": linkage_engine}}}}
            if linkage_engine
            else None
        ),
        say=say,
    )
    if not result.success:
        records.fail(engine, rid, f"Dagster run {result.run_id} failed; see `recon ui`")
    summary = records.summary(engine, rid)
    # which engine ran linkage, as its materialization says (None: linkage did not finish)
    summary["engine"] = next(
        (
            event.materialization.metadata["engine"].value
            for event in result.get_asset_materialization_events()
            if "engine" in event.materialization.metadata
        ),
        None,
    )
    return summary


def embed_exceptions(instance: Any, url: str, reconciliation_id: int) -> tuple[bool, str]:
    """Run `exception_embeddings` for a COMPLETED reconciliation (a Dagster run of its own)."""
    from pipelines.embeddings import exception_embeddings
    from pipelines.partitions import add_keys, reconciliations

    add_keys(instance, reconciliations, [str(reconciliation_id)])
    result = execute(
        instance,
        url,
        [exception_embeddings],
        partition_key=str(reconciliation_id),
        tags={"recon/command": "run", RECONCILIATION_TAG: str(reconciliation_id)},
    )
    return result.success, result.run_id
