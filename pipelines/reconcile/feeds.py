"""Reconciliation feeds: a data engineer's file of which source reconciles against which, daily.

A feed names an organization, a source and a target data source (the landing-zone folders
`<landing>/<organization>/<data source>/`), a rules file, and how a file maps to a business
date: from its name (a regular expression plus a `strptime` format) or from its data (the most
common date of a column). One business date of one feed is one Dagster partition
(`<date>|<feed>`) and one `reconciliations` row (unique on feed and date), so re-running the
partition replaces that reconciliation's results in place.

The file (YAML):

    feeds:
      - name: bank-vs-ledger            # lowercase letters, digits, - _ . (a partition key)
        organization: Acme Ltd
        source: bank                    # data source (landing folder) of the source side
        target: ledger
        rules: rules/bank_ledger.yaml   # relative to this file
        business_date:                  # default: from the file name, ISO or yyyyMMdd date
          from: filename
          pattern: '(?P<date>\\d{4}-\\d{2}-\\d{2})'
          format: '%Y-%m-%d'
        checks:                         # asset checks against the feed's recent history
          history: 7                    # completed days compared with
          match_rate_drop: 10.0         # warn when the match rate falls this many points
          exception_growth: 2.0         # warn when exceptions exceed this x the usual count
        carry_forward_days: 10          # unmatched records stay open for later dates this long

`pipelines.reconcile.feed_store.store_feeds` loads it into `reconciliation_feeds` (rule sets
stored as versions, data sources created on first sight, feeds missing from the file
deactivated). `ready_partitions` says which
business dates have both sides landed and validated, with the newest file of each side (a
late corrected file is newer, so it re-runs the date); `prepare_partition` finds or creates
the partition's reconciliation for a run.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.feed_file import (
    DEFAULT_CARRY_FORWARD_DAYS,
    DEFAULT_CHECKS,
    BusinessDateRule,
    FeedError,
)
from pipelines.reconcile.feed_file import load_feeds_file as load_feeds_file  # re-exported
from pipelines.reconcile.feed_file import parse_feeds as parse_feeds  # re-exported
from resources.file_store import FileStore


@dataclass(frozen=True)
class Feed:
    """A feed as stored in `reconciliation_feeds`."""

    id: int
    name: str
    organization_id: int
    source_data_source_id: int
    target_data_source_id: int
    rule_set_id: int | None
    business_date: BusinessDateRule
    checks: dict[str, float]
    is_active: bool
    carry_forward_days: int = DEFAULT_CARRY_FORWARD_DAYS


@dataclass(frozen=True)
class ReadyPartition:
    """A business date of a feed with both sides landed and validated."""

    feed: str
    business_date: date
    source_file_id: int
    target_file_id: int
    # a reconciliation of exactly these files is COMPLETED, or PENDING/RUNNING in some run (a
    # changed rule set does not re-run history by itself: backfill the dates to re-run)
    reconciled: bool
    # COMPLETED, but an earlier date's open items changed since (`carry`): runs again
    stale_digest: str | None = None

    @property
    def partition_key(self) -> str:
        return feed_partition_key(self.business_date, self.feed)

    @property
    def run_key(self) -> str:
        key = f"{self.partition_key}|{self.source_file_id}|{self.target_file_id}"
        return key + (f"|carry:{self.stale_digest[:16]}" if self.stale_digest else "")


def _feed(row: Any) -> Feed:
    return Feed(
        row.id,
        row.name,
        row.organization_id,
        row.source_data_source_id,
        row.target_data_source_id,
        row.rule_set_id,
        BusinessDateRule.from_json(row.business_date),
        {**DEFAULT_CHECKS, **(row.checks or {})},
        row.is_active,
        int((row.definition or {}).get("carry_forward_days", DEFAULT_CARRY_FORWARD_DAYS)),
    )


FEED_COLUMNS = (
    "id, name, organization_id, source_data_source_id, target_data_source_id, rule_set_id, "
    "business_date, checks, is_active, definition"
)


def active_feeds(engine: sa.Engine) -> list[Feed]:
    """Every active feed, by name."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {FEED_COLUMNS} FROM reconciliation_feeds WHERE is_active ORDER BY name"
            )
        ).all()
    return [_feed(r) for r in rows]


def feed_named(engine: sa.Engine, name: str) -> Feed:
    """The stored feed of that name (active or not); a clear error when there is none."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {FEED_COLUMNS} FROM reconciliation_feeds WHERE name = :n"), {"n": name}
        ).first()
    if row is None:
        raise FeedError(f"no feed named {name!r}; declare it in the feeds file and load it")
    return _feed(row)


def _date_from_data(store: FileStore, file_id: int, column: str) -> date | None:
    path = store.canonical(file_id)
    if not path.is_file():
        return None
    names = pl.read_parquet_schema(path)
    if column not in names:
        return None
    frame = pl.read_parquet(path, columns=[column, *(["_valid"] if "_valid" in names else [])])
    if "_valid" in frame.columns:
        frame = frame.filter(pl.col("_valid"))
    values = frame.get_column(column)
    if values.dtype == pl.Datetime:
        values = values.dt.date()
    elif values.dtype != pl.Date:
        values = values.cast(pl.String).str.to_date(strict=False)
    counts = Counter(v for v in values.to_list() if v is not None)
    if not counts:
        return None
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def resolve_business_dates(engine: sa.Engine, store: FileStore, feed: Feed) -> None:
    """Give each of the feed's PROCESSED files without a business date its date (once)."""
    rule = feed.business_date
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, original_filename, data_source_id FROM uploaded_files "
                "WHERE data_source_id IN (:s, :t) AND status = 'PROCESSED' "
                "AND business_date IS NULL"
            ),
            {"s": feed.source_data_source_id, "t": feed.target_data_source_id},
        ).all()
    found: list[dict[str, Any]] = []
    for row in rows:
        if rule.source == "column":
            column = (
                rule.source_column
                if row.data_source_id == feed.source_data_source_id
                else rule.target_column
            )
            when = _date_from_data(store, row.id, str(column))
        else:
            when = rule.from_filename(row.original_filename)
        if when is not None:
            found.append({"i": row.id, "d": when})
    if found:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE uploaded_files SET business_date = :d WHERE id = :i"), found
            )


def ready_partitions(engine: sa.Engine, store: FileStore, feed: Feed) -> list[ReadyPartition]:
    """Business dates of the feed with both sides PROCESSED: the newest file of each side."""
    resolve_business_dates(engine, store, feed)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                WITH newest AS (
                    SELECT business_date,
                           MAX(id) FILTER (WHERE data_source_id = :s) AS source_file_id,
                           MAX(id) FILTER (WHERE data_source_id = :t) AS target_file_id
                    FROM uploaded_files
                    WHERE data_source_id IN (:s, :t) AND status = 'PROCESSED'
                      AND business_date IS NOT NULL
                    GROUP BY business_date
                )
                SELECT n.business_date, n.source_file_id, n.target_file_id,
                       COALESCE(r.status IN ('COMPLETED', 'PENDING', 'RUNNING')
                                AND r.source_file_id = n.source_file_id
                                AND r.target_file_id = n.target_file_id
                                AND NOT r.carry_stale, FALSE) AS reconciled,
                       CASE WHEN r.carry_stale THEN (
                           SELECT string_agg(p.carry_digest, '' ORDER BY p.business_date)
                           FROM reconciliations p WHERE p.feed_id = :f
                           AND p.business_date < n.business_date) END AS stale_digest
                FROM newest n
                LEFT JOIN reconciliations r
                  ON r.feed_id = :f AND r.business_date = n.business_date
                WHERE n.source_file_id IS NOT NULL AND n.target_file_id IS NOT NULL
                ORDER BY n.business_date
                """
            ),
            {
                "s": feed.source_data_source_id,
                "t": feed.target_data_source_id,
                "f": feed.id,
            },
        ).all()
    return [
        ReadyPartition(
            feed.name,
            r.business_date,
            r.source_file_id,
            r.target_file_id,
            bool(r.reconciled),
            hashlib.sha256(r.stale_digest.encode()).hexdigest() if r.stale_digest else None,
        )
        for r in rows
    ]


def feed_partition_key(day: date, feed: str) -> str:
    """(date, feed name) -> `2024-06-03|bank-vs-ledger` (Dagster's multi-partition key)."""
    return f"{day.isoformat()}|{feed}"


def split_partition_key(partition_key: str) -> tuple[date, str]:
    """`2024-06-03|bank-vs-ledger` -> (date, feed name)."""
    day, _, feed = partition_key.partition("|")
    try:
        return date.fromisoformat(day), feed
    except ValueError:
        raise FeedError(f"{partition_key!r} is not a <date>|<feed> partition key") from None


def _side_problem(conn: sa.Connection, data_source_id: int, day: date, side: str) -> str:
    """Why a side has no PROCESSED file for the date: what did land, and how it failed."""
    name = conn.execute(
        sa.text("SELECT name FROM data_sources WHERE id = :i"), {"i": data_source_id}
    ).scalar()
    failed = conn.execute(
        sa.text(
            "SELECT original_filename, status, processing_error FROM uploaded_files "
            "WHERE data_source_id = :s AND status <> 'PROCESSED' ORDER BY id DESC LIMIT 20"
        ),
        {"s": data_source_id},
    ).all()
    rule_hint = ""
    for row in failed:
        if (
            day.isoformat() in row.original_filename
            or day.strftime("%Y%m%d") in row.original_filename
        ):
            rule_hint = f"; {row.original_filename} is {row.status}: {row.processing_error or ''}"
            break
    return f"no validated {side} file of data source {name!r} for {day.isoformat()}{rule_hint}"


def prepare_partition(
    engine: sa.Engine, store: FileStore, partition_key: str, run_id: str | None
) -> int:
    """The partition's reconciliation, created or pointed at the newest files; its id.

    Raises `FeedError` (which fails the partition's run with that message) when the feed is
    unknown or inactive, or a side has no validated file for the date.
    """
    day, name = split_partition_key(partition_key)
    feed = feed_named(engine, name)
    if not feed.is_active:
        raise FeedError(f"feed {name!r} is not active (it left the feeds file); load it again")
    if feed.rule_set_id is None:
        raise FeedError(f"feed {name!r} lost its rule set (deleted); load the feeds file again")
    resolve_business_dates(engine, store, feed)
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"feed:{feed.id}:{day}"}
        )
        newest = {}
        for side, source_id in (
            ("source", feed.source_data_source_id),
            ("target", feed.target_data_source_id),
        ):
            newest[side] = conn.execute(
                sa.text(
                    "SELECT MAX(id) FROM uploaded_files WHERE data_source_id = :s "
                    "AND status = 'PROCESSED' AND business_date = :d"
                ),
                {"s": source_id, "d": day},
            ).scalar()
            if newest[side] is None:
                raise FeedError(
                    f"feed {name!r}, {day.isoformat()}: "
                    + _side_problem(conn, source_id, day, side)
                )
        values = {
            "f": feed.id,
            "d": day,
            "s": newest["source"],
            "t": newest["target"],
            "r": feed.rule_set_id,
            "o": feed.organization_id,
            "p": partition_key,
            "n": f"{name} {day.isoformat()}",
            "run": run_id,
        }
        rid = conn.execute(
            sa.text(
                "UPDATE reconciliations SET source_file_id = :s, target_file_id = :t, "
                "rule_set_id = :r, partition_key = :p, status = 'PENDING', progress = 0, "
                "error_message = NULL, dagster_run_id = :run, carry_stale = FALSE "
                "WHERE feed_id = :f AND business_date = :d RETURNING id"
            ),
            values,
        ).scalar()
        if rid is None:
            rid = conn.execute(
                sa.text(
                    "INSERT INTO reconciliations (name, description, status, source_file_id, "
                    "target_file_id, rule_set_id, organization_id, partition_key, progress, "
                    "feed_id, business_date, dagster_run_id) VALUES (:n, 'feed reconciliation', "
                    "'PENDING', :s, :t, :r, :o, :p, 0, :f, :d, :run) RETURNING id"
                ),
                values,
            ).scalar_one()
    return int(rid)


def reconciliation_for_partition(engine: sa.Engine, partition_key: str) -> int:
    """The reconciliation a partition wrote (for the stages after it); a clear error if none."""
    day, name = split_partition_key(partition_key)
    with engine.connect() as conn:
        rid = conn.execute(
            sa.text(
                "SELECT r.id FROM reconciliations r JOIN reconciliation_feeds f "
                "ON f.id = r.feed_id WHERE f.name = :n AND r.business_date = :d"
            ),
            {"n": name, "d": day},
        ).scalar()
    if rid is None:
        raise FeedError(f"partition {partition_key} has no reconciliation yet; reconcile it first")
    return int(rid)


def recent_history(
    engine: sa.Engine, feed_id: int, business_date: date, limit: int
) -> list[tuple[float, int]]:
    """(match rate, exception count) of the feed's latest COMPLETED other business dates."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT match_rate, exception_count FROM reconciliations WHERE feed_id = :f "
                "AND status = 'COMPLETED' AND business_date < :d "
                "ORDER BY business_date DESC LIMIT :n"
            ),
            {"f": feed_id, "d": business_date, "n": limit},
        ).all()
    return [(float(r.match_rate or 0), int(r.exception_count or 0)) for r in rows]


def stale_partitions(engine: sa.Engine, feed_names: list[str]) -> list[str]:
    """Partition keys of these feeds' COMPLETED dates whose earlier dates' open items changed
    since they ran (`carry_stale`), in date order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.business_date, f.name FROM reconciliations r "
                "JOIN reconciliation_feeds f ON f.id = r.feed_id WHERE f.name = ANY(:n) "
                "AND r.carry_stale AND r.status = 'COMPLETED' ORDER BY r.business_date, f.name"
            ),
            {"n": feed_names},
        ).all()
    return [feed_partition_key(r.business_date, r.name) for r in rows]
