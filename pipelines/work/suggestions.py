"""Suggested matches for a MISSING exception: accept one as a MANUAL match, or dismiss it.

The suggestion is first the candidate linkage kept on the exception (`suggested_match`,
migration 0013: the best record of the other file Splink scored below the match threshold,
with its probability and both records' values), while that record is still in no match and
not dismissed. Otherwise (Splink never scored the record, or its candidate was taken or
dismissed) it is computed when asked, from the same rule set: among the records of the other
file in no match of the reconciliation, the one whose first RANGE (amount) field is closest,
within the DATE_RANGE rule's date window widened by `WINDOW_DAYS` (without a RANGE field: the
closest date; with neither there is no suggestion). A dismissed candidate is never offered
again for that exception, across re-runs too: the refusal is an `audit_log` event keyed by
the exception's `<reconciliation id>:<fingerprint>`. `accept` goes through
`matching.match_rows`, the same code path as `recon match`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa

from pipelines.reconcile.mapping import ROW, conform
from pipelines.reconcile.records import file_facts
from pipelines.reconcile.rule_store import load_stored_rule_set
from pipelines.work import audit
from pipelines.work.matching import MatchOutcome, match_rows
from pipelines.work.pairs import canonical_rows, reconciliation_row
from pipelines.work.users import Actor, Role, require
from resources.errors import ReconError

WINDOW_DAYS = 30  # beyond the DATE_RANGE tolerance: a suggestion is a near miss by definition
SIDES = {"MISSING_IN_TARGET": ("source", "target"), "MISSING_IN_SOURCE": ("target", "source")}


@dataclass(frozen=True)
class Suggestion:
    """The candidate of the other file for a MISSING exception's record, and why."""

    exception_id: int
    exception_key: str
    source_row: int
    target_row: int
    why: str
    score: float | None = None  # the Splink probability of a candidate kept by linkage


def _exception(conn: sa.Connection, exception_id: int) -> Any:
    row = conn.execute(
        sa.text(
            "SELECT id, reconciliation_id, type, status, source_row_number, target_row_number, "
            "suggested_match, "
            "reconciliation_id || ':' || COALESCE(fingerprint, 'id:' || id) AS exception_key "
            "FROM reconciliation_exceptions WHERE id = :i"
        ),
        {"i": exception_id},
    ).first()
    if row is None:
        raise ReconError(f"exception {exception_id} does not exist in this organization")
    if row.type not in SIDES:
        raise ReconError(f"exception {exception_id} is {row.type}: only a MISSING one has a match")
    if row.status != "OPEN":
        raise ReconError(f"exception {exception_id} is {row.status}, not OPEN")
    return row


def _dismissed(conn: sa.Connection, exception_key: str) -> list[int]:
    """The other side's rows already dismissed for this exception (any run)."""
    return [
        int(r)
        for r in conn.execute(
            sa.text(
                "SELECT (after->>'candidate_row')::int FROM audit_log WHERE entity = 'exception' "
                "AND entity_key = :k AND action = 'DISMISS_SUGGESTION'"
            ),
            {"k": exception_key},
        ).scalars()
    ]


def _kept(exc: Any, mine: str, taken: set[int]) -> Suggestion | None:
    """The candidate linkage kept on the exception, unless it was taken or dismissed."""
    kept = exc.suggested_match
    if not kept or int(kept["target_row" if mine == "source" else "source_row"]) in taken:
        return None
    values = []
    for item in kept.get("why") or []:
        delta = f" ({item['delta']:+g})" if item.get("delta") is not None else ""
        values.append(f"{item['field']} {item['source_value']} / {item['target_value']}{delta}")
    why = (
        f"Splink probability {kept['score']:.3f}, below the threshold {kept['threshold']:g}; "
        + ", ".join(values)
    )
    return Suggestion(
        exc.id, exc.exception_key, int(kept["source_row"]), int(kept["target_row"]), why,
        float(kept["score"]),
    )  # fmt: skip


def suggest(conn: sa.Connection, exception_id: int) -> Suggestion | None:
    """The kept candidate (`_kept`), else the closest unmatched record of the other file, not
    dismissed before; None if none."""
    exc = _exception(conn, exception_id)
    mine, other = SIDES[exc.type]
    rec = reconciliation_row(conn, exc.reconciliation_id)
    row = exc.source_row_number if mine == "source" else exc.target_row_number
    taken = set(
        conn.execute(
            sa.text(
                f"SELECT {other}_row_number FROM reconciliation_matches "
                "WHERE reconciliation_id = :r"
            ),
            {"r": rec.id},
        ).scalars()
    ) | set(_dismissed(conn, exc.exception_key))
    kept = _kept(exc, mine, taken)
    if kept is not None:
        return kept
    rule_set = load_stored_rule_set(conn.engine, rec.rule_set_id)
    files = {"source": rec.source_file_id, "target": rec.target_file_id}
    own = canonical_rows(files[mine], [row])
    others = canonical_rows(files[other], None)
    others = others.filter(~pl.col(ROW).is_in(pl.Series(sorted(taken), dtype=pl.Int64).implode()))
    if own.height != 1 or others.height == 0:
        return None
    facts = {side: file_facts(conn, files[side]) for side in files}
    frames = {mine: own, other: others}
    conformed = conform(
        frames["source"],
        frames["target"],
        rule_set,
        source_schema=facts["source"].detected_schema,
        target_schema=facts["target"].detected_schema,
        source_name=facts["source"].original_filename,
        target_name=facts["target"].original_filename,
    )
    me = (conformed.source if mine == "source" else conformed.target).row(0, named=True)
    pool = (conformed.target if mine == "source" else conformed.source).filter(pl.col("_valid"))
    amount = next((f for f, k in conformed.field_types.items() if k == "RANGE"), None)
    date_rule = next((r for r in rule_set.matching_rules if r.match_type == "DATE_RANGE"), None)
    why: list[str] = []
    if date_rule is not None and me.get(date_rule.fields[0]) is not None:
        field = date_rule.fields[0]
        window = int(date_rule.tolerance or 0) + WINDOW_DAYS
        days = (pl.col(field) - pl.lit(me[field])).dt.total_days().abs()
        pool = pool.with_columns(days.alias("_days")).filter(pl.col("_days") <= window)
        why.append(f"{field} within {window} days")
    else:
        pool = pool.with_columns(pl.lit(0).alias("_days"))
    if amount is not None and me.get(amount) is not None:
        pool = pool.with_columns((pl.col(amount) - me[amount]).abs().alias("_gap"))
        why.append(f"closest {amount}")
    elif date_rule is not None:
        pool = pool.with_columns(pl.col("_days").alias("_gap"))
    else:
        return None
    best = pool.drop_nulls("_gap").sort(["_gap", "_days", ROW]).head(1)
    if best.height == 0:
        return None
    found = best.row(0, named=True)
    detail = f"{amount} differs by {found['_gap']:.2f}, " if amount in found else ""
    text = f"{detail}{found['_days']} day(s) apart; chosen as the {' and '.join(why)}"
    source_row, target_row = (row, found[ROW]) if mine == "source" else (found[ROW], row)
    return Suggestion(exc.id, exc.exception_key, int(source_row), int(target_row), text)


def _required(conn: sa.Connection, exception_id: int) -> Suggestion:
    found = suggest(conn, exception_id)
    if found is None:
        raise ReconError(f"exception {exception_id} has no suggested match")
    return found


def accept(
    conn: sa.Connection, actor: Actor, exception_id: int, note: str | None = None
) -> tuple[Suggestion, MatchOutcome]:
    """Turn the exception's suggestion into a MANUAL match (the path of `recon match`)."""
    require(actor, Role.EDITOR, "accepting suggested matches")
    found = _required(conn, exception_id)
    rec = _exception(conn, exception_id).reconciliation_id
    text = (note or "").strip() or f"suggested match accepted ({found.why})"
    outcome = match_rows(conn, actor, rec, found.source_row, found.target_row, text)
    return found, outcome


def dismiss(conn: sa.Connection, actor: Actor, exception_id: int, note: str) -> Suggestion:
    """Refuse the exception's suggestion: audited, and never offered again for it."""
    require(actor, Role.EDITOR, "dismissing suggested matches")
    if not note.strip():
        raise ReconError("dismiss needs a --note saying why")
    found = _required(conn, exception_id)
    exc = _exception(conn, exception_id)
    candidate = found.target_row if exc.type == "MISSING_IN_TARGET" else found.source_row
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="exception",
        entity_id=exception_id,
        entity_key=found.exception_key,
        action="DISMISS_SUGGESTION",
        before={"suggested": {"source_row": found.source_row, "target_row": found.target_row}},
        after={"candidate_row": candidate, "dismissed": True},
        reason=note.strip(),
    )
    return found
