"""The Dagster UI in a real browser: every stage on the asset graph, a reconciliation's metadata.

`recon demo` runs first, in a database of its own on the session's embedded server (and a
RECON_HOME of its own), so reconciliations are COMPLETED (ad hoc and three days of two feeds)
and a backfill is queued; then `recon ui` serves the webserver on loopback (its daemon runs
the backfill) and headless Chromium (driven over the DevTools protocol, see `browser.py`) opens
the global asset graph, the `reconciliation_record` asset page, the feed partitions and the
finished backfill. Screenshots go to the test's tmp_path and, when RECON_SCREENSHOTS names a
folder, there too (`RECON_SCREENSHOTS=docs/ui .venv/bin/pytest tests/test_browser.py`
regenerates the README's pictures). Chromium missing is a failure, not a skip: `make test`
installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from browser import CHROMIUM, Chromium
from helpers import (
    create_database,
    drop_database,
    free_port,
    graphql,
    run_recon,
    stop_process_group,
)
from psycopg.rows import dict_row

# group -> its assets (asset keys, `/`-joined; the graph shows the last part), all to be shown
STAGES = {
    "foundation": ["database_schema"],
    "ingest": ["uploaded_file", "canonical_file"],
    "reconcile": ["mapped_records", "record_links", "exceptions", "reconciliation_record"],
    "ai": ["exception_embeddings"],
    "feed_reconcile": [
        "feed/mapped_records",
        "feed/record_links",
        "feed/exceptions",
        "feed/reconciliation_record",
        "feed/exception_embeddings",
    ],
    "maintenance": ["database_upkeep"],
}
DEMO_FEEDS = ["bank-vs-ledger", "invoices-vs-payments"]
BACKFILL_TIMEOUT = 900  # the daemon runs the demo's queued backfill: one run per partition
RECORD_ASSET = "reconciliation_record"
RECORD_METADATA = [
    "reconciliation_id",
    "status",
    "match_rate",
    "matched_records",
    "exception_count",
]
PAGE_TIMEOUT = 90  # two shared cores: the first render of a page can be slow
SERVER_TIMEOUT = 180
DEMO_TIMEOUT = 600

# rendered text lines (the sidebar tree names every asset in full) and the leaf texts of the
# graph's SVG foreignObjects (group headers and asset nodes; long names are middle-truncated)
GRAPH_JS = """({
  lines: document.body.innerText.split('\\n').map(s => s.trim()).filter(Boolean),
  nodes: Array.from(document.querySelectorAll('svg foreignObject *'))
    .filter(e => e.childElementCount === 0)
    .map(e => e.textContent.trim()).filter(Boolean),
})"""
# the rendered text of the page, line by line
LINES_JS = "document.body.innerText.split('\\n').map(s => s.trim()).filter(Boolean)"
# the metadata table of the asset page: one [key, timestamp, value] per row
TABLE_JS = """Array.from(document.querySelectorAll('tr'))
  .map(tr => Array.from(tr.cells).map(td => td.innerText.trim()))"""
# the "Join the Dagster community" dialog would cover the screenshots
NO_COMMUNITY_DIALOG_JS = "localStorage.setItem('communityNux', '\"1\"')"


def _screenshot_paths(tmp_path: Path, name: str) -> list[Path]:
    paths = [tmp_path / name]
    if os.environ.get("RECON_SCREENSHOTS"):
        paths.append(Path(os.environ["RECON_SCREENSHOTS"]).resolve() / name)
    return paths


def _shows(label: str, name: str) -> bool:
    """Whether a graph node label shows `name`, whole or middle-truncated (`reconcilia…_record`)."""
    if label == name:
        return True
    head, sep, tail = label.partition("…")
    return (
        bool(sep)
        and len(head) + len(tail) < len(name)
        and name.startswith(head)
        and name.endswith(tail)
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)",
            pytrace=False,
        )
    with Chromium() as browser:
        browser.add_init_script(NO_COMMUNITY_DIALOG_JS)
        yield browser


@dataclass(frozen=True)
class DemoState:
    """Where this module's demo ran: its own database on the session's server, its own home."""

    env: dict[str, str]
    database_url: str


@pytest.fixture(scope="module")
def demo_state(database_url: str) -> Iterator[DemoState]:
    """`recon demo` run in a database and RECON_HOME of this module's own.

    The demo lands files, runs a week of feeds and queues a backfill that the daemon of `recon
    ui` then runs; kept apart, none of that reaches the session's `recon` database.
    """
    name, url = create_database(database_url)
    home = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    try:
        env = {"RECON_HOME": str(home), "RECON_DATABASE_URL": url}
        code, out, err = run_recon("demo", "--days", "3", env=env, timeout=DEMO_TIMEOUT)
        assert code == 0, f"recon demo failed:\n{out[-2000:]}\n{err[-3000:]}"
        yield DemoState(env, url)
    finally:
        drop_database(database_url, name)
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class DagsterUI:
    """The running webserver's port and every asset group its GraphQL lists."""

    port: int
    groups: list[str]


@pytest.fixture(scope="module")
def dagster_ui(
    demo_state: DemoState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterUI]:
    """`recon ui` on a free loopback port, once GraphQL lists every asset of STAGES."""
    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "recon-ui.log"
    recon = Path(sys.executable).with_name("recon")
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(recon), "ui", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **demo_state.env},
        )
    try:
        wanted = {key for keys in STAGES.values() for key in keys}
        groups: dict[str, str] = {}
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not wanted <= groups.keys():
            tail = log.read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"recon ui exited early:\n{tail}"
            assert time.monotonic() < deadline, (
                f"GraphQL lists {sorted(groups)}, not all of {sorted(wanted)} after "
                f"{SERVER_TIMEOUT}s:\n{tail}"
            )
            time.sleep(2)
            try:
                data = graphql(port, "{ assetNodes { assetKey { path } groupName } }")
                groups = {
                    "/".join(n["assetKey"]["path"]): n["groupName"]
                    for n in data["data"]["assetNodes"]
                }
            except (OSError, KeyError, TypeError, ValueError):
                continue
        wrong = {
            key: groups[key]
            for group, keys in STAGES.items()
            for key in keys
            if groups[key] != group
        }
        assert not wrong, f"assets in other groups than STAGES says: {wrong}"
        yield DagsterUI(port, sorted(set(groups.values()) | STAGES.keys()))
    finally:
        stop_process_group(proc)


def _graph_url(ui: DagsterUI) -> str:
    """The global asset graph with every group expanded, on the graph and in the sidebar tree.

    Group ids are `global@global:<group>` (Dagster's default; the per-code-location form
    `<repository>@<location>:<group>` is behind a feature flag that is off).
    """
    ids = [f"global@global:{group}" for group in ui.groups]
    query = urllib.parse.urlencode({"expanded": ",".join(ids), "open-nodes": ids}, doseq=True)
    return f"http://127.0.0.1:{ui.port}/asset-groups?{query}"


def test_the_daemon_runs_the_queued_backfill(
    chromium: Chromium, dagster_ui: DagsterUI, demo_state: DemoState, tmp_path: Path
) -> None:
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while True:
        with psycopg.connect(demo_state.database_url) as conn:
            key, status = conn.execute(
                "SELECT key, status FROM dagster.bulk_actions ORDER BY timestamp LIMIT 1"
            ).fetchone()
        if status not in ("REQUESTED", "CANCELING"):
            break
        assert time.monotonic() < deadline, f"backfill {key} still {status}"
        time.sleep(5)
    assert status == "COMPLETED_SUCCESS", f"backfill {key} ended {status}"
    with psycopg.connect(demo_state.database_url) as conn:
        runs = conn.execute(
            "SELECT r.status, count(*) FROM dagster.runs r JOIN dagster.run_tags t "
            "ON t.run_id = r.run_id AND t.key = 'dagster/backfill' AND t.value = %s "
            "GROUP BY r.status",
            (key,),
        ).fetchall()
    assert runs == [("SUCCESS", 3)], runs

    def problems(lines: list[str]) -> list[str]:
        text = "\n".join(lines)
        return [] if key in text and "bank-vs-ledger" in text else [f"backfill {key} not shown"]

    chromium.navigate(f"http://127.0.0.1:{dagster_ui.port}/runs/b/{key}?tab=partitions")
    chromium.poll(LINES_JS, problems, timeout=PAGE_TIMEOUT)
    chromium.settle()
    chromium.screenshot(*_screenshot_paths(tmp_path, "backfill.png"))


def test_asset_graph_shows_every_stage(
    chromium: Chromium, dagster_ui: DagsterUI, tmp_path: Path
) -> None:
    def problems(page: dict) -> list[str]:
        lines, nodes = set(page["lines"]), page["nodes"]
        missing = [g for g in STAGES if g not in lines or g not in nodes]
        for keys in STAGES.values():
            names = [key.rsplit("/", 1)[-1] for key in keys]  # the graph shows the last part
            missing += [n for n in names if n not in lines or not any(_shows(x, n) for x in nodes)]
        return [f"not on the asset graph: {missing}"] if missing else []

    chromium.navigate(_graph_url(dagster_ui))
    chromium.poll(GRAPH_JS, problems, timeout=PAGE_TIMEOUT)
    chromium.settle()  # statuses colour the nodes a moment after the names are drawn
    chromium.screenshot(*_screenshot_paths(tmp_path, "asset-graph.png"))


def test_reconciliation_record_shows_a_completed_reconciliation(
    chromium: Chromium, dagster_ui: DagsterUI, demo_state: DemoState, tmp_path: Path
) -> None:
    def problems(rows: list[list[str]]) -> list[str]:
        metadata = {row[0]: row[-1] for row in rows if len(row) >= 3}
        missing = [key for key in RECORD_METADATA if key not in metadata]
        if missing:
            return [f"metadata keys missing: {missing}"]
        if metadata["status"] != "COMPLETED":
            return [f"status is {metadata['status']!r}, not COMPLETED"]
        return []

    chromium.navigate(f"http://127.0.0.1:{dagster_ui.port}/assets/{RECORD_ASSET}")
    rows = chromium.poll(TABLE_JS, problems, timeout=PAGE_TIMEOUT)
    chromium.settle()
    chromium.screenshot(*_screenshot_paths(tmp_path, "reconciliation-record.png"))
    # the numbers shown are the reconciliation's own, as the database holds them
    shown = {row[0]: row[-1] for row in rows if len(row) >= 3}
    with psycopg.connect(demo_state.database_url, row_factory=dict_row) as conn:
        stored = conn.execute(
            "SELECT status, match_rate, matched_records, exception_count "
            "FROM reconciliations WHERE id = %s",
            (int(shown["reconciliation_id"]),),
        ).fetchone()
    assert stored is not None, f"reconciliation {shown['reconciliation_id']} is not in the database"
    assert stored["status"] == "COMPLETED"
    assert float(shown["match_rate"]) == float(stored["match_rate"]), (shown, stored)
    assert int(shown["matched_records"]) == stored["matched_records"], (shown, stored)
    assert int(shown["exception_count"]) == stored["exception_count"], (shown, stored)


def test_feed_partitions_are_shown_per_date_and_feed(
    chromium: Chromium, dagster_ui: DagsterUI, demo_state: DemoState, tmp_path: Path
) -> None:
    def problems(lines: list[str]) -> list[str]:
        text = "\n".join(lines)
        missing = [feed for feed in DEMO_FEEDS if feed not in text]
        return [f"feeds not shown among the partitions: {missing}"] if missing else []

    with psycopg.connect(demo_state.database_url) as conn:
        day, match_rate = conn.execute(
            "SELECT r.business_date, r.match_rate FROM reconciliations r JOIN "
            "reconciliation_feeds f ON f.id = r.feed_id WHERE f.name = 'bank-vs-ledger' "
            "ORDER BY r.business_date DESC LIMIT 1"
        ).fetchone()
    partition = f"{day.isoformat()}|bank-vs-ledger"

    def shows_partition(lines: list[str]) -> list[str]:
        found = problems(lines)
        text = "\n".join(lines)
        if "match_rate_in_line" not in text and "match_rate" not in text:
            found.append(f"partition {partition}: its metadata is not shown")
        elif f"{float(match_rate):g}" not in text and str(match_rate) not in text:
            found.append(f"partition {partition}: match rate {match_rate} not shown")
        return found

    query = urllib.parse.urlencode({"view": "partitions", "partition": partition})
    url = f"http://127.0.0.1:{dagster_ui.port}/assets/feed/reconciliation_record?{query}"
    chromium.navigate(url)
    chromium.poll(LINES_JS, shows_partition, timeout=PAGE_TIMEOUT)
    chromium.settle()
    chromium.screenshot(*_screenshot_paths(tmp_path, "feed-partitions.png"))
