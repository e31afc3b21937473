"""The `spark` linkage engine: `link()`'s passes and Splink prediction run on Apache Spark.

`link_spark` gives what `link` gives (same arguments, same `LinkResult`, same pairs) with the
heavy work on a Spark session (`spark_session`; `RECON_SPARK_MASTER`, default `local[*]`, or a
cluster URL). It is `link` itself with its two backends (`connect`, `predict`) on Spark, so
the pass logic, its order and its one-to-one rules are the same code for both engines:

- every query `link` runs on its connection (the exact pre-pass join and its pair count, the
  counts that choose blocking rules, the reference pass, the near and amount passes) goes to a
  `SparkConnection` (`spark_sql`): the same DuckDB SQL, transpiled to Spark SQL, run as Spark
  jobs over the records staged as parquet;
- Splink prediction runs with Splink's `SparkAPI` (its similarity jar registered) on the same
  model JSON: the comparison levels are transpiled from DuckDB to Spark SQL (`spark_model`).

On the driver, in polars, as in the DuckDB engine: the valid records and their profile, the
candidates' one-to-one assignment (greedy over the candidate pairs each pass collects), the
duplicate filter between passes, the best candidates, aggregation. Training stays on DuckDB
(`model.train_model` on its sample of at most `TRAIN_ROWS` a side, its own connection): EM and
u-sampling on Spark would give another model, and so other pairs; a model trained by either
engine is used by the other unchanged.

Nothing here is imported by the DuckDB engine.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.reconcile.mapping import HINTS, ROW, Conformed
from pipelines.reconcile.rules import RuleSet

MASTER_ENV = "RECON_SPARK_MASTER"
DEFAULT_MASTER = "local[*]"
DRIVER_MEMORY_ENV = "RECON_SPARK_DRIVER_MEMORY"
DEFAULT_DRIVER_MEMORY = "2g"
START_TIMEOUT_ENV = "RECON_SPARK_START_TIMEOUT"
DEFAULT_START_TIMEOUT = 120.0  # seconds for a first job to run on a new session
PARTITIONS_ENV = "RECON_SPARK_SHUFFLE_PARTITIONS"
LOCAL_BROADCAST = "64MB"  # a local run broadcasts a remainder rather than shuffling both sides
PYSPARK_PIN = "pyspark==4.1.4"


class SparkUnavailable(RuntimeError):
    """The spark engine was asked for and cannot start; says why and what to do."""


# ---------------------------------------------------------------- the session


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _local_threads(master: str) -> int:
    """The worker threads of a local master: local -> 1, local[4] -> 4, local[*] -> cores."""
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    count = inside.split(",")[0].strip()
    return max(1, os.cpu_count() or 1) if count == "*" else max(1, int(count or 1))


def _probe(spark: Any, master: str, timeout: float) -> None:
    """Run one tiny job; a master that accepts no application fails it or never runs it."""
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["rows"] = spark.range(1).count()
        except Exception as err:  # noqa: BLE001 - reported below as SparkUnavailable
            outcome["error"] = err

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    worker.join(timeout)
    if "rows" in outcome:
        return
    spark.stop()
    why = outcome.get("error")
    reason = str(why).strip().splitlines()[0] if why else f"no job ran within {timeout:g} s"
    raise SparkUnavailable(
        f"the Spark master {master!r} runs no jobs ({reason}); check {MASTER_ENV} "
        "(a cluster URL such as spark://host:7077, or local[*]) and that the cluster has "
        "free executors"
    )


def spark_session(
    master: str | None = None,
    *,
    start_timeout: float | None = None,
    config: dict[str, str] | None = None,
) -> Any:
    """A Spark session for linkage, started (or the running one, if it has this master and
    these settings).

    Master from the argument, else `RECON_SPARK_MASTER`, else `local[*]`. Splink's similarity
    jar is on its class path (SparkAPI registers its functions), DuckDB's Jaro-Winkler is
    registered (`spark_sql.register_jaro_winkler`; a local master's Python workers run this
    interpreter), the UI is off and logs quiet, dates are UTC, ANSI
    mode is off (DuckDB's NULL for a division by zero rather than an error). Shuffle partitions
    from `RECON_SPARK_SHUFFLE_PARTITIONS`, for a local master by default one a worker thread; a
    local master binds to loopback, broadcasts joins up to `LOCAL_BROADCAST`, runs without
    adaptive execution and gets `RECON_SPARK_DRIVER_MEMORY` (default 2g). Raises
    `SparkUnavailable` (never falls back to DuckDB) when Java or pyspark is missing or the
    master runs no job within `start_timeout` s (`RECON_SPARK_START_TIMEOUT`, default 120).
    `config`: more Spark settings (a cluster's `spark.executor.memory`, `spark.executor.cores`,
    `spark.sql.shuffle.partitions` ...), applied last, so they win over the ones above.
    """
    config = {str(k): str(v) for k, v in (config or {}).items()}
    master = master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER
    if _java() is None:
        raise SparkUnavailable(
            "the spark engine needs Java 17 or later and none was found (no JAVA_HOME, no "
            "java on PATH): install a JRE (Debian: apt-get install default-jre-headless), or "
            "run with --engine duckdb"
        )
    try:
        from pyspark.sql import SparkSession
        from splink.backends.spark import similarity_jar_location
    except ImportError as err:
        raise SparkUnavailable(
            f"the spark engine needs pyspark ({err}): pip install {PYSPARK_PIN} into the "
            "project's environment (make install does), or run with --engine duckdb"
        ) from err
    active = SparkSession.getActiveSession()
    if active is not None:
        conf = active.sparkContext.getConf()
        if active.sparkContext.master == master and all(
            conf.get(key, None) == value for key, value in config.items()
        ):
            return active
        active.stop()  # getOrCreate would hand back a session of another master or settings
    local = master.startswith("local")
    partitions = os.environ.get(PARTITIONS_ENV) or (str(_local_threads(master)) if local else "")
    builder = (
        SparkSession.builder.master(master)
        .appName("recon-linkage")
        .config("spark.jars", similarity_jar_location())
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=error")
    )
    if local:
        memory = os.environ.get(DRIVER_MEMORY_ENV, DEFAULT_DRIVER_MEMORY)
        builder = (
            builder.config("spark.driver.memory", memory)
            .config("spark.sql.autoBroadcastJoinThreshold", LOCAL_BROADCAST)
            # adaptive execution re-plans every stage: on one machine's small joins it costs
            # more jobs than it saves (measured: a 5k linkage 25 % faster without it)
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    if local:  # the Python workers of the Jaro-Winkler UDF: this interpreter (RapidFuzz)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if partitions:  # 200 by default: far too many tasks for one machine's joins
        builder = builder.config("spark.sql.shuffle.partitions", partitions)
    for key, value in config.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - a JVM or master that will not start
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SparkUnavailable(
            f"the Spark session on {master!r} did not start ({first}); check {MASTER_ENV} "
            "and the Java installation, or run with --engine duckdb"
        ) from err
    spark.sparkContext.setLogLevel("ERROR")
    from pipelines.reconcile.linkage.spark_sql import register_jaro_winkler

    register_jaro_winkler(spark)  # DuckDB's Jaro-Winkler (the jar's is another function)
    timeout = start_timeout or float(os.environ.get(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT))
    _probe(spark, master, timeout)
    from pipelines.reconcile.linkage.spark_sql import staging_root

    checkpoints = staging_root() / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(str(checkpoints))
    return spark


# ---------------------------------------------------------------- Splink on Spark


def spark_model(model: dict[str, Any]) -> dict[str, Any]:
    """A model JSON (either engine's) with its comparison levels in Spark SQL."""
    from pipelines.reconcile.linkage.spark_sql import model_sql

    settings = dict(model)
    settings["sql_dialect"] = "spark"
    settings["comparisons"] = [
        {
            **comparison,
            "comparison_levels": [
                {**level, "sql_condition": model_sql(level["sql_condition"])}
                for level in comparison["comparison_levels"]
            ],
        }
        for comparison in model["comparisons"]
    ]
    return settings


def predict_spark(
    spark: Any,
    source: pl.DataFrame,
    target: pl.DataFrame,
    model: dict[str, Any],
    blocking: list[list[str]],
) -> pl.DataFrame:
    """`model._predict` with Splink's SparkAPI: scored pairs (LINK_SCHEMA, PROBABILISTIC)."""
    from splink import Linker
    from splink.backends.spark import SparkAPI

    from pipelines.reconcile.linkage.model import PREDICT_FLOOR, oriented, prediction_settings
    from pipelines.reconcile.linkage.spark_sql import SparkConnection

    settings = prediction_settings(
        spark_model(model), blocking, source.height, target.height, "spark"
    )
    local = spark.sparkContext.master.startswith("local")
    staging = SparkConnection(spark)
    linker = None
    try:
        staging.register("recon_source_in", source.drop(HINTS, strict=False))
        staging.register("recon_target_in", target.drop(HINTS, strict=False))
        db_api = SparkAPI(
            spark_session=spark,
            break_lineage_method="persist" if local else "parquet",
        )
        a = db_api.register(spark.table("recon_source_in"), dataset_display_name="recon_source")
        b = db_api.register(spark.table("recon_target_in"), dataset_display_name="recon_target")
        linker = Linker([a, b], settings, log_level=logging.ERROR)
        predicted = linker.inference.predict(threshold_match_probability=PREDICT_FLOOR)
        frame = pl.from_arrow(
            predicted.as_spark_dataframe()
            .select("source_dataset_l", f"{ROW}_l", f"{ROW}_r", "match_probability")
            .toArrow()
        )
    finally:
        if linker is not None:  # Splink's intermediate tables (persisted) go with it
            linker.table_management.delete_tables_created_by_splink_from_db()
        for name in ("recon_source", "recon_target"):
            spark.catalog.dropTempView(name)
        staging.close()
    assert isinstance(frame, pl.DataFrame)
    return oriented(frame)


# ---------------------------------------------------------------- link() on Spark


def link_spark(
    conformed: Conformed,
    rule_set: RuleSet,
    *,
    model: dict[str, Any] | None = None,
    model_facts: dict[str, Any] | None = None,
    progress: Any = None,
    quotes: pl.DataFrame | None = None,
    spark: Any = None,
) -> Any:
    """`link` (see `pipelines.reconcile.linkage`) with its queries and Splink on Spark.

    Same arguments and `LinkResult` as `link`; `spark` is a session (default `spark_session()`,
    which raises `SparkUnavailable` when Spark cannot start). `stats` gains `engine` ("spark"),
    `spark_master` and `spark_seconds` (the time of the whole call).
    """
    from pipelines.reconcile.linkage import link
    from pipelines.reconcile.linkage.spark_sql import SparkConnection

    session = spark if spark is not None else spark_session()
    started = time.perf_counter()
    connections: list[Any] = []

    def connect() -> Any:
        con = SparkConnection(session)
        connections.append(con)
        return con

    def predict(
        source: pl.DataFrame, target: pl.DataFrame, model: dict[str, Any], blocking: list[list[str]]
    ) -> pl.DataFrame:
        return predict_spark(session, source, target, model, blocking)

    result = link(
        conformed,
        rule_set,
        model=model,
        model_facts=model_facts,
        progress=progress,
        quotes=quotes,
        connect=connect,
        predict=predict,
    )
    statements = [x for con in connections for x in con.statements]
    result.stats["spark_sql"] = {
        "statements": len(statements),
        "seconds": round(sum(seconds for _, seconds in statements), 3),
        "slowest": [
            [text, round(sec, 3)] for text, sec in sorted(statements, key=lambda x: -x[1])[:5]
        ],
    }
    result.stats["engine"] = "spark"
    result.stats["spark_master"] = session.sparkContext.master
    result.stats["spark_seconds"] = round(time.perf_counter() - started, 3)
    return result
