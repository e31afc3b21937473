"""Stage 2, reconciliation: mapping, linkage, exceptions and the reconciliation record as assets.

The four assets are built twice by one factory, so both share every line of stage code:
- group `reconcile`: ad hoc, partitioned by reconciliation (dynamic partitions
  `reconciliations`, key = `reconciliations.id`; `recon run` creates it PENDING with its two
  landed files and rule-set version and adds its partition), so the catalog keeps every
  reconciliation's materializations;
- group `feed_reconcile` (keys `feed/...`): partitioned by business date x feed, one partition
  = one feed's reconciliation of one day (`pipelines.reconcile.feeds`); the pairing sensor,
  the daily schedule and backfills run these. Re-running a partition replaces its results.
Every reconcile asset is partitioned. The stages hand each other a small `ReconciliationWork`
through a run- and partition-keyed IO manager (`pipelines.handoff`) and the data itself as
parquet files in the file store (`store/reconciliations/<id>/`),
and only the last one writes matches and exceptions to PostgreSQL, in one transaction, so a
failure anywhere leaves the record FAILED with its error and nothing half-written. A lost
database connection is retried with backoff (1, 2, 4 s) before the stage gives up. The logic
lives in `pipelines.reconcile`; these are the edges.
"""

from statistics import median
from typing import Any

import sqlalchemy as sa
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from pipelines.files import canonical_file
from pipelines.partitions import feed_partitions, reconciliations
from pipelines.reconcile import feeds, records
from pipelines.reconcile_stages import (
    FEED_PREFIX,
    ReconciliationWork,
    commit_record,
    find_exceptions,
    link_records,
    map_records,
)
from resources.database import DatabaseResource
from resources.file_store import FileStoreResource
from resources.linkage_engine import LinkageEngineResource

HISTORY_CHECKS = ("match_rate_in_line", "exception_volume_in_line")


def history_checks(
    engine: sa.Engine, plan: records.ReconciliationPlan, counts: dict[str, Any]
) -> list[AssetCheckResult]:
    """Match rate and exception volume against the feed's recent completed business dates."""
    day, name = feeds.split_partition_key(plan.partition_key or "")
    feed = feeds.feed_named(engine, name)
    history = feeds.recent_history(engine, feed.id, day, int(feed.checks["history"]))
    rate, volume = float(counts["match_rate"]), int(counts["exception_count"])
    if not history:
        note = {"note": MetadataValue.text("no earlier completed business date to compare with")}
        return [AssetCheckResult(check_name=c, passed=True, metadata=note) for c in HISTORY_CHECKS]
    usual_rate = median(r for r, _ in history)
    usual_volume = median(v for _, v in history)
    drop, growth = feed.checks["match_rate_drop"], feed.checks["exception_growth"]
    rate_ok = rate >= usual_rate - drop
    volume_ok = volume <= max(growth * usual_volume, usual_volume + 5)
    compared = {"compared_days": len(history)}
    return [
        AssetCheckResult(
            check_name="match_rate_in_line",
            passed=rate_ok,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"match rate {rate:.2f}% vs a median of {usual_rate:.2f}% over the last "
                f"{len(history)} days (allowed drop {drop} points)"
            ),
            metadata={**compared, "match_rate": rate, "median_match_rate": usual_rate},
        ),
        AssetCheckResult(
            check_name="exception_volume_in_line",
            passed=volume_ok,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"{volume} exceptions vs a median of {usual_volume:g} over the last "
                f"{len(history)} days (allowed: {growth}x)"
            ),
            metadata={**compared, "exceptions": volume, "median_exceptions": usual_volume},
        ),
    ]


# --- the assets, built twice ------------------------------------------------------------------


def build_reconcile_assets(*, partitioned: bool) -> list[AssetsDefinition]:
    """The four stages as assets: per ad-hoc reconciliation or per feed partition."""
    prefix = [FEED_PREFIX] if partitioned else []
    group = "feed_reconcile" if partitioned else "reconcile"
    where = (
        "One feed's business date (partition <date>|<feed>)"
        if partitioned
        else "One reconciliation (partition = reconciliations.id)"
    )
    # each run's hand-off under its own run id: two reconciliations in flight never share it
    shared: dict[str, Any] = {
        "group_name": group,
        "io_manager_key": "handoff_io_manager",
        "partitions_def": feed_partitions if partitioned else reconciliations,
        "key_prefix": prefix,
    }

    def upstream(name: str) -> dict[str, AssetIn]:
        return {"work_in": AssetIn(key=AssetKey([*prefix, name]))}

    mapping_description = (
        f"{where}: both files' records in the target vocabulary (field mappings applied, typed)."
    )
    if partitioned:

        @asset(
            name="mapped_records",
            kinds={"polars", "parquet"},
            # which landed files feed a business date is decided by the data (file names or
            # a date column), so the dependency is on the landed files as a whole
            deps=[AssetDep(canonical_file, partition_mapping=AllPartitionMapping())],
            description=mapping_description
            + " Picks the newest validated file of each side for the date.",
            **shared,
        )
        def feed_mapped_records(
            context: AssetExecutionContext,
            database: DatabaseResource,
            file_store: FileStoreResource,
        ) -> Output[ReconciliationWork]:
            store = file_store.store()
            rid = feeds.prepare_partition(
                database.engine(), store, context.partition_key, context.run.run_id
            )
            return map_records(context, rid, database, store)

        mapped = feed_mapped_records
    else:

        @asset(
            name="mapped_records",
            kinds={"polars", "parquet"},
            # the reconciliation row names its two landed files
            deps=[AssetDep(canonical_file, partition_mapping=AllPartitionMapping())],
            description=mapping_description,
            **shared,
        )
        def mapped_records(
            context: AssetExecutionContext,
            database: DatabaseResource,
            file_store: FileStoreResource,
        ) -> Output[ReconciliationWork]:
            rid = int(context.partition_key)
            return map_records(context, rid, database, file_store.store())

        mapped = mapped_records

    @asset(
        name="record_links",
        kinds={"duckdb", "splink"},
        ins=upstream("mapped_records"),
        description=f"{where}: matched pairs: exact pre-pass in DuckDB, then Splink on the "
        "rest, one-to-one. Links Splink's match-weights chart.",
        **shared,
    )
    def record_links(
        context: AssetExecutionContext,
        work_in: ReconciliationWork,
        database: DatabaseResource,
        file_store: FileStoreResource,
        linkage_engine: LinkageEngineResource,
    ) -> Output[ReconciliationWork]:
        return link_records(context, work_in, database, file_store.store(), linkage_engine)

    @asset(
        name="exceptions",
        kinds={"polars"},
        ins=upstream("record_links"),
        description=f"{where}: exceptions with severity, confidence, diff and fingerprint.",
        **shared,
    )
    def exceptions(
        context: AssetExecutionContext,
        work_in: ReconciliationWork,
        database: DatabaseResource,
        file_store: FileStoreResource,
        linkage_engine: LinkageEngineResource,
    ) -> Output[ReconciliationWork]:
        return find_exceptions(context, work_in, database, file_store.store(), linkage_engine)

    record_key = AssetKey([*prefix, "reconciliation_record"])

    @asset(
        name="reconciliation_record",
        kinds={"postgres"},
        ins=upstream("exceptions"),
        description=f"{where}: matches, exceptions and counts committed at once; human "
        "resolutions kept by fingerprint on a re-run.",
        check_specs=[
            AssetCheckSpec(
                name,
                asset=record_key,
                description="Against the feed's recent completed business dates.",
            )
            for name in HISTORY_CHECKS
        ]
        if partitioned
        else None,
        **shared,
    )
    def reconciliation_record(
        context: AssetExecutionContext, work_in: ReconciliationWork, database: DatabaseResource
    ) -> MaterializeResult:
        plan, counts, metadata = commit_record(context, work_in, database)
        checks = history_checks(database.engine(), plan, counts) if partitioned else None
        return MaterializeResult(metadata=metadata, check_results=checks)

    return [mapped, record_links, exceptions, reconciliation_record]


RECONCILIATION_ASSETS = build_reconcile_assets(partitioned=False)
FEED_RECONCILIATION_ASSETS = build_reconcile_assets(partitioned=True)
reconciliation_record = RECONCILIATION_ASSETS[-1]
feed_reconciliation_record = FEED_RECONCILIATION_ASSETS[-1]
