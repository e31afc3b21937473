"""ADMIN gating of rule sets and feeds: who may store a new rule-set version or load feeds.

ADMIN manages rule sets, feeds and users. A command that stores a rule-set version (`recon
run --rules`, a proposed rule set) or loads a feeds file (`recon feeds load`) acts as `--as
EMAIL` / `RECON_USER` when given, else as the system user (ADMIN, always allowed). Reusing an
identical stored version is not managing rule sets: an EDITOR may run a reconciliation with
rules already stored. Loading a feeds file is managing feeds, whatever it changes; the user
must be an ADMIN of every organization the file's feeds (and the feeds it would deactivate)
belong to, and a user belongs to one organization. The refusal is `users.require`'s one line.

The events the product records itself (`audit.system_event`) are then attributed to that user
(`audit.acting_as`), so the trail says who stored the version or loaded the feeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pipelines.work.users import Actor, Role, acting_user, require
from resources.errors import ReconError

if TYPE_CHECKING:
    from pipelines.reconcile.rules import RuleSet


def actor_in(engine: sa.Engine, organization: str, email: str | None) -> Actor | None:
    """The acting user of `email` in the organization named `organization` (None: no --as).

    Resolved under row-level security (`organization_transaction`), so a user of another
    organization is unknown; an organization that does not exist yet has no users.
    """
    if not email:
        return None
    from resources.database import organization_transaction

    with engine.connect() as conn:
        org_id = conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": organization}
        ).scalar()
    if org_id is None:
        raise ReconError(f"no user {email!r} in organization {organization!r} (it has no users)")
    with organization_transaction(engine, int(org_id)) as conn:
        return acting_user(conn, int(org_id), email)


def rule_set_stored(engine: sa.Engine, organization_id: int, rule_set: RuleSet) -> bool:
    """Whether this exact rule set (name and content) is already a stored version."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT 1 FROM rule_sets WHERE organization_id = :o AND name = :n "
                "AND content_sha256 = :h LIMIT 1"
            ),
            {"o": organization_id, "n": rule_set.name, "h": rule_set.content_sha256()},
        ).first()
    return found is not None


def check_rule_set(engine: sa.Engine, actor: Actor | None, rule_set: RuleSet) -> None:
    """Refuse a non-ADMIN storing a NEW rule-set version; reusing a stored one is allowed."""
    if actor is None or actor.role >= Role.ADMIN:
        return
    if not rule_set_stored(engine, actor.organization_id, rule_set):
        require(actor, Role.ADMIN, f"storing a new version of rule set {rule_set.name!r}")


def feed_organizations(engine: sa.Engine, organizations: list[str], origin: Path) -> list[str]:
    """The organizations a feeds file touches: its feeds' and those of the feeds it would
    deactivate (active feeds loaded from the same file), by name."""
    with engine.connect() as conn:
        earlier = conn.execute(
            sa.text(
                "SELECT DISTINCT o.name FROM reconciliation_feeds f JOIN organizations o "
                "ON o.id = f.organization_id WHERE f.is_active AND f.definition->>'file' = :file"
            ),
            {"file": str(origin.resolve())},
        ).scalars()
        return sorted({*organizations, *earlier})


def check_feeds(
    engine: sa.Engine, email: str | None, organizations: list[str], origin: Path
) -> Actor | None:
    """The ADMIN loading a feeds file (None: the system user); refused otherwise."""
    if not email:
        return None
    touched = feed_organizations(engine, organizations, origin)
    if not touched:
        raise ReconError(f"{origin}: no feeds to load")
    actor = None
    for name in touched:  # a user belongs to one organization: another's user is unknown
        actor = actor_in(engine, name, email)
        assert actor is not None
        require(actor, Role.ADMIN, "loading feeds")
    return actor


def admin_of(engine: sa.Engine, organization: str, email: str | None, doing: str) -> Actor | None:
    """The ADMIN `email` of `organization` acting (`--as`; None: the system user), or refused
    naming the role `doing` needs (declaring a data source can point it at any file or host)."""
    actor = actor_in(engine, organization, email)
    if actor is not None:
        require(actor, Role.ADMIN, doing)
    return actor
