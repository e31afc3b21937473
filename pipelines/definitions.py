"""The Dagster definitions: every stage's assets, checks, sensors and schedules, and the resources.

Stages, in order, one module each beside this one (asset groups in brackets):
- `database` [schema]: the product schema (migrations) as an asset;
- `files` [ingest]: the landing-zone sensor, `uploaded_file` (landing) and `canonical_file`
  (reading, schema detection, pandera validation, typed parquet), one file per partition;
- `reconciliation` [reconcile, feed_reconcile]: `mapped_records` -> `record_links` ->
  `exceptions` -> `reconciliation_record`, ad hoc (one run per `reconciliations` row, `recon
  run`) and per feed partition (`feed/...`, business date x feed);
- `embeddings` [ai, feed_reconcile]: `exception_embeddings` (semantic search, suggested
  resolutions) after the reconciliation, never holding it up;
- `automation` [maintenance]: the feed pairing sensor, the daily schedule, database upkeep.
"""

from dagster import Definitions, define_asset_job, in_process_executor

from pipelines.automation import (
    daily_reconciliation,
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
from resources.database import DatabaseResource
from resources.embedder import EmbedderResource
from resources.file_store import FileStoreResource

reconcile_job = define_asset_job(
    "reconcile",
    selection=[a.key for a in RECONCILIATION_ASSETS],
    description="Reconcile one PENDING reconciliation (config: reconciliation_id).",
)

embed_job = define_asset_job(
    "embed_exceptions",
    selection=[exception_embeddings.key],
    description="Embed a COMPLETED reconciliation's exceptions (config: reconciliation_id).",
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
    ],
    jobs=[reconcile_job, embed_job, reconcile_feed_job, upkeep_job],
    sensors=[landing_zone_sensor, feed_pairing_sensor],
    schedules=[daily_reconciliation],
    # every stage waits for the one before it: one process per run, not one per step (a step
    # subprocess pays ~5 s of imports)
    executor=in_process_executor,
    resources={
        "database": DatabaseResource(),
        "file_store": FileStoreResource(),
        "embedder": EmbedderResource(),
        "handoff_io_manager": run_scoped_io_manager,
    },
)
