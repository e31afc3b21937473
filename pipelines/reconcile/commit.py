"""The one final commit of a reconciliation: matches, exceptions and counts together.

Matches and exceptions are written in ONE transaction together with the final counts, so a
failure at any point leaves nothing half-written; a re-run replaces them atomically, and
exceptions a person already resolved or ignored keep their status, resolution, resolver and
time (recognised by fingerprint, not id); a MISSING exception's `suggested_match` (0013) is
the run's own, written with it. Pairs a person matched by hand are kept, and the
machine's pairs and exceptions that contradict them are dropped. A group of aggregate matching
is one row per member pair sharing `match_group`, and counts as one match (`matched_records`);
`unmatched_*` count each side's records in no pair and no group. A feed date's open items
(`carry`) are settled in the same transaction (`pipelines.reconcile.carry.commit_carried`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.carry_commit import CarryCommit, commit_carried
from pipelines.reconcile.records import (
    SAMPLE_LIMIT,
    ReconciliationCancelled,
    ReconciliationPlan,
)
from pipelines.work import audit
from resources.database import copy_frame
from resources.errors import ReconError


def _json_list(series: pl.Series) -> list[Any]:
    return [json.loads(v) for v in series.drop_nulls().to_list()]


def _respect_manual_matches(
    engine: sa.Engine, reconciliation_id: int, links: pl.DataFrame, exceptions: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """A person's MANUAL matches win: the engine's links and MISSING_* for those rows go."""
    with engine.connect() as conn:
        manual = conn.execute(
            sa.text(
                "SELECT source_row_number, target_row_number FROM reconciliation_matches "
                "WHERE reconciliation_id = :i AND match_kind = 'MANUAL'"
            ),
            {"i": reconciliation_id},
        ).all()
    if not manual:
        return links, exceptions, 0
    sources = pl.Series([m[0] for m in manual], dtype=pl.Int64).implode()
    targets = pl.Series([m[1] for m in manual], dtype=pl.Int64).implode()
    links = links.filter(
        ~pl.col("source_row").is_in(sources) & ~pl.col("target_row").is_in(targets)
    )
    exceptions = exceptions.filter(
        ~(
            (pl.col("type") == "MISSING_IN_TARGET") & pl.col("source_row_number").is_in(sources)
            | (pl.col("type") == "MISSING_IN_SOURCE") & pl.col("target_row_number").is_in(targets)
        )
    )
    # the engine never judges a MANUAL pair: its mismatches are judged here, as `recon match`
    # raised them (same fingerprints, so decisions on them carry over)
    from pipelines.work.pairs import manual_mismatches  # the work package builds on the engine

    judged = manual_mismatches(engine, reconciliation_id)
    if judged.height:
        exceptions = pl.concat([exceptions, judged], how="diagonal_relaxed").select(
            exceptions.columns
        )
    return links, exceptions, len(manual)


def commit_results(
    engine: sa.Engine,
    plan: ReconciliationPlan,
    *,
    links: pl.DataFrame,
    exceptions: pl.DataFrame,
    totals: tuple[int, int],
    statistics: dict[str, Any],
    matched_sample: list[dict[str, Any]],
    run_id: str | None,
    carry: CarryCommit | None = None,
) -> dict[str, Any]:
    """Write matches, exceptions and the final record in one transaction; returns the counts.

    `statistics["timings"]` (seconds per earlier stage) gains `commit`, this write's own time,
    and `processingTimeMs` becomes their sum; the counts carry the timings back.
    """
    started = time.perf_counter()
    total_source, total_target = totals
    links, exceptions, manual = _respect_manual_matches(engine, plan.id, links, exceptions)
    if "match_group" not in links.columns:
        links = links.with_columns(pl.lit(None, dtype=pl.Int64).alias("match_group"))
    # a group of aggregate matching is one match of several records (its rows share match_group)
    grouped = links.filter(pl.col("match_group").is_not_null())
    groups = grouped.get_column("match_group").n_unique()
    matched = links.height - grouped.height + groups + manual
    own = links
    if carry is not None:  # records carried in from earlier dates are not this date's records
        own = links.filter(pl.col("source_row") <= carry.carried.source_native)
    matched_source = own.get_column("source_row").n_unique() + manual
    if carry is not None:
        own = links.filter(pl.col("target_row") <= carry.carried.target_native)
    matched_target = own.get_column("target_row").n_unique() + manual
    in_groups = (
        grouped.get_column("source_row").n_unique() + grouped.get_column("target_row").n_unique()
    )
    by_type = exceptions.group_by("type").len().sort("type")
    results = {
        "matchedPairs": matched_sample[:SAMPLE_LIMIT],
        "unmatchedSource": _json_list(
            exceptions.filter(pl.col("type") == "MISSING_IN_TARGET")
            .head(SAMPLE_LIMIT)
            .get_column("source_data")
        ),
        "unmatchedTarget": _json_list(
            exceptions.filter(pl.col("type") == "MISSING_IN_SOURCE")
            .head(SAMPLE_LIMIT)
            .get_column("target_data")
        ),
        "sampleLimit": SAMPLE_LIMIT,
        "totals": {"matchedPairs": matched, "exceptions": exceptions.height},
    }
    counts = {
        "total_source_records": total_source,
        "total_target_records": total_target,
        "matched_records": matched,
        "unmatched_source_records": total_source - matched_source,
        "unmatched_target_records": total_target - matched_target,
        "exception_count": exceptions.height,
        "match_rate": round(100.0 * matched_source / total_source, 2) if total_source else 0.0,
        "exceptions_by_type": dict(by_type.iter_rows()),
        "matched_groups": groups,
        "records_in_groups": in_groups,
    }
    match_rows = links.select(
        pl.lit(plan.id).alias("reconciliation_id"),
        pl.lit(plan.organization_id).alias("organization_id"),
        pl.col("source_row").alias("source_row_number"),
        pl.col("target_row").alias("target_row_number"),
        pl.col("score").clip(0.0, 1.0).alias("match_score"),
        pl.col("kind").alias("match_kind"),
        pl.col("match_group"),
        pl.lit(run_id, dtype=pl.String).alias("dagster_run_id"),
        pl.lit(plan.partition_key, dtype=pl.String).alias("partition_key"),
    )
    if "suggested_match" not in exceptions.columns:  # frames from before migration 0013
        exceptions = exceptions.with_columns(pl.lit(None, dtype=pl.String).alias("suggested_match"))
    exception_rows = exceptions.select(
        pl.lit(plan.id).alias("reconciliation_id"),
        "type",
        "severity",
        pl.lit("OPEN").alias("status"),
        "description",
        "source_data",
        "target_data",
        "diff",
        "confidence",
        pl.lit(plan.organization_id).alias("organization_id"),
        "fingerprint",
        "source_row_number",
        "target_row_number",
        "suggested_match",
        pl.lit(run_id, dtype=pl.String).alias("dagster_run_id"),
        pl.lit(plan.partition_key, dtype=pl.String).alias("partition_key"),
    )
    with engine.begin() as conn:
        # one writer per reconciliation: a second run's commit waits for this one to finish
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
            {"k": f"reconciliation:{plan.id}"},
        )
        # as the owner: COPY FROM is refused under row-level security (0010), and INSERT from
        # a temporary table costs ~1.5 s more at 1M matches; every row written carries the
        # plan's organization, which must be the reconciliation's
        row = conn.execute(
            sa.text("SELECT status, organization_id FROM reconciliations WHERE id = :i FOR UPDATE"),
            {"i": plan.id},
        ).first()
        if row is None or row.organization_id != plan.organization_id:
            raise ReconError(f"reconciliation {plan.id} is gone or not its organization's")
        if row.status == "CANCELLED":
            raise ReconciliationCancelled(f"reconciliation {plan.id} was cancelled")
        # human decisions survive a re-run, and every break keeps its age: by fingerprint
        conn.execute(
            sa.text(
                "CREATE TEMP TABLE keep_decisions ON COMMIT DROP AS SELECT DISTINCT ON "
                "(fingerprint) fingerprint, status, resolution, resolved_by, resolved_at, "
                "created_at, carried_to_reconciliation_id FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :i AND fingerprint IS NOT NULL "
                "ORDER BY fingerprint, (status <> 'OPEN') DESC, created_at"
            ),
            {"i": plan.id},
        )
        conn.execute(
            sa.text("DELETE FROM reconciliation_exceptions WHERE reconciliation_id = :i"),
            {"i": plan.id},
        )
        conn.execute(
            sa.text(
                "DELETE FROM reconciliation_matches WHERE reconciliation_id = :i "
                "AND match_kind <> 'MANUAL'"
            ),
            {"i": plan.id},
        )
        copy_frame(conn, "reconciliation_matches", match_rows)
        copy_frame(conn, "reconciliation_exceptions", exception_rows)
        conn.execute(
            sa.text(
                "UPDATE reconciliation_exceptions e SET created_at = k.created_at, "
                "status = CASE WHEN k.status <> 'OPEN' THEN k.status ELSE e.status END, "
                "resolution = CASE WHEN k.status <> 'OPEN' THEN k.resolution "
                "ELSE e.resolution END, "
                "resolved_by = CASE WHEN k.status <> 'OPEN' THEN k.resolved_by "
                "ELSE e.resolved_by END, "
                "resolved_at = CASE WHEN k.status <> 'OPEN' THEN k.resolved_at "
                "ELSE e.resolved_at END, "
                "carried_to_reconciliation_id = CASE WHEN k.status <> 'OPEN' "
                "THEN k.carried_to_reconciliation_id END FROM keep_decisions k "
                "WHERE e.reconciliation_id = :i AND e.fingerprint = k.fingerprint"
            ),
            {"i": plan.id},
        )
        if carry is not None:
            counts["carry"] = commit_carried(
                conn, plan.id, plan.organization_id, carry, links, exceptions
            )
            statistics = {**statistics, "carry": counts["carry"]}
        timings = {
            **statistics.get("timings", {}),
            "commit": round(time.perf_counter() - started, 3),
        }
        statistics = {
            **statistics,
            "matchedGroups": groups,
            "recordsInGroups": in_groups,
            "timings": timings,
            "processingTimeMs": int(1000 * sum(timings.values())),
        }
        counts["timings"] = timings
        conn.execute(
            sa.text(
                "UPDATE reconciliations SET status = 'COMPLETED', progress = 100, "
                "completed_at = NOW(), error_message = NULL, total_source_records = :ts, "
                "total_target_records = :tt, matched_records = :m, "
                "unmatched_source_records = :us, unmatched_target_records = :ut, "
                "exception_count = :e, match_rate = :rate, results = CAST(:results AS jsonb), "
                "statistics = CAST(:stats AS jsonb) WHERE id = :i"
            ),
            {
                "i": plan.id,
                "ts": total_source,
                "tt": total_target,
                "m": matched,
                "us": counts["unmatched_source_records"],
                "ut": counts["unmatched_target_records"],
                "e": exceptions.height,
                "rate": counts["match_rate"],
                "results": json.dumps(results, default=str),
                "stats": json.dumps(statistics, default=str),
            },
        )
        # each run in the audit trail, in the same transaction as its results
        audit.system_event(
            conn,
            organization_id=plan.organization_id,
            entity="reconciliation",
            entity_id=plan.id,
            action="RUN",
            after={
                "dagster_run_id": run_id,
                "partition_key": plan.partition_key,
                "status": "COMPLETED",
                "matched_records": matched,
                "exception_count": exceptions.height,
                "manual_matches_kept": manual,
            },
        )
    return counts
