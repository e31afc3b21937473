"""Row-level lineage of one exception: its rows, their files, the rule set and the run.

`exception_lineage` follows the columns the pipeline writes: the exception's source and target
row numbers (`_row_number`, 1-based data rows of the original file) -> the reconciliation's
`uploaded_files` (original name, stored original, SHA-256, data source, the Dagster run and
partition that landed it) and the row itself read back from the canonical parquet -> the
rule-set version -> the reconciliation (feed, business date, partition key) and the Dagster run
that wrote the exception. `format_lineage` prints it for `recon lineage`. Given the
organization, every row is read as `recon_app` with it set (row-level security).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.mapping import ROW
from resources.database import scoped_transaction
from resources.errors import ReconError
from resources.file_store import FileStore


def _row(store: FileStore, file_id: int | None, row_number: int | None) -> dict[str, Any] | None:
    if file_id is None or row_number is None:
        return None
    path = store.canonical(file_id)
    if not path.is_file():
        return None
    found = pl.scan_parquet(path).filter(pl.col(ROW) == row_number).collect()
    if found.height == 0:
        return None
    return {k: v for k, v in found.row(0, named=True).items() if k not in ("_valid",)}


def _file(conn: sa.Connection, file_id: int | None) -> dict[str, Any] | None:
    if file_id is None:
        return None
    row = conn.execute(
        sa.text(
            "SELECT f.id, f.original_filename, f.stored_filename, f.file_path, "
            "f.content_sha256, f.status, f.row_count, f.partition_key, f.dagster_run_id, "
            "f.business_date, f.created_at, d.name AS data_source FROM uploaded_files f "
            "LEFT JOIN data_sources d ON d.id = f.data_source_id WHERE f.id = :i"
        ),
        {"i": file_id},
    ).first()
    return dict(row._mapping) if row is not None else None


def exception_lineage(
    engine: sa.Engine, store: FileStore, exception_id: int, organization_id: int | None = None
) -> dict[str, Any]:
    """Everything from one exception back to its rows, files, rule set and Dagster run (only
    the organization's rows when it is given: another's exception "does not exist")."""
    with scoped_transaction(engine, organization_id) as conn:
        exc = conn.execute(
            sa.text(
                "SELECT id, reconciliation_id, type, severity, status, description, confidence, "
                "fingerprint, source_row_number, target_row_number, dagster_run_id, "
                "partition_key, resolution, resolved_by, resolved_at, organization_id "
                "FROM reconciliation_exceptions WHERE id = :i"
            ),
            {"i": exception_id},
        ).first()
        if exc is None:
            raise ReconError(f"exception {exception_id} does not exist")
        rec = conn.execute(
            sa.text(
                "SELECT r.id, r.name, r.status, r.partition_key, r.business_date, "
                "r.dagster_run_id, r.source_file_id, r.target_file_id, r.rule_set_id, "
                "r.completed_at, f.name AS feed FROM reconciliations r "
                "LEFT JOIN reconciliation_feeds f ON f.id = r.feed_id WHERE r.id = :i"
            ),
            {"i": exc.reconciliation_id},
        ).first()
        rules = conn.execute(
            sa.text(
                "SELECT id, name, version, content_sha256, is_ai_generated, active "
                "FROM rule_sets WHERE id = :i"
            ),
            {"i": rec.rule_set_id if rec is not None else None},
        ).first()
        source_file = _file(conn, rec.source_file_id if rec is not None else None)
        target_file = _file(conn, rec.target_file_id if rec is not None else None)
    return {
        "exception": dict(exc._mapping),
        "reconciliation": dict(rec._mapping) if rec is not None else None,
        "rule_set": dict(rules._mapping) if rules is not None else None,
        "source": {
            "row_number": exc.source_row_number,
            "file": source_file,
            "row": _row(store, source_file and source_file["id"], exc.source_row_number),
        },
        "target": {
            "row_number": exc.target_row_number,
            "file": target_file,
            "row": _row(store, target_file and target_file["id"], exc.target_row_number),
        },
    }


def format_lineage(chain: dict[str, Any], ui_url: str = "http://127.0.0.1:3000") -> str:
    """The chain as a few readable lines, most specific first."""
    exc, rec, rules = chain["exception"], chain["reconciliation"], chain["rule_set"]
    lines = [
        f"exception #{exc['id']}: {exc['type']} ({exc['severity']}, {exc['status']}) "
        f"confidence {exc['confidence']}",
        f"  {exc['description']}",
        f"  fingerprint {exc['fingerprint']}",
    ]
    for side in ("source", "target"):
        part = chain[side]
        file = part["file"]
        if part["row_number"] is None:
            lines.append(f"{side}: no row (the exception is about the other side)")
            continue
        where = (
            f"#{file['id']} {file['original_filename']} (data source {file['data_source']!r})"
            if file
            else "file gone"
        )
        lines.append(f"{side}: row {part['row_number']} of {where}")
        if file:
            lines.append(f"  stored original: {file['file_path']}  sha256 {file['content_sha256']}")
            lines.append(
                f"  landed by Dagster run {file['dagster_run_id']} "
                f"(partition {file['partition_key']})"
            )
        if part["row"] is not None:
            values = ", ".join(f"{k}={v}" for k, v in part["row"].items() if k != ROW)
            lines.append(f"  row: {values}")
    if rules is not None:
        lines.append(
            f"rule set: {rules['name']} version {rules['version']} (#{rules['id']}"
            f"{', AI-generated' if rules['is_ai_generated'] else ''}) sha256 "
            f"{rules['content_sha256']}"
        )
    if rec is not None:
        feed = " ad hoc"
        if rec["feed"]:
            feed = f" feed {rec['feed']} business date {rec['business_date']}"
        lines.append(f"reconciliation #{rec['id']} {rec['name']!r} ({rec['status']}){feed}")
        lines.append(f"  partition key: {rec['partition_key'] or 'none'}")
    run = exc["dagster_run_id"]
    lines.append(f"written by Dagster run {run}: {ui_url}/runs/{run}" if run else "no run recorded")
    return "\n".join(lines)
