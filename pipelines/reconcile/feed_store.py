"""A feeds file stored: `reconciliation_feeds` rows, their rule-set versions and data sources.

`store_feeds` loads validated feed specs (`pipelines.reconcile.feed_file`) into the database
in one transaction: each feed's rules file stored as a rule-set version, its data sources
created on first sight, a feed whose definition and rules are unchanged left as it is (by
digest), and feeds missing from the file deactivated (never deleted: their history stays).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest import landing
from pipelines.reconcile.feed_file import FeedError, FeedSpec
from pipelines.reconcile.rule_store import store_rule_set
from pipelines.reconcile.rules import load_rule_set_file
from pipelines.work import audit


def _digest(definition: dict[str, Any], rules_text: str) -> str:
    payload = json.dumps(definition, sort_keys=True) + "\n" + rules_text
    return hashlib.sha256(payload.encode()).hexdigest()


def store_feeds(engine: sa.Engine, specs: list[FeedSpec], origin: Path) -> dict[str, list[str]]:
    """Load a feeds file's feeds; returns the names added, changed, unchanged, deactivated.

    Feeds loaded earlier from the same file (`origin`) and missing from it now are
    deactivated; feeds of other files are left alone.
    """
    outcome: dict[str, list[str]] = {"added": [], "changed": [], "unchanged": [], "deactivated": []}
    for spec in specs:
        rule_set = load_rule_set_file(spec.rules)
        with engine.begin() as conn:
            org_id = landing.ensure_organization(conn, spec.organization)
            source_id = landing.ensure_data_source(conn, org_id, spec.source)
            target_id = landing.ensure_data_source(conn, org_id, spec.target)
        stored = store_rule_set(engine, org_id, rule_set)
        definition = {**spec.definition(), "file": str(origin.resolve())}
        digest = _digest(definition, spec.rules.read_text(encoding="utf-8"))
        with engine.begin() as conn:
            existing = conn.execute(
                sa.text(
                    "SELECT id, organization_id, definition_sha256, is_active "
                    "FROM reconciliation_feeds WHERE name = :n FOR UPDATE"
                ),
                {"n": spec.name},
            ).first()
            if existing is not None and existing.organization_id != org_id:
                raise FeedError(
                    f"feed {spec.name!r} already belongs to another organization; feed names "
                    "are unique across organizations"
                )
            values = {
                "n": spec.name,
                "d": spec.description,
                "o": org_id,
                "s": source_id,
                "t": target_id,
                "r": stored.id,
                "b": json.dumps(spec.business_date.as_json()),
                "c": json.dumps(spec.checks),
                "def": json.dumps(definition),
                "h": digest,
            }
            if existing is None:
                feed_id = conn.execute(
                    sa.text(
                        "INSERT INTO reconciliation_feeds (name, description, organization_id, "
                        "source_data_source_id, target_data_source_id, rule_set_id, "
                        "business_date, checks, definition, definition_sha256) VALUES (:n, :d, "
                        ":o, :s, :t, :r, CAST(:b AS jsonb), CAST(:c AS jsonb), "
                        "CAST(:def AS jsonb), :h) RETURNING id"
                    ),
                    values,
                ).scalar_one()
                _audit(conn, org_id, feed_id, spec.name, "ADDED", definition, stored.id)
                outcome["added"].append(spec.name)
                continue
            if existing.definition_sha256 == digest and existing.is_active:
                outcome["unchanged"].append(spec.name)
                continue
            conn.execute(
                sa.text(
                    "UPDATE reconciliation_feeds SET description = :d, source_data_source_id = :s, "
                    "target_data_source_id = :t, rule_set_id = :r, business_date = "
                    "CAST(:b AS jsonb), checks = CAST(:c AS jsonb), definition = "
                    "CAST(:def AS jsonb), definition_sha256 = :h, is_active = TRUE WHERE name = :n"
                ),
                values,
            )
            _audit(conn, org_id, existing.id, spec.name, "CHANGED", definition, stored.id)
            outcome["changed"].append(spec.name)
    with engine.begin() as conn:
        gone = conn.execute(
            sa.text(
                "UPDATE reconciliation_feeds SET is_active = FALSE WHERE is_active "
                "AND definition->>'file' = :file AND NOT (name = ANY(:names)) "
                "RETURNING id, name, organization_id"
            ),
            {"names": [s.name for s in specs], "file": str(origin.resolve())},
        ).all()
        for feed in gone:
            _audit(conn, feed.organization_id, feed.id, feed.name, "DEACTIVATED", None, None)
        outcome["deactivated"] = sorted(feed.name for feed in gone)
    return outcome


def _audit(
    conn: sa.Connection,
    organization_id: int,
    feed_id: int,
    name: str,
    action: str,
    definition: dict[str, Any] | None,
    rule_set_id: int | None,
) -> None:
    """A feed's change in the audit trail (as the organization's system user)."""
    audit.system_event(
        conn,
        organization_id=organization_id,
        entity="feed",
        entity_id=feed_id,
        entity_key=f"feed:{name}",
        action=action,
        after=None if definition is None else {**definition, "rule_set_id": rule_set_id},
    )
