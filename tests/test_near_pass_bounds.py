"""The near pass's bounds (`pipelines.reconcile.linkage.near`): distinct names that share a
prefix are counted before they are scored, so a file of such names skips the pass instead of
scoring every pair; within the budget the same records pair as they should."""

from __future__ import annotations

import random
import string
from datetime import date

import polars as pl

from pipelines.reconcile.linkage.near import near_pass
from pipelines.reconcile.linkage.passes import _duckdb
from pipelines.reconcile.mapping import ROW
from pipelines.reconcile.rules import MatchingRule

RULES = [
    MatchingRule("name", "FUZZY", ("name",), threshold=0.85),
    MatchingRule("amount", "RANGE", ("amount",), tolerance=0.01),
    MatchingRule("date", "DATE_RANGE", ("day",), tolerance=2),
]
COL = {"name": "name", "amount": "amount", "day": "day"}


def _side(names: list[str], amounts: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ROW: list(range(1, len(names) + 1)),
            "name": names,
            "amount": amounts,
            "day": [date(2024, 1, 10)] * len(names),
        }
    )


def _run(source: pl.DataFrame, target: pl.DataFrame, budget: int) -> tuple[pl.DataFrame, dict]:
    con = _duckdb()
    try:
        con.register("s", source.to_arrow())
        con.register("t", target.to_arrow())
        return near_pass(con, RULES, COL, budget)
    finally:
        con.close()


def test_a_fee_short_payment_pairs_within_the_budget() -> None:
    source = _side(["acme trading ltd", "zenith foods"], [95.0, 40.0])
    target = _side(["acme trading limited", "orbit gmbh"], [100.0, 12.0])
    pairs, stats = _run(source, target, budget=1_000)
    assert pairs.select("source_row", "target_row").rows() == [(1, 1)]
    assert stats["near_matches"] == 1


def test_many_distinct_names_sharing_a_prefix_skip_the_pass() -> None:
    """300 distinct names a side under one prefix, each met once by the other side's same name:
    only 300 record pairs would be joined, but 90,000 name pairs would be scored, over a budget
    of 1,000: refused before any name is scored. With room, the pass runs."""
    rng = random.Random(3)
    names = ["aaa " + "".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(300)]
    source = _side(names, [100.0] * 300)
    target = _side(names, [99.0] * 300)
    pairs, stats = _run(source, target, budget=1_000)
    assert pairs.height == 0
    assert stats == {"near_pass": "skipped: too many candidates"}
    pairs, stats = _run(source, target, budget=100_000)
    assert stats["near_matches"] == 300
