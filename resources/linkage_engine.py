"""The linkage engine: DuckDB (embedded, the default) or Spark, a resource of the pipelines.

`LinkageEngineResource.engine` chooses where `record_links` runs linkage: `duckdb` (in the
process, `pipelines.reconcile.linkage.link`) or `spark` (`linkage.spark_engine.link_spark` on
`spark_master`: `local[*]` by default, or a cluster URL). Set it with RECON_LINKAGE_ENGINE /
RECON_SPARK_MASTER (the definitions make them `EnvVar`s), in a run's config, or with `recon run
--engine`. Asking for `spark` where Spark cannot start fails the stage with what to do
(`SparkUnavailable`), never a quiet fallback to DuckDB; the DuckDB engine never imports Spark.
The result's stats say which engine ran (`engine`). The exceptions stage finds its breaks
(pairs beyond tolerance, records left over) on the same engine (`breaks`). `spark_config`
passes more Spark settings (a cluster's executor memory and cores, shuffle partitions) to the
session.

Why not dagster-pyspark's `PySparkResource`: its module imports pyspark when it is imported,
so the definitions would load Spark for every DuckDB run (the default engine must pay nothing
for Spark), and its session is `SparkSession.builder.config(...).getOrCreate()`, which
`spark_engine.spark_session` does too, with the checks that make an unusable master an error
(Java, pyspark, a first job within a timeout) and the similarity functions registered.
"""

from __future__ import annotations

from typing import Any, Literal

from dagster import ConfigurableResource
from pydantic import Field

ENGINES = ("duckdb", "spark")


class LinkageEngineResource(ConfigurableResource):
    """Where linkage runs: `duckdb` (default) or `spark`."""

    engine: Literal["duckdb", "spark"] = Field(
        default="duckdb", description="duckdb: embedded, in the process; spark: Apache Spark"
    )
    spark_master: str | None = Field(
        default=None,
        description="Spark master for engine spark (default RECON_SPARK_MASTER, else local[*])",
    )

    spark_config: dict[str, str] = Field(
        default_factory=dict,
        description="more Spark settings for engine spark, e.g. spark.executor.memory: 8g",
    )

    def link(self, conformed: Any, rule_set: Any, **options: Any) -> Any:
        """`link(conformed, rule_set, **options)` on the chosen engine (a `LinkResult`)."""
        if self.engine == "spark":
            from pipelines.reconcile.linkage.spark_engine import link_spark, spark_session

            spark = spark_session(self.spark_master, config=self.spark_config)
            return link_spark(conformed, rule_set, spark=spark, **options)
        from pipelines.reconcile.linkage import link

        result = link(conformed, rule_set, **options)
        result.stats["engine"] = "duckdb"
        return result

    def breaks(self, conformed: Any, links: Any, rule_set: Any) -> Any:
        """The exceptions stage's heavy half on the chosen engine: the pairs beyond tolerance
        and the records left over (`pipelines.reconcile.breaks.find_breaks`, a `Breaks`)."""
        from pipelines.reconcile.breaks import find_breaks

        if self.engine == "spark":
            from pipelines.reconcile.linkage.spark_engine import spark_session
            from pipelines.reconcile.linkage.spark_sql import SparkConnection

            spark = spark_session(self.spark_master, config=self.spark_config)
            return find_breaks(conformed, links, rule_set, connect=lambda: SparkConnection(spark))
        return find_breaks(conformed, links, rule_set)
