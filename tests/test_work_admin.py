"""ADMIN manages rule sets and feeds (issue 17): acting as a user (`--as`), storing a new
rule-set version (`recon run --rules`) or loading feeds (`recon feeds load`) needs ADMIN, with
a one-line refusal naming the role; reusing a stored rule-set version does not (an EDITOR may
run a reconciliation with rules already stored); the system user (no `--as`) may do both; the
audit trail names the user who stored the version or loaded the feeds.

One organization (a real `recon run` as the system user stores the first version), its ADMIN
and EDITOR, and a user of another organization.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import run_recon
from test_recon_run import write_case

from recon.demo import DEMO_RULES
from recon.run import RunRequest, run_reconciliation
from resources.database import engine_for
from resources.errors import ReconError


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    case = write_case(tmp_path_factory.mktemp("admin"), f"admin-{tag}")
    summary = run_reconciliation(
        database_url, RunRequest(case.bank, case.ledger, case.rules, organization=case.org)
    )
    assert summary["status"] == "COMPLETED", summary
    users = {role: f"{role.lower()}-{tag}@example.test" for role in ("ADMIN", "EDITOR")}
    for role, email in users.items():
        code, _, err = run_recon(
            "users", "add", email, "--name", role.title(), "--role", role, "--org", case.org
        )
        assert code == 0, err
    other = f"other-{tag}@example.test"
    code, _, err = run_recon("users", "add", other, "--name", "Other", "--role", "ADMIN")
    assert code == 0, err
    changed = case.rules.with_name("rules-v2.yaml")
    changed.write_text(
        case.rules.read_text().replace("match_threshold: 0.9", "match_threshold: 0.85")
    )
    return {
        "case": case,
        "changed": changed,
        "rule_set": summary["rule_set_id"],
        "users": users,
        "other": other,
        "url": database_url,
        "engine": engine_for(database_url),
        "tmp": tmp_path_factory.mktemp("feeds"),
    }


def _versions(world: dict[str, Any]) -> list[tuple[int, bool]]:
    with world["engine"].connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.version, r.active FROM rule_sets r JOIN organizations o "
                "ON o.id = r.organization_id WHERE o.name = :o ORDER BY r.version"
            ),
            {"o": world["case"].org},
        )
        return [tuple(r) for r in rows]


def _events(world: dict[str, Any], entity: str) -> list[tuple[str, str, Any]]:
    with world["engine"].connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT a.actor, a.action, a.after FROM audit_log a JOIN organizations o "
                "ON o.id = a.organization_id WHERE o.name = :o AND a.entity = :e ORDER BY a.id"
            ),
            {"o": world["case"].org, "e": entity},
        )
        return [tuple(r) for r in rows]


def _run_as(world: dict[str, Any], rules: Path, email: str) -> dict[str, Any]:
    case = world["case"]
    request = RunRequest(case.bank, case.ledger, rules, organization=case.org, as_user=email)
    return run_reconciliation(world["url"], request)


def test_an_editor_may_not_store_a_new_rule_set_version(world: dict[str, Any]) -> None:
    case, editor = world["case"], world["users"]["EDITOR"]
    code, out, err = run_recon(
        "run", "--source", str(case.bank), "--target", str(case.ledger), "--rules",
        str(world["changed"]), "--org", case.org, "--as", editor, "--no-embed",
    )  # fmt: skip
    assert code == 1 and out == ""
    assert err.strip() == (
        f"recon: error: {editor} is EDITOR: storing a new version of rule set "
        "'e2e-bank-vs-ledger' needs the ADMIN role"
    )
    # RECON_USER is the same as --as; refused before anything is written
    code, _, err = run_recon(
        "run", "--source", str(case.bank), "--target", str(case.ledger), "--rules",
        str(world["changed"]), "--org", case.org, "--no-embed", env={"RECON_USER": editor},
    )  # fmt: skip
    assert code == 1 and "needs the ADMIN role" in err
    assert _versions(world) == [(1, True)]


def test_an_editor_may_run_with_a_stored_rule_set(world: dict[str, Any]) -> None:
    summary = _run_as(world, world["case"].rules, world["users"]["EDITOR"])
    assert summary["status"] == "COMPLETED" and summary["rule_set_id"] == world["rule_set"]
    assert _versions(world) == [(1, True)]
    assert [(a, act) for a, act, _ in _events(world, "rule_set")] == [("system", "NEW_VERSION")]


def test_a_user_of_another_organization_is_unknown(world: dict[str, Any]) -> None:
    with pytest.raises(ReconError, match="no user"):
        _run_as(world, world["changed"], world["other"])
    assert _versions(world) == [(1, True)]


def test_an_admin_stores_a_new_version_audited_as_themself(world: dict[str, Any]) -> None:
    admin = world["users"]["ADMIN"]
    summary = _run_as(world, world["changed"], admin)
    assert summary["status"] == "COMPLETED"
    assert _versions(world) == [(1, False), (2, True)]
    events = _events(world, "rule_set")
    assert [(a, act) for a, act, _ in events] == [
        ("system", "NEW_VERSION"),
        (admin, "NEW_VERSION"),
    ]
    assert events[-1][2]["version"] == 2


def _feeds_file(world: dict[str, Any], description: str) -> Path:
    folder = world["tmp"]
    shutil.copyfile(DEMO_RULES, folder / "rules.yaml")
    path = folder / "feeds.yaml"
    name = f"admin-feed-{world['case'].org.split('-')[-1]}"
    path.write_text(
        f"feeds:\n  - name: {name}\n    organization: {world['case'].org}\n    source: bank\n"
        f"    target: ledger\n    rules: rules.yaml\n    description: {description}\n",
        encoding="utf-8",
    )
    return path


def test_loading_feeds_needs_admin(world: dict[str, Any], recon_home: Path) -> None:
    path = _feeds_file(world, "first")
    editor, admin = world["users"]["EDITOR"], world["users"]["ADMIN"]
    code, _, err = run_recon("feeds", "load", str(path), "--as", editor)
    assert code == 1
    assert err.strip() == f"recon: error: {editor} is EDITOR: loading feeds needs the ADMIN role"
    code, _, err = run_recon("feeds", "load", str(path), "--as", world["other"])
    assert code == 1 and "no user" in err
    assert _events(world, "feed") == []
    code, out, err = run_recon("feeds", "load", str(path), "--as", admin)
    assert code == 0 and "added:" in out, err
    # the system user (no --as) may too
    code, out, err = run_recon("feeds", "load", str(_feeds_file(world, "second")))
    assert code == 0 and "changed:" in out, err
    events = _events(world, "feed")
    assert [(a, act, after["description"]) for a, act, after in events] == [
        (admin, "ADDED", "first"),
        ("system", "CHANGED", "second"),
    ]
    # the demo rules stored for the feed are a new version in the trail, by the ADMIN
    assert (admin, "NEW_VERSION") in [(a, act) for a, act, _ in _events(world, "rule_set")]


def test_declaring_a_data_source_or_its_secret_needs_admin(world: dict[str, Any]) -> None:
    """A data source may point at any file or host: `sources add`, `sources remove` and
    `secrets set` acting as an EDITOR are refused naming the role, as another organization's
    user is unknown; the ADMIN's change is audited as theirs."""
    org, users = world["case"].org, world["users"]
    for args in (
        ("sources", "add", "gl", "--type", "FILE"),
        ("sources", "remove", "gl"),
        ("secrets", "set", "token", "--data-source", "gl"),
    ):
        code, _, err = run_recon(*args, "--org", org, "--as", users["EDITOR"], input="t0k3n\n")
        assert code != 0 and "needs the ADMIN role" in err, (args, err)
        code, _, err = run_recon(*args, "--org", org, "--as", world["other"], input="t0k3n\n")
        assert code != 0 and "no user" in err, (args, err)
    assert not [e for e in _events(world, "data_source") if "gl" in str(e)]
    code, out, err = run_recon(
        "sources", "add", "gl", "--type", "FILE", "--org", org, "--as", users["ADMIN"]
    )
    assert code == 0 and "added" in out, err
    code, _, err = run_recon("sources", "remove", "gl", "--org", org, "--as", users["ADMIN"])
    assert code == 0, err
    actions = [(actor, action) for actor, action, _ in _events(world, "data_source")]
    assert (users["ADMIN"], "DEACTIVATED") in actions, actions
    assert any(a == users["ADMIN"] and act != "DEACTIVATED" for a, act in actions), actions
