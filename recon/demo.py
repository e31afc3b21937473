"""`recon demo`: the whole product on sample data, in the order a newcomer meets it in the UI.

1. The schema asset, then two sample files (a bank export and a ledger) landed through the
   landing-zone sensor and reconciled ad hoc (what `recon run` does), exceptions embedded.
2. Two daily feeds (`bank-vs-ledger`, `invoices-vs-payments`): the feeds file is copied to
   RECON_HOME (once; edit it there), a week of files for both is dropped into the landing
   zone, the landing sensor lands them and the pairing sensor starts one reconciliation per
   feed business date (partition `<date>|<feed>`).
3. A Dagster backfill of the last days of `bank-vs-ledger` is queued for the daemon of
   `recon ui`, so a backfill is there to watch in the UI.
Sensors are evaluated here, in process (the same code the daemon runs on its ticks), so the
demo needs no daemon and finishes on its own; its runs are on the PostgreSQL instance.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from resources.errors import ReconError

DEMO_ORGANIZATION = "Demo Organization"
HERE = Path(__file__).parent
DEMO_RULES = HERE / "demo_rules.yaml"
DEMO_FEEDS = HERE / "demo_feeds.yaml"
DEMO_FEED_RULES = (HERE / "demo_rules.yaml", HERE / "demo_invoice_rules.yaml")
BACKFILL_DAYS = 3


def process_landing_zone(instance: Any, url: str, say: Callable[[str], None]) -> dict[str, Any]:
    """One landing-zone pass as the sensor's (`recon land --scan`); what it landed and refused."""
    from recon.land import scan_pass

    outcome = scan_pass(url, instance)
    for summary in outcome["landed"]:
        say(f"  landed {summary.get('path')}: {summary['status']}")
    for summary in outcome["failed"]:
        say(f"  {summary.get('path')}: FAILED ({summary.get('processing_error')})")
    return outcome


def pair_feeds(url: str, instance: Any, say: Callable[[str], None]) -> list[Any]:
    """One pairing-sensor tick evaluated here, and the partition runs it asks for."""
    from dagster import build_sensor_context

    from pipelines.automation import feed_pairing_sensor
    from pipelines.partitions import feed_names
    from recon.backfill import run_in_process
    from resources.database import DatabaseResource
    from resources.file_store import FileStoreResource

    tick = feed_pairing_sensor(
        build_sensor_context(
            instance=instance,
            resources={"database": DatabaseResource(), "file_store": FileStoreResource()},
        )
    )
    for request in tick.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(feed_names.name, list(request.partition_keys))
    keys = [r.partition_key for r in tick.run_requests if r.partition_key]
    say(f"pairing sensor: {len(keys)} feed business dates have both sides validated")
    return run_in_process(
        url, instance, keys, say=say, tags={"recon/trigger": "feed_pairing_sensor (in process)"}
    )


def install_feeds_file(feeds_path: Path, say: Callable[[str], None]) -> None:
    """Copy the demo feeds (and their rules) next to RECON_HOME, unless a feeds file exists."""
    if feeds_path.exists():
        say(f"feeds file {feeds_path} exists: kept as it is")
        return
    rules_dir = feeds_path.parent / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    for rules in DEMO_FEED_RULES:
        shutil.copyfile(rules, rules_dir / rules.name)
    shutil.copyfile(DEMO_FEEDS, feeds_path)
    say(f"feeds file written: {feeds_path} (edit it; the pairing sensor reloads it)")


def run_demo(url: str, say: Callable[[str], None], *, days: int = 7) -> dict[str, Any]:
    """Everything the demo shows; returns what a newcomer should look at."""
    from pipelines.database import database_schema
    from pipelines.reconcile.rules import load_rule_set_file
    from recon.backfill import load_feeds, partition_keys, submit
    from recon.execution import execute
    from recon.lifecycle import instance_for
    from recon.run import embed_exceptions, reconcile_files
    from recon.samples import write_feed_day, write_samples
    from resources.database import engine_for
    from resources.file_store import FileStoreResource
    from resources.settings import feeds_file

    logging.getLogger("splink").setLevel(logging.ERROR)
    engine = engine_for(url)
    instance = instance_for(url, say)
    schema_run = execute(instance, url, [database_schema], tags={"recon/command": "demo"})
    if not schema_run.success:
        raise ReconError("the database_schema run failed; open `recon ui` to see its logs")
    zone = FileStoreResource().store().landing / DEMO_ORGANIZATION

    # 1. ad hoc: one bank export against one ledger
    write_samples(zone / "bank", zone / "ledger")
    say(f"landed sample files in {zone}")
    process_landing_zone(instance, url, say)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.id, f.original_filename, f.status, f.row_count, f.invalid_row_count "
                "FROM uploaded_files f JOIN organizations o ON o.id = f.organization_id "
                "WHERE o.name = :o AND f.original_filename IN ('bank_export.csv', 'ledger.csv') "
                "ORDER BY f.id"
            ),
            {"o": DEMO_ORGANIZATION},
        ).all()
    for row in rows:
        say(
            f"  uploaded_files #{row.id} {row.original_filename}: {row.status}, "
            f"{row.row_count} rows, {row.invalid_row_count} invalid"
        )
    by_name = {row.original_filename: row for row in rows}
    bank, ledger = by_name.get("bank_export.csv"), by_name.get("ledger.csv")
    if bank is None or ledger is None or "FAILED" in (bank.status, ledger.status):
        raise ReconError("the sample files were not processed; open `recon ui` to see why")
    summary = reconcile_files(
        url,
        instance,
        bank.id,
        ledger.id,
        load_rule_set_file(DEMO_RULES),
        name="demo: bank export vs ledger",
    )
    say(
        f"reconciliation #{summary['reconciliation_id']} {summary['status']}: "
        f"{summary['matched_records']} matched, match rate {summary['match_rate']}%, "
        f"{summary['exception_count']} exceptions {summary['exceptions_by_type']}"
    )
    if summary["status"] != "COMPLETED":
        raise ReconError(f"the demo reconciliation failed: {summary['error_message']}")
    embedded, run_id = embed_exceptions(instance, url, summary["reconciliation_id"])
    if not embedded:
        say(f"embedding the exceptions failed (Dagster run {run_id}); see `recon ui`")

    # 2. two daily feeds, a week of files each
    feeds_path = feeds_file()
    install_feeds_file(feeds_path, say)
    outcome = load_feeds(engine, instance, feeds_path)
    say(f"feeds loaded: {', '.join(n for names in outcome.values() for n in names)}")
    last = date.today() - timedelta(days=1)
    week = [last - timedelta(days=i) for i in range(days - 1, -1, -1)]
    for day in week:
        write_feed_day(zone, day)
    say(f"landed {4 * len(week)} feed files for {week[0]} .. {week[-1]}")
    process_landing_zone(instance, url, say)
    partitions = pair_feeds(url, instance, say)
    failed = [p for p in partitions if not p.success]
    if failed:
        raise ReconError(f"feed partition {failed[0].partition_key} failed: {failed[0].error}")

    # 3. a backfill for the daemon to run, visible in the UI
    recent = week[-BACKFILL_DAYS:]
    keys = partition_keys(engine, instance, ["bank-vs-ledger"], recent[0], recent[-1])
    backfill_id = submit(instance, keys, title="demo: re-run bank-vs-ledger")
    return {
        "reconciliation_id": summary["reconciliation_id"],
        "feed_partitions": [p.partition_key for p in partitions],
        "backfill_id": backfill_id,
        "feeds_file": str(feeds_path),
        "week": (week[0], week[-1]),
    }
