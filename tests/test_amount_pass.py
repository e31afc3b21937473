"""Linkage's amount pass (`pipelines.reconcile.linkage.near.amount_pass`): a leftover with no
reference or name to go on pairs on its amount and date only where that pair is each side's
only candidate within both tolerances, and never against an identifier or name that disagrees."""

from __future__ import annotations

from datetime import date

import polars as pl

from pipelines.reconcile.linkage.near import amount_pass
from pipelines.reconcile.linkage.passes import _duckdb
from pipelines.reconcile.mapping import ROW
from pipelines.reconcile.rules import MatchingRule

RULES = [
    MatchingRule("reference", "EXACT", ("ref",)),
    MatchingRule("name", "FUZZY", ("name",), threshold=0.85),
    MatchingRule("amount", "RANGE", ("amount",), tolerance=0.01),
    MatchingRule("date", "DATE_RANGE", ("day",), tolerance=3),
]
COL = {"ref": "ref", "name": "name", "amount": "amount", "day": "day"}


def _side(rows: list[tuple[str | None, str | None, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ROW: list(range(1, len(rows) + 1)),
            "ref": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
            "day": [date(2026, 5, r[3]) for r in rows],
        }
    )


def _pairs(source: pl.DataFrame, target: pl.DataFrame, budget: int = 10_000) -> list[tuple]:
    con = _duckdb()
    try:
        con.register("s", source.to_arrow())
        con.register("t", target.to_arrow())
        pairs, _ = amount_pass(con, RULES, COL, budget)
    finally:
        con.close()
    return sorted(pairs.select("source_row", "target_row", "kind").rows())


def test_a_blank_reference_pairs_on_its_unique_amount_and_date() -> None:
    bank = _side([(None, None, 1234.56, 4), (None, None, 80.0, 6)])
    ledger = _side([("INV1", "acme ltd", 1234.56, 2), ("INV2", "hooli", 99.0, 6)])
    assert _pairs(bank, ledger) == [(1, 1, "AMOUNT")]


def test_two_candidates_leave_both_for_a_person() -> None:
    """The same amount twice within the date tolerance: the pass cannot choose."""
    bank = _side([(None, None, 500.0, 4)])
    ledger = _side([("INV1", None, 500.0, 3), ("INV2", None, 500.0, 5)])
    assert _pairs(bank, ledger) == []
    # and two bank lines for one ledger entry
    assert _pairs(_side([(None, None, 500.0, 4), (None, None, 500.0, 5)]), ledger[:1]) == []


def test_beyond_a_tolerance_or_against_the_evidence_nothing_pairs() -> None:
    ledger = _side([("INV1", "acme ltd", 1234.56, 2)])
    assert _pairs(_side([(None, None, 1234.58, 2)]), ledger) == []  # 0.02 over 0.01
    assert _pairs(_side([(None, None, 1234.56, 6)]), ledger) == []  # 4 days over 3
    assert _pairs(_side([(None, None, -1234.56, 2)]), ledger) == []  # the other sign
    assert _pairs(_side([("INV9", None, 1234.56, 2)]), ledger) == []  # another reference
    assert _pairs(_side([(None, "globex corp", 1234.56, 2)]), ledger) == []  # another payee
    assert _pairs(_side([(None, "ACME LTD".lower(), 1234.56, 2)]), ledger) == [(1, 1, "AMOUNT")]


def test_amounts_on_a_bucket_edge_and_dates_across_buckets_still_meet() -> None:
    """Blocking by buckets as wide as the tolerances meets every pair within them."""
    bank = _side([(None, None, 10.005, 1), (None, None, 77.0, 30)])
    ledger = _side([("A", None, 10.0, 4), ("B", None, 77.01, 27)])
    assert _pairs(bank, ledger) == [(1, 1, "AMOUNT"), (2, 2, "AMOUNT")]


def test_over_the_budget_the_pass_skips_itself() -> None:
    same = _side([(None, None, 100.0, 10)] * 40)
    con = _duckdb()
    try:
        con.register("s", same.to_arrow())
        con.register("t", same.to_arrow())
        pairs, stats = amount_pass(con, RULES, COL, budget=100)
    finally:
        con.close()
    assert pairs.height == 0 and stats["amount_pass"] == "skipped: too many candidates"
