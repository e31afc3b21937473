"""The four reconcile stages as plain functions of a run's context (the assets' bodies).

`map_records`, `link_records`, `find_exceptions` and `commit_record` do one stage each for one
reconciliation: read what the stage before left in the reconciliation's working folder
(`ReconciliationWork`), call the logic in `pipelines.reconcile`, write the next hand-off, move
the record's progress, and return the materialization's metadata. `_stage` wraps each: a lost
database connection is retried with backoff (1, 2, 4 s), any other error fails the
reconciliation with the stage's name and its first line. The assets that call them are built
in `pipelines.reconciliation`; linkage, and the exceptions' breaks, run on the `linkage_engine`
resource's engine.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import sqlalchemy as sa
from dagster import AssetExecutionContext, MetadataValue, Output, RetryRequested

from pipelines.ingest.validation import FAILURE_SCHEMA
from pipelines.reconcile import carry, records
from pipelines.reconcile.aggregation_groups import write_quotes
from pipelines.reconcile.carry_commit import commit_setting
from pipelines.reconcile.commit import commit_results
from pipelines.reconcile.exceptions import build_exceptions
from pipelines.reconcile.linkage import LinkResult, match_weights_html
from pipelines.reconcile.mapping import ROW, Conformed, conform
from pipelines.reconcile.rule_store import load_stored_rule_set
from pipelines.stage_metadata import (
    carry_metadata,
    column_lineage,
    group_metadata,
    histogram,
    type_severity_table,
)
from resources.database import DatabaseResource
from resources.file_store import FileStore
from resources.linkage_engine import LinkageEngineResource

FEED_PREFIX = "feed"
MAX_RETRIES = 3
# a database that went away for a moment: worth another try, unlike a data problem
RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError)


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


def _failures(store: FileStore, file_id: int, refused: Path) -> pl.DataFrame:
    """The file's failing rows (file stage), and those the mapping `refused` (an amount no
    number could be read from)."""
    found = [pl.DataFrame(schema=FAILURE_SCHEMA)]
    for path in (store.row_failures(file_id), refused):
        if path.exists():
            found.append(pl.read_parquet(path).cast(FAILURE_SCHEMA))
    return pl.concat(found)


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
        source_frame = _canonical(store, plan.source_file_id)
        target_frame = _canonical(store, plan.target_file_id)
        work_dir = store.reconciliation_dir(rid)
        work_dir.mkdir(parents=True, exist_ok=True)
        # a feed's date: its earlier dates' open items join its own records
        source_frame, target_frame, carried_in = carry.join_open_items(
            engine, store, rid, work_dir, source_frame, target_frame
        )
        conformed = conform(
            source_frame,
            target_frame,
            rule_set,
            source_schema=plan.source.detected_schema,
            target_schema=plan.target.detected_schema,
            source_name=source_name,
            target_name=target_name,
        )
        conformed.source.write_parquet(work_dir / "source.parquet")
        conformed.target.write_parquet(work_dir / "target.parquet")
        for side, refused in (
            ("source", conformed.source_failures),
            ("target", conformed.target_failures),
        ):
            if refused is not None:
                refused.write_parquet(work_dir / f"{side}_failures.parquet")
        (work_dir / "field_types.json").write_text(json.dumps(conformed.field_types))
        write_quotes(work_dir, source_frame, target_frame, rule_set, plan.source.detected_schema)
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
            "open_items_carried_in": carried_in,
            "matching_fields": MetadataValue.json(conformed.field_types),
            "seconds": elapsed,
            "dagster/column_lineage": column_lineage(rule_set),
        },
    )


def link_records(
    context: AssetExecutionContext,
    work_in: ReconciliationWork,
    database: DatabaseResource,
    store: FileStore,
    linkage: LinkageEngineResource,
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
        # a feed's date trains on its own records: a kept model (of the date that ran first)
        model, facts = (  # would make a backfill's result depend on its order
            (None, None) if plan.feed_id else records.load_model(engine, plan.rule_set_id)
        )
        quotes = work_in.path("quotes.parquet")
        result = linkage.link(
            conformed,
            rule_set,
            model=model,
            model_facts=facts,
            progress=context.log.info,
            quotes=pl.read_parquet(quotes) if quotes.exists() else None,
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
        "engine": str(stats.get("engine", "duckdb")),
        "blocking_rules": MetadataValue.json(stats.get("blocking_rules", [])),
        "score_distribution": MetadataValue.md(histogram(scores)),
        "seconds": elapsed,
        "stage_seconds": MetadataValue.json(stats.get("timings", {})),
    }
    metadata.update(group_metadata(result.links))
    if chart is not None:
        metadata["match_weights_chart"] = MetadataValue.path(str(chart))
    return Output(work, metadata=metadata)


def find_exceptions(
    context: AssetExecutionContext,
    work_in: ReconciliationWork,
    database: DatabaseResource,
    store: FileStore,
    linkage: LinkageEngineResource,
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
        work_dir = Path(work_in.work_dir)
        inputs = carry.input_paths(work_dir, store, plan.source_file_id, plan.target_file_id)
        found = build_exceptions(
            conformed,
            linked,
            rule_set,
            source_records=pl.scan_parquet(inputs["source"]),
            target_records=pl.scan_parquet(inputs["target"]),
            source_failures=_failures(
                store, plan.source_file_id, work_dir / "source_failures.parquet"
            ),
            target_failures=_failures(
                store, plan.target_file_id, work_dir / "target_failures.parquet"
            ),
            breaks=linkage.breaks(conformed, linked.links, rule_set),
        )
        found = carry.own_exceptions(found, carry.read_carried(work_dir))
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
            "engine": linkage.engine,  # where the breaks were found (`breaks.find_breaks`)
            "by_type_and_severity": type_severity_table(found),
            "seconds": elapsed,
        },
    )


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
        # source records paired by reference, by Splink, as nearest or in a group
        fuzzy = links.filter(pl.col("kind") != "EXACT").get_column("source_row").n_unique()
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
        counts = commit_results(
            engine,
            plan,
            links=links,
            exceptions=found,
            totals=(total_source, total_target),
            statistics=statistics,
            matched_sample=_matched_sample(work_in, links),
            run_id=context.run.run_id,
            carry=commit_setting(Path(work_in.work_dir)),
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
        **group_metadata(links),
        "stage_seconds": MetadataValue.json(counts["timings"]),
        "seconds": elapsed,
        **carry_metadata(engine, counts),
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
