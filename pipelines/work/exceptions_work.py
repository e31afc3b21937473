"""Listing exceptions with their work state, and deciding on them set-based, each audited.

An exception's work state is its row's `status`, `resolution`, `resolved_by`, `resolved_at`
(carried across re-runs by fingerprint in `pipelines/reconcile/commit.py`) plus its assignee
and reason code in `exception_work`, keyed by `(reconciliation_id, exception_key)` where the
key is the fingerprint (`id:<id>` for the rare row without one), which a re-run keeps too.

A decision (assign, unassign, resolve, ignore, reopen) is ONE statement whatever the number of
exceptions: the chosen rows are locked, changed, their work state upserted and one audit event
per exception appended with the state before and after. Exceptions already in the state asked
for are left alone (and not audited); the result says how many changed and how many were
chosen. Runs on a connection of `organization_transaction`: row-level security keeps it to
the organization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pipelines.reconcile.rule_shapes import SEVERITIES
from pipelines.work import audit
from pipelines.work.reasons import check_reason
from pipelines.work.users import Actor, Role, require
from resources.errors import ReconError

# reconciliation_exceptions.type's values (its check constraint, migration 0001): the one list
TYPES = (
    "AMOUNT_MISMATCH",
    "DATE_MISMATCH",
    "MISSING_IN_SOURCE",
    "MISSING_IN_TARGET",
    "DUPLICATE_FOUND",
    "VALIDATION_ERROR",
)
STATUSES = ("OPEN", "RESOLVED", "IGNORED")
KEY = "COALESCE(e.fingerprint, 'id:' || e.id)"
# an exception with its work state; `u` is its assignee
FROM = (
    "reconciliation_exceptions e LEFT JOIN exception_work w "
    f"ON w.reconciliation_id = e.reconciliation_id AND w.exception_key = {KEY} "
    "LEFT JOIN users u ON u.id = w.assignee_user_id"
)
AGE_DAYS = "floor(extract(epoch FROM (LOCALTIMESTAMP - e.created_at)) / 86400)::int"
STATE = (
    "jsonb_build_object('status', e.status, 'resolution', e.resolution, 'resolved_by', "
    "e.resolved_by, 'assignee', u.email, 'reason_code', w.reason_code)"
)


def _choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    value = value.strip().upper()
    if value not in allowed:
        raise ReconError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Filters:
    """The list filters (`recon exceptions list`), also what `--all-matching` decides on."""

    reconciliation_id: int | None = None
    type: str | None = None
    severity: str | None = None
    status: str | None = None
    assignee: str | None = None  # an email
    older_than_days: int | None = None

    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause over FROM and its parameters (values checked first)."""
        clauses = ["TRUE"]
        params: dict[str, Any] = {}
        if self.reconciliation_id is not None:
            clauses.append("e.reconciliation_id = :f_rec")
            params["f_rec"] = self.reconciliation_id
        for column, value, allowed in (
            ("type", self.type, TYPES),
            ("severity", self.severity, SEVERITIES),
            ("status", self.status, STATUSES),
        ):
            checked = _choice(value, allowed, column)
            if checked is not None:
                clauses.append(f"e.{column} = :f_{column}")
                params[f"f_{column}"] = checked
        if self.assignee is not None:
            clauses.append("lower(u.email) = lower(:f_assignee)")
            params["f_assignee"] = self.assignee.strip()
        if self.older_than_days is not None:
            clauses.append("e.created_at < LOCALTIMESTAMP - make_interval(days => :f_days)")
            params["f_days"] = self.older_than_days
        return " AND ".join(clauses), params


def list_exceptions(
    conn: sa.Connection, filters: Filters, limit: int | None = None
) -> list[dict[str, Any]]:
    """The organization's exceptions matching `filters`, oldest first, with age and assignee."""
    where, params = filters.where()
    rows = conn.execute(
        sa.text(
            f"SELECT e.id, e.reconciliation_id, e.type, e.severity, e.status, "
            f"{AGE_DAYS} AS age_days, u.email AS assignee, w.reason_code, e.description, "
            "e.resolution, e.resolved_by, e.resolved_at, e.created_at, e.source_row_number, "
            f"e.target_row_number FROM {FROM} WHERE {where} ORDER BY e.id"
            + (" LIMIT :limit" if limit else "")
        ),
        {**params, "limit": limit},
    ).mappings()
    return [dict(r) for r in rows]


def exception_detail(conn: sa.Connection, exception_id: int) -> dict[str, Any]:
    """One exception: both records, diff, suggestion, work state and its history."""
    row = (
        conn.execute(
            sa.text(
                f"SELECT e.*, {AGE_DAYS} AS age_days, u.email AS assignee, w.reason_code, "
                f"e.reconciliation_id || ':' || {KEY} AS exception_key FROM {FROM} WHERE e.id = :i"
            ),
            {"i": exception_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ReconError(f"exception {exception_id} does not exist in this organization")
    detail = dict(row)
    detail["history"] = audit.history(conn, "exception", detail["exception_key"])
    return detail


@dataclass(frozen=True)
class Decision:
    """What to do: ASSIGN (assignee), UNASSIGN, RESOLVE / IGNORE (note, reason code) or REOPEN."""

    action: str
    note: str | None = None
    reason_code: str | None = None
    assignee: str | None = None  # ASSIGN: an email


_VERB = {
    "ASSIGN": "assigning",
    "UNASSIGN": "unassigning",
    "RESOLVE": "resolving",
    "IGNORE": "ignoring",
    "REOPEN": "reopening",
}
# per action: the status set (None: unchanged), and when an exception is already so
_STATUS = {
    "RESOLVE": "RESOLVED",
    "IGNORE": "IGNORED",
    "REOPEN": "OPEN",
    "ASSIGN": None,
    "UNASSIGN": None,
}
_ALREADY = {
    "RESOLVE": "e.status = 'RESOLVED'",
    "IGNORE": "e.status = 'IGNORED'",
    "REOPEN": "e.status = 'OPEN'",
    "ASSIGN": "w.assignee_user_id IS NOT DISTINCT FROM CAST(:assignee_id AS bigint)",
    "UNASSIGN": "w.assignee_user_id IS NULL",
}
# `assign --to none` is UNASSIGN
NOBODY = "none"


@dataclass(frozen=True)
class Outcome:
    """How many exceptions the selection held, and how many the decision changed."""

    chosen: int
    changed: int


def _assignee(conn: sa.Connection, email: str) -> tuple[int, str]:
    row = conn.execute(
        sa.text("SELECT id, email, role, active FROM users WHERE lower(email) = lower(:e)"),
        {"e": email.strip()},
    ).first()
    if row is None or not row.active:
        raise ReconError(f"no active user {email!r} in this organization to assign to")
    if Role[row.role] < Role.EDITOR:
        raise ReconError(f"{row.email} is VIEWER: an assignee needs the EDITOR role or ADMIN")
    return int(row.id), row.email


def _selection(
    conn: sa.Connection, ids: list[int] | None, filters: Filters | None
) -> tuple[str, dict[str, Any]]:
    if ids:
        found = set(
            conn.execute(
                sa.text("SELECT id FROM reconciliation_exceptions WHERE id = ANY(:ids)"),
                {"ids": ids},
            ).scalars()
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise ReconError(
                f"exception {missing[0]} does not exist in this organization; nothing changed"
            )
        return "e.id = ANY(:sel_ids)", {"sel_ids": ids}
    if filters is None or filters.empty():
        raise ReconError("name exceptions by id, or give --all-matching at least one filter")
    return filters.where()


def decide(
    conn: sa.Connection,
    actor: Actor,
    decision: Decision,
    *,
    ids: list[int] | None = None,
    filters: Filters | None = None,
) -> Outcome:
    """Apply `decision` to the exceptions `ids` or matching `filters`, audited per exception."""
    action = decision.action.upper()
    if action == "ASSIGN" and (decision.assignee or "").strip().lower() == NOBODY:
        action = "UNASSIGN"
    if action not in _STATUS:
        raise ReconError(f"unknown decision {decision.action!r}")
    require(actor, Role.EDITOR, f"{_VERB[action]} exceptions")
    if action in ("RESOLVE", "IGNORE") and not (decision.note or "").strip():
        raise ReconError(f"{action.lower()} needs a --note saying why")
    params: dict[str, Any] = {
        "actor_id": actor.user_id,
        "actor": actor.label,
        "action": action,
        "note": (decision.note or "").strip() or None,
        "reason_code": check_reason(conn, decision.reason_code),
        "assignee_id": None,
        "assignee_email": None,
    }
    if action == "ASSIGN":
        if not decision.assignee:
            raise ReconError("assign needs --to EMAIL")
        params["assignee_id"], params["assignee_email"] = _assignee(conn, decision.assignee)
    where, selection = _selection(conn, ids, filters)
    params.update(selection)
    status = _STATUS[action]
    if status is None:  # (UN)ASSIGN: the exception row keeps its state, assignee_id set or NULL
        new_state = "p.status, p.resolution, p.resolved_by"
        new_assignee, new_reason = "CAST(:assignee_id AS bigint)", "p.reason_code"
        new_email = "CAST(:assignee_email AS text)"
        change_row = ""
    else:
        reopen = status == "OPEN"
        new_state = f"'{status}', " + (
            "NULL::text, NULL::text" if reopen else "CAST(:note AS text), CAST(:actor AS text)"
        )
        new_assignee, new_email = "p.assignee_user_id", "p.assignee"
        new_reason = "NULL::text" if reopen else "CAST(:reason_code AS text)"
        change_row = (
            f"changed AS (UPDATE reconciliation_exceptions x SET status = '{status}', "
            + (
                "resolution = NULL, resolved_by = NULL, resolved_at = NULL "
                if reopen
                else "resolution = :note, resolved_by = :actor, resolved_at = LOCALTIMESTAMP "
            )
            + "FROM picked p WHERE x.id = p.id RETURNING x.id), "
        )
    statement = (
        f"WITH chosen AS (SELECT e.id, ({_ALREADY[action]}) AS already FROM {FROM} "
        f"WHERE {where} FOR UPDATE OF e), "
        "picked AS (SELECT e.id, e.organization_id, e.reconciliation_id, "
        f"{KEY} AS exception_key, e.status, e.resolution, e.resolved_by, "
        f"w.assignee_user_id, u.email AS assignee, w.reason_code, {STATE} AS before "
        f"FROM {FROM} JOIN chosen c ON c.id = e.id AND NOT c.already), "
        f"{change_row}"
        "worked AS (INSERT INTO exception_work (organization_id, reconciliation_id, "
        "exception_key, assignee_user_id, reason_code) "
        "SELECT DISTINCT ON (p.reconciliation_id, p.exception_key) p.organization_id, "
        f"p.reconciliation_id, p.exception_key, {new_assignee}, {new_reason} FROM picked p "
        "ON CONFLICT (reconciliation_id, exception_key) DO UPDATE SET "
        "assignee_user_id = EXCLUDED.assignee_user_id, reason_code = EXCLUDED.reason_code, "
        "updated_at = NOW() RETURNING 1), "
        "events AS (SELECT p.organization_id, CAST(:actor_id AS bigint) AS actor_user_id, "
        "CAST(:actor AS text) AS actor, 'exception' AS entity, p.id AS entity_id, "
        "p.reconciliation_id || ':' || p.exception_key AS entity_key, "
        "CAST(:action AS text) AS action, p.before, "
        "jsonb_build_object('status', s.status, 'resolution', s.resolution, 'resolved_by', "
        f"s.resolved_by, 'assignee', {new_email}, 'reason_code', {new_reason}) AS after, "
        "CAST(:note AS text) AS reason "
        f"FROM picked p CROSS JOIN LATERAL (SELECT {new_state}) "
        "AS s(status, resolution, resolved_by)), "
        f"logged AS ({audit.insert_from('events')} RETURNING 1) "
        "SELECT (SELECT count(*) FROM chosen), (SELECT count(*) FROM logged)"
    )
    chosen, changed = conn.execute(sa.text(statement), params).one()
    return Outcome(int(chosen), int(changed))
