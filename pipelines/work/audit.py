"""The append-only audit trail (`audit_log`, migration 0012): who changed what, before and after.

`record` writes one event; `insert_from` appends the events a set-based statement computed
(one row per exception of a bulk decision) with the same columns. `recon_app` may only read and
append (no UPDATE or DELETE granted; a trigger refuses them for anyone but the owner).
An exception's events are keyed by `exception_key` (`<reconciliation id>:<fingerprint>`), which
a re-run keeps although it recreates the exception rows, so `history` follows the decision.
The product's own events (`system_event`) are the `system` user's, unless a command acting as
a user wraps the work in `acting_as(actor)` (a new rule-set version stored, feeds loaded).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from pipelines.work.users import Actor

# the columns every event fills (`id` and `at` are the table's own)
COLUMNS = (
    "organization_id, actor_user_id, actor, entity, entity_id, entity_key, action, before, "
    "after, reason"
)

# the user a command acts as, for the events the product records on its behalf
_ACTING: ContextVar[Actor | None] = ContextVar("audit_acting", default=None)


@contextmanager
def acting_as(actor: Actor | None) -> Iterator[None]:
    """Attribute `system_event`s of `actor`'s organization inside the block to `actor`."""
    token = _ACTING.set(actor)
    try:
        yield
    finally:
        _ACTING.reset(token)


def record(
    conn: sa.Connection,
    *,
    organization_id: int,
    actor: Actor,
    entity: str,
    entity_id: int | None,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None = None,
    entity_key: str | None = None,
) -> int:
    """Append one event; returns its id."""
    return conn.execute(
        sa.text(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES (:o, :uid, :actor, :entity, :eid, :key, "
            ":action, CAST(:before AS jsonb), CAST(:after AS jsonb), :reason) RETURNING id"
        ),
        {
            "o": organization_id,
            "uid": actor.user_id,
            "actor": actor.label,
            "entity": entity,
            "eid": entity_id,
            "key": entity_key if entity_key is not None else str(entity_id),
            "action": action,
            "before": None if before is None else json.dumps(before, default=str),
            "after": None if after is None else json.dumps(after, default=str),
            "reason": reason,
        },
    ).scalar_one()


def system_event(
    conn: sa.Connection,
    *,
    organization_id: int,
    entity: str,
    entity_id: int | None,
    action: str,
    after: dict[str, Any] | None,
    entity_key: str | None = None,
) -> int:
    """An event the product itself caused (a reconciliation run, a rule-set version, a feed
    change), recorded as the organization's `system` actor, or the user of `acting_as`."""
    from pipelines.work.users import system_actor

    acting = _ACTING.get()
    if acting is None or acting.organization_id != organization_id:
        acting = system_actor(organization_id)
    return record(
        conn,
        organization_id=organization_id,
        actor=acting,
        entity=entity,
        entity_id=entity_id,
        action=action,
        before=None,
        after=after,
        entity_key=entity_key,
    )


def insert_from(source: str) -> str:
    """The statement appending every row of `source` (a CTE or table with COLUMNS) as events."""
    return f"INSERT INTO audit_log ({COLUMNS}) SELECT {COLUMNS} FROM {source}"


def history(conn: sa.Connection, entity: str, entity_key: str) -> list[dict[str, Any]]:
    """An entity's events, oldest first."""
    rows = conn.execute(
        sa.text(
            "SELECT id, at, actor, action, before, after, reason, entity_id FROM audit_log "
            "WHERE entity = :e AND entity_key = :k ORDER BY at, id"
        ),
        {"e": entity, "k": entity_key},
    ).mappings()
    return [dict(r) for r in rows]
