"""Refused landing-zone entries, each recorded once in `sync_logs`.

An entry the zone refuses (`zone.refusal`: a symlink, a hard link, a device, a FIFO, a socket,
a folder, a path resolving elsewhere) is left where it is and never read. It is recorded as one
FAILED `sync_logs` row (system `landing-zone`, no uploaded file) whose error names the path, the
reason and the entry's size and modification time, so the same entry, unchanged, is recorded
once however many sensor ticks or `recon land --scan` passes see it, and again once it changes.
The row belongs to the organization (and data source) its folders name when those exist, else
to the default organization: nothing is created for a refused path.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from pipelines.ingest.landing import SYNC_SYSTEM, ensure_organization
from pipelines.ingest.zone import LandingPath, safe_display_name

DEFAULT_ORGANIZATION = "Default Organization"


def refusal_message(item: LandingPath, reason: str) -> str:
    """The `sync_logs.error_message` of a refused entry: path, reason, size and mtime."""
    try:
        found = item.path.lstat()
        size, mtime_ns = found.st_size, found.st_mtime_ns
    except OSError:
        size, mtime_ns = -1, 0
    seconds = datetime.fromtimestamp(mtime_ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    shown = "/".join(safe_display_name(part) for part in item.relative.parts)
    return (
        f"landing zone entry {shown!r} refused and left in place: {reason} "
        f"(entry of {size} bytes, modified {seconds}.{mtime_ns % 1_000_000_000:09d}Z)"
    )


def record_refusal(engine: sa.Engine, item: LandingPath, reason: str) -> bool:
    """Record a refused entry in `sync_logs` unless this very entry already is; True if new.

    Concurrent recorders (the sensor and a `recon land --scan`) are serialised on a
    transaction-level advisory lock keyed by the message, so the entry is recorded once.
    """
    message = refusal_message(item, reason)
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:m, 0))"), {"m": message}
        )
        organization_id, data_source_id = _owner(conn, item)
        seen = conn.execute(
            sa.text(
                "SELECT 1 FROM sync_logs WHERE organization_id = :o AND system = :s "
                "AND status = 'FAILED' AND uploaded_file_id IS NULL AND error_message = :m "
                "LIMIT 1"
            ),
            {"o": organization_id, "s": SYNC_SYSTEM, "m": message},
        ).first()
        if seen is not None:
            return False
        conn.execute(
            sa.text(
                "INSERT INTO sync_logs (organization_id, data_source_id, system, direction, "
                "status, records_processed, error_message, completed_at) "
                "VALUES (:o, :d, :s, 'INBOUND', 'FAILED', 0, :m, NOW())"
            ),
            {"o": organization_id, "d": data_source_id, "s": SYNC_SYSTEM, "m": message},
        )
    return True


def _owner(conn: sa.Connection, item: LandingPath) -> tuple[int, int | None]:
    """The organization and data source the entry's folders name, when they exist."""
    row = conn.execute(
        sa.text(
            "SELECT o.id AS organization_id, d.id AS data_source_id FROM organizations o "
            "LEFT JOIN data_sources d ON d.organization_id = o.id AND d.name = :s "
            "WHERE o.name = :o"
        ),
        {"o": item.organization, "s": item.data_source},
    ).first()
    if row is not None:
        return row.organization_id, row.data_source_id
    return ensure_organization(conn, DEFAULT_ORGANIZATION), None
