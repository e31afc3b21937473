"""The `spark` linkage engine gives the `duckdb` engine's pairs and exceptions (issue 20).

bankgen data (bench/bankgen.py: a messy bank export against a ledger, with sub-cent amounts,
date shifts, typos, blank and lower-case references, twins, duplicates and missing records),
100k ledger entries a side, read, profiled and conformed as the ingest and mapping stages do
(`bench/engine_bench.bankgen_case`), then linked by each engine and judged by the exceptions
stage's own `build_exceptions` (its breaks found on each engine: `breaks.find_breaks`). The
Spark engine runs on `local[2]`, as the issue asks. Also:
the model is the same whichever engine trained it, a model the Spark engine trained serves DuckDB,
and Spark that cannot start is a `SparkUnavailable` error, never a quiet fallback to DuckDB.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from engine_bench import bankgen_case, exception_set, link_with, pair_set  # noqa: E402

from pipelines.reconcile.linkage.spark_engine import (  # noqa: E402
    SparkUnavailable,
    link_spark,
    spark_session,
)

ROWS = 100_000


@pytest.fixture(scope="module")
def spark() -> Any:
    return spark_session("local[2]")


@pytest.fixture(scope="module")
def compared(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    case = bankgen_case(ROWS, tmp_path_factory.mktemp("bankgen"))
    duck, duck_found = link_with(case, "duckdb")
    sparked, spark_found = link_with(case, "spark", spark=spark)
    return {
        "case": case,
        "duckdb": (duck, duck_found),
        "spark": (sparked, spark_found),
    }


def _differences(a: set[Any], b: set[Any]) -> str:
    return f"duckdb only: {sorted(a - b)[:5]}, spark only: {sorted(b - a)[:5]}"


def test_same_pairs_as_duckdb(compared: dict[str, Any]) -> None:
    duck, sparked = compared["duckdb"][0], compared["spark"][0]
    a, b = pair_set(duck.links), pair_set(sparked.links)
    assert a == b, _differences(a, b)
    kinds = dict(sparked.links.group_by("kind").len().iter_rows())
    # every pass had work to do, so each was compared
    assert kinds.get("EXACT", 0) > 0.8 * ROWS
    assert kinds.get("REFERENCE", 0) > 0 and kinds.get("PROBABILISTIC", 0) > 0
    assert sparked.stats["engine"] == "spark"
    assert sparked.stats["spark_master"] == "local[2]"
    assert sparked.stats["spark_sql"]["statements"] > 0  # the passes' queries ran on Spark


def test_same_scores_and_candidates(compared: dict[str, Any]) -> None:
    duck, sparked = compared["duckdb"][0], compared["spark"][0]
    keys = ["source_row", "target_row", "kind"]
    joined = duck.links.join(sparked.links, on=keys, suffix="_spark")
    assert joined.height == duck.links.height
    # Splink's probabilities are computed by each engine's SQL from the same weights: they
    # agree to the last digits (fractional literals are DOUBLE on Spark too: `spark_sql`)
    assert (joined["score"] - joined["score_spark"]).abs().max() < 1e-9
    assert duck.stats["candidate_pairs_scored"] == sparked.stats["candidate_pairs_scored"]
    assert duck.stats["blocking_rules"] == sparked.stats["blocking_rules"]
    for side, row in (("best_source", "source_row"), ("best_target", "target_row")):
        a, b = getattr(duck, side).sort(row), getattr(sparked, side).sort(row)
        assert a.get_column(row).to_list() == b.get_column(row).to_list()
        assert a["suggested_row"].to_list() == b["suggested_row"].to_list()


def test_same_exceptions_as_duckdb(compared: dict[str, Any]) -> None:
    duck_found, spark_found = compared["duckdb"][1], compared["spark"][1]
    a, b = exception_set(duck_found), exception_set(spark_found)
    assert a == b, _differences(a, b)
    types = set(spark_found.get_column("type").unique())
    assert {"MISSING_IN_SOURCE", "MISSING_IN_TARGET", "DUPLICATE_FOUND"} <= types
    assert {"AMOUNT_MISMATCH", "DATE_MISMATCH"} <= types


def test_the_breaks_are_found_in_spark(spark: Any, compared: dict[str, Any]) -> None:
    # the exceptions stage's joins and windows over every record run as Spark jobs; only the
    # pairs beyond tolerance and the records left over come back, as DuckDB finds them
    from pipelines.reconcile.breaks import find_breaks
    from pipelines.reconcile.linkage.spark_sql import SparkConnection

    case, links = compared["case"], compared["duckdb"][0].links
    used: list[SparkConnection] = []

    def connect() -> SparkConnection:
        used.append(SparkConnection(spark))
        return used[-1]

    sparked = find_breaks(case.conformed, links, case.rule_set, connect=connect)
    duck = find_breaks(case.conformed, links, case.rule_set)
    assert len(used[0].statements) == len(duck.beyond) + 2  # each query ran on Spark
    assert sparked.beyond.keys() == duck.beyond.keys() and len(duck.beyond) >= 2
    for key, frame in duck.beyond.items():
        assert frame.height > 0 and sparked.beyond[key].equals(frame), key
    for side, frame in duck.leftover.items():
        assert frame.height > 0 and sparked.leftover[side].equals(frame), side
    # the bank export's duplicates were grouped
    assert duck.leftover["source"].filter(duck.leftover["source"]["_group"] > 1).height > 0


def test_the_model_is_the_same_whichever_engine_trained_it(compared: dict[str, Any]) -> None:
    duck, sparked = compared["duckdb"][0], compared["spark"][0]
    assert duck.trained and sparked.trained

    def probabilities(model: dict[str, Any]) -> list[float]:
        return [
            -1.0 if level.get(key) is None else level[key]
            for comparison in model["comparisons"]
            for level in comparison["comparison_levels"]
            for key in ("m_probability", "u_probability")
        ]

    assert probabilities(duck.model) == pytest.approx(probabilities(sparked.model))


def test_a_model_trained_with_the_spark_engine_serves_duckdb(compared: dict[str, Any]) -> None:
    # the other direction (a kept DuckDB model on Spark) is the same `link` code path; a
    # DuckDB run costs seconds where a Spark one costs minutes
    sparked, case = compared["spark"][0], compared["case"]
    again, _ = link_with(case, "duckdb", model=sparked.model, model_facts=sparked.stats["training"])
    assert not again.trained
    assert again.stats["model_reuse"] == "reused: it fits"
    assert pair_set(again.links) == pair_set(sparked.links)


def test_the_exact_and_reference_passes_assign_in_spark(
    spark: Any, compared: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their pairs are assigned one to one in Spark (only the chosen come back): rounds of
    mutual-best pairs choose what the driver's greedy chooses, ties and a chain included."""
    import random

    import polars as pl

    from pipelines.reconcile.linkage import passes
    from pipelines.reconcile.linkage.spark_sql import SparkConnection

    sparked = compared["spark"][0]
    assert sparked.stats["prepass_candidates"] >= sparked.links.filter(kind="EXACT").height
    monkeypatch.setattr(passes, "DRIVER_FINISH", 0)
    monkeypatch.setattr(passes, "ASSIGN_ROUNDS", 1_000)
    rng = random.Random(5)
    rows = [(rng.randrange(200), rng.randrange(150), rng.choice([0.5, 0.9, 1.0]), "EXACT")]
    rows += [
        (rng.randrange(200), rng.randrange(150), rng.choice([0.5, 0.9, 1.0]), "EXACT")
        for _ in range(1_200)
    ]
    rows += [(1000 + i, 1000 + i // 2, 0.6 + i / 100, "EXACT") for i in range(20)]  # a chain
    pairs = pl.DataFrame(rows, schema=passes.LINK_SCHEMA, orient="row")
    con = SparkConnection(spark)
    try:
        assert con.assigns_in_engine
        con.register("candidates", pairs)
        chosen, total = passes.one_to_one_of(con, "SELECT * FROM candidates")
    finally:
        con.close()
    expected = passes.assign_one_to_one(pairs)
    keys = ["source_row", "target_row", "score"]
    assert total == pairs.unique(["source_row", "target_row"]).height
    assert chosen.sort(keys).select(keys).rows() == expected.sort(keys).select(keys).rows()
    assert sum("recon_picked AS" in text for text, _ in con.statements) > 1  # rounds in Spark


def test_the_default_engine_never_imports_spark() -> None:
    """A run on DuckDB pays nothing for Spark: the pipelines' definitions and the linkage
    package load without pyspark."""
    import subprocess

    probe = (
        "import sys, pipelines.definitions, pipelines.reconcile.linkage; "
        "assert 'pyspark' not in sys.modules, sorted(m for m in sys.modules if 'spark' in m)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_no_java_is_spark_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkUnavailable, match="Java"):
        spark_session("local[1]")


def test_no_pyspark_is_spark_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(SparkUnavailable, match="pip install pyspark=="):
        spark_session("local[1]")


def test_spark_settings_reach_the_session(spark: Any) -> None:
    """The resource's `spark_config` (a cluster's executor settings) is the session's; the
    running session is reused only with the same settings."""
    from resources.linkage_engine import LinkageEngineResource

    settings = {"spark.sql.shuffle.partitions": "3", "spark.executor.memory": "1g"}
    session = spark_session("local[2]", config=settings)
    assert session.conf.get("spark.sql.shuffle.partitions") == "3"
    assert session.sparkContext.getConf().get("spark.executor.memory") == "1g"
    assert spark_session("local[2]", config=settings) is session
    resource = LinkageEngineResource(engine="spark", spark_master="local[2]", spark_config=settings)
    assert resource.spark_config == settings


def test_a_master_that_is_no_master_is_spark_unavailable(
    compared: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the engine refuses rather than linking on DuckDB (it stops the module's local session)
    case = compared["case"]
    monkeypatch.setenv("RECON_SPARK_MASTER", "no-such-master")
    with pytest.raises(SparkUnavailable, match="RECON_SPARK_MASTER"):
        link_spark(case.conformed, case.rule_set)
