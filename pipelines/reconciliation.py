"""Stage 2, reconciliation: mapping, linkage, exceptions and the reconciliation record as assets.

One run reconciles one `reconciliations` row (config `reconciliation_id`; `recon run` creates
it PENDING with its two landed files and rule-set version, then launches these assets in
process). The stages hand each other parquet files in the file store
(`store/reconciliations/<id>/`), and only the last one writes matches and exceptions to
PostgreSQL, in one transaction, so a failure anywhere leaves the record FAILED with its
error and nothing half-written. The logic lives in `pipelines.reconcile`; these are the edges.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from pipelines.files import canonical_file
from pipelines.ingest.validation import FAILURE_SCHEMA
from pipelines.reconcile import records
from pipelines.reconcile.exceptions import EXCEPTION_TYPES, SEVERITIES, build_exceptions
from pipelines.reconcile.linkage import LinkResult, link
from pipelines.reconcile.mapping import ROW, Conformed, conform
from pipelines.reconcile.rules import load_stored_rule_set
from resources.database import DatabaseResource
from resources.file_store import FileStore, FileStoreResource


class ReconciliationConfig(Config):
    """Which reconciliation this run computes (a `reconciliations.id`, created PENDING)."""

    reconciliation_id: int


@dataclass
class ReconciliationWork:
    """What one stage hands the next: the reconciliation, its working folder and timings."""

    reconciliation_id: int
    work_dir: str
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return Path(self.work_dir) / name


@contextmanager
def _stage(engine: sa.Engine, reconciliation_id: int, name: str) -> Iterator[None]:
    """Record any failure on the reconciliation (FAILED + error) before Dagster sees it."""
    try:
        yield
    except records.ReconciliationCancelled:
        raise
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        records.fail(engine, reconciliation_id, f"{name}: {message}")
        raise


def _canonical(store: FileStore, file_id: int) -> pl.DataFrame:
    return pl.read_parquet(store.canonical(file_id))


def _failures(store: FileStore, file_id: int) -> pl.DataFrame:
    path = store.row_failures(file_id)
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=FAILURE_SCHEMA)


def _load_conformed(work: ReconciliationWork, field_types: dict[str, str]) -> Conformed:
    return Conformed(
        pl.read_parquet(work.path("source.parquet")),
        pl.read_parquet(work.path("target.parquet")),
        field_types,
    )


@asset(
    group_name="reconcile",
    kinds={"polars", "parquet"},
    deps=[canonical_file],
    description="Both files' records in the target vocabulary (field mappings applied, typed).",
)
def mapped_records(
    context: AssetExecutionContext,
    config: ReconciliationConfig,
    database: DatabaseResource,
    file_store: FileStoreResource,
) -> Output[ReconciliationWork]:
    engine = database.engine()
    store = file_store.store()
    rid = config.reconciliation_id
    started = time.perf_counter()
    with _stage(engine, rid, "mapping"):
        plan = records.load_plan(engine, rid)
        records.start(engine, rid, context.run.run_id)
        rule_set = load_stored_rule_set(engine, plan.rule_set_id)
        source_name, target_name = plan.source.original_filename, plan.target.original_filename
        conformed = conform(
            _canonical(store, plan.source_file_id),
            _canonical(store, plan.target_file_id),
            rule_set,
            source_schema=plan.source.detected_schema,
            target_schema=plan.target.detected_schema,
            source_name=source_name,
            target_name=target_name,
        )
        work_dir = store.reconciliation_dir(rid)
        work_dir.mkdir(parents=True, exist_ok=True)
        conformed.source.write_parquet(work_dir / "source.parquet")
        conformed.target.write_parquet(work_dir / "target.parquet")
        (work_dir / "field_types.json").write_text(json.dumps(conformed.field_types))
        records.advance(engine, rid, 20)
    elapsed = round(time.perf_counter() - started, 3)
    work = ReconciliationWork(rid, str(work_dir), {"mapping": elapsed})
    context.log.info(
        "reconciliation %s: mapped %s -> %s in %.2fs", rid, source_name, target_name, elapsed
    )
    return Output(
        work,
        metadata={
            "reconciliation_id": rid,
            "rule_set_id": plan.rule_set_id,
            "source_records": conformed.source.height,
            "target_records": conformed.target.height,
            "valid_source_records": int(conformed.source.get_column("_valid").sum()),
            "valid_target_records": int(conformed.target.get_column("_valid").sum()),
            "matching_fields": MetadataValue.json(conformed.field_types),
            "seconds": elapsed,
            "dagster/column_lineage": _column_lineage(rule_set, source_name, target_name),
        },
    )


def _column_lineage(rule_set: Any, source_name: str, target_name: str) -> MetadataValue:
    from dagster import AssetKey, TableColumnDep, TableColumnLineage

    columns: dict[str, dict[str, None]] = {}
    for mapping in rule_set.field_mappings:
        columns.setdefault(mapping.target_field, {})[mapping.source_field] = None
    for name in rule_set.matching_fields():
        columns.setdefault(name, {})[name] = None
    deps = {
        target: [
            TableColumnDep(asset_key=AssetKey("canonical_file"), column_name=source)
            for source in sources
        ]
        for target, sources in columns.items()
    }
    return MetadataValue.column_lineage(TableColumnLineage(deps_by_column=deps))


@asset(
    group_name="reconcile",
    kinds={"duckdb", "splink"},
    description="Matched pairs: exact pre-pass in DuckDB, then Splink on the rest, one-to-one.",
)
def record_links(
    context: AssetExecutionContext,
    mapped_records: ReconciliationWork,
    database: DatabaseResource,
) -> Output[ReconciliationWork]:
    engine = database.engine()
    rid = mapped_records.reconciliation_id
    started = time.perf_counter()
    with _stage(engine, rid, "linkage"):
        plan = records.load_plan(engine, rid)
        rule_set = load_stored_rule_set(engine, plan.rule_set_id)
        types = json.loads(mapped_records.path("field_types.json").read_text())
        conformed = _load_conformed(mapped_records, types)
        model = records.load_model(engine, plan.rule_set_id)
        result = link(conformed, rule_set, model=model, progress=context.log.info)
        if result.trained and result.model is not None:
            records.save_model(
                engine,
                plan.rule_set_id,
                plan.organization_id,
                result.model,
                result.stats.get("training", {}),
            )
        result.links.write_parquet(mapped_records.path("links.parquet"))
        result.best_source.write_parquet(mapped_records.path("best_source.parquet"))
        result.best_target.write_parquet(mapped_records.path("best_target.parquet"))
        records.advance(engine, rid, 70)
    elapsed = round(time.perf_counter() - started, 3)
    stats = {k: v for k, v in result.stats.items() if k != "blocking_pair_counts"}
    work = ReconciliationWork(
        rid,
        mapped_records.work_dir,
        {**mapped_records.timings, "linkage": elapsed},
        {"linkage": stats, "model_trained_now": result.trained},
    )
    scores = result.links.get_column("score")
    return Output(
        work,
        metadata={
            "reconciliation_id": rid,
            "matched_pairs": result.links.height,
            "exact_matches": int(stats.get("exact_matches", 0)),
            "probabilistic_matches": int(stats.get("probabilistic_matches", 0)),
            "candidate_pairs_scored": int(stats.get("candidate_pairs_scored", 0)),
            "model": "trained now" if result.trained else "reused (trained earlier)",
            "blocking_rules": MetadataValue.json(stats.get("blocking_rules", [])),
            "score_distribution": MetadataValue.md(_histogram(scores)),
            "seconds": elapsed,
            "stage_seconds": MetadataValue.json(stats.get("timings", {})),
        },
    )


def _histogram(scores: pl.Series, bins: int = 10) -> str:
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


@asset(
    name="exceptions",
    group_name="reconcile",
    kinds={"polars"},
    description="Reconciliation exceptions with severity, confidence, diff and fingerprint.",
)
def exceptions_asset(
    context: AssetExecutionContext,
    record_links: ReconciliationWork,
    database: DatabaseResource,
    file_store: FileStoreResource,
) -> Output[ReconciliationWork]:
    engine = database.engine()
    store = file_store.store()
    rid = record_links.reconciliation_id
    started = time.perf_counter()
    with _stage(engine, rid, "exceptions"):
        plan = records.load_plan(engine, rid)
        rule_set = load_stored_rule_set(engine, plan.rule_set_id)
        types = json.loads(record_links.path("field_types.json").read_text())
        conformed = _load_conformed(record_links, types)
        linked = LinkResult(
            pl.read_parquet(record_links.path("links.parquet")),
            pl.read_parquet(record_links.path("best_source.parquet")),
            pl.read_parquet(record_links.path("best_target.parquet")),
            None,
            False,
        )
        found = build_exceptions(
            conformed,
            linked,
            rule_set,
            source_records=pl.scan_parquet(store.canonical(plan.source_file_id)),
            target_records=pl.scan_parquet(store.canonical(plan.target_file_id)),
            source_failures=_failures(store, plan.source_file_id),
            target_failures=_failures(store, plan.target_file_id),
        )
        found.write_parquet(record_links.path("exceptions.parquet"))
        records.advance(engine, rid, 85)
    elapsed = round(time.perf_counter() - started, 3)
    table = _type_severity_table(found)
    return Output(
        ReconciliationWork(
            rid,
            record_links.work_dir,
            {**record_links.timings, "exceptions": elapsed},
            record_links.stats,
        ),
        metadata={
            "reconciliation_id": rid,
            "exceptions": found.height,
            "by_type_and_severity": table,
            "seconds": elapsed,
        },
    )


def _type_severity_table(found: pl.DataFrame) -> MetadataValue:
    counts = {(t, s): n for t, s, n in found.group_by("type", "severity").len().iter_rows()}
    rows = []
    for kind in EXCEPTION_TYPES:
        row = {"type": kind, **{s: counts.get((kind, s), 0) for s in SEVERITIES}}
        row["total"] = sum(row[s] for s in SEVERITIES)
        rows.append(TableRecord(row))
    schema = TableSchema(
        columns=[TableColumn("type", "string")]
        + [TableColumn(s, "int") for s in SEVERITIES]
        + [TableColumn("total", "int")]
    )
    return MetadataValue.table(rows, schema=schema)


@asset(
    group_name="reconcile",
    kinds={"postgres"},
    description="The reconciliation record: matches, exceptions and counts committed at once.",
)
def reconciliation_record(
    context: AssetExecutionContext,
    exceptions: ReconciliationWork,
    database: DatabaseResource,
) -> MaterializeResult:
    engine = database.engine()
    rid = exceptions.reconciliation_id
    started = time.perf_counter()
    with _stage(engine, rid, "commit"):
        plan = records.load_plan(engine, rid)
        links = pl.read_parquet(exceptions.path("links.parquet"))
        found = pl.read_parquet(exceptions.path("exceptions.parquet"))
        total_source, total_target = plan.source.row_count, plan.target.row_count
        timings = dict(exceptions.timings)
        linkage = exceptions.stats.get("linkage", {})
        exact = int(linkage.get("exact_matches", 0))
        fuzzy = int(linkage.get("probabilistic_matches", 0))
        base = total_source or 1
        statistics = {
            "exactMatches": exact,
            "fuzzyMatches": fuzzy,
            "averageConfidence": round(float(links.get_column("score").mean() or 0.0), 4),
            "processingTimeMs": 0,
            "matchDistribution": {
                "exact": round(100.0 * exact / base, 2),
                "fuzzy": round(100.0 * fuzzy / base, 2),
                "unmatched": round(100.0 * (total_source - exact - fuzzy) / base, 2),
            },
            "exceptionsBySeverity": dict(found.group_by("severity").len().iter_rows()),
            "linkage": linkage,
            "modelTrainedNow": exceptions.stats.get("model_trained_now", False),
        }
        statistics["timings"] = timings  # commit_results adds its own time and the total
        sample = _matched_sample(exceptions, links)
        counts = records.commit_results(
            engine,
            plan,
            links=links,
            exceptions=found,
            totals=(total_source, total_target),
            statistics=statistics,
            matched_sample=sample,
            run_id=context.run.run_id,
        )
    elapsed = round(time.perf_counter() - started, 3)
    return MaterializeResult(
        metadata={
            "reconciliation_id": rid,
            "status": "COMPLETED",
            "match_rate": counts["match_rate"],
            "matched_records": counts["matched_records"],
            "exception_count": counts["exception_count"],
            "exceptions_by_type": MetadataValue.json(counts["exceptions_by_type"]),
            "stage_seconds": MetadataValue.json(counts["timings"]),
            "seconds": elapsed,
        }
    )


def _matched_sample(work: ReconciliationWork, links: pl.DataFrame) -> list[dict[str, Any]]:
    """Up to SAMPLE_LIMIT matched pairs in the seed's results shape (conformed fields)."""
    head = links.head(records.SAMPLE_LIMIT)
    if head.height == 0:
        return []

    def rows(name: str, wanted: pl.Series) -> dict[int, dict[str, Any]]:
        # only the sampled rows are read from the parquet, not the whole side
        picked = (
            pl.scan_parquet(work.path(name))
            .drop("_valid")
            .filter(pl.col(ROW).is_in(wanted.implode()))
            .collect()
        )
        return {r[ROW]: r for r in picked.to_dicts()}

    s_rows = rows("source.parquet", head["source_row"])
    t_rows = rows("target.parquet", head["target_row"])
    return [
        {
            "sourceRow": s_rows.get(s),
            "targetRow": t_rows.get(t),
            "matchScore": round(score, 4),
            "matchKind": kind,
        }
        for s, t, score, kind in head.select("source_row", "target_row", "score", "kind").rows()
    ]


RECONCILIATION_ASSETS = [mapped_records, record_links, exceptions_asset, reconciliation_record]
