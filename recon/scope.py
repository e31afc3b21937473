"""Which organization a command acts for, and the check that an id given to it is that one's.

Commands that read or change an organization's rows by id (`recon lineage`, `recon ask`,
`recon embed`, `recon cancel`) take `--org` (default: the default organization) and refuse an
id of another organization with one line that does not say whose it is. `recon search` was
already restricted to its `--org` in SQL. The name is resolved as the owner (it is who the
command acts for); the row is looked up as `recon_app` with that organization set, so
row-level security (migration 0010) alone decides whether it is visible.
"""

from __future__ import annotations

import sqlalchemy as sa

from resources.database import organization_transaction
from resources.errors import ReconError

DEFAULT_ORGANIZATION = "Default Organization"
# the tables a command may be given an id of, each with its own organization_id
SCOPED = {
    "reconciliation": "reconciliations",
    "exception": "reconciliation_exceptions",
}


def require_owned(engine: sa.Engine, organization: str, what: str, row_id: int) -> int:
    """The organization's id, once row `row_id` of `what` is known to belong to it."""
    table = SCOPED[what]
    with engine.connect() as conn:
        org_id = conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": organization}
        ).scalar()
    if org_id is None:
        raise ReconError(f"no organization named {organization!r}")
    with organization_transaction(engine, org_id) as conn:
        owner = conn.execute(
            sa.text(f"SELECT organization_id FROM {table} WHERE id = :i"), {"i": row_id}
        ).scalar()
    if owner is None or owner != org_id:
        # the same words whether it is missing or another organization's: nothing leaks
        raise ReconError(
            f"{what} {row_id} is not one of {organization!r}'s; pass --org with its organization"
        )
    return org_id
