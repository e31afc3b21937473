"""Feeds end to end on Dagster's test instance and the real embedded database.

Each test builds its own organization and feed (feed names are global partition keys), lands
real files through the landing-zone sensor and assets, and drives the pairing sensor, the
daily schedule, partition runs and backfills the way the daemon would.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from dagster import (
    AssetKey,
    DagsterInstance,
    build_schedule_context,
    build_sensor_context,
    materialize,
)
from helpers import run_recon

from pipelines.automation import (
    FEED_ASSETS,
    daily_reconciliation,
    database_upkeep,
    feed_pairing_sensor,
)
from pipelines.definitions import defs
from pipelines.reconcile import feeds
from pipelines.reconcile.lineage import exception_lineage, format_lineage
from pipelines.reconciliation import FEED_RECONCILIATION_ASSETS
from recon.backfill import load_feeds, partition_keys, run_in_process, submit
from recon.demo import DEMO_RULES, process_landing_zone
from recon.samples import write_feed_day
from resources.database import DatabaseResource, engine_for
from resources.file_store import FileStoreResource

D1, D2, D3, D4 = (date(2025, 3, d) for d in (3, 4, 5, 6))


@dataclass
class World:
    """One organization with one bank-vs-ledger feed, its landing folder and an instance."""

    url: str
    org: str
    feed: str
    zone: Path
    feeds_path: Path
    instance: DagsterInstance
    scratch: Path  # outside the landing zone

    def sample(self, day: date, side: str) -> Path:
        """The file `land` writes for that day and side (same seed), written to scratch."""
        return write_feed_day(self.scratch, day, which=(side,))[0]

    def land(self, day: date, which: tuple[str, ...] = ("bank", "ledger")) -> None:
        write_feed_day(self.zone, day, which=which)
        process_landing_zone(self.instance, self.url, lambda _m: None)

    def land_text(self, side: str, name: str, text: str) -> None:
        path = self.zone / side / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        process_landing_zone(self.instance, self.url, lambda _m: None)

    def tick(self) -> list[Any]:
        """The pairing sensor's run requests for this feed."""
        context = build_sensor_context(
            instance=self.instance,
            resources={"database": DatabaseResource(), "file_store": FileStoreResource()},
        )
        result = feed_pairing_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions("feeds", list(request.partition_keys))
        return [r for r in result.run_requests if r.tags.get("recon/feed") == self.feed]

    def key(self, day: date) -> str:
        return f"{day.isoformat()}|{self.feed}"

    def reconciliation(self, day: date) -> dict[str, Any]:
        with psycopg.connect(self.url) as conn:
            conn.row_factory = psycopg.rows.dict_row
            row = conn.execute(
                "SELECT r.* FROM reconciliations r JOIN reconciliation_feeds f ON f.id = r.feed_id "
                "WHERE f.name = %s AND r.business_date = %s",
                (self.feed, day),
            ).fetchone()
        assert row is not None, f"no reconciliation for {day}"
        return row

    def exceptions(self, rid: int) -> list[dict[str, Any]]:
        with psycopg.connect(self.url) as conn:
            conn.row_factory = psycopg.rows.dict_row
            return conn.execute(
                "SELECT * FROM reconciliation_exceptions WHERE reconciliation_id = %s ORDER BY id",
                (rid,),
            ).fetchall()


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def world(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    org, feed = f"Feeds {tag}", f"bl-{tag}"
    shutil.copyfile(DEMO_RULES, tmp_path / "rules.yaml")
    feeds_path = tmp_path / "feeds.yaml"
    feeds_path.write_text(
        "feeds:\n"
        f"  - name: {feed}\n"
        f"    organization: {org}\n"
        "    source: bank\n"
        "    target: ledger\n"
        "    rules: rules.yaml\n"
        "    checks: {history: 3, match_rate_drop: 10, exception_growth: 2}\n",
        encoding="utf-8",
    )
    # the sensor loads the feeds file named here
    monkeypatch.setenv("RECON_FEEDS_FILE", str(feeds_path))
    # not `with instance_for_test()`: entering an instance makes its storage Dagster's current
    # defs-state storage (a ContextVar), and runs of later tests could find it pointing at a
    # disposed instance ("undefined DagsterInstance weakref")
    yield World(
        database_url,
        org,
        feed,
        FileStoreResource().store().landing / org,
        feeds_path,
        DagsterInstance.local_temp(str(_made(tmp_path / "dagster"))),
        tmp_path / "scratch",
    )


def test_the_pairing_sensor_waits_for_both_sides_and_reruns_a_late_correction(
    world: World,
) -> None:
    world.land(D1, which=("bank",))
    assert world.tick() == [], "one side only: nothing to reconcile yet"
    assert world.instance.has_dynamic_partition("feeds", world.feed), "feeds file loaded"

    world.land(D1, which=("ledger",))
    [request] = world.tick()
    assert request.partition_key == world.key(D1)
    [outcome] = run_in_process(world.url, world.instance, [request.partition_key])
    assert outcome.success, outcome.error
    first = world.reconciliation(D1)
    assert first["status"] == "COMPLETED" and first["partition_key"] == world.key(D1)
    assert world.tick() == [], "reconciled with these files: not asked again"

    # a corrected ledger for the same business date lands later: the date runs again
    lines = world.sample(D1, "ledger").read_text().splitlines()
    corrected = "\n".join(lines + [f"T{D1:%y%m%d}999,{D1.isoformat()},12.34,Late entry"]) + "\n"
    world.land_text("ledger", f"ledger_{D1.isoformat()}_corrected.csv", corrected)
    [again] = world.tick()
    assert again.partition_key == request.partition_key and again.run_key != request.run_key
    [outcome] = run_in_process(world.url, world.instance, [again.partition_key])
    assert outcome.success, outcome.error
    second = world.reconciliation(D1)
    assert second["id"] == first["id"], "the partition's reconciliation is replaced in place"
    assert second["target_file_id"] != first["target_file_id"]
    assert second["total_target_records"] == first["total_target_records"] + 1
    assert second["dagster_run_id"] == outcome.run_id
    assert world.tick() == []


def test_a_backfill_with_a_failing_day_finishes_the_others_and_keeps_resolutions(
    world: World,
) -> None:
    world.land(D1)
    world.land(D3)
    # D2's ledger cannot be read: that date fails, clearly; the others complete
    world.land(D2, which=("bank",))
    world.land_text("ledger", f"ledger_{D2.isoformat()}.csv", "")
    engine = engine_for(world.url)
    load_feeds(engine, world.instance, world.feeds_path)
    keys = partition_keys(engine, world.instance, [world.feed], D1, D3)
    assert keys == [world.key(D1), world.key(D2), world.key(D3)]
    outcomes = run_in_process(world.url, world.instance, keys)
    assert [o.success for o in outcomes] == [True, False, True]
    failed = outcomes[1]
    assert world.feed in failed.error and "2025-03-04" in failed.error
    assert "ledger" in failed.error and "FAILED" in failed.error, failed.error
    assert world.reconciliation(D1)["status"] == "COMPLETED"
    assert world.reconciliation(D3)["status"] == "COMPLETED"

    # a person resolves an exception of D1; re-running D1 keeps the decision, duplicates nothing
    rid = world.reconciliation(D1)["id"]
    before = world.exceptions(rid)
    chosen = before[0]
    with psycopg.connect(world.url) as conn:
        conn.execute(
            "UPDATE reconciliation_exceptions SET status = 'IGNORED', resolution = 'known fee', "
            "resolved_by = 'analyst', resolved_at = '2025-03-05 10:00' WHERE id = %s",
            (chosen["id"],),
        )
        matches_before = conn.execute(
            "SELECT count(*) FROM reconciliation_matches WHERE reconciliation_id = %s", (rid,)
        ).fetchone()[0]
    [rerun] = run_in_process(world.url, world.instance, [world.key(D1)])
    assert rerun.success and rerun.reconciliation_id == rid
    after = world.exceptions(rid)
    assert sorted(e["fingerprint"] for e in after) == sorted(e["fingerprint"] for e in before)
    [kept] = [e for e in after if e["fingerprint"] == chosen["fingerprint"]]
    assert (kept["status"], kept["resolution"], kept["resolved_by"]) == (
        "IGNORED",
        "known fee",
        "analyst",
    )
    assert kept["resolved_at"] == datetime(2025, 3, 5, 10, 0)
    assert {e["dagster_run_id"] for e in after} == {rerun.run_id}
    assert {e["partition_key"] for e in after} == {world.key(D1)}
    with psycopg.connect(world.url) as conn:
        matches = conn.execute(
            "SELECT count(*), count(DISTINCT dagster_run_id), min(partition_key) "
            "FROM reconciliation_matches WHERE reconciliation_id = %s",
            (rid,),
        ).fetchone()
    assert matches == (matches_before, 1, world.key(D1))

    # the same range queued as a Dagster backfill for the daemon
    backfill_id = submit(world.instance, keys, title="test")
    [stored] = [b for b in world.instance.get_backfills() if b.backfill_id == backfill_id]
    targeted = stored.asset_backfill_data.target_subset.get_partitions_subset(
        FEED_RECONCILIATION_ASSETS[-1].key
    )
    assert sorted(str(k) for k in targeted.get_partition_keys()) == sorted(keys)


def test_lineage_goes_from_an_exception_to_its_row_file_rules_and_run(world: World) -> None:
    world.land(D1)
    [request] = world.tick()
    [outcome] = run_in_process(world.url, world.instance, [request.partition_key])
    assert outcome.success, outcome.error
    rec = world.reconciliation(D1)
    # a ledger entry that never reached the bank (the day's bank-only lines are none: its
    # late postings are paired as DATE_MISMATCH, not missing)
    exc = next(e for e in world.exceptions(rec["id"]) if e["type"] == "MISSING_IN_SOURCE")
    chain = exception_lineage(engine_for(world.url), FileStoreResource().store(), exc["id"])
    target = chain["target"]
    assert target["file"]["id"] == rec["target_file_id"]
    assert target["file"]["original_filename"] == f"ledger_{D1.isoformat()}.csv"
    assert target["file"]["data_source"] == "ledger"
    # the row read back is the file's row with that number (1-based data rows)
    data_rows = world.sample(D1, "ledger").read_text().splitlines()[1:]
    line = data_rows[exc["target_row_number"] - 1]
    assert line.split(",")[0] == target["row"]["entry_ref"]
    assert chain["source"]["row"] is None
    assert chain["rule_set"]["id"] == rec["rule_set_id"]
    assert chain["reconciliation"]["partition_key"] == world.key(D1)
    assert chain["exception"]["dagster_run_id"] == outcome.run_id
    # record_links links Splink's match-weights chart of the model (offline HTML)
    links = world.instance.get_latest_materialization_event(AssetKey(["feed", "record_links"]))
    chart = Path(links.asset_materialization.metadata["match_weights_chart"].value)
    assert chart.is_file() and "match weight" in chart.read_text().lower()
    text = format_lineage(chain)
    assert f"row {exc['target_row_number']} of #{rec['target_file_id']}" in text
    assert outcome.run_id in text
    code, out, err = run_recon("lineage", str(exc["id"]), "--org", world.org)
    assert code == 0, err
    assert target["row"]["entry_ref"] in out and world.key(D1) in out


def test_the_schedule_reconciles_what_is_due_and_runs_upkeep(world: World) -> None:
    world.land(D1)
    world.tick()  # loads the feeds file
    when = datetime(2025, 3, 7, 6, 0, tzinfo=UTC)

    def evaluate() -> list[Any]:
        context = build_schedule_context(
            instance=world.instance,
            scheduled_execution_time=when,
            resources={"database": DatabaseResource(), "file_store": FileStoreResource()},
        )
        return list(daily_reconciliation(context))

    requests = evaluate()
    mine = [r for r in requests if r.tags.get("recon/feed") == world.feed]
    upkeep = [r for r in requests if database_upkeep.key in (r.asset_selection or [])]
    assert [r.partition_key for r in mine] == [world.key(D1)] and len(upkeep) == 1
    [outcome] = run_in_process(world.url, world.instance, [mine[0].partition_key])
    assert outcome.success, outcome.error
    assert not [r for r in evaluate() if r.tags.get("recon/feed") == world.feed]

    # upkeep: expired cache entries go, the busy tables are vacuumed and analysed
    with psycopg.connect(world.url) as conn:
        conn.execute(
            "INSERT INTO embedding_cache (text_sha256, model_name, embedding, expires_at) "
            "VALUES (%s, 'test-model', array_fill(0.1, ARRAY[384])::vector, NOW() - "
            "interval '1 day') ON CONFLICT DO NOTHING",
            ("e" * 64,),
        )
    result = materialize([database_upkeep], instance=world.instance, resources=defs.resources)
    assert result.success
    metadata = result.asset_materializations_for_node("database_upkeep")[0].metadata
    assert metadata["expired_cache_entries"].value >= 1
    tables = {r.data["table"] for r in metadata["tables"].value.records}
    assert {"reconciliation_exceptions", "reconciliation_matches", "embedding_cache"} <= tables
    # far fewer embeddings than the IVF index waits for: HNSW serves, nothing built
    assert not metadata["ivf_index"].value["built"] and metadata["ivf_index"].value["reason"]
    with psycopg.connect(world.url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM embedding_cache WHERE text_sha256 = %s", ("e" * 64,)
        ).fetchone()[0]
        vacuumed = conn.execute(
            "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'reconciliation_exceptions'"
        ).fetchone()[0]
    assert left == 0 and vacuumed


def test_checks_compare_a_day_with_the_feeds_history(world: World) -> None:
    for day in (D1, D2, D3):
        world.land(day)
    # D4's ledger has only a handful of the bank's entries
    world.land(D4, which=("bank",))
    lines = world.sample(D4, "ledger").read_text().splitlines()
    world.land_text("ledger", f"ledger_{D4.isoformat()}.csv", "\n".join(lines[:6]) + "\n")
    keys = [r.partition_key for r in world.tick()]
    assert keys == [world.key(d) for d in (D1, D2, D3, D4)]
    outcomes = run_in_process(world.url, world.instance, keys[:3])
    assert all(o.success for o in outcomes)
    result = materialize(
        FEED_ASSETS,
        partition_key=keys[3],
        instance=world.instance,
        resources=defs.resources,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["match_rate_in_line"].passed is False
    assert checks["exception_volume_in_line"].passed is False
    assert "median" in checks["match_rate_in_line"].description


def test_a_database_hiccup_is_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.reconcile_stages as stages

    world.land(D1)
    [request] = world.tick()
    calls = {"n": 0}
    real = stages.records.load_plan  # every stage reads its plan first

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("SELECT plan", {}, Exception("server closed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(stages.records, "load_plan", flaky)
    [outcome] = run_in_process(world.url, world.instance, [request.partition_key])
    assert outcome.success, outcome.error
    assert calls["n"] >= 5  # the failed read, its retry, then the later stages' own
    retries = world.instance.all_logs(outcome.run_id)
    assert any(
        e.dagster_event and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY" for e in retries
    )
    assert world.reconciliation(D1)["status"] == "COMPLETED"


def test_feeds_files_are_checked_before_anything_is_stored(tmp_path: Path) -> None:
    shutil.copyfile(DEMO_RULES, tmp_path / "rules.yaml")
    cases = {
        "name: Bad Name": "lowercase letters",
        "name: ok\n    source: bank\n    target: bank": "different data sources",
        "name: ok\n    rules: missing.yaml": "does not exist",
        "name: ok\n    business_date: {from: header}": "'filename' or 'column', not 'header'",
        "name: ok\n    business_date: {from: column}": "`column`",
        "name: ok\n    checks: {history: -1}": "positive number",
        "name: ok\n    colour: blue": "feeds[1]: unknown key 'colour'; accepted: name,",
    }
    base = {"organization": "O", "source": "bank", "target": "ledger", "rules": "rules.yaml"}
    for snippet, expected in cases.items():
        lines = [f"    {k}: {v}" for k, v in base.items() if f"{k}:" not in snippet]
        text = "feeds:\n  - " + snippet + "\n" + "\n".join(lines) + "\n"
        path = tmp_path / "feeds.yaml"
        path.write_text(text)
        with pytest.raises(feeds.FeedError, match=re.escape(expected)):
            feeds.load_feeds_file(path)
    rule = feeds.BusinessDateRule()
    assert rule.from_filename("bank_2025-03-04.csv") == date(2025, 3, 4)
    assert rule.from_filename("bank_20250304.csv") == date(2025, 3, 4)
    assert rule.from_filename("bank_latest.csv") is None
    custom = feeds.BusinessDateRule("filename", r"(\d{2}\.\d{2}\.\d{4})", ("%d.%m.%Y",))
    assert custom.from_filename("export 04.03.2025.csv") == date(2025, 3, 4)
    # nested repeats on a name of digits: `re` backtracked ~20 s on these 28 digits (4x more
    # for each two more), holding the pairing sensor or a backfill; `regex` answers at once
    hostile = feeds.BusinessDateRule("filename", r"(?P<date>(\d+)+Z)", ("%Y%m%d",))
    started = time.perf_counter()
    assert hostile.from_filename("bank_" + "2026090120" * 2 + "26090120.csv") is None
    assert time.perf_counter() - started < 2.0


def test_a_business_date_can_come_from_a_date_column(tmp_path: Path) -> None:
    import polars as pl

    from resources.file_store import FileStore

    store = FileStore(tmp_path)
    store.canonical(7).parent.mkdir(parents=True)
    pl.DataFrame(
        {
            "_row_number": [1, 2, 3, 4],
            "booked": [date(2025, 3, 4), date(2025, 3, 4), date(2025, 3, 3), date(2025, 3, 9)],
            "_valid": [True, True, True, False],
        }
    ).write_parquet(store.canonical(7))
    # the most common date among valid rows; an invalid row does not count
    assert feeds._date_from_data(store, 7, "booked") == date(2025, 3, 4)
    assert feeds._date_from_data(store, 7, "missing") is None
    pl.DataFrame({"_row_number": [1], "booked": ["2025-03-05"]}).write_parquet(store.canonical(8))
    assert feeds._date_from_data(store, 8, "booked") == date(2025, 3, 5)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("checks: {history: .nan}", "feeds[1].checks.history (feed 'ok'): expected a whole number"),
        (
            "checks: {match_rate_drop: .inf}",
            "match_rate_drop (feed 'ok'): expected a finite",
        ),
        ("checks: {exception_growth: .nan}", "checks.exception_growth (feed 'ok'): expected a fin"),
        (
            "checks: {history: true}",
            "history (feed 'ok'): expected a whole number, got True",
        ),
        ("checks: {histroy: 3}", "feeds[1].checks: unknown key 'histroy'; accepted: history, "),
        ("checks: 5", "feeds[1].checks (feed 'ok'): expected a mapping, got 5"),
        ("name: 5", "feeds[1].name: expected text, got 5"),
        ("organization: [a, b]", "feeds[1].organization (feed 'ok'): expected text"),
        ("source: 12", "feeds[1].source (feed 'ok'): expected text, got 12"),
        ("rules: 12", "feeds[1].rules (feed 'ok'): expected text, got 12"),
        ("description: {a: 1}", "feeds[1].description (feed 'ok'): expected text"),
        ('description: "x\\0y"', "line 3: text with a NUL character"),
        ('organization: "a\\0b"', "line 3: text with a NUL character"),
        ("organization: Attacker/TenantB", "organization (feed 'ok'): organization name 'Attack"),
        ("organization: ..", "organization (feed 'ok'): organization name '..' cannot name"),
        ("organization: " + "x" * 300, "at most 200 bytes"),
        ("source: bank/../x", "feeds[1].source (feed 'ok'): data source name 'bank/../x'"),
        ("business_date: {from: filename, colum: x}", "business_date: unknown key 'colum'"),
        ("business_date: {from: filename, format: 5}", "business_date.format (feed 'ok'):"),
        ("business_date: {from: filename, format: '%Y', column: d}", "column needs `from: col"),
        ("business_date: {pattern: '(['}", "business_date.pattern (feed 'ok'): not a regular"),
    ],
)
def test_the_feeds_file_is_as_strict_as_the_rules_file(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    shutil.copyfile(DEMO_RULES, tmp_path / "rules.yaml")
    base = {"organization": "O", "source": "bank", "target": "ledger", "rules": "rules.yaml"}
    lines = [f"    {k}: {v}" for k, v in base.items() if not snippet.startswith(f"{k}:")]
    name = "" if snippet.startswith("name:") else "name: ok\n    "
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - " + name + snippet + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(feeds.FeedError) as caught:
        feeds.load_feeds_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message


def test_the_top_level_of_a_feeds_file_takes_only_feeds(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds: []\nfeed: []\n")
    with pytest.raises(
        feeds.FeedError, match=r"the top level: unknown key 'feed'; accepted: feeds;"
    ):
        feeds.load_feeds_file(path)
