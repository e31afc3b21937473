"""The product's own changes are in the audit trail: each reconciliation run, each new rule-set
version and each feed added, changed or deactivated, as the organization's `system` user."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
from test_recon_run import _materialize, write_case

from pipelines.reconcile.feed_store import store_feeds
from pipelines.reconcile.feeds import load_feeds_file
from recon.demo import DEMO_RULES
from recon.run import RunRequest, run_reconciliation
from resources.database import engine_for


def _events(url: str, entity: str, entity_id: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT actor, action, after FROM audit_log WHERE entity = %s AND entity_id = %s "
            "ORDER BY id",
            (entity, entity_id),
        ).fetchall()


def test_runs_and_rule_set_versions_are_audited(database_url: str, tmp_path: Path) -> None:
    case = write_case(tmp_path / "case", "audit-trail-org")
    summary = run_reconciliation(
        database_url,
        RunRequest(source=case.bank, target=case.ledger, rules=case.rules, organization=case.org),
    )
    rid = summary["reconciliation_id"]
    [(actor, action, after)] = _events(database_url, "reconciliation", rid)
    assert (actor, action) == ("system", "RUN")
    assert after["exception_count"] == summary["exception_count"]
    assert after["dagster_run_id"] == summary["dagster_run_id"]
    [(actor, action, after)] = _events(database_url, "rule_set", summary["rule_set_id"])
    assert (actor, action, after["version"]) == ("system", "NEW_VERSION", 1)
    # a re-run is one more event; the same rules again are no new version
    assert _materialize(database_url, rid).success
    assert [e[1] for e in _events(database_url, "reconciliation", rid)] == ["RUN", "RUN"]
    assert len(_events(database_url, "rule_set", summary["rule_set_id"])) == 1


def test_feed_changes_are_audited(database_url: str, tmp_path: Path) -> None:
    shutil.copyfile(DEMO_RULES, tmp_path / "rules.yaml")
    path = tmp_path / "feeds.yaml"

    def write(description: str, feeds: tuple[str, ...]) -> None:
        path.write_text(
            "feeds:\n"
            + "".join(
                f"  - name: {name}\n    organization: Audit Feeds\n    source: bank\n"
                f"    target: ledger\n    rules: rules.yaml\n    description: {description}\n"
                for name in feeds
            ),
            encoding="utf-8",
        )

    engine = engine_for(database_url)
    write("first", ("audited-a", "audited-b"))
    assert store_feeds(engine, load_feeds_file(path), path)["added"] == ["audited-a", "audited-b"]
    write("second", ("audited-a",))
    outcome = store_feeds(engine, load_feeds_file(path), path)
    assert (outcome["changed"], outcome["deactivated"]) == (["audited-a"], ["audited-b"])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT entity_key, action, after->>'description' FROM audit_log "
            "WHERE entity = 'feed' AND entity_key LIKE 'feed:audited-%' ORDER BY id"
        ).fetchall()
    assert rows == [
        ("feed:audited-a", "ADDED", "first"),
        ("feed:audited-b", "ADDED", "first"),
        ("feed:audited-a", "CHANGED", "second"),
        ("feed:audited-b", "DEACTIVATED", None),
    ]
