"""Stage 0, the database: the product schema as an asset.

Materializing `database_schema` applies any pending migrations (a no-op when up to date) and
reports the server version, the applied migrations and the row count of every product table,
so the Dagster UI answers "is the database ready, and what is in it" before any file lands.
"""

import sqlalchemy as sa
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from resources import migrations
from resources.database import DatabaseResource, check_database

PRODUCT_TABLES = (
    "organizations",
    "users",
    "data_sources",
    "uploaded_files",
    "rule_sets",
    "field_mappings",
    "matching_rules",
    "reconciliations",
    "reconciliation_exceptions",
    "reconciliation_matches",
    "chat_sessions",
    "chat_messages",
    "document_embeddings",
    "embedding_cache",
    "pipeline_run_logs",
    "sync_logs",
)


def table_row_counts(engine: sa.Engine) -> dict[str, int]:
    """Exact row counts of the product tables."""
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in PRODUCT_TABLES
        }


@asset(
    group_name="foundation",
    kinds={"postgres"},
    description="The product schema in PostgreSQL, migrated to the newest version.",
)
def database_schema(
    context: AssetExecutionContext, database: DatabaseResource
) -> MaterializeResult:
    url = database.database_url()
    version = check_database(url)
    applied = migrations.migrate(url)
    context.log.info("applied migrations: %s", applied or "none (up to date)")
    states = migrations.status(url)
    counts = table_row_counts(database.engine())
    table = "| table | rows |\n| --- | ---: |\n" + "\n".join(
        f"| {t} | {n} |" for t, n in counts.items()
    )
    return MaterializeResult(
        metadata={
            "server_version": version,
            "schema_version": states[-1].id if states else "none",
            "migrations_applied_now": len(applied),
            "tables": MetadataValue.md(table),
        }
    )
