"""The Dagster definitions: every stage's assets, checks, sensors and schedules, and the resources.

Stages, in order, one module each beside this one:
- `database`: the product schema (migrations) as an asset;
- `files`: the landing-zone sensor, `uploaded_file` (landing) and `canonical_file` (reading,
  schema detection, pandera validation, typed parquet), partitioned one file per partition.
"""

from dagster import Definitions

from pipelines.database import database_schema
from pipelines.files import canonical_file, landing_zone_sensor, uploaded_file
from resources.database import DatabaseResource
from resources.file_store import FileStoreResource

defs = Definitions(
    assets=[database_schema, uploaded_file, canonical_file],
    sensors=[landing_zone_sensor],
    resources={"database": DatabaseResource(), "file_store": FileStoreResource()},
)
