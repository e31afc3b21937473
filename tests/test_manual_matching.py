"""Matching by hand (issue 17) on a small real `recon run`: `recon match` resolves the two
MISSING exceptions and raises the mismatch the engine would, `recon unmatch` restores them,
a VIEWER is refused, a re-run keeps the MANUAL match and the history, and a suggested match is
accepted or dismissed (a dismissed candidate is never offered again).

The generated case of `test_recon_run.py` plus one planted near miss: a ledger line for bank
transaction 99 (which the ledger lacks) under another reference, 0.50 more and 5 days later,
so the closest unmatched record of bank row 99 is that line. The tests share one organization
and one reconciliation and run in order.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import run_recon
from test_recon_run import _materialize, write_case

from pipelines.work import audit
from pipelines.work.pairs import manual_mismatches
from pipelines.work.suggestions import dismiss, suggest
from pipelines.work.users import acting_user, organization_id
from recon.run import RunRequest, run_reconciliation
from resources.database import engine_for, organization_transaction
from resources.errors import ReconError

BANK_LINE = re.compile(r'^txn(\d+),(\d\d/\d\d/\d{4}),"\$([\d,.]+)",(.*)$')


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    case = write_case(tmp_path_factory.mktemp("manual"), f"manual-{tag}")
    bank = {}
    for line in case.bank.read_text().splitlines()[1:]:
        txn, booked, amount, payee = BANK_LINE.match(line).groups()  # type: ignore[union-attr]
        bank[int(txn)] = (
            datetime.strptime(booked, "%d/%m/%Y").date(),
            float(amount.replace(",", "")),
        )
    booked, amount = bank[99]
    near = f"NEAR99,{booked + timedelta(days=5):%Y-%m-%d},{amount + 0.5:.2f},SOMEONE ELSE,late\n"
    with case.ledger.open("a", encoding="utf-8") as out:
        out.write(near)
    near_row = len(case.ledger_row) + 1
    summary = run_reconciliation(
        database_url, RunRequest(case.bank, case.ledger, case.rules, organization=case.org)
    )
    assert summary["status"] == "COMPLETED", summary
    engine = engine_for(database_url)
    users = {role: f"{role.lower()}-{tag}@example.test" for role in ("EDITOR", "VIEWER")}
    for role, email in users.items():
        code, _, err = run_recon(
            "users", "add", email, "--name", role.title(), "--role", role, "--org", case.org
        )
        assert code == 0, err
    return {
        "case": case,
        "bank": bank,
        "near_row": near_row,
        "org": case.org,
        "org_id": organization_id(engine, case.org),
        "rid": summary["reconciliation_id"],
        "engine": engine,
        "url": database_url,
        "users": users,
    }


def _rows(world: dict[str, Any], sql: str, **params: Any) -> list[Any]:
    with world["engine"].connect() as conn:
        return list(conn.execute(sa.text(sql), {"r": world["rid"], **params}))


def _exceptions(world: dict[str, Any]) -> list[Any]:
    return _rows(
        world,
        "SELECT id, type, status, resolution, resolved_by, fingerprint, source_row_number AS srow, "
        "target_row_number AS trow, diff FROM reconciliation_exceptions "
        "WHERE reconciliation_id = :r ORDER BY id",
    )


def _missing(world: dict[str, Any], txn_bank: int | None, ledger_row: int | None) -> list[Any]:
    bank_row = world["case"].bank_row.get(txn_bank)
    return [
        e
        for e in _exceptions(world)
        if (e.type == "MISSING_IN_TARGET" and e.srow == bank_row)
        or (e.type == "MISSING_IN_SOURCE" and e.trow == ledger_row)
    ]


def _history(world: dict[str, Any], fingerprint: str) -> list[dict[str, Any]]:
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        return audit.history(conn, "exception", f"{world['rid']}:{fingerprint}")


def _match(world: dict[str, Any], s: int, t: int, *extra: str) -> tuple[int, str, str]:
    return run_recon(
        "match", "--reconciliation", str(world["rid"]), "--source-row", str(s),
        "--target-row", str(t), "--note", "same invoice, paid late", "--org", world["org"], *extra,
    )  # fmt: skip


def _exception_count(world: dict[str, Any]) -> int:
    """The reconciliation's `exception_count`, once checked against its exception rows."""
    [(count, rows)] = _rows(
        world,
        "SELECT exception_count, (SELECT count(*) FROM reconciliation_exceptions "
        "WHERE reconciliation_id = :r) FROM reconciliations WHERE id = :r",
    )
    assert count == rows
    return int(count)


def _manual(world: dict[str, Any]) -> list[Any]:
    return _rows(
        world,
        "SELECT id, source_row_number AS srow, target_row_number AS trow "
        "FROM reconciliation_matches WHERE reconciliation_id = :r AND match_kind = 'MANUAL' "
        "ORDER BY id",
    )


def test_the_near_miss_is_missing_on_both_sides(world: dict[str, Any]) -> None:
    kinds = sorted((e.type, e.status) for e in _missing(world, 99, world["near_row"]))
    assert kinds == [("MISSING_IN_SOURCE", "OPEN"), ("MISSING_IN_TARGET", "OPEN")]


def test_a_viewer_may_not_match(world: dict[str, Any]) -> None:
    bank_row, ledger_row = world["case"].bank_row[23], world["case"].ledger_row[17]
    code, _, err = _match(world, bank_row, ledger_row, "--as", world["users"]["VIEWER"])
    assert code == 1 and "needs the EDITOR role" in err and "VIEWER" in err
    assert _manual(world) == []


def test_match_resolves_both_missing_and_raises_the_mismatch(world: dict[str, Any]) -> None:
    case, bank = world["case"], world["bank"]
    bank_row, ledger_row = case.bank_row[23], case.ledger_row[17]
    before = {e.id: e for e in _missing(world, 23, ledger_row)}
    assert len(before) == 2
    counts = "SELECT matched_records, unmatched_source_records FROM reconciliations WHERE id = :r"
    [(matched, unmatched)] = _rows(world, counts)
    exceptions_before = _exception_count(world)
    code, out, err = _match(world, bank_row, ledger_row, "--as", world["users"]["EDITOR"])
    assert code == 0, err
    assert _rows(world, counts) == [(matched + 1, unmatched - 1)]
    [manual] = _manual(world)
    assert (manual.srow, manual.trow) == (bank_row, ledger_row) and f"#{manual.id}" in out
    after = {e.id: e for e in _missing(world, 23, ledger_row)}
    assert set(after) == set(before)
    for e in after.values():
        assert e.status == "RESOLVED" and f"manual match #{manual.id}" in e.resolution
        [event] = _history(world, e.fingerprint)
        assert (event["action"], event["actor"]) == ("MATCH", world["users"]["EDITOR"])
        assert event["before"]["status"] == "OPEN" and event["after"]["status"] == "RESOLVED"
        assert event["after"]["match_id"] == manual.id
    # the right mismatches: the two records' own amounts and dates against the tolerances
    ledger = {
        int(line.split(",")[0][3:]): line.split(",")
        for line in case.ledger.read_text().splitlines()[1:]
        if line.startswith("TXN")
    }
    amount_delta = bank[23][1] - float(ledger[17][2])
    days = (bank[23][0] - date.fromisoformat(ledger[17][1])).days
    raised = {e.type: e for e in _exceptions(world) if (e.srow, e.trow) == (bank_row, ledger_row)}
    expected = {"AMOUNT_MISMATCH"} | ({"DATE_MISMATCH"} if abs(days) > 3 else set())
    assert set(raised) == expected
    assert _exception_count(world) == exceptions_before + len(expected)
    assert raised["AMOUNT_MISMATCH"].diff[0]["delta"] == pytest.approx(amount_delta, abs=0.005)
    for e in raised.values():
        assert e.status == "OPEN"
        [event] = _history(world, e.fingerprint)
        assert event["action"] == "RAISE" and event["before"] is None
    # a row already matched, and a row not in its file, are one line each
    code, _, err = _match(world, bank_row, case.ledger_row[51])
    assert code == 1 and f"source row {bank_row} is already in MANUAL match" in err
    code, _, err = _match(world, 99_999, case.ledger_row[51])
    assert code == 1 and "source row 99999 does not exist" in err
    assert err.strip().count("\n") == 0


def test_unmatch_reopens_and_withdraws(world: dict[str, Any]) -> None:
    [manual] = _manual(world)
    raised = len([e for e in _exceptions(world) if (e.srow, e.trow) == (manual.srow, manual.trow)])
    exceptions_before = _exception_count(world)
    code, _, err = run_recon(
        "unmatch", "--match", str(manual.id), "--note", "wrong pair", "--org", world["org"]
    )
    assert code == 0, err
    assert _manual(world) == []
    assert _exception_count(world) == exceptions_before - raised
    missing = _missing(world, 23, manual.trow)
    assert sorted(e.status for e in missing) == ["OPEN", "OPEN"]
    assert not [e for e in _exceptions(world) if (e.srow, e.trow) == (manual.srow, manual.trow)]
    for e in missing:
        actions = [(h["action"], h["after"]["status"]) for h in _history(world, e.fingerprint)]
        assert actions == [("MATCH", "RESOLVED"), ("UNMATCH", "OPEN")]
    # and matched again, for the re-run
    code, _, err = _match(world, manual.srow, manual.trow, "--as", world["users"]["EDITOR"])
    assert code == 0, err


def test_a_rerun_keeps_the_manual_match_and_unmatch_restores(world: dict[str, Any]) -> None:
    [manual] = _manual(world)
    prints = {e.type: e.fingerprint for e in _missing(world, 23, manual.trow)}
    raised = {
        e.fingerprint for e in _exceptions(world) if (e.srow, e.trow) == (manual.srow, manual.trow)
    }
    # what a re-run's commit would raise again for the MANUAL pair: the same exceptions
    assert set(manual_mismatches(world["engine"], world["rid"])["fingerprint"]) == raised != set()
    assert _materialize(world["url"], world["rid"]).success
    assert [(m.srow, m.trow) for m in _manual(world)] == [(manual.srow, manual.trow)]
    assert _missing(world, 23, manual.trow) == []  # matched rows are not missing after a re-run
    again = {
        e.fingerprint for e in _exceptions(world) if (e.srow, e.trow) == (manual.srow, manual.trow)
    }
    assert again == raised  # the MANUAL pair's mismatches are raised again, same fingerprints
    assert len(_missing(world, 99, world["case"].ledger_row[51])) == 2
    code, _, err = run_recon(
        "unmatch", "--match", str(manual.id), "--note", "after all", "--org", world["org"]
    )
    assert code == 0, err
    restored = _missing(world, 23, manual.trow)
    assert {e.type: e.fingerprint for e in restored} == prints
    assert all(e.status == "OPEN" for e in restored)
    for e in restored:  # the history followed the decision across the re-run
        actions = [h["action"] for h in _history(world, e.fingerprint)]
        assert actions == ["MATCH", "UNMATCH", "MATCH", "UNMATCH"]


def _as(world: dict[str, Any], role: str, call: Any, *args: Any) -> Any:
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        return call(conn, acting_user(conn, world["org_id"], world["users"][role]), *args)


def test_dismiss_then_accept_a_suggested_match(world: dict[str, Any]) -> None:
    bank_row, near_row = world["case"].bank_row[99], world["near_row"]
    [from_bank] = [e for e in _missing(world, 99, None)]
    [from_ledger] = [e for e in _missing(world, None, near_row)]
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        offered = suggest(conn, from_bank.id)
    assert offered is not None and (offered.source_row, offered.target_row) == (bank_row, near_row)
    with pytest.raises(ReconError, match="needs the EDITOR role"):
        _as(world, "VIEWER", dismiss, from_bank.id, "not ours")
    _as(world, "EDITOR", dismiss, from_bank.id, "another customer")
    [event] = _history(world, from_bank.fingerprint)
    assert event["action"] == "DISMISS_SUGGESTION" and event["after"]["candidate_row"] == near_row
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        again = suggest(conn, from_bank.id)
    assert again is None or again.target_row != near_row
    # dismissed for good: a re-run recreates the exception, the refusal stays with its fingerprint
    assert _materialize(world["url"], world["rid"]).success
    [from_bank] = [e for e in _missing(world, 99, None)]
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        again = suggest(conn, from_bank.id)
    assert again is None or again.target_row != near_row
    # the ledger side's own suggestion is accepted: a MANUAL match by the path of `recon match`
    [from_ledger] = [e for e in _missing(world, None, near_row)]
    code, out, err = run_recon(
        "exceptions", "accept", str(from_ledger.id), "--org", world["org"],
        "--as", world["users"]["EDITOR"],
    )  # fmt: skip
    assert code == 0, err
    assert [(m.srow, m.trow) for m in _manual(world)] == [(bank_row, near_row)]
    assert all(e.status == "RESOLVED" for e in _missing(world, 99, near_row))
    raised = {e.type for e in _exceptions(world) if (e.srow, e.trow) == (bank_row, near_row)}
    assert raised == {"AMOUNT_MISMATCH", "DATE_MISMATCH"}  # 0.50 over 0.01, 5 days over 3
    actions = [h["action"] for h in _history(world, from_ledger.fingerprint)]
    assert actions == ["MATCH"]
    code, _, err = run_recon(
        "exceptions", "dismiss", str(from_bank.id), "--note", "late", "--org", world["org"]
    )
    assert code == 1 and "RESOLVED, not OPEN" in err
