"""Working the exceptions (issue 17) on a small real `recon run`: users and roles, assign,
resolve, ignore, reopen, one by one and `--all-matching`, each with its audit events (state
before and after), a VIEWER refused, a re-run keeping every decision and its history, and the
export opening in polars and openpyxl.

The module's tests share one organization and one reconciliation of the generated case of
`test_recon_run.py` (1 AMOUNT_MISMATCH, 1 DATE_MISMATCH, 2 MISSING_IN_SOURCE, 2
MISSING_IN_TARGET) and run in order: the re-run test checks what the earlier ones decided.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest
import sqlalchemy as sa
from helpers import run_recon
from test_recon_run import _materialize, write_case

from pipelines.work.exceptions_work import (
    Decision,
    Filters,
    decide,
    exception_detail,
    list_exceptions,
)
from pipelines.work.users import acting_user, organization_id
from recon.run import RunRequest, run_reconciliation
from resources.database import engine_for, organization_transaction
from resources.errors import ReconError


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    case = write_case(tmp_path_factory.mktemp("work"), f"work-{tag}")
    summary = run_reconciliation(
        database_url, RunRequest(case.bank, case.ledger, case.rules, organization=case.org)
    )
    assert summary["status"] == "COMPLETED", summary
    engine = engine_for(database_url)
    users = {role: f"{role.lower()}-{tag}@example.test" for role in ("ADMIN", "EDITOR", "VIEWER")}
    for role, email in users.items():
        code, out, err = run_recon(
            "users", "add", email, "--name", role.title(), "--role", role, "--org", case.org
        )
        assert code == 0, err
    return {
        "org": case.org,
        "org_id": organization_id(engine, case.org),
        "rid": summary["reconciliation_id"],
        "engine": engine,
        "url": database_url,
        "users": users,
        "tmp": tmp_path_factory.mktemp("export"),
    }


def _exceptions(world: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The reconciliation's exceptions of one type, listed as a VIEWER (in process)."""
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        acting_user(conn, world["org_id"], world["users"]["VIEWER"])
        return list_exceptions(conn, Filters(reconciliation_id=world["rid"], type=kind))


def _events(world: dict[str, Any], exception_id: int) -> list[dict[str, Any]]:
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        return exception_detail(conn, exception_id)["history"]


def _act(world: dict[str, Any], role: str, decision: Decision, **selection: Any) -> Any:
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        actor = acting_user(conn, world["org_id"], world["users"].get(role))
        return decide(conn, actor, decision, **selection)


def test_users_are_listed_and_an_unknown_user_is_one_line(world: dict[str, Any]) -> None:
    code, out, _ = run_recon("users", "list", "--org", world["org"])
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == sorted(
        [email, role] for role, email in world["users"].items()
    )
    code, _, err = run_recon(
        "exceptions", "list", "--org", world["org"], "--as", "nobody@example.test"
    )
    assert code == 1 and err.strip().count("\n") == 0 and "no user 'nobody@example.test'" in err
    # a user of one organization is unknown in another
    code, _, err = run_recon("users", "list", "--as", world["users"]["ADMIN"])
    assert code == 1 and "no user" in err


def test_list_json_has_age_and_assignee(world: dict[str, Any]) -> None:
    code, out, err = run_recon(
        "exceptions", "list", "--org", world["org"], "--reconciliation", str(world["rid"]),
        "--type", "AMOUNT_MISMATCH", "--json", "--as", world["users"]["VIEWER"],
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    assert {"id", "type", "severity", "status", "age_days", "assignee"} <= set(rows[0])
    assert (rows[0]["status"], rows[0]["age_days"], rows[0]["assignee"]) == ("OPEN", 0, None)


def test_a_viewer_is_refused_naming_the_role(world: dict[str, Any]) -> None:
    [one] = _exceptions(world, "AMOUNT_MISMATCH")
    code, _, err = run_recon(
        "exceptions", "resolve", str(one["id"]), "--note", "x", "--org", world["org"],
        env={"RECON_USER": world["users"]["VIEWER"]},
    )  # fmt: skip
    assert code == 1 and "needs the EDITOR role" in err and "VIEWER" in err
    code, _, err = run_recon(
        "users", "add", "x@example.test", "--name", "X", "--org", world["org"],
        "--as", world["users"]["EDITOR"],
    )  # fmt: skip
    assert code == 1 and "needs the ADMIN role" in err
    assert _events(world, one["id"]) == []


def test_resolve_with_reason_is_audited(world: dict[str, Any]) -> None:
    [one] = _exceptions(world, "AMOUNT_MISMATCH")
    with pytest.raises(ReconError, match="unknown reason code"):
        _act(world, "EDITOR", Decision("RESOLVE", note="fee", reason_code="NOPE"), ids=[one["id"]])
    outcome = _act(
        world, "EDITOR", Decision("RESOLVE", note="bank fee", reason_code="bank_fee"),
        ids=[one["id"]],
    )  # fmt: skip
    assert (outcome.chosen, outcome.changed) == (1, 1)
    again = _act(world, "EDITOR", Decision("RESOLVE", note="again"), ids=[one["id"]])
    assert (again.chosen, again.changed) == (1, 0)  # already resolved: nothing, no event
    [event] = _events(world, one["id"])
    editor = world["users"]["EDITOR"]
    assert (event["actor"], event["action"], event["reason"]) == (editor, "RESOLVE", "bank fee")
    assert event["before"]["status"] == "OPEN" and event["before"]["reason_code"] is None
    assert event["after"] == {
        "status": "RESOLVED",
        "resolution": "bank fee",
        "resolved_by": editor,
        "assignee": None,
        "reason_code": "BANK_FEE",
    }
    [row] = _exceptions(world, "AMOUNT_MISMATCH")
    assert row["status"] == "RESOLVED"


def test_ignore_then_reopen_is_audited(world: dict[str, Any]) -> None:
    [one] = _exceptions(world, "DATE_MISMATCH")
    with pytest.raises(ReconError, match="needs a --note"):
        _act(world, "EDITOR", Decision("IGNORE"), ids=[one["id"]])
    _act(world, "EDITOR", Decision("IGNORE", note="timing", reason_code="TIMING"), ids=[one["id"]])
    _act(world, "ADMIN", Decision("REOPEN", note="not timing after all"), ids=[one["id"]])
    ignored, reopened = _events(world, one["id"])
    assert (ignored["action"], ignored["before"]["status"], ignored["after"]["status"]) == (
        "IGNORE",
        "OPEN",
        "IGNORED",
    )
    assert ignored["after"]["reason_code"] == "TIMING"
    assert (reopened["actor"], reopened["action"]) == (world["users"]["ADMIN"], "REOPEN")
    assert (
        reopened["before"]["status"] == "IGNORED" and reopened["before"]["resolution"] == "timing"
    )
    assert reopened["after"] == {
        "status": "OPEN",
        "resolution": None,
        "resolved_by": None,
        "assignee": None,
        "reason_code": None,
    }
    [row] = _exceptions(world, "DATE_MISMATCH")
    assert row["status"] == "OPEN"


def test_assign_is_audited_and_filterable(world: dict[str, Any]) -> None:
    ids = [e["id"] for e in _exceptions(world, "MISSING_IN_SOURCE")]
    editor = world["users"]["EDITOR"]
    with pytest.raises(ReconError, match="needs the EDITOR role"):
        _act(world, None, Decision("ASSIGN", assignee=world["users"]["VIEWER"]), ids=ids)
    outcome = _act(world, None, Decision("ASSIGN", assignee=editor), ids=ids)  # as system
    assert (outcome.chosen, outcome.changed) == (2, 2)
    for exception_id in ids:
        [event] = _events(world, exception_id)
        assert (event["actor"], event["action"]) == ("system", "ASSIGN")
        assert (event["before"]["assignee"], event["after"]["assignee"]) == (None, editor)
        assert event["after"]["status"] == "OPEN"
    code, out, _ = run_recon(
        "exceptions", "list", "--org", world["org"], "--assignee", editor, "--json"
    )
    assert code == 0 and sorted(r["id"] for r in json.loads(out)) == sorted(ids)
    assert all(r["assignee"] == editor for r in json.loads(out))


def test_unassign_is_audited(world: dict[str, Any]) -> None:
    ids = sorted(e["id"] for e in _exceptions(world, "MISSING_IN_SOURCE"))
    editor, org = world["users"]["EDITOR"], world["org"]
    code, _, err = run_recon(
        "exceptions", "unassign", str(ids[0]), "--org", org, "--as", world["users"]["VIEWER"]
    )
    assert code == 1 and "unassigning exceptions needs the EDITOR role" in err
    code, out, err = run_recon(
        "exceptions", "assign", str(ids[0]), "--to", "none", "--org", org, "--as", editor
    )
    assert code == 0 and out.strip() == "unassigned 1 exceptions (1 matched, 0 already so)", err
    code, out, err = run_recon(
        "exceptions", "unassign", "--all-matching", "--type", "MISSING_IN_SOURCE",
        "--reconciliation", str(world["rid"]), "--note", "back to the pool", "--org", org,
    )  # fmt: skip
    assert code == 0 and out.strip() == "unassigned 1 exceptions (2 matched, 1 already so)", err
    assert [e["assignee"] for e in _exceptions(world, "MISSING_IN_SOURCE")] == [None, None]
    for exception_id, actor, reason in (
        (ids[0], editor, None),
        (ids[1], "system", "back to the pool"),
    ):
        *_, event = _events(world, exception_id)
        assert (event["actor"], event["action"], event["reason"]) == (actor, "UNASSIGN", reason)
        assert (event["before"]["assignee"], event["after"]["assignee"]) == (editor, None)
        assert event["after"]["status"] == "OPEN"
    # assigned again, as the later tests expect
    assert _act(world, None, Decision("ASSIGN", assignee=editor), ids=ids).changed == 2


def test_all_matching_decides_by_filter_and_prints_the_count(world: dict[str, Any]) -> None:
    code, _, err = run_recon(
        "exceptions", "resolve", "--all-matching", "--note", "x", "--org", world["org"]
    )
    assert code == 1 and "at least one filter" in err
    code, out, err = run_recon(
        "exceptions", "resolve", "--all-matching", "--type", "MISSING_IN_TARGET",
        "--reconciliation", str(world["rid"]), "--note", "booked next month",
        "--reason", "TIMING", "--org", world["org"], "--as", world["users"]["EDITOR"],
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "resolved 2 exceptions (2 matched, 0 already so)"
    for row in _exceptions(world, "MISSING_IN_TARGET"):
        assert row["status"] == "RESOLVED"
        [event] = _events(world, row["id"])
        assert (event["before"]["status"], event["after"]["status"]) == ("OPEN", "RESOLVED")


def test_show_has_both_records_diff_and_history(world: dict[str, Any]) -> None:
    [one] = _exceptions(world, "AMOUNT_MISMATCH")
    code, out, err = run_recon("exceptions", "show", str(one["id"]), "--org", world["org"])
    assert code == 0, err
    assert "source row" in out and "target row" in out and "diff value" in out
    assert "RESOLVE: status OPEN -> RESOLVED" in out and "reason_code None -> BANK_FEE" in out


def test_another_organizations_exception_is_not_found(world: dict[str, Any]) -> None:
    [one] = _exceptions(world, "AMOUNT_MISMATCH")
    with world["engine"].begin() as conn:
        other = conn.execute(
            sa.text("INSERT INTO organizations (name) VALUES (:n) RETURNING id"),
            {"n": f"other-{uuid.uuid4().hex[:8]}"},
        ).scalar_one()
    with organization_transaction(world["engine"], other) as conn:
        actor = acting_user(conn, other, None)
        with pytest.raises(ReconError, match="does not exist in this organization"):
            decide(conn, actor, Decision("REOPEN"), ids=[one["id"]])
        assert (
            decide(conn, actor, Decision("REOPEN"), filters=Filters(status="RESOLVED")).chosen == 0
        )


def test_the_audit_log_is_append_only(world: dict[str, Any]) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        with organization_transaction(world["engine"], world["org_id"]) as conn:
            conn.execute(sa.text("UPDATE audit_log SET reason = 'rewritten'"))
    role = f"auditor_{uuid.uuid4().hex[:8]}"
    with pytest.raises(sa.exc.ProgrammingError, match="append-only"):
        with world["engine"].begin() as conn:  # a role granted everything: the trigger refuses
            conn.execute(sa.text(f"CREATE ROLE {role} NOLOGIN"))
            conn.execute(sa.text(f"GRANT ALL ON audit_log TO {role}"))
            conn.execute(sa.text(f"SET LOCAL ROLE {role}"))
            conn.execute(sa.text("DELETE FROM audit_log"))


def test_a_rerun_keeps_decisions_assignees_and_history(world: dict[str, Any]) -> None:
    before = {
        kind: _exceptions(world, kind)
        for kind in ("AMOUNT_MISMATCH", "DATE_MISMATCH", "MISSING_IN_SOURCE", "MISSING_IN_TARGET")
    }
    history = {kind: [_events(world, e["id"]) for e in rows] for kind, rows in before.items()}
    assert _materialize(world["url"], world["rid"]).success
    for kind, rows in before.items():
        after = _exceptions(world, kind)
        assert {e["id"] for e in after}.isdisjoint(e["id"] for e in rows)  # recreated rows
        keep = ("status", "assignee")
        assert sorted(tuple(e[k] for k in keep) for e in after) == sorted(
            tuple(e[k] for k in keep) for e in rows
        ), kind
        kept = sorted([_events(world, e["id"]) for e in after], key=len)
        assert [[h["id"] for h in events] for events in kept] == sorted(
            [[h["id"] for h in events] for events in history[kind]], key=len
        ), kind
    [resolved] = _exceptions(world, "AMOUNT_MISMATCH")
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        detail = exception_detail(conn, resolved["id"])
    assert (detail["resolution"], detail["reason_code"]) == ("bank fee", "BANK_FEE")


def test_export_opens_in_polars_and_openpyxl(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"]
    for fmt in ("csv", "xlsx"):
        code, out, err = run_recon(
            "exceptions", "export", "--format", fmt, "--output", str(tmp / f"e.{fmt}"),
            "--org", world["org"], "--reconciliation", str(world["rid"]),
        )  # fmt: skip
        assert code == 0, err
        assert out.strip() == f"6 exceptions written to {tmp / f'e.{fmt}'}"
    frame = pl.read_csv(tmp / "e.csv")
    assert frame.height == 6
    assert frame.filter(pl.col("status") == "RESOLVED").height == 3
    assert set(frame.get_column("assignee").drop_nulls()) == {world["users"]["EDITOR"]}
    sheet = pl.read_excel(tmp / "e.xlsx")
    assert sheet.height == 6 and sheet.columns == frame.columns
    book = openpyxl.load_workbook(tmp / "e.xlsx", read_only=True)
    rows = list(book["exceptions"].iter_rows(values_only=True))
    assert rows[0][:6] == ("id", "reconciliation_id", "type", "severity", "status", "age_days")
    assert sorted(r[0] for r in rows[1:]) == sorted(frame.get_column("id").to_list())
