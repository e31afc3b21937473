"""Automation of feed reconciliations: the pairing sensor, the daily schedule and upkeep.

- `feed_pairing_sensor` (every 30 s): loads the feeds file when it changed (new feed names
  become partitions of the `feed` dimension), then asks for one run of the `reconcile_feed`
  job per feed business date whose two sides have landed and passed validation and that is
  not yet COMPLETED with those files. The run key names the files (`<date>|<feed>|<source
  file id>|<target file id>`), so a date runs once per pair of files and a late corrected file
  (a newer file id) runs it again.
- `daily_reconciliation` (`build_daily_schedule`: cron and timezone from
  `pipelines/definitions.py`, RECON_SCHEDULE_CRON / RECON_SCHEDULE_TIMEZONE, default 06:00 UTC):
  reconciles whatever is due (ready but not COMPLETED
  with its newest files: missed while the sensor was off, or failed and worth another try)
  and runs `database_upkeep`.
- `database_upkeep`: VACUUM ANALYZE on the busy tables, expired embedding-cache cleanup and the
  search's IVF index when due (`pipelines/embed/search/ivf.py`).
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
    schedule,
    sensor,
)

from pipelines.ageing import exception_ageing_asset
from pipelines.embed.search.ivf import ensure_ivf
from pipelines.embeddings import feed_exception_embeddings
from pipelines.partitions import add_business_dates, feed_names
from pipelines.reconcile import feeds
from pipelines.reconcile.feed_store import store_feeds
from pipelines.reconciliation import FEED_RECONCILIATION_ASSETS
from resources.database import DatabaseResource
from resources.file_store import FileStoreResource
from resources.settings import DEFAULT_SCHEDULE_CRON, DEFAULT_SCHEDULE_TIMEZONE

FEED_TAG = "recon/feed"
DATE_TAG = "recon/business_date"
BUSY_TABLES = (
    "reconciliation_matches",
    "reconciliation_exceptions",
    "reconciliations",
    "document_embeddings",
    "embedding_cache",
    "uploaded_files",
    "pipeline_run_logs",
    "sync_logs",
    "chat_messages",
)

# what one feed partition's run materializes
FEED_ASSETS = [*FEED_RECONCILIATION_ASSETS, feed_exception_embeddings]
FEED_SELECTION = [key for a in FEED_ASSETS for key in a.keys]
reconcile_feed_job = define_asset_job(
    "reconcile_feed",
    selection=AssetSelection.assets(*FEED_SELECTION),
    description="Reconcile one feed's business date (partition <date>|<feed>) and embed it.",
    tags={"recon/kind": "feed"},
)


def _run_request(ready: feeds.ReadyPartition, reason: str, run_key_suffix: str) -> RunRequest:
    return RunRequest(
        run_key=ready.run_key + run_key_suffix,
        asset_selection=FEED_SELECTION,
        partition_key=ready.partition_key,
        tags={
            FEED_TAG: ready.feed,
            DATE_TAG: ready.business_date.isoformat(),
            "recon/trigger": reason,
            "recon/source_file_id": str(ready.source_file_id),
            "recon/target_file_id": str(ready.target_file_id),
        },
    )


def load_feeds_if_changed(
    engine: sa.Engine, path: Path, cursor: dict[str, Any], log: Any
) -> list[str]:
    """Load the feeds file `path` into the database when its content changed; the feeds loaded."""
    if not path.is_file():
        return []
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if cursor.get("feeds_sha256") == digest:
        return []
    specs = feeds.load_feeds_file(path)
    outcome = store_feeds(engine, specs, path)
    log.info("feeds file %s loaded: %s", path, json.dumps(outcome))
    cursor["feeds_sha256"] = digest
    return [s.name for s in specs]


def due_requests(
    engine: sa.Engine,
    store: Any,
    instance: DagsterInstance,
    *,
    reason: str,
    run_key_suffix: str = "",
) -> list[RunRequest]:
    """Run requests for every ready feed business date not yet reconciled with its files.

    Each business date asked for becomes a date partition first (the date axis grows with the
    files, from each feed's first one).
    """
    ready_now = [
        ready
        for feed in feeds.active_feeds(engine)
        for ready in feeds.ready_partitions(engine, store, feed)
        if not ready.reconciled
    ]
    add_business_dates(instance, [r.business_date for r in ready_now])
    return [_run_request(ready, reason, run_key_suffix) for ready in ready_now]


@sensor(
    job=reconcile_feed_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Starts a feed's reconciliation for a business date once both sides have landed and "
        "passed validation; a late corrected file starts it again. Loads the feeds file "
        "(RECON_FEEDS_FILE, default RECON_HOME/feeds.yaml) when it changes."
    ),
)
def feed_pairing_sensor(
    context: SensorEvaluationContext, database: DatabaseResource, file_store: FileStoreResource
) -> SensorResult:
    engine = database.engine()
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    try:
        loaded = load_feeds_if_changed(engine, file_store.store().feeds_file, cursor, context.log)
    except feeds.FeedError as err:
        # a broken feeds file stops nothing already declared: report it and keep pairing
        context.log.error("feeds file not loaded: %s", err)
        loaded = []
    names = sorted(set(loaded) | {f.name for f in feeds.active_feeds(engine)})
    new_names = [n for n in names if not context.instance.has_dynamic_partition(feed_names.name, n)]
    # run keys name the files: a date whose files already ran (even if it FAILED) is not
    # asked again by the sensor; the daily schedule retries what is still due
    requests = due_requests(engine, file_store.store(), context.instance, reason="pairing")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[feed_names.build_add_request(new_names)] if new_names else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def run_upkeep(engine: sa.Engine, cache_idle_days: int) -> dict[str, Any]:
    """Expired cache entries (and those unused `cache_idle_days`) deleted, then VACUUM ANALYZE
    on each busy table (timed), then the search's IVF index built when due (`ensure_ivf`)."""
    with engine.begin() as conn:
        expired = conn.execute(
            sa.text(
                "DELETE FROM embedding_cache WHERE expires_at < NOW() OR (expires_at IS NULL "
                "AND last_used_at < NOW() - make_interval(days => :d))"
            ),
            {"d": cache_idle_days},
        ).rowcount
    tables: list[dict[str, Any]] = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in BUSY_TABLES:
            started = time.perf_counter()
            conn.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
            stats = conn.execute(
                sa.text(
                    "SELECT n_live_tup, n_dead_tup, pg_total_relation_size(relid) AS bytes "
                    "FROM pg_stat_user_tables WHERE relname = :t"
                ),
                {"t": table},
            ).first()
            tables.append(
                {
                    "table": table,
                    "seconds": round(time.perf_counter() - started, 3),
                    "live_rows": int(stats.n_live_tup) if stats else 0,
                    "megabytes": round((stats.bytes if stats else 0) / 2**20, 2),
                }
            )
    ivf = ensure_ivf(engine)
    return {"expired_cache_entries": max(expired, 0), "tables": tables, "ivf_index": ivf}


@asset(
    group_name="maintenance",
    kinds={"postgres"},
    description=(
        "Database upkeep: expired embedding-cache entries deleted (expires_at passed, or unused "
        "for the database resource's cache_idle_days, RECON_CACHE_IDLE_DAYS, default 90), "
        "VACUUM ANALYZE on the busy tables, the search's IVF index built once the embeddings "
        "reach 100,000 and rebuilt when they have doubled."
    ),
)
def database_upkeep(
    context: AssetExecutionContext, database: DatabaseResource
) -> MaterializeResult:
    done = run_upkeep(database.engine(), database.cache_idle_days)
    context.log.info("upkeep: %s expired cache entries deleted", done["expired_cache_entries"])
    schema = TableSchema(
        columns=[
            TableColumn("table", "string"),
            TableColumn("seconds", "float"),
            TableColumn("live_rows", "int"),
            TableColumn("megabytes", "float"),
        ]
    )
    return MaterializeResult(
        metadata={
            "expired_cache_entries": done["expired_cache_entries"],
            "tables": MetadataValue.table([TableRecord(t) for t in done["tables"]], schema=schema),
            "seconds": round(sum(t["seconds"] for t in done["tables"]), 3),
            "ivf_index": MetadataValue.json(done["ivf_index"]),
        }
    )


upkeep_job = define_asset_job(
    "upkeep", selection=[database_upkeep], description="VACUUM ANALYZE and cache cleanup."
)


def daily_requests(
    context: ScheduleEvaluationContext, database: DatabaseResource, file_store: FileStoreResource
) -> list[RunRequest]:
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else ""
    # a tick asks once per due partition; a later tick may ask again if it is still due
    requests = due_requests(
        database.engine(),
        file_store.store(),
        context.instance,
        reason="schedule",
        run_key_suffix=f"|{stamp}",
    )
    upkeep = RunRequest(
        run_key=f"upkeep|{stamp}",
        asset_selection=[database_upkeep.key, exception_ageing_asset.key],
    )
    return [*requests, upkeep]


def build_daily_schedule(
    cron: str = DEFAULT_SCHEDULE_CRON, timezone: str = DEFAULT_SCHEDULE_TIMEZONE
) -> ScheduleDefinition:
    """The `daily_reconciliation` schedule (`daily_requests`) on `cron` in `timezone`."""
    return schedule(
        target=AssetSelection.assets(*FEED_SELECTION, database_upkeep, exception_ageing_asset),
        name="daily_reconciliation",
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Daily ({cron} {timezone}; RECON_SCHEDULE_CRON, RECON_SCHEDULE_TIMEZONE): reconciles "
            "every feed business date that is ready but not reconciled with its newest files, "
            "and runs database_upkeep and exception_ageing."
        ),
    )(daily_requests)


# with the default cron and timezone (the definitions build their own from the environment)
daily_reconciliation = build_daily_schedule()
