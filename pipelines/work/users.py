"""Users and roles of an organization, and who a command acts as.

A command acts as `--as EMAIL` (or `RECON_USER`): an active user of its organization, looked up
under row-level security, so another organization's user is simply unknown. Without one it
acts as the organization's built-in system user: ADMIN, recorded as `system` (the data
engineer running the command owns the database anyway; it is how the first user is added).
VIEWER reads only, EDITOR also works exceptions, ADMIN also manages users and reason codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import sqlalchemy as sa

from pipelines.work import audit
from resources.errors import ReconError

SYSTEM_ACTOR = "system"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class Role(IntEnum):
    """A user's role; a higher one may do everything a lower one may."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3


def parse_role(value: str) -> Role:
    """`ADMIN`, `EDITOR` or `VIEWER` (any case) as a Role; one-line error otherwise."""
    try:
        return Role[value.strip().upper()]
    except KeyError:
        raise ReconError(
            f"unknown role {value!r}: use one of {', '.join(r.name for r in Role)}"
        ) from None


@dataclass(frozen=True)
class Actor:
    """Who a command acts as: a user of the organization, or its system user (no row)."""

    organization_id: int
    user_id: int | None
    label: str  # the email, or `system`
    role: Role


def system_actor(organization_id: int) -> Actor:
    """The organization's built-in system user (ADMIN, no `users` row, `system` in the trail)."""
    return Actor(organization_id, None, SYSTEM_ACTOR, Role.ADMIN)


def organization_id(engine: sa.Engine, name: str) -> int:
    """The id of the organization named `name` (resolved as the owner, like `recon/scope.py`)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": name}
        ).scalar()
    if found is None:
        raise ReconError(f"no organization named {name!r}")
    return int(found)


def acting_user(conn: sa.Connection, organization_id: int, email: str | None) -> Actor:
    """The actor for `email` (None or empty: the system user); unknown or inactive refused."""
    if not email:
        return system_actor(organization_id)
    row = conn.execute(
        sa.text("SELECT id, email, role, active FROM users WHERE lower(email) = lower(:e)"),
        {"e": email.strip()},
    ).first()
    if row is None:
        raise ReconError(f"no user {email!r} in this organization (see `recon users list`)")
    if not row.active:
        raise ReconError(f"user {row.email!r} is inactive")
    return Actor(organization_id, int(row.id), row.email, Role[row.role])


def require(actor: Actor, needed: Role, doing: str) -> None:
    """Refuse, naming the role needed, when `actor` may not do `doing`."""
    if actor.role < needed:
        above = " or ADMIN" if needed < Role.ADMIN else ""
        raise ReconError(
            f"{actor.label} is {actor.role.name}: {doing} needs the {needed.name} role{above}"
        )


def user_state(conn: sa.Connection, user_id: int) -> dict[str, Any]:
    """A user as the audit trail records it."""
    row = conn.execute(
        sa.text("SELECT id, email, name, role, active FROM users WHERE id = :i"), {"i": user_id}
    ).mappings()
    return dict(row.one())


def add_user(conn: sa.Connection, actor: Actor, email: str, name: str, role: Role) -> int:
    """Add a user to the actor's organization (ADMIN only); returns its id, audited."""
    require(actor, Role.ADMIN, "adding users")
    email = email.strip()
    if not EMAIL.match(email):
        raise ReconError(f"{email!r} is not an email address")
    if not name.strip():
        raise ReconError("a user needs a --name")
    # emails are unique across organizations: checked as the owner would see it is not
    # possible here (row-level security), so the unique index answers, without saying whose
    try:
        with conn.begin_nested():
            user_id = conn.execute(
                sa.text(
                    "INSERT INTO users (email, name, role, organization_id) "
                    "VALUES (:e, :n, :r, :o) RETURNING id"
                ),
                {"e": email, "n": name.strip(), "r": role.name, "o": actor.organization_id},
            ).scalar_one()
    except sa.exc.IntegrityError:
        raise ReconError(f"a user {email!r} already exists") from None
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="user",
        entity_id=user_id,
        action="CREATE",
        before=None,
        after=user_state(conn, user_id),
    )
    return int(user_id)


def set_active(conn: sa.Connection, actor: Actor, email: str, active: bool) -> None:
    """Deactivate (or reactivate) a user of the organization (ADMIN only), audited."""
    require(actor, Role.ADMIN, "changing users")
    user_id = conn.execute(
        sa.text("SELECT id FROM users WHERE lower(email) = lower(:e)"), {"e": email.strip()}
    ).scalar()
    if user_id is None:
        raise ReconError(f"no user {email!r} in this organization (see `recon users list`)")
    before = user_state(conn, user_id)
    conn.execute(sa.text("UPDATE users SET active = :a WHERE id = :i"), {"a": active, "i": user_id})
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="user",
        entity_id=user_id,
        action="ACTIVATE" if active else "DEACTIVATE",
        before=before,
        after=user_state(conn, user_id),
    )


def list_users(conn: sa.Connection) -> list[dict[str, Any]]:
    """The organization's users (row-level security decides which), by email."""
    rows = conn.execute(
        sa.text("SELECT id, email, name, role, active, created_at FROM users ORDER BY email")
    ).mappings()
    return [dict(r) for r in rows]
