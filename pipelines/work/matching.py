"""Matching by hand: a MANUAL pair of two records, and undoing one, each audited.

`match_rows` pairs source row N with target row M of a reconciliation (EDITOR or ADMIN): both
rows must exist in their files and be in no other match of it. The pair is inserted as a
`MANUAL` row of `reconciliation_matches`, the two MISSING exceptions of those rows become
RESOLVED naming the match, and the pair is judged by the engine's own code
(`build_exceptions` on the two conformed records linked as one pair), so an amount or date
beyond the rule set's tolerance raises the AMOUNT_MISMATCH / DATE_MISMATCH the engine would
have raised, with the engine's severity, diff and fingerprint. `unmatch` deletes a MANUAL
match, withdraws the mismatches raised for it and reopens (or, after a re-run dropped them,
restores) the two MISSING exceptions. Every change is one `audit_log` event with the state
before and after; an exception's events are keyed by `<reconciliation id>:<fingerprint>`.

A re-run keeps MANUAL matches and drops the engine's pairs and MISSING exceptions of their
rows (`pipelines/reconcile/commit.py`); `pairs.manual_mismatches` gives the mismatches of the
MANUAL pairs for a re-run to raise again (same fingerprints, so their decisions carry over).
Runs on a connection of `organization_transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.work import audit
from pipelines.work.pairs import Pair, judge, load_pair, reconciliation_row
from pipelines.work.users import Actor, Role, require
from resources.errors import ReconError

# an exception's state as the audit trail records it for matching
STATE_SQL = (
    "SELECT id, type, status, resolution, resolved_by, fingerprint, "
    "reconciliation_id || ':' || COALESCE(fingerprint, 'id:' || id) AS exception_key "
    "FROM reconciliation_exceptions"
)


@dataclass(frozen=True)
class MatchOutcome:
    """The match made (or undone), the exceptions resolved or reopened, and those raised."""

    match_id: int
    settled: list[int]
    raised: list[int]


def _state(row: Any) -> dict[str, Any]:
    return {"status": row.status, "resolution": row.resolution, "resolved_by": row.resolved_by}


def _missing(conn: sa.Connection, rid: int, source_row: int, target_row: int) -> list[Any]:
    """The MISSING exceptions of the pair's two rows, locked."""
    return list(
        conn.execute(
            sa.text(
                f"{STATE_SQL} WHERE reconciliation_id = :r AND ((type = 'MISSING_IN_TARGET' "
                "AND source_row_number = :s) OR (type = 'MISSING_IN_SOURCE' "
                "AND target_row_number = :t)) ORDER BY id FOR UPDATE"
            ),
            {"r": rid, "s": source_row, "t": target_row},
        )
    )


def _event(
    conn: sa.Connection,
    actor: Actor,
    row: Any,
    action: str,
    after: Any,
    note: str,
    *,
    new: bool = False,
) -> None:
    """One exception event; `new`: the row did not exist before (no state before)."""
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="exception",
        entity_id=row.id,
        entity_key=row.exception_key,
        action=action,
        before=None if new else _state(row),
        after=after,
        reason=note,
    )


def _insert_exceptions(conn: sa.Connection, pair: Pair, frame: pl.DataFrame) -> list[Any]:
    """Insert the engine-shaped exceptions of `frame` as OPEN; their audit rows."""
    inserted = []
    for e in frame.iter_rows(named=True):
        new_id = conn.execute(
            sa.text(
                "INSERT INTO reconciliation_exceptions (reconciliation_id, organization_id, type, "
                "severity, status, description, source_data, target_data, diff, confidence, "
                "fingerprint, source_row_number, target_row_number) VALUES (:r, :o, :type, "
                ":severity, 'OPEN', :description, CAST(:source_data AS jsonb), "
                "CAST(:target_data AS jsonb), CAST(:diff AS jsonb), :confidence, :fingerprint, "
                ":source_row_number, :target_row_number) RETURNING id"
            ),
            {**e, "r": pair.reconciliation_id, "o": pair.organization_id},
        ).scalar_one()
        inserted.append(conn.execute(sa.text(f"{STATE_SQL} WHERE id = :i"), {"i": new_id}).one())
    return inserted


def _recount(conn: sa.Connection, reconciliation_id: int, delta: int) -> None:
    """The reconciliation's counts with one pair more (1) or less (-1), as a re-run has them,
    and its `exception_count` as the rows its exceptions now are (called once they changed)."""
    conn.execute(
        sa.text(
            "UPDATE reconciliations SET matched_records = matched_records + :d, "
            "exception_count = (SELECT count(*) FROM reconciliation_exceptions "
            "WHERE reconciliation_id = :i), "
            "unmatched_source_records = unmatched_source_records - :d, "
            "unmatched_target_records = unmatched_target_records - :d, "
            "match_rate = CASE WHEN total_source_records > 0 THEN round(100.0 * "
            "(total_source_records - unmatched_source_records + :d) / total_source_records, 2) "
            "ELSE 0 END, updated_at = NOW() WHERE id = :i"
        ),
        {"d": delta, "i": reconciliation_id},
    )


def _note(note: str) -> str:
    if not note.strip():
        raise ReconError("a manual match needs a --note saying why")
    return note.strip()


def match_rows(
    conn: sa.Connection,
    actor: Actor,
    reconciliation_id: int,
    source_row: int,
    target_row: int,
    note: str,
) -> MatchOutcome:
    """Pair two records by hand (EDITOR+): a MANUAL match, MISSING resolved, mismatch raised."""
    require(actor, Role.EDITOR, "matching records by hand")
    note = _note(note)
    rec = reconciliation_row(conn, reconciliation_id)
    taken = conn.execute(
        sa.text(
            "SELECT id, match_kind, source_row_number, target_row_number "
            "FROM reconciliation_matches WHERE reconciliation_id = :r "
            "AND (source_row_number = :s OR target_row_number = :t) ORDER BY id LIMIT 1"
        ),
        {"r": rec.id, "s": source_row, "t": target_row},
    ).first()
    if taken is not None:
        side, row = (
            ("source", source_row)
            if taken.source_row_number == source_row
            else ("target", target_row)
        )
        raise ReconError(
            f"{side} row {row} is already in {taken.match_kind} match #{taken.id} "
            f"(source row {taken.source_row_number}, target row {taken.target_row_number})"
        )
    pair = load_pair(conn, rec, source_row, target_row)
    match_id = conn.execute(
        sa.text(
            "INSERT INTO reconciliation_matches (reconciliation_id, organization_id, "
            "source_row_number, target_row_number, match_score, match_kind) "
            "VALUES (:r, :o, :s, :t, 1.0, 'MANUAL') RETURNING id"
        ),
        {"r": rec.id, "o": rec.organization_id, "s": source_row, "t": target_row},
    ).scalar_one()
    resolution = (
        f"matched by hand: manual match #{match_id} (source row {source_row}, "
        f"target row {target_row}): {note}"
    )
    settled = []
    for row in _missing(conn, rec.id, source_row, target_row):
        conn.execute(
            sa.text(
                "UPDATE reconciliation_exceptions SET status = 'RESOLVED', resolution = :res, "
                "resolved_by = :by, resolved_at = LOCALTIMESTAMP, updated_at = NOW() "
                "WHERE id = :i"
            ),
            {"res": resolution, "by": actor.label, "i": row.id},
        )
        after = {"status": "RESOLVED", "resolution": resolution, "resolved_by": actor.label}
        _event(conn, actor, row, "MATCH", {**after, "match_id": match_id}, note)
        settled.append(row.id)
    raised = []
    for row in _insert_exceptions(conn, pair, judge(pair, linked=True)):
        after = {**_state(row), "type": row.type, "match_id": match_id}
        _event(conn, actor, row, "RAISE", after, note, new=True)
        raised.append(row.id)
    _recount(conn, rec.id, 1)
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="match",
        entity_id=match_id,
        entity_key=f"{rec.id}:manual:{source_row}:{target_row}",
        action="MATCH",
        before=None,
        after={
            "match_kind": "MANUAL",
            "source_row": source_row,
            "target_row": target_row,
            "resolved_exceptions": settled,
            "raised_exceptions": raised,
        },
        reason=note,
    )
    return MatchOutcome(int(match_id), settled, raised)


def unmatch(conn: sa.Connection, actor: Actor, match_id: int, note: str) -> MatchOutcome:
    """Undo a MANUAL match (EDITOR+): its mismatches withdrawn, the MISSING ones back, OPEN."""
    require(actor, Role.EDITOR, "undoing manual matches")
    if not note.strip():
        raise ReconError("unmatch needs a --note saying why")
    note = note.strip()
    found = conn.execute(
        sa.text(
            "SELECT id, reconciliation_id, match_kind, source_row_number, target_row_number "
            "FROM reconciliation_matches WHERE id = :i"
        ),
        {"i": match_id},
    ).first()
    if found is None:
        raise ReconError(f"match {match_id} does not exist in this organization")
    if found.match_kind != "MANUAL":
        raise ReconError(f"match {match_id} is {found.match_kind}: only a MANUAL match is undone")
    rec = reconciliation_row(conn, found.reconciliation_id)
    s_row, t_row = found.source_row_number, found.target_row_number
    pair = load_pair(conn, rec, s_row, t_row)
    conn.execute(sa.text("DELETE FROM reconciliation_matches WHERE id = :i"), {"i": match_id})
    withdrawn = conn.execute(
        sa.text(
            f"{STATE_SQL} WHERE reconciliation_id = :r AND type IN ('AMOUNT_MISMATCH', "
            "'DATE_MISMATCH') AND source_row_number = :s AND target_row_number = :t FOR UPDATE"
        ),
        {"r": rec.id, "s": s_row, "t": t_row},
    ).all()
    for row in withdrawn:
        conn.execute(sa.text("DELETE FROM reconciliation_exceptions WHERE id = :i"), {"i": row.id})
        _event(conn, actor, row, "WITHDRAW", None, note)
    present = _missing(conn, rec.id, s_row, t_row)
    settled = []
    for row in present:
        if row.status != "OPEN":
            conn.execute(
                sa.text(
                    "UPDATE reconciliation_exceptions SET status = 'OPEN', resolution = NULL, "
                    "resolved_by = NULL, resolved_at = NULL, updated_at = NOW() WHERE id = :i"
                ),
                {"i": row.id},
            )
            after = {"status": "OPEN", "resolution": None, "resolved_by": None}
            _event(conn, actor, row, "UNMATCH", after, note)
            settled.append(row.id)
    # a re-run dropped the MISSING exceptions of matched rows: restore them as the engine would
    have = {row.type for row in present}
    missing = judge(pair, linked=False).filter(~pl.col("type").is_in(list(have)))
    restored = _insert_exceptions(conn, pair, missing)
    for row in restored:
        _event(conn, actor, row, "UNMATCH", {**_state(row), "type": row.type}, note, new=True)
        settled.append(row.id)
    _recount(conn, rec.id, -1)
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="match",
        entity_id=match_id,
        entity_key=f"{rec.id}:manual:{s_row}:{t_row}",
        action="UNMATCH",
        before={"match_kind": "MANUAL", "source_row": s_row, "target_row": t_row},
        after=None,
        reason=note,
    )
    return MatchOutcome(match_id, settled, [row.id for row in withdrawn])
