"""Reason codes for resolving or ignoring an exception: built-in ones plus an organization's own.

The built-in codes apply to every organization; an ADMIN adds more (`exception_reason_codes`,
migration 0012). A decision's `--reason` must be one of them.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from pipelines.work import audit
from pipelines.work.users import Actor, Role, require
from resources.errors import ReconError

DEFAULT_REASON_CODES = {
    "BANK_FEE": "a bank fee or charge explains the difference",
    "TIMING": "booked on different dates; clears in a later period",
    "DUPLICATE": "the record is a duplicate",
    "WRITE_OFF": "the difference is written off",
    "DATA_ERROR": "a data entry or feed error, corrected at the source",
    "OTHER": "see the note",
}
CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")


def reason_codes(conn: sa.Connection) -> dict[str, str]:
    """Every reason code the organization may use, with its description."""
    own = conn.execute(
        sa.text("SELECT code, description FROM exception_reason_codes ORDER BY code")
    ).all()
    return {**DEFAULT_REASON_CODES, **{code: text for code, text in own}}


def check_reason(conn: sa.Connection, code: str | None) -> str | None:
    """The code upper-cased when the organization knows it (None passes); one line otherwise."""
    if code is None:
        return None
    code = code.strip().upper()
    known = reason_codes(conn)
    if code not in known:
        raise ReconError(f"unknown reason code {code!r}: use one of {', '.join(sorted(known))}")
    return code


def add_reason(conn: sa.Connection, actor: Actor, code: str, description: str) -> str:
    """Add a reason code to the actor's organization (ADMIN only), audited."""
    require(actor, Role.ADMIN, "adding reason codes")
    code = code.strip().upper()
    if not CODE.match(code):
        raise ReconError(f"{code!r} is not a reason code: letters, digits and _, up to 50")
    if code in reason_codes(conn):
        raise ReconError(f"reason code {code} already exists")
    conn.execute(
        sa.text(
            "INSERT INTO exception_reason_codes (organization_id, code, description) "
            "VALUES (:o, :c, :d)"
        ),
        {"o": actor.organization_id, "c": code, "d": description},
    )
    audit.record(
        conn,
        organization_id=actor.organization_id,
        actor=actor,
        entity="reason_code",
        entity_id=None,
        entity_key=code,
        action="CREATE",
        before=None,
        after={"code": code, "description": description},
    )
    return code
