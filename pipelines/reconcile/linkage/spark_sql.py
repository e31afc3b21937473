"""The linkage passes' DuckDB SQL run on Spark: a connection with the DuckDB calls they make.

The passes (`passes.exact_prepass`, `key_prepass`, `model._choose_blocking`, `near.near_pass`
and the others) build DuckDB SQL over tables `s` and `t` and run it on a connection through
`register` / `unregister`, `execute(...).fetchall()` and `sql(...).to_arrow_table()`.
`SparkConnection` offers those calls on a Spark session: each statement is transpiled from
DuckDB to Spark SQL by sqlglot (`spark_sql`), so the Spark engine runs the very queries the
DuckDB engine runs, and a rule change in a pass reaches both engines at once.

Two things sqlglot does not carry over are done here. `jaro_winkler_similarity` becomes
`recon_jaro_winkler` (`register_jaro_winkler`), DuckDB's function on Spark: RapidFuzz's
Jaro-Winkler (the implementation DuckDB's is taken from; equal to 1e-16), NULL for a NULL and
0.0 for an empty string as DuckDB answers. Splink's similarity jar has a `jaro_winkler` too,
but it is another function: on bankgen's counterparty names it differs from DuckDB's on 43 %
of the pairs, by up to 0.14, and puts 2 % of them on the other side of 0.85 - so neither the
passes nor the model's comparison levels use it. And `CREATE OR REPLACE TEMP TABLE|VIEW x
AS SELECT ...` becomes a temporary view (a cached one for a table), which Spark SQL has no
statement for. A registered frame is written to parquet in a
staging folder and read back by Spark (a cluster's executors read it there: on a cluster the
folder must be shared storage, `RECON_SPARK_STAGING`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

STAGING_ENV = "RECON_SPARK_STAGING"


JARO_WINKLER = "recon_jaro_winkler"


def register_jaro_winkler(spark: Any) -> None:
    """Register `recon_jaro_winkler(a, b)`: DuckDB's `jaro_winkler_similarity` as a Spark UDF.

    Vectorised (Arrow batches, RapidFuzz's `cpdist` in float64). Its body is a closure, so it
    travels to the executors by value: they need RapidFuzz, pandas and pyarrow, not this project.
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def similarity(left: pd.Series, right: pd.Series) -> pd.Series:
        import numpy as np
        from rapidfuzz.distance import JaroWinkler
        from rapidfuzz.process import cpdist

        present = (left.notna() & right.notna()).to_numpy()
        scores = np.zeros(len(left), dtype=np.float64)
        if present.any():
            a, b = left[present].tolist(), right[present].tolist()
            scores[present] = cpdist(a, b, scorer=JaroWinkler.similarity, dtype=np.float64)
            empty = np.array([not x or not y for x, y in zip(a, b, strict=True)], dtype=bool)
            scores[np.flatnonzero(present)[empty]] = 0.0  # DuckDB: 0.0 with an empty string
        out = pd.array(scores, dtype="Float64")
        out[~present] = pd.NA
        return pd.Series(out)

    # the hints as types, not strings (this module postpones annotations): pyspark reads them
    similarity.__annotations__ = {"left": pd.Series, "right": pd.Series, "return": pd.Series}
    spark.udf.register(JARO_WINKLER, pandas_udf(similarity, "double"))


def _null_safe_jaro_winkler(node: exp.Expression) -> exp.Expression:
    """DuckDB's jaro_winkler_similarity(a, b) as `recon_jaro_winkler(a, b)`; a fractional
    literal as a DOUBLE (Spark's DECIMAL division rounds a score to 6 places, DuckDB's gives a
    DOUBLE: with DECIMAL literals the pass scores differed by up to 1e-7)."""
    if isinstance(node, exp.Literal) and node.is_number and any(c in node.this for c in ".eE"):
        return exp.Cast(this=node.copy(), to=exp.DataType.build("double"))
    if isinstance(node, exp.JarowinklerSimilarity):
        a, b = node.this, node.expression
    elif isinstance(node, exp.Anonymous) and node.name.lower() == "jaro_winkler_similarity":
        a, b = node.expressions[0], node.expressions[1]
    else:
        return node
    return exp.Anonymous(this=JARO_WINKLER, expressions=[a.copy(), b.copy()])


def spark_sql(duckdb_sql: str) -> str:
    """One DuckDB statement (a query) as Spark SQL."""
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    tree = tree.transform(_null_safe_jaro_winkler)
    return tree.sql(dialect="spark")


def model_sql(duckdb_sql: str) -> str:
    """A Splink comparison level's DuckDB condition as Spark SQL (Splink quotes with `"`)."""
    if duckdb_sql.strip().upper() == "ELSE":
        return duckdb_sql
    return spark_sql(duckdb_sql)


def staging_root() -> Path:
    """Where registered frames are written for Spark to read (`RECON_SPARK_STAGING`)."""
    root = os.environ.get(STAGING_ENV) or str(Path(tempfile.gettempdir()) / "recon-spark")
    return Path(root)


class _Result:
    """What `execute` returns: the rows of a statement (`fetchall`)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Relation:
    """What `sql` returns: a Spark DataFrame collected as Arrow (`to_arrow_table`)."""

    def __init__(self, frame: Any, owner: SparkConnection, text: str) -> None:
        self._frame, self._owner, self._text = frame, owner, text

    def to_arrow_table(self) -> pa.Table:
        started = time.perf_counter()
        table = self._frame.toArrow()
        self._owner._log(self._text, started)
        return table


class SparkConnection:
    """The DuckDB connection calls of the linkage passes, answered by a Spark session.

    `assigns_in_engine`: the passes assign their pairs one to one here, in Spark
    (`passes.assign_in_engine`), rather than collecting every candidate to the driver.
    """

    assigns_in_engine = True

    def __init__(self, spark: Any, staging: Path | None = None) -> None:
        self.spark = spark
        self.folder = (staging or staging_root()) / f"link-{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._views: dict[str, Any] = {}  # name -> cached DataFrame
        self._writes = 0
        self.statements: list[tuple[str, float]] = []  # (statement's start, seconds)

    # ------------------------------------------------------------ tables
    def register(self, name: str, table: pa.Table | Any) -> None:
        """Make an Arrow table (or a polars frame) the temporary view `name`, cached."""
        if not isinstance(table, pa.Table):
            table = table.to_arrow()
        self._writes += 1
        path = self.folder / f"{name}-{self._writes}.parquet"
        pq.write_table(table, path)
        self._view(name, self.spark.read.parquet(str(path)))

    def unregister(self, name: str) -> None:
        frame = self._views.pop(name, None)
        if frame is not None:
            frame.unpersist()
        self.spark.catalog.dropTempView(name)

    def _view(self, name: str, frame: Any) -> None:
        self.unregister(name)
        frame = frame.cache()
        frame.createOrReplaceTempView(name)
        self._views[name] = frame

    # ------------------------------------------------------------ statements
    def _create(self, tree: exp.Create) -> bool:
        """CREATE [OR REPLACE] TEMP TABLE|VIEW x AS SELECT as a temporary view; False if other."""
        kind = (tree.args.get("kind") or "").upper()
        query = tree.expression
        if kind not in ("TABLE", "VIEW") or not isinstance(query, exp.Query):
            return False
        name = tree.this.name if isinstance(tree.this, exp.Table) else tree.this.this.name
        select = query.transform(_null_safe_jaro_winkler).sql(dialect="spark")
        frame = self.spark.sql(select)
        if kind == "TABLE":
            self._view(name, frame)
        else:
            self.unregister(name)
            frame.createOrReplaceTempView(name)
        return True

    def _log(self, sql: str, started: float) -> None:
        self.statements.append((" ".join(sql.split())[:80], time.perf_counter() - started))

    def execute(self, duckdb_sql: str) -> _Result:
        """Run a statement; its rows (none for a CREATE)."""
        started = time.perf_counter()
        try:
            return self._execute(duckdb_sql)
        finally:
            self._log(duckdb_sql, started)

    def _execute(self, duckdb_sql: str) -> _Result:
        tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
        if isinstance(tree, exp.Create) and self._create(tree):
            return _Result([])
        if isinstance(tree, exp.Set):  # DuckDB settings mean nothing to Spark
            return _Result([])
        if isinstance(tree, exp.Drop) and isinstance(tree.this, exp.Table):
            self.unregister(tree.this.name)  # a temporary table here is a cached view
            return _Result([])
        sql = tree.transform(_null_safe_jaro_winkler).sql(dialect="spark")
        return _Result([tuple(row) for row in self.spark.sql(sql).collect()])

    def sql(self, duckdb_sql: str) -> _Relation:
        """A query's result, to be collected as Arrow."""
        return _Relation(self.spark.sql(spark_sql(duckdb_sql)), self, duckdb_sql)

    def close(self) -> None:
        """Drop the views and caches of this connection and its staging folder."""
        for name in list(self._views):
            self.unregister(name)
        shutil.rmtree(self.folder, ignore_errors=True)
