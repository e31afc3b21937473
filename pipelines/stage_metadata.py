"""What the reconcile stages show in the Dagster UI besides their counts: pictures as metadata.

`column_lineage` (each matched field from its source and target columns: the asset's column
lineage view), `histogram` (the matched pairs' score distribution as a Markdown bar chart) and
`type_severity_table` (exceptions by type and severity as a table); `group_metadata` (matched
groups of aggregate matching and how many have each size).
"""

from __future__ import annotations

import polars as pl
from dagster import (
    MetadataValue,
    TableColumn,
    TableColumnDep,
    TableColumnLineage,
    TableRecord,
    TableSchema,
)

from pipelines.files import canonical_file
from pipelines.reconcile.aggregation_groups import group_sizes
from pipelines.reconcile.exceptions import SEVERITIES
from pipelines.reconcile.rules import RuleSet
from pipelines.work.exceptions_work import TYPES


def column_lineage(rule_set: RuleSet) -> MetadataValue:
    """Each matched field from its source column (field mapping) and its target column."""
    columns: dict[str, dict[str, None]] = {}
    for mapping in rule_set.field_mappings:
        columns.setdefault(mapping.target_field, {})[mapping.source_field] = None
    for name in rule_set.matching_fields():
        columns.setdefault(name, {})[name] = None
    deps = {
        target: [
            TableColumnDep(asset_key=canonical_file.key, column_name=source) for source in sources
        ]
        for target, sources in columns.items()
    }
    return MetadataValue.column_lineage(TableColumnLineage(deps_by_column=deps))


def histogram(scores: pl.Series, bins: int = 10) -> str:
    if scores.len() == 0:
        return "no matched pairs"
    counts = [0] * bins
    for value in scores.to_list():
        counts[min(bins - 1, int(value * bins))] += 1
    top = max(counts) or 1
    lines = ["| score | pairs | |", "| --- | ---: | --- |"]
    for i, n in enumerate(counts):
        bar = "#" * round(30 * n / top)
        lines.append(f"| {i / bins:.1f}-{(i + 1) / bins:.1f} | {n} | `{bar}` |")
    return "\n".join(lines)


def type_severity_table(found: pl.DataFrame) -> MetadataValue:
    counts = {(t, s): n for t, s, n in found.group_by("type", "severity").len().iter_rows()}
    rows = []
    for kind in TYPES:
        row = {"type": kind, **{s: counts.get((kind, s), 0) for s in SEVERITIES}}
        row["total"] = sum(row[s] for s in SEVERITIES)
        rows.append(TableRecord(row))
    schema = TableSchema(
        columns=[TableColumn("type", "string")]
        + [TableColumn(s, "int") for s in SEVERITIES]
        + [TableColumn("total", "int")]
    )
    return MetadataValue.table(rows, schema=schema)


def group_metadata(links: pl.DataFrame) -> dict[str, object]:
    """`matched_groups` and `group_sizes` (members -> groups) when the links hold groups."""
    if "match_group" not in links.columns:
        return {}
    sizes = group_sizes(links)
    return {
        "matched_groups": sum(sizes.values()),
        "group_sizes": MetadataValue.json(sizes),
    }


def carry_metadata(engine: object, counts: dict[str, object]) -> dict[str, object]:
    """A feed date's open items: carried in, matched now, later dates made stale, and the
    feed's open items by age (empty for an ad hoc reconciliation)."""
    from pipelines.reconcile.carry import open_items_by_age

    done = counts.get("carry")
    if not isinstance(done, dict):
        return {}
    window = done["carry_forward_days"]
    ages = open_items_by_age(engine, done["feed_id"], done["business_date"])  # type: ignore[arg-type]
    schema = TableSchema(
        columns=[
            TableColumn("age", "string"),
            TableColumn("source_records", "int"),
            TableColumn("target_records", "int"),
        ]
    )
    return {
        "carry_forward_days": window,
        "open_items_carried_in": int(done["carried_in_source"]) + int(done["carried_in_target"]),
        "carried_matches": done["carried_matches"],
        "later_dates_made_stale": MetadataValue.json(done["stale_dates"]),
        "open_items_by_age": MetadataValue.table([TableRecord(a) for a in ages], schema=schema),
    }
