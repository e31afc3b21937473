"""Stage 2, reconciliation: mapping, linkage, exceptions and the reconciliation record as assets.

The four assets are built twice by one factory, so both share every line of stage code:
- group `reconcile`: ad hoc, one run per `reconciliations` row (config `reconciliation_id`;
  `recon run` creates it PENDING with its two landed files and rule-set version);
- group `feed_reconcile` (keys `feed/...`): partitioned by business date x feed, one partition
  = one feed's reconciliation of one day (`pipelines.reconcile.feeds`); the pairing sensor,
  the daily schedule and backfills run these. Re-running a partition replaces its results.
The stages hand each other parquet files in the file store (`store/reconciliations/<id>/`),
and only the last one writes matches and exceptions to PostgreSQL, in one transaction, so a
failure anywhere leaves the record FAILED with its error and nothing half-written. A lost
database connection is retried with backoff (1, 2, 4 s) before the stage gives up. The logic
lives in `pipelines.reconcile`; these are the edges.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import polars as pl
import psycopg
import sqlalchemy as sa
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    RetryRequested,
    TableColumn,
    TableColumnDep,
    TableColumnLineage,
    TableRecord,
    TableSchema,
    asset,
)

from pipelines.files import canonical_file
from pipelines.ingest.validation import FAILURE_SCHEMA
from pipelines.partitions import feed_partitions
from pipelines.reconcile import feeds, records
from pipelines.reconcile.exceptions import EXCEPTION_TYPES, SEVERITIES, build_exceptions
from pipelines.reconcile.linkage import LinkResult, link, match_weights_html
from pipelines.reconcile.mapping import ROW, Conformed, conform
from pipelines.reconcile.rules import RuleSet, load_stored_rule_set
from resources.database import DatabaseResource
from resources.file_store import FileStore, FileStoreResource

FEED_PREFIX = "feed"
MAX_RETRIES = 3
# a database that went away for a moment: worth another try, unlike a data problem
RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError)


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def _stage(
    context: AssetExecutionContext, engine: sa.Engine, reconciliation_id: int, name: str
) -> Iterator[None]:
    """Retry database hiccups with backoff; record any other failure (FAILED + error)."""
    try:
        yield
    except records.ReconciliationCancelled:
        raise
    except RETRYABLE as err:
        if context.retry_number < MAX_RETRIES:
            wait = 2**context.retry_number
            context.log.warning(
                "%s: database error (%s); retry %d of %d in %d s",
                name,
                _first_line(err),
                context.retry_number + 1,
                MAX_RETRIES,
                wait,
            )
            raise RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from err
        _record_failure(engine, reconciliation_id, f"{name}: {_first_line(err)}")
        raise
    except Exception as err:
        _record_failure(engine, reconciliation_id, f"{name}: {_first_line(err)}")
        raise


def _record_failure(engine: sa.Engine, reconciliation_id: int, message: str) -> None:
    try:
        records.fail(engine, reconciliation_id, message)
    except RETRYABLE:  # the database is gone: the run's failure says why
        pass


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


# --- the four stages, as plain functions of the run's context ---------------------------------


def map_records(
    context: AssetExecutionContext, rid: int, database: DatabaseResource, store: FileStore
) -> Output[ReconciliationWork]:
    engine = database.engine()
    started = time.perf_counter()
    with _stage(context, engine, rid, "mapping"):
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
            "partition_key": plan.partition_key or "none (ad hoc)",
            "rule_set_id": plan.rule_set_id,
            "source_file": f"#{plan.source_file_id} {source_name}",
            "target_file": f"#{plan.target_file_id} {target_name}",
            "source_records": conformed.source.height,
            "target_records": conformed.target.height,
            "valid_source_records": int(conformed.source.get_column("_valid").sum()),
            "valid_target_records": int(conformed.target.get_column("_valid").sum()),
            "matching_fields": MetadataValue.json(conformed.field_types),
            "seconds": elapsed,
            "dagster/column_lineage": _column_lineage(rule_set),
        },
    )


def _column_lineage(rule_set: RuleSet) -> MetadataValue:
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


def link_records(
    context: AssetExecutionContext,
    work_in: ReconciliationWork,
    database: DatabaseResource,
    store: FileStore,
) -> Output[ReconciliationWork]:
    engine = database.engine()
    rid = work_in.reconciliation_id
    started = time.perf_counter()
    chart: Path | None = None
    with _stage(context, engine, rid, "linkage"):
        plan = records.load_plan(engine, rid)
        rule_set = load_stored_rule_set(engine, plan.rule_set_id)
        types = json.loads(work_in.path("field_types.json").read_text())
        conformed = _load_conformed(work_in, types)
        model, facts = records.load_model(engine, plan.rule_set_id)
        result = link(
            conformed, rule_set, model=model, model_facts=facts, progress=context.log.info
        )
        if result.trained and result.model is not None:
            records.save_model(
                engine,
                plan.rule_set_id,
                plan.organization_id,
                result.model,
                result.stats.get("training", {}),
            )
        result.links.write_parquet(work_in.path("links.parquet"))
        result.best_source.write_parquet(work_in.path("best_source.parquet"))
        result.best_target.write_parquet(work_in.path("best_target.parquet"))
        if result.model is not None:
            # one chart per model (rule-set version), drawn when first needed
            chart = store.match_weights_chart(plan.rule_set_id)
            if result.trained or not chart.exists():
                chart.parent.mkdir(parents=True, exist_ok=True)
                chart.write_text(match_weights_html(conformed, result.model), encoding="utf-8")
        records.advance(engine, rid, 70)
    elapsed = round(time.perf_counter() - started, 3)
    stats = {k: v for k, v in result.stats.items() if k != "blocking_pair_counts"}
    work = ReconciliationWork(
        rid,
        work_in.work_dir,
        {**work_in.timings, "linkage": elapsed},
        {"linkage": stats, "model_trained_now": result.trained},
    )
    scores = result.links.get_column("score")
    metadata: dict[str, Any] = {
        "reconciliation_id": rid,
        "matched_pairs": result.links.height,
        "exact_matches": int(stats.get("exact_matches", 0)),
        "probabilistic_matches": int(stats.get("probabilistic_matches", 0)),
        "candidate_pairs_scored": int(stats.get("candidate_pairs_scored", 0)),
        "model": result.stats.get("model_reuse")
        or ("trained now (none kept for this rule-set version)" if result.trained else "none"),
        "key_matches": int(stats.get("key_matches", 0)),
        "blocking_rules": MetadataValue.json(stats.get("blocking_rules", [])),
        "score_distribution": MetadataValue.md(_histogram(scores)),
        "seconds": elapsed,
        "stage_seconds": MetadataValue.json(stats.get("timings", {})),
    }
    if chart is not None:
        metadata["match_weights_chart"] = MetadataValue.path(str(chart))
    return Output(work, metadata=metadata)


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


def find_exceptions(
    context: AssetExecutionContext,
    work_in: ReconciliationWork,
    database: DatabaseResource,
    store: FileStore,
) -> Output[ReconciliationWork]:
    engine = database.engine()
    rid = work_in.reconciliation_id
    started = time.perf_counter()
    with _stage(context, engine, rid, "exceptions"):
        plan = records.load_plan(engine, rid)
        rule_set = load_stored_rule_set(engine, plan.rule_set_id)
        types = json.loads(work_in.path("field_types.json").read_text())
        conformed = _load_conformed(work_in, types)
        linked = LinkResult(
            pl.read_parquet(work_in.path("links.parquet")),
            pl.read_parquet(work_in.path("best_source.parquet")),
            pl.read_parquet(work_in.path("best_target.parquet")),
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
        found.write_parquet(work_in.path("exceptions.parquet"))
        records.advance(engine, rid, 85)
    elapsed = round(time.perf_counter() - started, 3)
    return Output(
        ReconciliationWork(
            rid, work_in.work_dir, {**work_in.timings, "exceptions": elapsed}, work_in.stats
        ),
        metadata={
            "reconciliation_id": rid,
            "exceptions": found.height,
            "by_type_and_severity": _type_severity_table(found),
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


def commit_record(
    context: AssetExecutionContext, work_in: ReconciliationWork, database: DatabaseResource
) -> tuple[records.ReconciliationPlan, dict[str, Any], dict[str, Any]]:
    """Write the results; returns the plan, the counts and the materialization metadata."""
    engine = database.engine()
    rid = work_in.reconciliation_id
    started = time.perf_counter()
    with _stage(context, engine, rid, "commit"):
        plan = records.load_plan(engine, rid)
        links = pl.read_parquet(work_in.path("links.parquet"))
        found = pl.read_parquet(work_in.path("exceptions.parquet"))
        total_source, total_target = plan.source.row_count, plan.target.row_count
        linkage = work_in.stats.get("linkage", {})
        by_kind = dict(links.group_by("kind").len().iter_rows())
        exact = int(by_kind.get("EXACT", 0))
        fuzzy = links.height - exact  # paired by reference, by Splink or as nearest
        base = total_source or 1
        statistics = {
            "exactMatches": exact,
            "fuzzyMatches": fuzzy,
            "matchesByKind": by_kind,
            "averageConfidence": round(float(links.get_column("score").mean() or 0.0), 4),
            "processingTimeMs": 0,
            "matchDistribution": {
                "exact": round(100.0 * exact / base, 2),
                "fuzzy": round(100.0 * fuzzy / base, 2),
                "unmatched": round(100.0 * (total_source - exact - fuzzy) / base, 2),
            },
            "exceptionsBySeverity": dict(found.group_by("severity").len().iter_rows()),
            "linkage": linkage,
            "modelTrainedNow": work_in.stats.get("model_trained_now", False),
            # commit_results adds its own time and the total
            "timings": dict(work_in.timings),
        }
        counts = records.commit_results(
            engine,
            plan,
            links=links,
            exceptions=found,
            totals=(total_source, total_target),
            statistics=statistics,
            matched_sample=_matched_sample(work_in, links),
            run_id=context.run.run_id,
        )
    elapsed = round(time.perf_counter() - started, 3)
    metadata = {
        "reconciliation_id": rid,
        "partition_key": plan.partition_key or "none (ad hoc)",
        "status": "COMPLETED",
        "match_rate": counts["match_rate"],
        "matched_records": counts["matched_records"],
        "exception_count": counts["exception_count"],
        "exceptions_by_type": MetadataValue.json(counts["exceptions_by_type"]),
        "stage_seconds": MetadataValue.json(counts["timings"]),
        "seconds": elapsed,
    }
    return plan, counts, metadata


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


HISTORY_CHECKS = ("match_rate_in_line", "exception_volume_in_line")


def history_checks(
    engine: sa.Engine, plan: records.ReconciliationPlan, counts: dict[str, Any]
) -> list[AssetCheckResult]:
    """Match rate and exception volume against the feed's recent completed business dates."""
    day, name = feeds.split_partition_key(plan.partition_key or "")
    feed = feeds.feed_named(engine, name)
    history = feeds.recent_history(engine, feed.id, day, int(feed.checks["history"]))
    rate, volume = float(counts["match_rate"]), int(counts["exception_count"])
    if not history:
        note = {"note": MetadataValue.text("no earlier completed business date to compare with")}
        return [AssetCheckResult(check_name=c, passed=True, metadata=note) for c in HISTORY_CHECKS]
    usual_rate = median(r for r, _ in history)
    usual_volume = median(v for _, v in history)
    drop, growth = feed.checks["match_rate_drop"], feed.checks["exception_growth"]
    rate_ok = rate >= usual_rate - drop
    volume_ok = volume <= max(growth * usual_volume, usual_volume + 5)
    compared = {"compared_days": len(history)}
    return [
        AssetCheckResult(
            check_name="match_rate_in_line",
            passed=rate_ok,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"match rate {rate:.2f}% vs a median of {usual_rate:.2f}% over the last "
                f"{len(history)} days (allowed drop {drop} points)"
            ),
            metadata={**compared, "match_rate": rate, "median_match_rate": usual_rate},
        ),
        AssetCheckResult(
            check_name="exception_volume_in_line",
            passed=volume_ok,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"{volume} exceptions vs a median of {usual_volume:g} over the last "
                f"{len(history)} days (allowed: {growth}x)"
            ),
            metadata={**compared, "exceptions": volume, "median_exceptions": usual_volume},
        ),
    ]


# --- the assets, built twice ------------------------------------------------------------------


def build_reconcile_assets(*, partitioned: bool) -> list[AssetsDefinition]:
    """The four stages as assets: ad hoc (config reconciliation_id) or per feed partition."""
    prefix = [FEED_PREFIX] if partitioned else []
    group = "feed_reconcile" if partitioned else "reconcile"
    where = (
        "One feed's business date (partition <date>|<feed>)"
        if partitioned
        else "One reconciliation (config reconciliation_id)"
    )
    # each run's hand-off under its own run id: two reconciliations in flight never share it
    shared: dict[str, Any] = {"group_name": group, "io_manager_key": "handoff_io_manager"}
    if partitioned:
        shared.update(partitions_def=feed_partitions, key_prefix=prefix)

    def upstream(name: str) -> dict[str, AssetIn]:
        return {"work_in": AssetIn(key=AssetKey([*prefix, name]))}

    mapping_description = (
        f"{where}: both files' records in the target vocabulary (field mappings applied, typed)."
    )
    if partitioned:

        @asset(
            name="mapped_records",
            kinds={"polars", "parquet"},
            # which landed files feed a business date is decided by the data (file names or
            # a date column), so the dependency is on the landed files as a whole
            deps=[AssetDep(canonical_file, partition_mapping=AllPartitionMapping())],
            description=mapping_description
            + " Picks the newest validated file of each side for the date.",
            **shared,
        )
        def feed_mapped_records(
            context: AssetExecutionContext,
            database: DatabaseResource,
            file_store: FileStoreResource,
        ) -> Output[ReconciliationWork]:
            store = file_store.store()
            rid = feeds.prepare_partition(
                database.engine(), store, context.partition_key, context.run.run_id
            )
            return map_records(context, rid, database, store)

        mapped = feed_mapped_records
    else:

        @asset(
            name="mapped_records",
            kinds={"polars", "parquet"},
            deps=[canonical_file],
            description=mapping_description,
            **shared,
        )
        def mapped_records(
            context: AssetExecutionContext,
            config: ReconciliationConfig,
            database: DatabaseResource,
            file_store: FileStoreResource,
        ) -> Output[ReconciliationWork]:
            return map_records(context, config.reconciliation_id, database, file_store.store())

        mapped = mapped_records

    @asset(
        name="record_links",
        kinds={"duckdb", "splink"},
        ins=upstream("mapped_records"),
        description=f"{where}: matched pairs: exact pre-pass in DuckDB, then Splink on the "
        "rest, one-to-one. Links Splink's match-weights chart.",
        **shared,
    )
    def record_links(
        context: AssetExecutionContext,
        work_in: ReconciliationWork,
        database: DatabaseResource,
        file_store: FileStoreResource,
    ) -> Output[ReconciliationWork]:
        return link_records(context, work_in, database, file_store.store())

    @asset(
        name="exceptions",
        kinds={"polars"},
        ins=upstream("record_links"),
        description=f"{where}: exceptions with severity, confidence, diff and fingerprint.",
        **shared,
    )
    def exceptions(
        context: AssetExecutionContext,
        work_in: ReconciliationWork,
        database: DatabaseResource,
        file_store: FileStoreResource,
    ) -> Output[ReconciliationWork]:
        return find_exceptions(context, work_in, database, file_store.store())

    record_key = AssetKey([*prefix, "reconciliation_record"])

    @asset(
        name="reconciliation_record",
        kinds={"postgres"},
        ins=upstream("exceptions"),
        description=f"{where}: matches, exceptions and counts committed at once; human "
        "resolutions kept by fingerprint on a re-run.",
        check_specs=[
            AssetCheckSpec(
                name,
                asset=record_key,
                description="Against the feed's recent completed business dates.",
            )
            for name in HISTORY_CHECKS
        ]
        if partitioned
        else None,
        **shared,
    )
    def reconciliation_record(
        context: AssetExecutionContext, work_in: ReconciliationWork, database: DatabaseResource
    ) -> MaterializeResult:
        plan, counts, metadata = commit_record(context, work_in, database)
        checks = history_checks(database.engine(), plan, counts) if partitioned else None
        return MaterializeResult(metadata=metadata, check_results=checks)

    return [mapped, record_links, exceptions, reconciliation_record]


RECONCILIATION_ASSETS = build_reconcile_assets(partitioned=False)
FEED_RECONCILIATION_ASSETS = build_reconcile_assets(partitioned=True)
reconciliation_record = RECONCILIATION_ASSETS[-1]
feed_reconciliation_record = FEED_RECONCILIATION_ASSETS[-1]
