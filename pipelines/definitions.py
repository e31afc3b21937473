"""The Dagster definitions: every stage's assets, checks, sensors and schedules, and the resources.

Stages, in order, one module each beside this one:
- `database`: the product schema (migrations) as an asset;
- `files`: the landing-zone sensor, `uploaded_file` (landing) and `canonical_file` (reading,
  schema detection, pandera validation, typed parquet), partitioned one file per partition;
- `reconciliation`: `mapped_records` -> `record_links` -> `exceptions` ->
  `reconciliation_record`, one run per `reconciliations` row;
- `embeddings`: `exception_embeddings` (semantic search, suggested resolutions), a run of its
  own after the reconciliation, so embedding never holds up or fails a reconciliation.
"""

from dagster import Definitions, define_asset_job

from pipelines.database import database_schema
from pipelines.embeddings import exception_embeddings
from pipelines.files import canonical_file, landing_zone_sensor, uploaded_file
from pipelines.reconciliation import RECONCILIATION_ASSETS
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
    ],
    jobs=[reconcile_job, embed_job],
    sensors=[landing_zone_sensor],
    resources={
        "database": DatabaseResource(),
        "file_store": FileStoreResource(),
        "embedder": EmbedderResource(),
    },
)
