"""Stage 4, maintenance: `exception_ageing`, how long the open breaks have waited, on the schedule.

The asset (group `maintenance`, run by `daily_reconciliation` beside `database_upkeep`) counts
every organization's OPEN exceptions by type, severity and age bucket (0-7, 8-30, 31-90, >90
days: `pipelines.work.ageing`) into its metadata as a table and a bar chart, and its check
`no_stale_critical_breaks` warns when CRITICAL exceptions have been open more than 7 days.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from pipelines.work.ageing import (
    BUCKETS,
    CRITICAL_DAYS,
    bucket_chart,
    exception_ageing,
    stale_critical,
)
from resources.database import DatabaseResource

CHECK = "no_stale_critical_breaks"


@asset(
    name="exception_ageing",
    group_name="maintenance",
    kinds={"postgres"},
    description=(
        "Open exceptions per organization x type x severity by age (0-7, 8-30, 31-90, >90 "
        "days), with a check that warns on CRITICAL breaks open more than 7 days."
    ),
    check_specs=[
        AssetCheckSpec(
            CHECK,
            asset="exception_ageing",
            description=f"No CRITICAL exception open more than {CRITICAL_DAYS} days.",
        )
    ],
)
def exception_ageing_asset(
    context: AssetExecutionContext, database: DatabaseResource
) -> MaterializeResult:
    rows = exception_ageing(database.engine())
    stale = stale_critical(rows)
    context.log.info(
        "%d open exceptions, %d CRITICAL older than %d days",
        sum(r.total for r in rows),
        stale,
        CRITICAL_DAYS,
    )
    schema = TableSchema(
        columns=[
            TableColumn("organization", "string"),
            TableColumn("type", "string"),
            TableColumn("severity", "string"),
            *[TableColumn(b, "int") for b in BUCKETS],
            TableColumn("oldest_days", "int"),
        ]
    )
    table = [
        TableRecord(
            {
                "organization": r.organization,
                "type": r.type,
                "severity": r.severity,
                **dict(zip(BUCKETS, r.buckets, strict=True)),
                "oldest_days": r.oldest_days,
            }
        )
        for r in rows
    ]
    return MaterializeResult(
        metadata={
            "open_exceptions": sum(r.total for r in rows),
            "stale_critical": stale,
            "by_age": MetadataValue.md(bucket_chart(rows)),
            "ageing": MetadataValue.table(table, schema=schema),
        },
        check_results=[
            AssetCheckResult(
                check_name=CHECK,
                passed=stale == 0,
                severity=AssetCheckSeverity.WARN,
                description=f"{stale} CRITICAL exceptions open more than {CRITICAL_DAYS} days",
                metadata={"stale_critical": stale},
            )
        ],
    )
