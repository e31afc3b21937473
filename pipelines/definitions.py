"""The Dagster definitions: every stage's assets, checks, sensors and schedules, and the resources.

Stages, in order, one module each beside this one (asset groups in brackets):
- `database` [schema]: the product schema (migrations) as an asset;
- `files` [ingest]: the landing-zone sensor, `uploaded_file` (landing) and `canonical_file`
  (reading, schema detection, pandera validation, typed parquet), one file per partition;
- `reconciliation` [reconcile, feed_reconcile]: `mapped_records` -> `record_links` ->
  `exceptions` -> `reconciliation_record`, ad hoc (one partition per `reconciliations` row,
  `recon run`) and per feed partition (`feed/...`, business date x feed);
- `embeddings` [ai, feed_reconcile]: `exception_embeddings` (semantic search, suggested
  resolutions) after the reconciliation, never holding it up;
- `automation` [maintenance]: the feed pairing sensor, the daily schedule, database upkeep;
- `ageing` [maintenance]: `exception_ageing`, the open breaks by age, with a check on CRITICAL;
- `source_pulls` [ingest]: DATABASE and REST_API sources pulled into the landing zone daily.

Configuration is chosen here and only here, when the definitions load: each resource setting
is an `EnvVar` when its variable is set (Dagster resolves it at run time and the UI shows which
variable it is), else the default written in (`resources.settings.DEFAULT_*`; Dagster's
`EnvVar` has no default of its own, and an unset one fails the run): RECON_HOME (database
`home`, file store `root`), RECON_DATABASE_URL (database `url`; unset, the embedded server under
home), RECON_FEEDS_FILE, RECON_CACHE_IDLE_DAYS, and RECON_SCHEDULE_CRON / _TIMEZONE for the
daily schedule, RECON_PULL_CRON for the pull schedule of DATABASE and REST_API sources
(`source_pulls`). No other module reads the environment at import, and none writes it.
"""

import os
from collections.abc import Mapping
from typing import Any

from dagster import (
    Definitions,
    EnvVar,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from pipelines.ageing import exception_ageing_asset
from pipelines.automation import (
    build_daily_schedule,
    database_upkeep,
    feed_pairing_sensor,
    reconcile_feed_job,
    upkeep_job,
)
from pipelines.database import database_schema
from pipelines.embeddings import exception_embeddings, feed_exception_embeddings
from pipelines.files import canonical_file, landing_zone_sensor, uploaded_file
from pipelines.handoff import run_scoped_io_manager
from pipelines.reconciliation import FEED_RECONCILIATION_ASSETS, RECONCILIATION_ASSETS
from pipelines.source_pulls import (
    DEFAULT_PULL_CRON,
    build_pull_schedule,
    pull_sources_job,
    source_pulls,
)
from resources.database import DatabaseResource
from resources.embedder import EmbedderResource
from resources.file_store import FileStoreResource
from resources.linkage_engine import LinkageEngineResource
from resources.settings import (
    DEFAULT_CACHE_IDLE_DAYS,
    DEFAULT_HOME,
    DEFAULT_SCHEDULE_CRON,
    DEFAULT_SCHEDULE_TIMEZONE,
)


def _set(environ: Mapping[str, str], name: str) -> bool:
    return bool(environ.get(name, "").strip())


def configured_resources(environ: Mapping[str, str]) -> dict[str, Any]:
    """The resources, each setting `EnvVar(name)` when `environ` sets it, else its default."""
    home = EnvVar("RECON_HOME") if _set(environ, "RECON_HOME") else DEFAULT_HOME
    idle_days = (
        EnvVar.int("RECON_CACHE_IDLE_DAYS")
        if _set(environ, "RECON_CACHE_IDLE_DAYS")
        else DEFAULT_CACHE_IDLE_DAYS
    )
    return {
        "database": DatabaseResource(
            url=EnvVar("RECON_DATABASE_URL") if _set(environ, "RECON_DATABASE_URL") else None,
            home=home,
            cache_idle_days=idle_days,
        ),
        "file_store": FileStoreResource(
            root=home,
            feeds_file=EnvVar("RECON_FEEDS_FILE") if _set(environ, "RECON_FEEDS_FILE") else None,
        ),
        "embedder": EmbedderResource(),
        "linkage_engine": LinkageEngineResource(
            engine=EnvVar("RECON_LINKAGE_ENGINE")
            if _set(environ, "RECON_LINKAGE_ENGINE")
            else "duckdb",
            spark_master=EnvVar("RECON_SPARK_MASTER")
            if _set(environ, "RECON_SPARK_MASTER")
            else None,
        ),
        "handoff_io_manager": run_scoped_io_manager,
    }


def configured_schedule(environ: Mapping[str, str]) -> ScheduleDefinition:
    """`daily_reconciliation` on RECON_SCHEDULE_CRON in RECON_SCHEDULE_TIMEZONE (or defaults).

    A schedule's cron is part of its definition (no `EnvVar` there): it is read here, once.
    """
    return build_daily_schedule(
        environ.get("RECON_SCHEDULE_CRON", "").strip() or DEFAULT_SCHEDULE_CRON,
        _timezone(environ),
    )


def _timezone(environ: Mapping[str, str]) -> str:
    return environ.get("RECON_SCHEDULE_TIMEZONE", "").strip() or DEFAULT_SCHEDULE_TIMEZONE


def configured_pull_schedule(environ: Mapping[str, str]) -> ScheduleDefinition:
    """`pull_sources` on RECON_PULL_CRON (default 05:00) in the daily schedule's timezone."""
    cron = environ.get("RECON_PULL_CRON", "").strip() or DEFAULT_PULL_CRON
    return build_pull_schedule(cron, _timezone(environ))


reconcile_job = define_asset_job(
    "reconcile",
    selection=[a.key for a in RECONCILIATION_ASSETS],
    description="Reconcile one PENDING reconciliation (partition: its reconciliations.id).",
)

embed_job = define_asset_job(
    "embed_exceptions",
    selection=[exception_embeddings.key],
    description="Embed a COMPLETED reconciliation's exceptions (partition: its id).",
)

defs = Definitions(
    assets=[
        database_schema,
        uploaded_file,
        canonical_file,
        *RECONCILIATION_ASSETS,
        exception_embeddings,
        *FEED_RECONCILIATION_ASSETS,
        feed_exception_embeddings,
        database_upkeep,
        exception_ageing_asset,
        source_pulls,
    ],
    jobs=[reconcile_job, embed_job, reconcile_feed_job, upkeep_job, pull_sources_job],
    sensors=[landing_zone_sensor, feed_pairing_sensor],
    schedules=[configured_schedule(os.environ), configured_pull_schedule(os.environ)],
    # every stage waits for the one before it: one process per run, not one per step (a step
    # subprocess pays ~5 s of imports)
    executor=in_process_executor,
    resources=configured_resources(os.environ),
)
