"""Row-level lineage of one exception: its rows, their files, the rule set and the run.

`exception_lineage` follows the columns the pipeline writes: the exception's source and target
row numbers (`_row_number`, 1-based data rows of the original file) -> the reconciliation's
`uploaded_files` (original name, stored original, SHA-256, data source, the Dagster run and
partition that landed it) and the row itself read back from the canonical parquet -> the
rule-set version -> the reconciliation (feed, business date, partition key) and the Dagster run
that wrote the exception. An exception on a group of aggregate matching (the short-paid
group's AMOUNT_MISMATCH, or any exception on one of a group's rows) is followed to the whole
group: its `match_group` id, the one-side record and every member (`reconciliation_matches`
rows of kind AGGREGATE sharing the id), each with its file, row number and row read back.
`format_lineage` prints it for `recon lineage`. Given the organization, every row is read as
`recon_app` with it set (row-level security).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.ingest.pulls.pull import pull_of_file
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


def _rows(store: FileStore, file_id: int | None, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """Several rows of one canonical file by row number, in one scan."""
    if file_id is None or not numbers:
        return {}
    path = store.canonical(file_id)
    if not path.is_file():
        return {}
    found = pl.scan_parquet(path).filter(pl.col(ROW).is_in(numbers)).collect()
    return {
        r[ROW]: {k: v for k, v in r.items() if k != "_valid"} for r in found.iter_rows(named=True)
    }


def _group_pairs(
    conn: sa.Connection, reconciliation_id: int, source_row: int | None, target_row: int | None
) -> tuple[int, list[Any]] | None:
    """The aggregate group holding the exception's source or target row: its id and rows."""
    group = conn.execute(
        sa.text(
            "SELECT min(match_group) FROM reconciliation_matches WHERE reconciliation_id = :r "
            "AND match_group IS NOT NULL AND (source_row_number = :s OR target_row_number = :t)"
        ),
        {"r": reconciliation_id, "s": source_row, "t": target_row},
    ).scalar()
    if group is None:
        return None
    pairs = conn.execute(
        sa.text(
            "SELECT source_row_number, target_row_number, match_score, match_kind "
            "FROM reconciliation_matches WHERE reconciliation_id = :r AND match_group = :g "
            "ORDER BY source_row_number, target_row_number"
        ),
        {"r": reconciliation_id, "g": group},
    ).all()
    return int(group), list(pairs)


def _group(
    store: FileStore,
    found: tuple[int, list[Any]] | None,
    files: dict[str, dict[str, Any] | None],
) -> dict[str, Any] | None:
    """The group as lineage: the one-side record and the members, with files and rows."""
    if found is None:
        return None
    group, pairs = found
    sources = sorted({p.source_row_number for p in pairs})
    # the one side is the side whose record every pair shares (a group has 2+ members)
    one, many = ("source", "target") if len(sources) == 1 else ("target", "source")
    col = {"source": 0, "target": 1}
    one_row = pairs[0][col[one]]
    scores = {p[col[many]]: p.match_score for p in pairs}
    one_file, many_file = files[one], files[many]
    many_rows = _rows(store, many_file and many_file["id"], sorted(scores))
    return {
        "match_group": group,
        "one_side": one,
        "many_side": many,
        "one": {
            "side": one,
            "row_number": one_row,
            "file": one_file,
            "row": _row(store, one_file and one_file["id"], one_row),
        },
        "members": [
            {
                "side": many,
                "row_number": number,
                "score": score,
                "file": many_file,
                "row": many_rows.get(number),
            }
            for number, score in sorted(scores.items())
        ],
    }


def _file(conn: sa.Connection, file_id: int | None) -> dict[str, Any] | None:
    if file_id is None:
        return None
    row = conn.execute(
        sa.text(
            "SELECT f.id, f.original_filename, f.stored_filename, f.file_path, "
            "f.content_sha256, f.status, f.row_count, f.partition_key, f.dagster_run_id, "
            "f.business_date, f.created_at, d.name AS data_source, f.data_source_id "
            "FROM uploaded_files f "
            "LEFT JOIN data_sources d ON d.id = f.data_source_id WHERE f.id = :i"
        ),
        {"i": file_id},
    ).first()
    if row is None:
        return None
    pulled = pull_of_file(conn, row.data_source_id, row.content_sha256)
    # a file a DATABASE / REST_API pull wrote: the query or URL and the watermarks it moved
    return {
        **row._mapping,
        "pull": None if pulled is None else {"sync_log_id": pulled.id, **pulled.details},
    }


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
                "partition_key, resolution, resolved_by, resolved_at, organization_id, "
                "carried_to_reconciliation_id "
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
        # a record carried in from an earlier business date: its own file and row
        carried = {
            side: _carried(conn, exc.reconciliation_id, side, number)
            for side, number in (
                ("source", exc.source_row_number),
                ("target", exc.target_row_number),
            )
        }
        for side, origin in carried.items():
            if origin is not None:
                file = _file(conn, origin["from_file_id"])
                if side == "source":
                    source_file = file
                else:
                    target_file = file
        pairs = _group_pairs(
            conn, exc.reconciliation_id, exc.source_row_number, exc.target_row_number
        )
        journey = _journey(conn, exc.id, exc.carried_to_reconciliation_id)
    group = _group(store, pairs, {"source": source_file, "target": target_file})
    return {
        "matched_later": journey,
        "exception": dict(exc._mapping),
        "reconciliation": dict(rec._mapping) if rec is not None else None,
        "rule_set": dict(rules._mapping) if rules is not None else None,
        **{
            side: {
                "row_number": number if carried[side] is None else carried[side]["from_row_number"],
                "file": file,
                "row": _row(
                    store,
                    file and file["id"],
                    number if carried[side] is None else carried[side]["from_row_number"],
                ),
                "carried_from": carried[side],
            }
            for side, number, file in (
                ("source", exc.source_row_number, source_file),
                ("target", exc.target_row_number, target_file),
            )
        },
        "group": group,
    }


def _journey(conn: sa.Connection, exception_id: int, later: int | None) -> dict[str, Any] | None:
    """An open item matched on a later date: that date's match of its carried record."""
    if later is None:
        return None
    row = conn.execute(
        sa.text(
            "SELECT r.id AS reconciliation_id, r.business_date, c.side, c.row_number, "
            "m.source_row_number, m.target_row_number, m.match_kind, m.match_score, "
            "CASE WHEN c.side = 'source' THEN r.target_file_id ELSE r.source_file_id END "
            "AS other_file_id FROM reconciliation_carried_rows c "
            "JOIN reconciliations r ON r.id = c.reconciliation_id "
            "LEFT JOIN reconciliation_matches m ON m.reconciliation_id = c.reconciliation_id "
            "AND ((c.side = 'source' AND m.source_row_number = c.row_number) "
            "OR (c.side = 'target' AND m.target_row_number = c.row_number)) "
            "WHERE c.reconciliation_id = :r AND c.from_exception_id = :e LIMIT 1"
        ),
        {"r": later, "e": exception_id},
    ).first()
    return None if row is None else dict(row._mapping)


def _carried(
    conn: sa.Connection, reconciliation_id: int, side: str, row_number: int | None
) -> dict[str, Any] | None:
    """Where a carried row of a reconciliation came from (None: the date's own row)."""
    if row_number is None:
        return None
    row = conn.execute(
        sa.text(
            "SELECT from_reconciliation_id, from_file_id, from_row_number, from_business_date, "
            "from_exception_id FROM reconciliation_carried_rows WHERE reconciliation_id = :r "
            "AND side = :s AND row_number = :n"
        ),
        {"r": reconciliation_id, "s": side, "n": row_number},
    ).first()
    return None if row is None else dict(row._mapping)


def _values(row: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k != ROW) if row else "row gone"


def _where(file: dict[str, Any] | None) -> str:
    return f"#{file['id']} {file['original_filename']}" if file else "file gone"


def _format_group(group: dict[str, Any] | None) -> list[str]:
    if group is None:
        return []
    one, members = group["one"], group["members"]
    lines = [
        f"aggregate group {group['match_group']}: {one['side']} row {one['row_number']} of "
        f"{_where(one['file'])} settled by {len(members)} {group['many_side']} rows of "
        f"{_where(members[0]['file'] if members else None)}",
        f"  {one['side']} row {one['row_number']}: {_values(one['row'])}",
    ]
    for m in members:
        lines.append(f"  member {m['side']} row {m['row_number']}: {_values(m['row'])}")
    return lines


def format_lineage(chain: dict[str, Any], ui_url: str = "http://127.0.0.1:3000") -> str:
    """The chain as a few readable lines, most specific first."""
    exc, rec, rules = chain["exception"], chain["reconciliation"], chain["rule_set"]
    lines = [
        f"exception #{exc['id']}: {exc['type']} ({exc['severity']}, {exc['status']}) "
        f"confidence {exc['confidence']}",
        f"  {exc['description']}",
        f"  fingerprint {exc['fingerprint']}",
    ]
    if exc.get("resolution"):
        lines.append(f"  resolution: {exc['resolution']} (by {exc['resolved_by']})")
    later = chain.get("matched_later")
    if later:
        other = "target" if later["side"] == "source" else "source"
        other_row = later[f"{other}_row_number"]
        lines.append(
            f"  carried to {later['business_date']} (reconciliation #{later['reconciliation_id']}) "
            f"as {later['side']} row {later['row_number']}, {later['match_kind']} match with "
            f"{other} row {other_row} (file #{later['other_file_id']}, "
            f"score {later['match_score']})"
        )
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
        if part.get("carried_from"):
            origin = part["carried_from"]
            lines.append(
                f"  carried in: open since {origin['from_business_date']} (exception "
                f"#{origin['from_exception_id']}, reconciliation "
                f"#{origin['from_reconciliation_id']})"
            )
        if file:
            lines.append(f"  stored original: {file['file_path']}  sha256 {file['content_sha256']}")
            lines.append(
                f"  landed by Dagster run {file['dagster_run_id']} "
                f"(partition {file['partition_key']})"
            )
            if file.get("pull"):
                pull = file["pull"]
                lines.append(
                    f"  pulled (sync log #{pull['sync_log_id']}) for {pull['business_date']}: "
                    f"{pull['query']}; watermark {pull['watermark_from']!r} -> "
                    f"{pull['watermark_to']!r}, {pull['records']} record(s)"
                )
        if part["row"] is not None:
            values = ", ".join(f"{k}={v}" for k, v in part["row"].items() if k != ROW)
            lines.append(f"  row: {values}")
    lines += _format_group(chain.get("group"))
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
