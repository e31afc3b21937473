"""A daily feed fed by pulls: a REST_API bank against a DATABASE ledger, over two business dates.

The bank is a paged JSON API on loopback (`rest_server.RestServer`: cursor pages, a bearer
token); the ledger is a table of a second PostgreSQL database. The data is what such feeds
carry: the bank deducts a fee from one payment, shouts payee names in capitals, writes dates
day-first; one ledger entry has no bank line yet, one bank line has no ledger entry. Each day
runs as the daemon would: the `pull_sources` schedule's tick -> the pull run -> the landing
zone pass -> the pairing sensor -> the feed partition's run. Day two must pull only the rows
added since day one (the API is asked `since=` day one's watermark; the ledger query starts
above it) and find exactly that day's breaks; `recon lineage` leads from a break back to the
pull (query and watermarks) that brought its row.
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, build_schedule_context, build_sensor_context, materialize
from rest_server import RestServer

from pipelines.automation import feed_pairing_sensor
from pipelines.definitions import defs
from pipelines.reconcile.lineage import exception_lineage, format_lineage
from pipelines.source_pulls import pull_schedule, source_pulls
from recon.backfill import run_in_process
from recon.cli_sources import add_source
from recon.demo import DEMO_RULES, process_landing_zone
from resources.database import DatabaseResource, engine_for
from resources.file_store import FileStoreResource

DAY1, DAY2 = date(2026, 4, 6), date(2026, 4, 7)
PAYEES = ["Acme Ltd", "Globex Corporation", "Initech", "Umbrella Corp", "Wayne Enterprises"]


def ledger_day(day: date, first: int, count: int) -> list[tuple[Any, ...]]:
    """GL entries of one day: (id, entry_ref, posting_date, value, memo)."""
    return [
        (
            i,
            f"T{day:%y%m%d}{i:03}",
            day,
            Decimal(f"{(i * 7919) % 90000 / 100 + 10:.2f}") * (-1 if i % 6 == 0 else 1),
            PAYEES[i % len(PAYEES)],
        )
        for i in range(first, first + count)
    ]


def bank_lines(ledger: list[tuple[Any, ...]], first_id: int) -> tuple[list[dict[str, Any]], dict]:
    """The bank's view of those entries, as an API returns it, and the breaks planted.

    The first entry never reaches the bank (MISSING_IN_SOURCE), the second is paid 2.50 short
    (a fee: AMOUNT_MISMATCH), and one bank line has no ledger entry (MISSING_IN_TARGET).
    """
    lines = []
    for offset, (_i, ref, day, value, memo) in enumerate(ledger[1:]):
        amount = value - Decimal("2.50") if offset == 0 else value
        lines.append(
            {
                "id": first_id + offset,
                "transaction_id": ref,
                "booking_date": f"{day:%d/%m/%Y}",
                "amount": f"{amount:.2f}",
                "description": memo.upper(),
                "is_fee": "N",
            }
        )
    day = ledger[0][2]
    lines.append(
        {
            "id": first_id + len(lines),
            "transaction_id": f"T{day:%y%m%d}900",
            "booking_date": f"{day:%d/%m/%Y}",
            "amount": "-18.90",
            "description": "BANK CHARGE",
            "is_fee": "Y",
        }
    )
    planted = {
        "MISSING_IN_SOURCE": {ledger[0][1]},
        "AMOUNT_MISMATCH": {ledger[1][1]},
        "MISSING_IN_TARGET": {f"T{day:%y%m%d}900"},
    }
    return lines, planted


def insert_ledger(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS gl_entries (id INTEGER PRIMARY KEY, entry_ref TEXT, "
            "posting_date DATE, value NUMERIC(12, 2), memo TEXT)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO gl_entries VALUES (%s, %s, %s, %s, %s)", rows)


def pull_day(instance: DagsterInstance, day: date, org: str) -> Any:
    """The pull schedule's tick for `day`, and the run it asks for (in process)."""
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(day.year, day.month, day.day, 5, tzinfo=UTC),
    )
    request = pull_schedule.evaluate_tick(context).run_requests[0]
    assert request.run_config["ops"]["source_pulls"]["config"] == {"business_date": str(day)}
    # this organization's sources only: the session's database holds other tests' sources
    config = {"ops": {"source_pulls": {"config": {"business_date": str(day), "organization": org}}}}
    result = materialize(
        [source_pulls], instance=instance, resources=defs.resources, run_config=config
    )
    assert result.success
    [event] = result.asset_materializations_for_node("source_pulls")
    return {r.data["source"]: r.data for r in event.metadata["pulls"].value.records}


def run_feed(url: str, instance: DagsterInstance, feed: str) -> None:
    """A landing-zone pass, a pairing-sensor tick, and the runs it asks for this feed."""
    process_landing_zone(instance, url, lambda _m: None)
    context = build_sensor_context(
        instance=instance,
        resources={"database": DatabaseResource(), "file_store": FileStoreResource()},
    )
    ticked = feed_pairing_sensor(context)
    for request in ticked.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions("feeds", list(request.partition_keys))
    keys = [r.partition_key for r in ticked.run_requests if r.tags.get("recon/feed") == feed]
    assert keys, "the pairing sensor asked for nothing"
    for outcome in run_in_process(url, instance, keys):
        assert outcome.success, outcome.error


def breaks(engine: sa.Engine, feed: str, day: date) -> tuple[dict[str, Any], Counter, dict]:
    with engine.connect() as conn:
        rec = conn.execute(
            sa.text(
                "SELECT r.* FROM reconciliations r JOIN reconciliation_feeds f ON f.id = r.feed_id "
                "WHERE f.name = :f AND r.business_date = :d"
            ),
            {"f": feed, "d": day},
        ).one()
        rows = conn.execute(
            sa.text(
                "SELECT id, type, source_data, target_data FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :r"
            ),
            {"r": rec.id},
        ).all()
    refs: dict[str, set[str]] = {}
    for row in rows:
        data = row.source_data or row.target_data or {}
        ref = data.get("transaction_id") or data.get("entry_ref")
        refs.setdefault(row.type, set()).add(str(ref))
    return dict(rec._mapping), Counter(r.type for r in rows), {"refs": refs, "ids": rows}


@pytest.fixture()
def instance(tmp_path: Path) -> DagsterInstance:
    (tmp_path / "dagster").mkdir()
    return DagsterInstance.local_temp(str(tmp_path / "dagster"))


def test_a_daily_feed_of_a_rest_api_bank_and_a_database_ledger_pulls_incrementally(
    database_url: str,
    fresh_database: Any,
    tmp_path: Path,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = engine_for(database_url)
    tag = uuid.uuid4().hex[:8]
    org, feed = f"Pulled feed {tag}", f"api-vs-db-{tag}"
    ledger_db = fresh_database()
    token = f"bank-token-{uuid.uuid4().hex}"

    ledger1 = ledger_day(DAY1, 1, 30)
    bank1, planted1 = bank_lines(ledger1, 1)
    insert_ledger(ledger_db, ledger1)
    with RestServer(list(bank1), "cursor", token=token, auth="bearer", page_size=7) as api:
        add_source(
            engine,
            org,
            "bank",
            "REST_API",
            config={
                "url": api.url,
                "items": "data",
                "paginator": "cursor",
                "page_size": 7,
                "auth": "bearer",
                "token": token,
                "incremental_field": "id",
                "incremental_param": "since",
            },
        )
        add_source(
            engine,
            org,
            "ledger",
            "DATABASE",
            config={
                "url": ledger_db.replace("postgresql://", "postgresql+psycopg://", 1),
                "query": "SELECT id, entry_ref, posting_date, value, memo FROM gl_entries",
                "incremental_column": "id",
            },
        )
        shutil.copyfile(DEMO_RULES, tmp_path / "rules.yaml")
        feeds_path = tmp_path / "feeds.yaml"
        feeds_path.write_text(
            f"feeds:\n  - name: {feed}\n    organization: {org}\n    source: bank\n"
            "    target: ledger\n    rules: rules.yaml\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("RECON_FEEDS_FILE", str(feeds_path))

        # day one: everything there is
        pulls = pull_day(instance, DAY1, org)
        assert pulls[f"{org}/bank"]["records"] == len(bank1) == 30
        assert pulls[f"{org}/ledger"]["records"] == len(ledger1) == 30
        run_feed(database_url, instance, feed)
        rec1, counts1, found1 = breaks(engine, feed, DAY1)
        assert rec1["status"] == "COMPLETED"
        assert (rec1["total_source_records"], rec1["total_target_records"]) == (30, 30)
        assert counts1 == Counter({k: 1 for k in planted1}), counts1
        assert found1["refs"] == planted1

        # day two: only what was added since day one is pulled
        ledger2 = ledger_day(DAY2, 31, 20)
        bank2, planted2 = bank_lines(ledger2, 31)
        insert_ledger(ledger_db, ledger2)
        api.records.extend(bank2)
        api.requests.clear()
        pulls = pull_day(instance, DAY2, org)
        assert pulls[f"{org}/bank"]["records"] == len(bank2) == 20
        assert pulls[f"{org}/ledger"]["records"] == len(ledger2) == 20
        assert pulls[f"{org}/bank"]["watermark_from"] == "30"
        assert pulls[f"{org}/ledger"]["watermark_from"] == "30"
        asked = [r["query"] for r in api.page_requests()]
        assert asked and all(q.get("since") == "30" for q in asked), asked
        run_feed(database_url, instance, feed)

    rec2, counts2, found2 = breaks(engine, feed, DAY2)
    assert (rec2["total_source_records"], rec2["total_target_records"]) == (20, 20)
    assert counts2 == Counter({k: 1 for k in planted2}), counts2
    assert found2["refs"] == planted2
    assert breaks(engine, feed, DAY1)[1] == counts1, "day one left as it was"

    # lineage: the short payment's bank row came from the day-two pull of the API
    short = next(r for r in found2["ids"] if r.type == "AMOUNT_MISMATCH")
    chain = exception_lineage(engine, FileStoreResource().store(), short.id)
    pull = chain["source"]["file"]["pull"]
    assert pull["business_date"] == DAY2.isoformat() and pull["records"] == 20
    assert pull["watermark_from"] == 30 and pull["watermark_to"] == 50
    text = format_lineage(chain)
    assert "pulled (sync log" in text and "since=30" in text and token not in text
