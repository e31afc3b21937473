"""Suggested matches kept from linkage (issue 17) on a small real `recon run`.

The generated case of `test_recon_run.py` plus one planted near miss: a ledger line for bank
transaction 23 (which the ledger lacks) under another reference, the same payee and date but
40 % more money, so no pass pairs it (the near pass allows 25 %) while Splink scores it below
the threshold. Its MISSING exceptions on both sides keep each other as suggested match (rows,
score, why); a dismissal survives a re-run, an accept is a MANUAL match. A candidate that a
later pass paired with another record is never kept (`best_candidates`, on frames).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from helpers import run_recon
from test_recon_run import _materialize, write_case

from pipelines.reconcile.suggested_match import best_candidates
from pipelines.work.suggestions import dismiss, suggest
from pipelines.work.users import acting_user, organization_id
from recon.run import RunRequest, run_reconciliation
from resources import migrations
from resources.database import engine_for, organization_transaction

BANK_LINE = re.compile(r'^txn(\d+),(\d\d/\d\d/\d{4}),"\$([\d,.]+)",(.*)$')
THRESHOLD = 0.9  # the case's match_threshold


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    case = write_case(tmp_path_factory.mktemp("kept"), f"kept-{tag}")
    bank = {}
    for line in case.bank.read_text().splitlines()[1:]:
        txn, booked, amount, payee = BANK_LINE.match(line).groups()  # type: ignore[union-attr]
        bank[int(txn)] = (
            datetime.strptime(booked, "%d/%m/%Y").date(),
            float(amount.replace(",", "")),
            payee.strip(),
        )
    booked, amount, payee = bank[23]
    planted = f"LATE23,{booked:%Y-%m-%d},{amount * 1.4:.2f},{payee},paid with interest\n"
    with case.ledger.open("a", encoding="utf-8") as out:
        out.write(planted)
    summary = run_reconciliation(
        database_url, RunRequest(case.bank, case.ledger, case.rules, organization=case.org)
    )
    assert summary["status"] == "COMPLETED", str(summary)
    engine = engine_for(database_url)
    editor = f"editor-{tag}@example.test"
    code, _, err = run_recon(
        "users", "add", editor, "--name", "Editor", "--role", "EDITOR", "--org", case.org
    )
    assert code == 0, err
    return {
        "case": case,
        "bank_row": case.bank_row[23],
        "planted_row": len(case.ledger_row) + 1,
        "org": case.org,
        "org_id": organization_id(engine, case.org),
        "rid": summary["reconciliation_id"],
        "engine": engine,
        "url": database_url,
        "editor": editor,
    }


def _missing(world: dict[str, Any]) -> dict[str, Any]:
    """The two MISSING exceptions of the near miss, by type."""
    with world["engine"].connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, type, status, suggested_match FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :r AND ((type = 'MISSING_IN_TARGET' AND "
                "source_row_number = :s) OR (type = 'MISSING_IN_SOURCE' AND "
                "target_row_number = :t))"
            ),
            {"r": world["rid"], "s": world["bank_row"], "t": world["planted_row"]},
        ).all()
    return {r.type: r for r in rows}


def _suggest(world: dict[str, Any], exception_id: int) -> Any:
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        return suggest(conn, exception_id)


def test_both_missing_exceptions_keep_the_candidate(world: dict[str, Any]) -> None:
    found = _missing(world)
    assert set(found) == {"MISSING_IN_TARGET", "MISSING_IN_SOURCE"}
    rows = (world["bank_row"], world["planted_row"])
    for exc in found.values():
        kept = exc.suggested_match
        assert kept is not None, exc.type
        assert (kept["source_row"], kept["target_row"]) == rows
        assert 0.0 < kept["score"] < THRESHOLD and kept["threshold"] == THRESHOLD
        why = {item["field"]: item for item in kept["why"]}
        assert set(why) == {"entry_ref", "value", "posting_date", "payee"}
        assert why["value"]["delta"] == pytest.approx(
            why["value"]["source_value"] - why["value"]["target_value"]
        )
        assert why["value"]["delta"] < 0 and why["posting_date"]["delta"] == 0
        assert why["entry_ref"]["target_value"].upper() == "LATE23"  # as compared: normalized
    # the same score on both sides; suggest offers the kept candidate, with its score
    scores = {e.suggested_match["score"] for e in found.values()}
    assert len(scores) == 1
    offered = _suggest(world, found["MISSING_IN_TARGET"].id)
    assert (offered.source_row, offered.target_row) == rows
    assert offered.score == pytest.approx(scores.pop())
    assert "Splink probability" in offered.why
    code, out, err = run_recon(
        "exceptions", "show", str(found["MISSING_IN_SOURCE"].id), "--org", world["org"]
    )
    assert code == 0, err
    assert f"suggested match (kept by the run): source row {rows[0]} with target row" in out
    assert "value: source" in out


def test_records_with_a_match_keep_no_candidate(world: dict[str, Any]) -> None:
    with world["engine"].connect() as conn:
        kinds = conn.execute(
            sa.text(
                "SELECT DISTINCT type FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :r AND suggested_match IS NOT NULL"
            ),
            {"r": world["rid"]},
        ).scalars()
        assert set(kinds) <= {"MISSING_IN_TARGET", "MISSING_IN_SOURCE"}
        # no kept candidate is a record that is matched
        taken = conn.execute(
            sa.text(
                "SELECT count(*) FROM reconciliation_exceptions e JOIN reconciliation_matches m "
                "ON m.reconciliation_id = e.reconciliation_id AND ("
                "(e.type = 'MISSING_IN_TARGET' AND "
                "m.target_row_number = (e.suggested_match->>'target_row')::int) OR "
                "(e.type = 'MISSING_IN_SOURCE' AND "
                "m.source_row_number = (e.suggested_match->>'source_row')::int)) "
                "WHERE e.reconciliation_id = :r"
            ),
            {"r": world["rid"]},
        ).scalar_one()
    assert taken == 0


def test_dismissed_stays_dismissed_across_a_rerun_then_accept(world: dict[str, Any]) -> None:
    found = _missing(world)
    from_bank = found["MISSING_IN_TARGET"]
    with organization_transaction(world["engine"], world["org_id"]) as conn:
        editor = acting_user(conn, world["org_id"], world["editor"])
        refused = dismiss(conn, editor, from_bank.id, "another customer's payment")
    assert refused.target_row == world["planted_row"] and refused.score is not None
    again = _suggest(world, from_bank.id)
    assert again is None or again.target_row != world["planted_row"]
    # the re-run writes the same candidate again; the refusal, kept by fingerprint, still holds
    assert _materialize(world["url"], world["rid"]).success
    found = _missing(world)
    from_bank = found["MISSING_IN_TARGET"]
    assert from_bank.suggested_match["target_row"] == world["planted_row"]
    again = _suggest(world, from_bank.id)
    assert again is None or again.target_row != world["planted_row"]
    # the ledger side's kept candidate is accepted: a MANUAL match settling both exceptions
    from_ledger = found["MISSING_IN_SOURCE"]
    code, out, err = run_recon(
        "exceptions", "accept", str(from_ledger.id), "--org", world["org"],
        "--as", world["editor"],
    )  # fmt: skip
    assert code == 0, err
    assert f"source row {world['bank_row']} with target row {world['planted_row']}" in out
    with world["engine"].connect() as conn:
        manual = conn.execute(
            sa.text(
                "SELECT source_row_number, target_row_number, match_kind FROM "
                "reconciliation_matches WHERE reconciliation_id = :r AND match_kind = 'MANUAL'"
            ),
            {"r": world["rid"]},
        ).all()
    assert [tuple(m) for m in manual] == [(world["bank_row"], world["planted_row"], "MANUAL")]
    assert {e.status for e in _missing(world).values()} == {"RESOLVED"}


def test_a_candidate_paired_otherwise_is_not_suggested() -> None:
    scored = pl.DataFrame(
        {
            "source_row": [1, 1, 2, 3, 4],
            "target_row": [10, 11, 10, 12, 13],
            "score": [0.7, 0.4, 0.95, 0.6, 0.6],
            "kind": ["PROBABILISTIC"] * 5,
        }
    )
    # target 10 was paired with source 2; target 12 with source 9 by a later (near) pass
    links = pl.DataFrame(
        {"source_row": [2, 9], "target_row": [10, 12], "score": [0.95, 0.5], "kind": ["X"] * 2}
    )
    best = best_candidates(scored, links, "source").sort("source_row")
    assert best.get_column("source_row").to_list() == [1, 3, 4]
    # the confidence keeps the best probability any candidate reached
    assert best.get_column("best_probability").to_list() == [0.7, 0.6, 0.6]
    # source 1's best candidate (10) is taken: the next one is kept; source 3 has none left
    assert best.get_column("suggested_row").to_list() == [11, None, 13]
    assert best.get_column("suggested_score").to_list() == [0.4, None, 0.6]
    by_target = best_candidates(scored, links, "target").sort("target_row")
    assert by_target.get_column("target_row").to_list() == [11, 13]
    assert by_target.get_column("suggested_row").to_list() == [1, 4]


def test_ties_go_to_the_lowest_row() -> None:
    scored = pl.DataFrame(
        {"source_row": [5, 5, 5], "target_row": [30, 20, 40], "score": [0.5, 0.5, 0.3]}
    )
    links = pl.DataFrame(schema={"source_row": pl.Int64, "target_row": pl.Int64})
    [row] = best_candidates(scored, links, "source").rows(named=True)
    assert (row["suggested_row"], row["suggested_score"]) == (20, 0.5)


def _has_column(url: str) -> bool:
    engine = engine_for(url)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = "
                "'reconciliation_exceptions' AND column_name = 'suggested_match'"
            )
        ).scalar_one()
    engine.dispose()
    return bool(found)


def test_migration_0013_rolls_back_and_forth(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrations.migrate(url)
    assert _has_column(url)
    rolled: list[str] = []
    while "0013_suggested_matches" not in rolled:  # the later migrations first, newest first
        rolled += migrations.rollback(url, steps=1)
    assert rolled[-1] == "0013_suggested_matches" and rolled == sorted(rolled, reverse=True)
    assert not _has_column(url)
    assert migrations.migrate(url) == sorted(rolled)
    assert _has_column(url) and migrations.verify(url) == []
