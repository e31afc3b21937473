"""Stage 1, files: the landing-zone sensor and the assets that land, read, profile and validate.

Each file dropped into `<landing>/<organization>/<data source>/` becomes a dynamic partition of
`landed_files` (key: its zone path plus a content-hash prefix) and one run. The sensor's run
keys are those partition keys, so Dagster never launches a file twice, however many arrive in
one tick and whether or not the sensor restarts. The sensor hands each run the SHA-256 it
computed for the key, with the file's size and mtime_ns, in run tags, so that `uploaded_file`
does not read a large file a second time to hash it (it does when the file changed since, or
the run has no such tags). `uploaded_file` records the file and stores the original;
`canonical_file` (`process_landed_file`) reads it (any supported format and encoding), detects
its schema, validates it with pandera and writes typed parquet keyed by `uploaded_files.id`.
Row-level failures become an asset check with examples and flow on (a bank statement's
balances another, `statement_balances`, a warning); file-level failures mark
the file FAILED, quarantine it and stop its downstream assets. An entry the zone refuses (a
symlink, a hard link, a device, a FIFO, a socket: `zone.refusal`) gets no run: it is left in
place, and recorded in `sync_logs` and warned about once for as long as it is unchanged.
"""

import json
import time
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    TableColumn,
    TableSchema,
    asset,
    sensor,
)

from pipelines.ingest import landing, refusals
from pipelines.ingest.column_schema import FileSchema
from pipelines.ingest.processing import landed_file_for_partition, process_landed_file
from pipelines.ingest.readers import ROW_NUMBER
from pipelines.ingest.statements import ParsedStatements, check_balances
from pipelines.ingest.validation import examples
from resources.database import DatabaseResource
from resources.file_store import FileStoreResource

landed_files = DynamicPartitionsDefinition(name="landed_files")
MAX_RUNS_PER_TICK = 500
LANDING_PATH_TAG = "recon/landing_path"


def _find_in_zone(zone: Path, partition_key: str) -> landing.LandingPath | None:
    """The landing-zone file whose partition key this is, if it is still in the zone."""
    relative = partition_key.rsplit("#", 1)[0]
    candidate = landing.parse_landing_path(zone, zone / relative)
    if candidate is not None and candidate.path.is_file():
        return candidate
    # names with control characters were made safe in the key: look among the siblings
    folder = (zone / relative).parent
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        item = landing.parse_landing_path(zone, path)
        if (
            item
            and landing.partition_key_for(item.relative, landing.sha256_of(path)) == partition_key
        ):
            return item
    return None


def _sensor_fingerprint(
    tags: Mapping[str, str], item: landing.LandingPath, partition_key: str
) -> landing.Fingerprint | None:
    """The sensor's fingerprint of this file from the run's tags, if it is about this file.

    Only a fingerprint of the same zone path whose hash is the one in the partition key is
    passed on; `land_file` then also checks the file's size and mtime_ns before trusting it.
    Runs without the tags (backfills, `recon run`, re-executions) hash the file themselves.
    """
    known = landing.Fingerprint.from_tags(dict(tags))
    if (
        known is None
        or tags.get(LANDING_PATH_TAG) != str(item.relative)
        or not partition_key.endswith("#" + known.sha256[:12])
    ):
        return None
    return known


@asset(
    partitions_def=landed_files,
    group_name="ingest",
    kinds={"file", "postgres"},
    description="A landed file: recorded in uploaded_files and stored under a UUID-based name.",
)
def uploaded_file(
    context: AssetExecutionContext, database: DatabaseResource, file_store: FileStoreResource
) -> landing.LandedFile:
    store = file_store.store()
    item = _find_in_zone(store.landing, context.partition_key)
    if item is not None:
        landed = landing.land_file(
            database.engine(),
            store,
            item,
            partition_key=context.partition_key,
            run_id=context.run.run_id,
            known=_sensor_fingerprint(context.run.tags, item, context.partition_key),
        )
    else:
        # a re-run or backfill of a file landed before: process its stored original again
        earlier = landed_file_for_partition(database.engine(), store, context.partition_key)
        if earlier is None:
            raise Failure(
                description=f"no file for partition {context.partition_key} in {store.landing}: "
                "it was moved or deleted before landing; drop it into the landing zone again"
            )
        landed = earlier
    context.add_output_metadata(
        {
            "uploaded_file_id": landed.uploaded_file_id,
            "original_filename": landed.original_filename,
            "size_bytes": landed.size,
            "sha256": landed.sha256,
            "duplicate_of": landed.duplicate_of if landed.duplicate_of is not None else "none",
            "stored_path": MetadataValue.path(str(landed.stored_path)),
        }
    )
    return landed


def _column_schema(detected: FileSchema) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.data_type + (f" ({c.format})" if c.format else ""),
                description=f"samples: {', '.join(map(str, c.sample_values))}"[:200],
            )
            for c in detected
        ]
    )


def _preview_markdown(frame: pl.DataFrame, limit: int = 10) -> str:
    head = frame.head(limit)
    header = "| " + " | ".join(head.columns) + " |"
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    rows = [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in head.rows()
    ]
    return "\n".join([header, rule, *rows])


@asset(
    partitions_def=landed_files,
    group_name="ingest",
    kinds={"polars", "parquet", "pandera"},
    description="The landed file read, profiled, validated and written as typed parquet.",
    check_specs=[
        AssetCheckSpec(
            "rows_pass_validation",
            asset="canonical_file",
            description="Every row converts to its column's type and passes the declared checks.",
        ),
        AssetCheckSpec(
            "statement_balances",
            asset="canonical_file",
            description="A bank statement's opening balance plus its entries is its closing "
            "balance, per statement (warns; the file lands all the same).",
        ),
    ],
)
def canonical_file(
    context: AssetExecutionContext,
    uploaded_file: landing.LandedFile,
    database: DatabaseResource,
    file_store: FileStoreResource,
) -> MaterializeResult:
    store = file_store.store()
    engine = database.engine()
    item = landing.parse_landing_path(store.landing, store.landing / uploaded_file.landing_relative)
    if uploaded_file.duplicate_of is not None:
        return MaterializeResult(
            metadata={"duplicate_of": uploaded_file.duplicate_of, "status": "DUPLICATE"},
            check_results=[
                AssetCheckResult(
                    check_name="rows_pass_validation",
                    passed=True,
                    metadata={"note": "identical to an earlier file; not processed again"},
                ),
                AssetCheckResult(
                    check_name="statement_balances",
                    passed=True,
                    metadata={"note": "identical to an earlier file; not processed again"},
                ),
            ],
        )
    stage_seconds: dict[str, float] = {}
    stage_started = time.perf_counter()

    def stage(name: str) -> None:
        # each stage in the run's log as it ends: a big file shows where it is
        nonlocal stage_started
        now = time.perf_counter()
        stage_seconds[name] = round(now - stage_started, 3)
        stage_started = now
        context.log.info(
            "%s: %s done in %.2f s", uploaded_file.original_filename, name, stage_seconds[name]
        )

    processed = process_landed_file(engine, store, uploaded_file, item, stage)
    read, detected, typed = processed.read, processed.detected, processed.typed
    failures, invalid_rows = processed.failures, processed.invalid_rows
    name, canonical_path = uploaded_file.original_filename, processed.canonical_path
    context.log.info(
        "%s: %d rows, %d invalid, format %s, encoding %s",
        name,
        typed.height,
        invalid_rows.len(),
        read.file_format,
        read.encoding,
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": typed.height,
            "dagster/column_schema": _column_schema(detected),
            "uploaded_file_id": uploaded_file.uploaded_file_id,
            "format": read.file_format,
            "encoding": read.encoding or "binary",
            "invalid_rows": invalid_rows.len(),
            "canonical_path": MetadataValue.path(str(canonical_path)),
            "preview": MetadataValue.md(_preview_markdown(read.frame.drop(ROW_NUMBER))),
            "detected_schema": MetadataValue.json(detected.to_json()),
            "stage_seconds": MetadataValue.json(stage_seconds),
            "rows_per_second": round(typed.height / max(sum(stage_seconds.values()), 1e-6)),
        },
        check_results=[
            AssetCheckResult(
                check_name="rows_pass_validation",
                passed=failures.height == 0,
                severity=AssetCheckSeverity.WARN,
                description=(
                    f"{invalid_rows.len()} of {typed.height} rows failed validation and are kept "
                    "out of matching"
                    if failures.height
                    else "all rows valid"
                ),
                metadata={
                    "failing_rows": invalid_rows.len(),
                    "failing_cells": failures.height,
                    "examples": MetadataValue.json(examples(failures)),
                },
            ),
            *_balance_checks(read.statements, uploaded_file.uploaded_file_id),
        ],
    )


def _balance_checks(parsed: ParsedStatements | None, file_id: int) -> list[AssetCheckResult]:
    """The `statement_balances` result: WARN with each failing statement's difference; passed
    with a note for a file that is not a bank statement (every check needs a result)."""
    if parsed is None:
        note = {"note": "not a bank statement: no balances", "uploaded_file_id": file_id}
        return [AssetCheckResult(check_name="statement_balances", passed=True, metadata=note)]
    results = [r.as_data() for r in check_balances(parsed)]
    failing = [r for r in results if not r["passed"]]
    checked = sum(bool(r["checked"]) for r in results)
    lines = [
        f"statement {r['statement_id'] or '?'} (account {r['account'] or '?'}): opening "
        f"{r['opening_balance']} + entries {r['entries_total']} = {r['expected_closing']}, "
        f"closing {r['closing_balance']}, difference {r['difference']}"
        for r in failing
    ]
    result = AssetCheckResult(
        check_name="statement_balances",
        passed=not failing,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(lines)[:2000]
        if failing
        else f"{checked} of {len(results)} statements carry both balances, all of them add up",
        metadata={
            "uploaded_file_id": file_id,
            "format": parsed.file_format,
            "statements": len(results),
            "checked": checked,
            "failing": len(failing),
            "difference": MetadataValue.json(
                [
                    {"statement_id": r["statement_id"], "difference": r["difference"]}
                    for r in failing
                ]
            ),
            "balances": MetadataValue.json(results[:100]),
        },
    )
    return [result]


@sensor(
    target=[uploaded_file, canonical_file],
    minimum_interval_seconds=15,
    description="Starts one run per new file in the landing zone (<organization>/<source>/<file>).",
)
def landing_zone_sensor(
    context: SensorEvaluationContext, file_store: FileStoreResource, database: DatabaseResource
) -> SensorResult:
    # The cursor caches each waiting file's SHA-256 by (path, mtime, size), so a big file is
    # hashed once, not on every tick while it waits for its run; the hash, size and mtime go
    # to the run in tags, so that landing does not hash the file again (see land_file).
    # Cursors written before the full hash was kept held partition keys: those files are
    # hashed again once.
    known: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    zone = file_store.store().landing
    entries = landing.scan_with_refusals(zone)
    cursor: dict[str, str] = {}
    for item, reason in entries:
        if reason is not None:
            # recorded in sync_logs and said once per entry as it is (size, mtime: kept in
            # the cursor); left where it is, never read
            marker = refused_marker(item)
            if marker not in known and not _record_refusal(context, database, item, reason):
                continue  # not recorded (no database): tried again next tick
            cursor[marker] = "refused"
    waiting = [item for item, reason in entries if reason is None][:MAX_RUNS_PER_TICK]
    requests = []
    for item in waiting:
        try:
            stat = item.path.lstat()  # a regular file, as scanned: never a link to follow
            marker = f"{item.relative}|{stat.st_mtime_ns}|{stat.st_size}"
            cached = known.get(marker, "")
            sha = cached if landing.SHA256_RE.fullmatch(cached) else None
            found = landing.fingerprint(item.path, stat, sha, zone=zone)
        except (OSError, landing.LandingRefused):
            continue  # gone or swapped since the scan: the next tick sees what is there
        key = landing.partition_key_for(item.relative, found.sha256)
        cursor[marker] = found.sha256
        requests.append(
            RunRequest(
                run_key=key,
                partition_key=key,
                tags={LANDING_PATH_TAG: str(item.relative), **found.tags()},
            )
        )
    new_keys = [
        r.partition_key
        for r in requests
        if r.partition_key
        and not context.instance.has_dynamic_partition(landed_files.name, r.partition_key)
    ]
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[landed_files.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def refused_marker(item: landing.LandingPath) -> str:
    """The sensor's cursor entry for a refused entry as it is now (path, mtime, size)."""
    try:
        found = item.path.lstat()
    except OSError:
        return f"refused|{item.relative}"
    return f"refused|{item.relative}|{found.st_mtime_ns}|{found.st_size}"


def _record_refusal(
    context: SensorEvaluationContext,
    database: DatabaseResource,
    item: landing.LandingPath,
    reason: str,
) -> bool:
    try:
        new = refusals.record_refusal(database.engine(), item, reason)
    except sa.exc.SQLAlchemyError as err:  # the database is away: good files still get runs
        context.log.warning(
            f"landing zone: {item.relative}: refused: {reason}; not recorded: {err}"
        )
        return False
    if new:
        context.log.warning(f"landing zone: {item.relative}: refused: {reason}")
    return True
