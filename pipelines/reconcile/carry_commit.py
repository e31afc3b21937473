"""A feed date's open items settled in its commit: carried rows, matches, stale later dates.

`commit_carried` runs inside the results' transaction (`pipelines.reconcile.commit`): what this
date resolved by carrying before is reopened, its carried rows are written, the open items it
matched now are resolved ("matched on D", audited), and when what later dates see of this date
changed (`digest`), the later dates of the window that were COMPLETED are marked `carry_stale`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.carry import SIDES, CarriedRows, read_carried, read_setting


def digest(exceptions: pl.DataFrame, links: pl.DataFrame, carried: CarriedRows) -> str:
    """What later dates see of this date: its own open records and the items it matched."""
    missing = (
        exceptions.filter(pl.col("type").is_in(list(SIDES.values())))
        .get_column("fingerprint")
        .sort()
        .to_list()
    )
    matched = sorted(matched_items(links, carried))
    text = "\n".join(map(str, missing)) + "\n--\n" + "\n".join(map(str, matched))
    return hashlib.sha256(text.encode()).hexdigest()


def matched_items(links: pl.DataFrame, carried: CarriedRows) -> list[int]:
    """The open items' exception ids whose carried record is in one of `links`."""
    if carried.rows.is_empty() or links.is_empty():
        return []
    used = pl.concat(
        [
            links.select(pl.lit("source").alias("side"), pl.col("source_row").alias("row_number")),
            links.select(pl.lit("target").alias("side"), pl.col("target_row").alias("row_number")),
        ]
    ).unique()
    hits = carried.rows.join(
        used.with_columns(pl.col("row_number").cast(pl.Int64)), on=["side", "row_number"]
    )
    return sorted(set(hits.get_column("from_exception_id").drop_nulls().to_list()))


@dataclass(frozen=True)
class CarryCommit:
    """What the commit needs to settle a feed date's open items."""

    carried: CarriedRows
    feed_id: int
    business_date: date
    window: int


def commit_carried(
    conn: sa.Connection,
    reconciliation_id: int,
    organization_id: int,
    carry: CarryCommit,
    links: pl.DataFrame,
    exceptions: pl.DataFrame,
) -> dict[str, Any]:
    """In the results' transaction: what this date resolved before reopened, its carried rows
    written, the open items it matched resolved ("matched on D"), and the later dates of the
    window marked stale when what they see of this date changed. Returns the counts."""
    from pipelines.work import audit

    day = carry.business_date
    conn.execute(
        sa.text(
            "UPDATE reconciliation_exceptions SET status = 'OPEN', resolution = NULL, "
            "resolved_by = NULL, resolved_at = NULL, carried_to_reconciliation_id = NULL "
            "WHERE carried_to_reconciliation_id = :r AND resolved_by = 'system'"
        ),
        {"r": reconciliation_id},
    )
    conn.execute(
        sa.text("DELETE FROM reconciliation_carried_rows WHERE reconciliation_id = :r"),
        {"r": reconciliation_id},
    )
    rows = carry.carried.rows.to_dicts()
    if rows:
        conn.execute(
            sa.text(
                "INSERT INTO reconciliation_carried_rows (reconciliation_id, side, row_number, "
                "from_reconciliation_id, from_file_id, from_row_number, from_business_date, "
                "from_exception_id, organization_id) VALUES (:rid, :side, :row_number, "
                ":from_reconciliation_id, :from_file_id, :from_row_number, "
                ":from_business_date, :from_exception_id, :org)"
            ),
            [{**r, "rid": reconciliation_id, "org": organization_id} for r in rows],
        )
    resolved = conn.execute(
        sa.text(
            "UPDATE reconciliation_exceptions SET status = 'RESOLVED', resolution = :why, "
            "resolved_by = 'system', resolved_at = NOW(), carried_to_reconciliation_id = :r "
            "WHERE id = ANY(:ids) AND (status = 'OPEN' OR (resolved_by = 'system' "
            "AND carried_to_reconciliation_id IS NOT NULL)) RETURNING id, reconciliation_id"
        ),
        {
            "ids": matched_items(links, carry.carried),
            "r": reconciliation_id,
            "why": f"matched on {day.isoformat()} (reconciliation #{reconciliation_id})",
        },
    ).all()
    for row in resolved:
        audit.system_event(
            conn,
            organization_id=organization_id,
            entity="exception",
            entity_id=row.id,
            action="RESOLVE",
            after={
                "status": "RESOLVED",
                "resolution": f"matched on {day.isoformat()}",
                "carried_to_reconciliation_id": reconciliation_id,
            },
        )
    new = digest(exceptions, links, carry.carried)
    old = conn.execute(
        sa.text("SELECT carry_digest FROM reconciliations WHERE id = :r"), {"r": reconciliation_id}
    ).scalar()
    conn.execute(
        sa.text("UPDATE reconciliations SET carry_digest = :d WHERE id = :r"),
        {"d": new, "r": reconciliation_id},
    )
    stale: list[str] = []
    if old != new and carry.window > 0:
        stale = [
            r.business_date.isoformat()
            for r in conn.execute(
                sa.text(
                    "UPDATE reconciliations SET carry_stale = TRUE WHERE feed_id = :f "
                    "AND business_date > :d AND business_date <= CAST(:d AS date) + :w "
                    "AND status = 'COMPLETED' RETURNING business_date"
                ),
                {"f": carry.feed_id, "d": day, "w": carry.window},
            ).all()
        ]
    source_in = carry.carried.rows.filter(pl.col("side") == "source").height
    return {
        "feed_id": carry.feed_id,
        "business_date": day,
        "carry_forward_days": carry.window,
        "carried_in_source": source_in,
        "carried_in_target": carry.carried.rows.height - source_in,
        "carried_matches": len(resolved),
        "stale_dates": sorted(stale),
    }


def commit_setting(work_dir: Path) -> CarryCommit | None:
    """What the commit settles for a feed date (None for an ad hoc reconciliation), as the
    mapping stage kept it."""
    carried = read_carried(work_dir)
    setting = read_setting(work_dir)
    if carried is None or setting is None:
        return None
    feed_id, day, window = setting
    return CarryCommit(carried, feed_id, day, window)
