"""One-to-one assignment by rounds of SQL (`passes.assign_in_engine`) is the greedy assignment.

The Spark engine assigns the exact and reference passes' pairs in Spark: each round keeps the
pairs that are the first choice of both their records and drops every pair touching them.
These tests hold it to the driver's greedy `assign_one_to_one` on pair sets made to break it:
tied scores (the rows decide), duplicate pairs with two scores, long chains of ever better
rivals (one round a link, so the driver finishes them), and crowds of records contesting a few.
On DuckDB here; on Spark in tests/test_spark_engine.py.
"""

from __future__ import annotations

import random

import duckdb
import polars as pl
import pytest

from pipelines.reconcile.linkage import passes
from pipelines.reconcile.linkage.passes import (
    LINK_SCHEMA,
    assign_in_engine,
    assign_one_to_one,
    one_to_one_of,
)


def _random_pairs(seed: int, sources: int, targets: int, pairs: int) -> pl.DataFrame:
    rng = random.Random(seed)
    scores = [0.5, 0.75, 0.9, 1.0]  # few distinct scores: ties everywhere
    rows = [
        (rng.randrange(sources), rng.randrange(targets), rng.choice(scores), "EXACT")
        for _ in range(pairs)
    ]
    return pl.DataFrame(rows, schema=LINK_SCHEMA, orient="row")


def _chain(length: int) -> pl.DataFrame:
    """s0-t0, s1-t0, s1-t1, s2-t1 ... each pair better than the one before it."""
    rows = []
    for i in range(length):
        rows.append((i, i, 0.5 + i / (4 * length), "EXACT"))
        rows.append((i + 1, i, 0.5 + (i + 0.5) / (4 * length), "EXACT"))
    return pl.DataFrame(rows, schema=LINK_SCHEMA, orient="row")


def _assigned(con: duckdb.DuckDBPyConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    con.register("candidates", pairs.to_arrow())
    chosen, total = assign_in_engine(con, "SELECT * FROM candidates")
    assert total == pairs.unique(["source_row", "target_row"]).height
    return chosen


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    keys = ["source_row", "target_row"]
    assert a.sort(keys).select(*keys, "score").rows() == b.sort(keys).select(*keys, "score").rows()


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@pytest.mark.parametrize("finish", [0, 10, 10_000])
@pytest.mark.parametrize("seed", range(6))
def test_rounds_choose_what_greedy_chooses(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, seed: int, finish: int
) -> None:
    monkeypatch.setattr(passes, "DRIVER_FINISH", finish)
    monkeypatch.setattr(passes, "ASSIGN_ROUNDS", 1_000)
    pairs = _random_pairs(seed, sources=300, targets=200, pairs=2_000)
    chosen = _assigned(con, pairs)
    _same(chosen, assign_one_to_one(pairs))
    assert chosen.get_column("source_row").is_unique().all()
    assert chosen.get_column("target_row").is_unique().all()


def test_a_duplicate_pair_keeps_its_best_score(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passes, "DRIVER_FINISH", 0)
    pairs = pl.DataFrame(
        [(1, 1, 0.6, "REFERENCE"), (1, 1, 0.9, "REFERENCE"), (2, 1, 0.8, "REFERENCE")],
        schema=LINK_SCHEMA,
        orient="row",
    )
    chosen = _assigned(con, pairs)
    assert chosen.select("source_row", "target_row", "score").rows() == [(1, 1, 0.9)]
    assert chosen.get_column("kind").to_list() == ["REFERENCE"]


def test_a_long_chain_is_finished_on_the_driver(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one round a link: after ASSIGN_ROUNDS rounds the driver takes the rest
    monkeypatch.setattr(passes, "DRIVER_FINISH", 0)
    monkeypatch.setattr(passes, "ASSIGN_ROUNDS", 3)
    pairs = _chain(200)
    chosen = _assigned(con, pairs)
    _same(chosen, assign_one_to_one(pairs))
    assert chosen.height == 200


def test_no_pairs_and_the_driver_path(con: duckdb.DuckDBPyConnection) -> None:
    con.register("candidates", pl.DataFrame(schema=LINK_SCHEMA).to_arrow())
    chosen, total = assign_in_engine(con, "SELECT * FROM candidates")
    assert chosen.height == 0 and total == 0
    # a DuckDB connection assigns on the driver; its count is the candidates' rows
    pairs = _random_pairs(3, 50, 50, 400)
    con.register("candidates", pairs.to_arrow())
    driver, count = one_to_one_of(con, "SELECT * FROM candidates")
    assert count == pairs.height
    _same(driver, assign_one_to_one(pairs))
