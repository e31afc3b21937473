"""The `reconciliations` record: its lifecycle, its plan and its summary.

Lifecycle: PENDING (created with its files and rule-set version) -> RUNNING (progress moves
as stages finish) -> COMPLETED, FAILED (with `error_message`) or CANCELLED. The one final
commit of matches, exceptions and counts is `pipelines.reconcile.commit`; the trained model's
store is `pipelines.reconcile.model_store` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pipelines.ingest.column_schema import FileSchema
from pipelines.reconcile.model_store import load_model as load_model  # re-exported
from pipelines.reconcile.model_store import save_model as save_model  # re-exported
from resources.database import scoped_transaction
from resources.errors import ReconError

SAMPLE_LIMIT = 100
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


class ReconciliationCancelled(ReconError):
    """A person cancelled the reconciliation; the run stops at the next stage."""


@dataclass(frozen=True)
class FileFacts:
    """What the engine needs of an `uploaded_files` row."""

    id: int
    organization_id: int
    status: str
    processing_error: str | None
    original_filename: str
    detected_schema: FileSchema
    row_count: int


@dataclass(frozen=True)
class ReconciliationPlan:
    """What a reconciliation reconciles: its files, rule-set version and organization."""

    id: int
    name: str
    organization_id: int
    source: FileFacts
    target: FileFacts
    rule_set_id: int
    status: str
    partition_key: str | None = None
    feed_id: int | None = None

    @property
    def source_file_id(self) -> int:
        return self.source.id

    @property
    def target_file_id(self) -> int:
        return self.target.id


def file_facts(conn: sa.Connection, file_id: int) -> FileFacts:
    """One uploaded file's organization, status, name, detected schema and row count."""
    row = conn.execute(
        sa.text(
            "SELECT id, organization_id, status, processing_error, original_filename, "
            "detected_schema, row_count FROM uploaded_files WHERE id = :i"
        ),
        {"i": file_id},
    ).first()
    if row is None:
        raise ReconError(f"uploaded file {file_id} does not exist")
    return FileFacts(
        row.id,
        row.organization_id,
        row.status,
        row.processing_error,
        row.original_filename,
        FileSchema.from_json(row.detected_schema),
        row.row_count or 0,
    )


def create_reconciliation(
    engine: sa.Engine,
    *,
    name: str,
    source_file_id: int,
    target_file_id: int,
    rule_set_id: int,
    description: str | None = None,
    partition_key: str | None = None,
) -> int:
    """A PENDING reconciliation; refuses files or rules of different organizations."""
    with engine.begin() as conn:
        source_org = file_facts(conn, source_file_id).organization_id
        target_org = file_facts(conn, target_file_id).organization_id
        if source_org != target_org:
            raise ReconError(
                f"source file {source_file_id} and target file {target_file_id} belong to "
                "different organizations; a reconciliation never crosses organizations"
            )
        rules_org = conn.execute(
            sa.text("SELECT organization_id FROM rule_sets WHERE id = :r"), {"r": rule_set_id}
        ).scalar()
        if rules_org != source_org:
            raise ReconError(f"rule set {rule_set_id} belongs to another organization")
        return conn.execute(
            sa.text(
                "INSERT INTO reconciliations (name, description, status, source_file_id, "
                "target_file_id, rule_set_id, organization_id, partition_key, progress) "
                "VALUES (:n, :d, 'PENDING', :s, :t, :r, :o, :p, 0) RETURNING id"
            ),
            {
                "n": name,
                "d": description,
                "s": source_file_id,
                "t": target_file_id,
                "r": rule_set_id,
                "o": source_org,
                "p": partition_key,
            },
        ).scalar_one()


def reopen_same(
    engine: sa.Engine, *, name: str, source_file_id: int, target_file_id: int, rule_set_id: int
) -> tuple[int, str] | None:
    """The newest FAILED or COMPLETED ad-hoc reconciliation of these files, rules and name,
    PENDING again: (its id, the status it had); or None.

    Running the same reconciliation again replaces it in place (its final commit keeps what
    people decided, by fingerprint) rather than leaving a twin beside it: after a failure (a
    killed process, a database that went away) no failed twin, and after a success no second
    set of the same open exceptions with the first set's resolutions missing from it. One
    being run (PENDING, RUNNING) or CANCELLED is left alone: a new one is made.
    """
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "WITH same AS (SELECT id, status FROM reconciliations WHERE name = :n"
                " AND source_file_id = :s AND target_file_id = :t AND rule_set_id = :r"
                " AND status IN ('FAILED', 'COMPLETED') AND feed_id IS NULL"
                " ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " UPDATE reconciliations r SET status = 'PENDING', progress = 0,"
                " error_message = NULL, completed_at = NULL FROM same WHERE r.id = same.id"
                " RETURNING r.id, same.status"
            ),
            {"n": name, "s": source_file_id, "t": target_file_id, "r": rule_set_id},
        ).first()
    return (row.id, row.status) if row else None


def load_plan(engine: sa.Engine, reconciliation_id: int) -> ReconciliationPlan:
    """The reconciliation's inputs; raises when it is missing, cancelled or its files failed."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, name, organization_id, source_file_id, target_file_id, rule_set_id, "
                "status, partition_key, feed_id FROM reconciliations WHERE id = :i"
            ),
            {"i": reconciliation_id},
        ).first()
        if row is None:
            raise ReconError(f"reconciliation {reconciliation_id} does not exist")
        if row.status == "CANCELLED":
            raise ReconciliationCancelled(f"reconciliation {reconciliation_id} was cancelled")
        if row.source_file_id is None or row.target_file_id is None or row.rule_set_id is None:
            raise ReconError(
                f"reconciliation {reconciliation_id} lost its files or rule set (deleted)"
            )
        source = file_facts(conn, row.source_file_id)
        target = file_facts(conn, row.target_file_id)
    for side, facts in (("source", source), ("target", target)):
        if facts.status != "PROCESSED":
            raise ReconError(
                f"{side} file {facts.id} is {facts.status}"
                + (
                    f": {facts.processing_error}"
                    if facts.processing_error
                    else "; land and validate it first"
                )
            )
    return ReconciliationPlan(
        row.id,
        row.name,
        row.organization_id,
        source,
        target,
        row.rule_set_id,
        row.status,
        row.partition_key,
        row.feed_id,
    )


def start(engine: sa.Engine, reconciliation_id: int, run_id: str | None) -> None:
    """PENDING (or a re-run of a finished one) -> RUNNING, progress 0, started now."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE reconciliations SET status = 'RUNNING', progress = 0, started_at = NOW(), "
                "completed_at = NULL, error_message = NULL, dagster_run_id = :run "
                "WHERE id = :i AND status <> 'CANCELLED'"
            ),
            {"i": reconciliation_id, "run": run_id},
        )


def advance(engine: sa.Engine, reconciliation_id: int, progress: int) -> None:
    """Move `progress` forward; stop the run if a person cancelled meanwhile."""
    with engine.begin() as conn:
        status = conn.execute(
            sa.text(
                "UPDATE reconciliations SET progress = GREATEST(progress, :p) WHERE id = :i "
                "RETURNING status"
            ),
            {"i": reconciliation_id, "p": progress},
        ).scalar()
    if status == "CANCELLED":
        raise ReconciliationCancelled(f"reconciliation {reconciliation_id} was cancelled")


def cancel(engine: sa.Engine, reconciliation_id: int) -> bool:
    """Mark a PENDING or RUNNING reconciliation CANCELLED; False when it had already ended."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE reconciliations SET status = 'CANCELLED', completed_at = NOW() "
                "WHERE id = :i AND status IN ('PENDING', 'RUNNING') RETURNING id"
            ),
            {"i": reconciliation_id},
        ).first()
    return row is not None


def fail(engine: sa.Engine, reconciliation_id: int, message: str) -> None:
    """Record a failure (unless the reconciliation already ended another way)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE reconciliations SET status = 'FAILED', error_message = :m, "
                "completed_at = NOW() WHERE id = :i AND status IN ('PENDING', 'RUNNING')"
            ),
            {"i": reconciliation_id, "m": message[:4000]},
        )


def summary(
    engine: sa.Engine, reconciliation_id: int, organization_id: int | None = None
) -> dict[str, Any]:
    """The `recon run` JSON: counts, status and exceptions by type, from the database (as
    `recon_app` with the organization set, when given)."""
    with scoped_transaction(engine, organization_id) as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, name, status, organization_id, total_source_records, "
                "total_target_records, "
                "matched_records, unmatched_source_records, unmatched_target_records, "
                "exception_count, match_rate, error_message, rule_set_id, source_file_id, "
                "target_file_id, dagster_run_id, statistics FROM reconciliations WHERE id = :i"
            ),
            {"i": reconciliation_id},
        ).first()
        if row is None:
            raise ReconError(f"reconciliation {reconciliation_id} does not exist")
        by_type = dict(
            conn.execute(
                sa.text(
                    "SELECT type, count(*) FROM reconciliation_exceptions "
                    "WHERE reconciliation_id = :i GROUP BY type ORDER BY type"
                ),
                {"i": reconciliation_id},
            ).all()
        )
    statistics = row.statistics or {}
    return {
        "reconciliation_id": row.id,
        "name": row.name,
        "status": row.status,
        "organization_id": row.organization_id,
        "total_source_records": row.total_source_records,
        "total_target_records": row.total_target_records,
        "matched_records": row.matched_records,
        "unmatched_source_records": row.unmatched_source_records,
        "unmatched_target_records": row.unmatched_target_records,
        "exception_count": row.exception_count,
        "match_rate": float(row.match_rate or 0),
        "exceptions_by_type": by_type,
        # aggregate matching: groups (one match each) and the records of both sides in them
        "matched_groups": int(statistics.get("matchedGroups", 0)),
        "records_in_groups": int(statistics.get("recordsInGroups", 0)),
        "error_message": row.error_message,
        "rule_set_id": row.rule_set_id,
        "source_file_id": row.source_file_id,
        "target_file_id": row.target_file_id,
        "dagster_run_id": row.dagster_run_id,
        "timings": statistics.get("timings", {}),
    }
