"""Open items: records a feed's business date left unmatched, carried into its later dates.

A feed's business date D reconciles its own two files plus the open items of its earlier dates
within `carry_forward_days`: valid records whose MISSING_* exception is still OPEN (a person's
decision ends an item's carrying; an item older than the window stays an exception and ages).
The pool of D is a function of the earlier dates' results only: an exception that a date at or
after D resolved by carrying counts as open for D, so a backfill gives the same final state
whatever order its dates run in, once every date whose inputs changed ran again (`commit`
marks those dates `carry_stale`; the pairing sensor and `recon backfill` re-run them).

Carried records join D's frames as rows numbered after D's own (`CarriedRows.rows` says where
each came from), so every rule applies to them as to D's own records: pairing, judging,
normalisation, aggregation. Exceptions whose rows are all carried are dropped (an item still
unmatched stays open on its own date, not raised again); a match of a carried record resolves
its original exception ("matched on D") in D's commit (`resolve_carried`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.feed_file import DEFAULT_CARRY_FORWARD_DAYS
from pipelines.reconcile.mapping import ROW
from resources.file_store import FileStore

SIDES = {"source": "MISSING_IN_TARGET", "target": "MISSING_IN_SOURCE"}
ROWS_SCHEMA = {
    "side": pl.String,
    "row_number": pl.Int64,
    "from_reconciliation_id": pl.Int64,
    "from_file_id": pl.Int64,
    "from_row_number": pl.Int64,
    "from_business_date": pl.Date,
    "from_exception_id": pl.Int64,
}


@dataclass(frozen=True)
class CarriedRows:
    """The carried rows of one reconciliation and where D's own rows end."""

    source_native: int
    target_native: int
    rows: pl.DataFrame  # ROWS_SCHEMA

    def native(self, side: str) -> int:
        return self.source_native if side == "source" else self.target_native


def open_items(conn: sa.Connection, feed_id: int, day: date, window: int) -> list[sa.Row[Any]]:
    """The feed's open items for `day`: MISSING_* exceptions of its COMPLETED dates in
    [day - window, day) still OPEN, or resolved by carrying from `day` or later."""
    return list(
        conn.execute(
            sa.text(
                "SELECT e.id AS exception_id, e.type, e.source_row_number, e.target_row_number, "
                "r.id AS reconciliation_id, r.source_file_id, r.target_file_id, r.business_date "
                "FROM reconciliation_exceptions e "
                "JOIN reconciliations r ON r.id = e.reconciliation_id "
                "LEFT JOIN reconciliations c ON c.id = e.carried_to_reconciliation_id "
                "WHERE r.feed_id = :f AND r.status = 'COMPLETED' "
                "AND r.business_date >= CAST(:d AS date) - :w AND r.business_date < :d "
                "AND e.type IN ('MISSING_IN_TARGET', 'MISSING_IN_SOURCE') "
                "AND (e.status = 'OPEN' OR (e.carried_to_reconciliation_id IS NOT NULL "
                "AND c.business_date >= :d AND e.resolved_by = 'system')) "
                "ORDER BY r.business_date, e.id"
            ),
            {"f": feed_id, "d": day, "w": window},
        ).all()
    )


def _side_rows(
    store: FileStore, items: list[sa.Row[Any]], side: str, first: int
) -> tuple[list[pl.DataFrame], list[dict[str, Any]]]:
    """The carried records of one side (their canonical rows, renumbered from `first`)."""
    wanted = [i for i in items if i.type == SIDES[side]]
    frames: list[pl.DataFrame] = []
    origins: list[dict[str, Any]] = []
    by_file: dict[int, list[sa.Row[Any]]] = {}
    for item in wanted:
        file_id = item.source_file_id if side == "source" else item.target_file_id
        by_file.setdefault(int(file_id), []).append(item)
    number = first
    for file_id, group in by_file.items():
        rows_of = {
            int(i.source_row_number if side == "source" else i.target_row_number): i for i in group
        }
        path = store.canonical(file_id)
        if not path.is_file():
            continue  # the file's canonical copy is gone: its items cannot be carried
        frame = pl.read_parquet(path).filter(pl.col(ROW).is_in(list(rows_of))).sort(ROW)
        renumbered = list(range(number, number + frame.height))
        for old, new in zip(frame.get_column(ROW).to_list(), renumbered, strict=True):
            item = rows_of[int(old)]
            origins.append(
                {
                    "side": side,
                    "row_number": new,
                    "from_reconciliation_id": item.reconciliation_id,
                    "from_file_id": file_id,
                    "from_row_number": int(old),
                    "from_business_date": item.business_date,
                    "from_exception_id": item.exception_id,
                }
            )
        frames.append(frame.with_columns(pl.Series(ROW, renumbered, dtype=frame.schema[ROW])))
        number += frame.height
    return frames, origins


def _joined(own: pl.DataFrame, carried: list[pl.DataFrame]) -> pl.DataFrame:
    """The day's frame with the carried rows after it (columns aligned; types widened, or
    text where two files typed a column differently)."""
    if not carried:
        return own
    try:
        return pl.concat([own, *carried], how="diagonal_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError):
        as_text = [
            f.with_columns(
                pl.col(c).cast(pl.String) for c in f.columns if c != ROW and c != "_valid"
            )
            for f in (own, *carried)
        ]
        return pl.concat(as_text, how="diagonal_relaxed")


def with_open_items(
    engine: sa.Engine,
    store: FileStore,
    feed_id: int,
    day: date,
    window: int,
    source: pl.DataFrame,
    target: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, CarriedRows]:
    """The day's source and target frames with the open items of the window appended."""
    native = {
        side: int(frame.get_column(ROW).max() or 0)
        for side, frame in (("source", source), ("target", target))
    }
    if window <= 0:
        return source, target, CarriedRows(native["source"], native["target"], _empty())
    with engine.connect() as conn:
        items = open_items(conn, feed_id, day, window)
    source_extra, source_origins = _side_rows(store, items, "source", native["source"] + 1)
    target_extra, target_origins = _side_rows(store, items, "target", native["target"] + 1)
    origins = source_origins + target_origins
    rows = pl.DataFrame(origins, schema=ROWS_SCHEMA) if origins else _empty()
    carried = CarriedRows(native["source"], native["target"], rows)
    return _joined(source, source_extra), _joined(target, target_extra), carried


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=ROWS_SCHEMA)


def own_exceptions(exceptions: pl.DataFrame, carried: CarriedRows | None) -> pl.DataFrame:
    """The exceptions that concern one of the day's own records: an open item still unmatched
    stays open on its own date, not raised again (carried-only ones dropped)."""
    if carried is None or carried.rows.is_empty():
        return exceptions
    own_source = pl.col("source_row_number").is_not_null() & (
        pl.col("source_row_number") <= carried.source_native
    )
    own_target = pl.col("target_row_number").is_not_null() & (
        pl.col("target_row_number") <= carried.target_native
    )
    return exceptions.filter(own_source | own_target)


def write_carried(path_dir: Path, carried: CarriedRows, setting: tuple[int, date, int]) -> None:
    """Keep the carried rows and the carry setting (feed id, business date, window) beside the
    stage's other files, for the later stages."""
    carried.rows.write_parquet(path_dir / "carried.parquet")
    feed_id, day, window = setting
    (path_dir / "carried_native.txt").write_text(
        f"{carried.source_native} {carried.target_native} {feed_id} {day.isoformat()} {window}",
        encoding="utf-8",
    )


def _kept(path_dir: Path) -> list[str] | None:
    native = path_dir / "carried_native.txt"
    return native.read_text(encoding="utf-8").split() if native.is_file() else None


def read_carried(path_dir: Path) -> CarriedRows | None:
    """The carried rows the mapping stage kept, or None (not a feed date with carrying)."""
    kept = _kept(path_dir)
    if kept is None:
        return None
    rows = pl.read_parquet(path_dir / "carried.parquet")
    return CarriedRows(int(kept[0]), int(kept[1]), rows)


def read_setting(path_dir: Path) -> tuple[int, date, int] | None:
    """(feed id, business date, carry_forward_days) the mapping stage kept, or None."""
    kept = _kept(path_dir)
    return None if kept is None else (int(kept[2]), date.fromisoformat(kept[3]), int(kept[4]))


def carry_setting(engine: sa.Engine, reconciliation_id: int) -> tuple[int, date, int] | None:
    """(feed id, business date, carry_forward_days) of a feed's date; None for ad hoc runs."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT r.feed_id, r.business_date, "
                "COALESCE((f.definition->>'carry_forward_days')::int, :default) AS days "
                "FROM reconciliations r JOIN reconciliation_feeds f ON f.id = r.feed_id "
                "WHERE r.id = :r AND r.business_date IS NOT NULL"
            ),
            {"r": reconciliation_id, "default": DEFAULT_CARRY_FORWARD_DAYS},
        ).first()
    return None if row is None else (int(row.feed_id), row.business_date, int(row.days))


def join_open_items(
    engine: sa.Engine,
    store: FileStore,
    reconciliation_id: int,
    work_dir: Path,
    source: pl.DataFrame,
    target: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The mapping stage's frames: a feed date's with its open items (kept in `work_dir` for
    the later stages), an ad hoc reconciliation's as they are; and how many were carried."""
    setting = carry_setting(engine, reconciliation_id)
    if setting is None:
        return source, target, 0
    feed_id, day, window = setting
    source, target, carried = with_open_items(engine, store, feed_id, day, window, source, target)
    write_carried(work_dir, carried, setting)
    for side, frame in (("source", source), ("target", target)):
        joined = work_dir / f"{side}_input.parquet"
        joined.unlink(missing_ok=True)  # a re-run's work dir may keep an earlier run's copy
        if carried.rows.filter(pl.col("side") == side).height:
            frame.write_parquet(joined)  # else the side's records are its canonical file's
    return source, target, carried.rows.height


def input_paths(
    work_dir: Path, store: FileStore, source_file_id: int, target_file_id: int
) -> dict[str, Path]:
    """The records each side reconciled: the file's, or with the carried open items."""
    paths = {}
    for side, file_id in (("source", source_file_id), ("target", target_file_id)):
        joined = work_dir / f"{side}_input.parquet"
        paths[side] = joined if joined.exists() else store.canonical(file_id)
    return paths


AGE_BUCKETS = ((0, 1, "0-1 d"), (2, 3, "2-3 d"), (4, 7, "4-7 d"), (8, 10, "8-10 d"))


def open_items_by_age(engine: sa.Engine, feed_id: int, day: date) -> list[dict[str, Any]]:
    """The feed's open MISSING_* records on `day` (dated up to it), by age in days and side."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT CAST(:d AS date) - r.business_date AS age, e.type, count(*) AS n "
                "FROM reconciliation_exceptions e JOIN reconciliations r "
                "ON r.id = e.reconciliation_id WHERE r.feed_id = :f AND r.business_date <= :d "
                "AND e.status = 'OPEN' AND e.type IN ('MISSING_IN_TARGET', 'MISSING_IN_SOURCE') "
                "GROUP BY 1, 2"
            ),
            {"f": feed_id, "d": day},
        ).all()
    table = []
    for low, high, label in (*AGE_BUCKETS, (11, 10**6, "over 10 d")):
        picked = [r for r in rows if low <= r.age <= high]
        table.append(
            {
                "age": label,
                "source_records": sum(r.n for r in picked if r.type == "MISSING_IN_TARGET"),
                "target_records": sum(r.n for r in picked if r.type == "MISSING_IN_SOURCE"),
            }
        )
    return table
