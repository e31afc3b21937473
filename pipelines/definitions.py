"""The Dagster definitions: every stage's assets, checks, sensors and schedules, and the resources.

Stages, in order: `database` (the schema). Each stage lives in its own module beside this one.
"""

from __future__ import annotations

from dagster import Definitions

from pipelines.database import database_schema
from resources.database import DatabaseResource

defs = Definitions(
    assets=[database_schema],
    resources={"database": DatabaseResource()},
)
