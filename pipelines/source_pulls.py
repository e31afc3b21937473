"""Dagster's side of pulled data sources: the `source_pulls` asset and the `pull_sources` schedule.

`source_pulls` pulls every active DATABASE and REST_API source (or those named in its run
config) for a business date into the landing zone (`pipelines.ingest.pulls.pull`); the
landing-zone sensor lands each file like any other, and a feed naming the data source
reconciles it for that date. Its materialization shows, per source, the records pulled, the
watermarks moved and the file written; a source that fails is recorded (sync_logs, the table)
and the others still pull, and the run then fails naming it.

`pull_sources` (`build_pull_schedule`: RECON_PULL_CRON, default 05:00, in the daily schedule's
timezone, so the day's files are there before the 06:00 reconciliation) asks for one run per
tick with the tick's date as the business date.
"""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from dagster import (
    AssetExecutionContext,
    Config,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
    schedule,
)
from pydantic import Field

from pipelines.ingest.pulls.pull import pull_source, pulled_sources
from resources.database import DatabaseResource
from resources.file_store import FileStoreResource
from resources.settings import DEFAULT_SCHEDULE_TIMEZONE

DEFAULT_PULL_CRON = "0 5 * * *"
_COLUMNS = (
    ("source", "string"),
    ("status", "string"),
    ("records", "int"),
    ("watermark_from", "string"),
    ("watermark_to", "string"),
    ("file", "string"),
    ("seconds", "float"),
    ("error", "string"),
)


class PullConfig(Config):
    """Which business date to pull for, and which sources."""

    business_date: str = Field("", description="YYYY-MM-DD; empty: today (UTC)")
    organization: str = Field("", description="Only this organization's sources")
    sources: list[str] = Field([], description="Only these data sources")


@asset(
    group_name="ingest",
    kinds={"sql", "api"},
    description=(
        "New records of every DATABASE and REST_API data source since its last pull, written "
        "into the landing zone as one file per source (the landing sensor lands them)."
    ),
)
def source_pulls(
    context: AssetExecutionContext,
    config: PullConfig,
    database: DatabaseResource,
    file_store: FileStoreResource,
) -> MaterializeResult:
    engine = database.engine()
    day = date.fromisoformat(config.business_date) if config.business_date else date.today()
    sources = pulled_sources(engine, config.organization or None, config.sources or None)
    zone = file_store.store().landing
    results = []
    for index, source in enumerate(sources, start=1):
        context.log.info(f"pulling {source.label} ({source.type}) [{index}/{len(sources)}]")
        result = pull_source(engine, zone, source, day)
        (context.log.info if result.status == "SUCCESS" else context.log.error)(
            f"{source.label}: {result.status}, {result.records} record(s), watermark "
            f"{result.watermark_from!r} -> {result.watermark_to!r}"
            + (f", {result.file}" if result.file else "")
            + (f": {result.error}" if result.error else "")
        )
        results.append(result)
    schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in _COLUMNS])
    rows = [
        TableRecord(
            {
                "source": r.source,
                "status": r.status,
                "records": r.records,
                "watermark_from": str(r.watermark_from),
                "watermark_to": str(r.watermark_to),
                "file": r.file or "",
                "seconds": r.seconds,
                "error": r.error or "",
            }
        )
        for r in results
    ]
    metadata = {
        "business_date": day.isoformat(),
        "sources": len(results),
        "records": sum(r.records for r in results),
        "files_written": sum(1 for r in results if r.file),
        "pulls": MetadataValue.table(rows, schema=schema),
    }
    failed = [r for r in results if r.status != "SUCCESS"]
    if failed:
        raise Failure(
            description="; ".join(str(r.error) for r in failed),
            metadata=metadata,
        )
    return MaterializeResult(metadata=metadata)


pull_sources_job = define_asset_job(
    "pull_sources",
    selection=[source_pulls],
    description="Pull the DATABASE and REST_API data sources' new records into the landing zone.",
)


def build_pull_schedule(
    cron: str = DEFAULT_PULL_CRON, timezone: str = DEFAULT_SCHEDULE_TIMEZONE
) -> ScheduleDefinition:
    """The `pull_sources` schedule: one run per tick, the tick's date the business date."""

    def requests(context: ScheduleEvaluationContext) -> RunRequest:
        when = context.scheduled_execution_time or datetime.now(ZoneInfo(timezone))
        day = when.astimezone(ZoneInfo(timezone)).date().isoformat()
        return RunRequest(
            run_key=f"pull|{day}|{when.isoformat()}",
            run_config={"ops": {"source_pulls": {"config": {"business_date": day}}}},
            tags={"recon/business_date": day, "recon/trigger": "schedule"},
        )

    return schedule(
        job=pull_sources_job,
        name="pull_sources",
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Daily ({cron} {timezone}; RECON_PULL_CRON): pulls the DATABASE and REST_API data "
            "sources for the day; the landing sensor lands the files and the pairing sensor "
            "reconciles the feeds that name them."
        ),
    )(requests)


pull_schedule = build_pull_schedule()
