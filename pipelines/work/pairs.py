"""The two records of a manual pair, read from their files' canonical records and judged
by the engine's own code.

`judge` runs `build_exceptions` on the two conformed records linked as one pair (the
AMOUNT_MISMATCH / DATE_MISMATCH the engine would raise for them, with its severity, diff and
fingerprint) or unlinked (their MISSING_* exceptions). `manual_mismatches` judges every
MANUAL pair of a reconciliation: what a re-run's commit would add back for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.linkage import LinkResult
from pipelines.reconcile.mapping import ROW, conform
from pipelines.reconcile.records import file_facts
from pipelines.reconcile.rule_store import load_stored_rule_set
from pipelines.reconcile.rules import RuleSet
from resources.errors import ReconError
from resources.file_store import FileStoreResource

MISMATCHES = ("AMOUNT_MISMATCH", "DATE_MISMATCH")


@dataclass(frozen=True)
class Pair:
    """The two records of a reconciliation a person pairs, as the engine sees them."""

    reconciliation_id: int
    organization_id: int
    source_row: int
    target_row: int
    rule_set: RuleSet
    source: pl.DataFrame  # the canonical record (one row)
    target: pl.DataFrame
    schemas: tuple[Any, Any]  # the files' detected schemas
    names: tuple[str, str]  # the files' names


def reconciliation_row(conn: sa.Connection, reconciliation_id: int) -> Any:
    """The reconciliation (row-level security: the organization's only), locked for matching."""
    row = conn.execute(
        sa.text(
            "SELECT id, organization_id, status, source_file_id, target_file_id, rule_set_id "
            "FROM reconciliations WHERE id = :i"
        ),
        {"i": reconciliation_id},
    ).first()
    if row is None:
        raise ReconError(f"reconciliation {reconciliation_id} does not exist in this organization")
    if row.source_file_id is None or row.target_file_id is None or row.rule_set_id is None:
        raise ReconError(f"reconciliation {reconciliation_id} lost its files or rule set")
    # one writer per reconciliation, like the commit of a run
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
        {"k": f"reconciliation:{reconciliation_id}"},
    )
    return row


def canonical_rows(file_id: int, rows: list[int] | None) -> pl.DataFrame:
    """The canonical records of an uploaded file with these row numbers (all when None)."""
    path = FileStoreResource().store().canonical(file_id)
    if not path.exists():
        raise ReconError(f"the canonical records of file {file_id} are gone ({path})")
    frame = pl.scan_parquet(path)
    if rows is not None:
        frame = frame.filter(pl.col(ROW).is_in(pl.Series(rows, dtype=pl.Int64).implode()))
    return frame.collect()


def load_pair(conn: sa.Connection, rec: Any, source_row: int, target_row: int) -> Pair:
    """Both records of the pair; a row missing from its file is a one-line error."""
    found = []
    for side, file_id, row in (
        ("source", rec.source_file_id, source_row),
        ("target", rec.target_file_id, target_row),
    ):
        facts = file_facts(conn, file_id)
        record = canonical_rows(file_id, [row])
        if record.height != 1:
            raise ReconError(
                f"{side} row {row} does not exist in {facts.original_filename} "
                f"({facts.row_count} rows)"
            )
        if "_valid" in record.columns and not record.get_column("_valid")[0]:
            raise ReconError(
                f"{side} row {row} failed validation: fix its VALIDATION_ERROR, not a match"
            )
        found.append((facts, record))
    (s_facts, source), (t_facts, target) = found
    return Pair(
        rec.id,
        rec.organization_id,
        source_row,
        target_row,
        load_stored_rule_set(conn.engine, rec.rule_set_id),
        source,
        target,
        (s_facts.detected_schema, t_facts.detected_schema),
        (s_facts.original_filename, t_facts.original_filename),
    )


def judge(pair: Pair, linked: bool) -> pl.DataFrame:
    """The engine's exceptions for the two records: as one pair (mismatches) or unlinked
    (the MISSING_* of each), in `EXCEPTION_SCHEMA` with fingerprints."""
    from pipelines.ingest.validation import FAILURE_SCHEMA
    from pipelines.reconcile.exceptions import build_exceptions

    conformed = conform(
        pair.source,
        pair.target,
        pair.rule_set,
        source_schema=pair.schemas[0],
        target_schema=pair.schemas[1],
        source_name=pair.names[0],
        target_name=pair.names[1],
    )
    links = pl.DataFrame(
        {
            "source_row": [pair.source_row] if linked else [],
            "target_row": [pair.target_row] if linked else [],
            "score": [1.0] if linked else [],
            "kind": ["MANUAL"] if linked else [],
        },
        schema={
            "source_row": pl.Int64,
            "target_row": pl.Int64,
            "score": pl.Float64,
            "kind": pl.String,
        },  # fmt: skip
    )
    best = {
        side: pl.DataFrame(schema={f"{side}_row": pl.Int64, "best_probability": pl.Float64})
        for side in ("source", "target")
    }
    found = build_exceptions(
        conformed,
        LinkResult(links, best["source"], best["target"], None, False),
        pair.rule_set,
        source_records=pair.source,
        target_records=pair.target,
        source_failures=pl.DataFrame(schema=FAILURE_SCHEMA),
        target_failures=pl.DataFrame(schema=FAILURE_SCHEMA),
    )
    wanted = MISMATCHES if linked else ("MISSING_IN_TARGET", "MISSING_IN_SOURCE")
    return found.filter(pl.col("type").is_in(list(wanted)))


def manual_mismatches(engine: sa.Engine, reconciliation_id: int) -> pl.DataFrame:
    """The mismatches of every MANUAL pair of a reconciliation, as the engine's exceptions
    (`EXCEPTION_SCHEMA` plus fingerprint): what a re-run's commit adds back for them."""
    from pipelines.reconcile.exceptions import EXCEPTION_SCHEMA

    frames = [pl.DataFrame(schema={**EXCEPTION_SCHEMA, "fingerprint": pl.String})]
    with engine.connect() as conn:
        rec = conn.execute(
            sa.text(
                "SELECT id, organization_id, source_file_id, target_file_id, rule_set_id "
                "FROM reconciliations WHERE id = :i"
            ),
            {"i": reconciliation_id},
        ).one()
        for s_row, t_row in conn.execute(
            sa.text(
                "SELECT source_row_number, target_row_number FROM reconciliation_matches "
                "WHERE reconciliation_id = :i AND match_kind = 'MANUAL' ORDER BY id"
            ),
            {"i": reconciliation_id},
        ).all():
            frames.append(judge(load_pair(conn, rec, s_row, t_row), linked=True))
    return pl.concat(frames, how="vertical_relaxed")
