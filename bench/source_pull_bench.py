"""Benchmark: DATABASE and REST_API pulls (`pull_source`) against the plainest fetch of the same.

Starts the embedded database under a fresh RECON_HOME (nothing of the user's is touched), then:

1. DATABASE: a second database on that server (`bench_gl_<random>`, dropped at the end) holds
   `gl_entries` (id bigint primary key, entry_ref, posting_date, posted_at, value numeric(12,2),
   memo) of `--rows` rows (1,000,000) made by INSERT ... SELECT generate_series. Per repeat, a
   fresh source: the day-1 pull (every row) timed, with the peak VmRSS above the baseline
   sampled every 50 ms; then 1% more rows and the day-2 pull, asserted to hold exactly them.
   Baseline: `COPY (SELECT * FROM gl_entries ORDER BY id) TO STDOUT WITH CSV HEADER` through
   psycopg's copy API into a file. Diagnostic: the same SELECT streamed by SQLAlchemy as the
   puller does (server-side cursor, `batch_rows`), no CSV: the pull minus it is the CSV writing.
2. REST_API: `tests/rest_server.RestServer` (cursor paging) in a child process serving
   `--records` records (100,000), page size 1,000. Per repeat, a fresh source's pull timed.
   Baseline: the same pages by a plain `requests` loop (GET, parse, follow the cursor).
   Diagnostic: the product's `fetch_pages` alone (dlt's client + checks, nothing written).

Every figure is measured `--repeat` times (3); the table shows the median and the min-max.

    .venv/bin/python bench/source_pull_bench.py [--rows 1000000] [--records 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import gc
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
PAGE_SIZE = 1000
MB = 1024 * 1024
PAYEES = ["ACME LTD", "Globex Corporation", "Initech", "Umbrella Corp", "Wayne Enterprises"]
BASELINE_SQL = "COPY (SELECT * FROM gl_entries ORDER BY id) TO STDOUT WITH CSV HEADER"
Figures = dict[str, tuple[str, list[float]]]


def vm_rss() -> int:
    """This process's resident set size in bytes (/proc/self/status VmRSS)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def rss_peak(interval: float = 0.05) -> Iterator[dict[str, int]]:
    """{"baseline", "peak"} VmRSS in bytes around the block, sampled every `interval` s."""
    gc.collect()
    seen = {"baseline": vm_rss(), "peak": 0}
    seen["peak"] = seen["baseline"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            seen["peak"] = max(seen["peak"], vm_rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        seen["peak"] = max(seen["peak"], vm_rss())


def add(figures: Figures, name: str, unit: str, value: float) -> None:
    figures.setdefault(name, (unit, []))[1].append(value)


def timed_pull(engine: Any, zone: Path, source: Any, day: date) -> tuple[Any, float, dict]:
    """(PullResult, wall seconds, rss) of one `pull_source`; fails loudly if it failed."""
    from pipelines.ingest.pulls.pull import pull_source

    with rss_peak() as rss:
        started = time.perf_counter()
        result = pull_source(engine, zone, source, day)
        elapsed = time.perf_counter() - started
    assert result.status == "SUCCESS", result.error
    return result, elapsed, rss


def fresh_source(engine: Any, org: str, name: str, kind: str, config: dict[str, Any]) -> Any:
    from pipelines.ingest.pulls.pull import pulled_sources
    from recon.cli_sources import add_source

    add_source(engine, org, name, kind, config=config)
    [source] = pulled_sources(engine, org, [name])
    return source


# --- DATABASE -------------------------------------------------------------------------------


def insert_gl_rows(libpq: str, first: int, last: int) -> None:
    """Rows `first`..`last` of gl_entries (deterministic values), then VACUUM ANALYZE."""
    import psycopg

    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO gl_entries SELECT g, 'INV-' || g, date '2026-01-01' + (g %% 365)::int, "
            "timestamp '2026-01-01' + g * interval '1 second', "
            "(((g * 7919) %% 2000000) - 1000000) / 100.0, "
            f"(ARRAY{PAYEES!r})[1 + g %% 5] || ' invoice ' || g "
            "FROM generate_series(%s::bigint, %s::bigint) AS g",
            (first, last),
        )
        conn.execute("VACUUM ANALYZE gl_entries")


def copy_baseline(libpq: str, target: Path) -> tuple[float, int]:
    """(seconds, bytes) to COPY the table as CSV into `target` (then removed) through psycopg."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(libpq) as conn, conn.cursor() as cur, target.open("wb") as out:
        with cur.copy(BASELINE_SQL) as copy:
            for block in copy:
                out.write(block)
    elapsed, size = time.perf_counter() - started, target.stat().st_size
    target.unlink()
    return elapsed, size


def stream_only(sa_url: str, batch_rows: int) -> tuple[float, int]:
    """(seconds, rows) of the puller's SELECT streamed by SQLAlchemy, nothing formatted."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(sa_url, poolclass=NullPool)
    started = time.perf_counter()
    rows = 0
    with engine.connect() as conn, conn.begin():
        streamed = conn.execution_options(stream_results=True, yield_per=batch_rows)
        result = streamed.execute(sa.text("SELECT * FROM gl_entries ORDER BY id"))
        for part in result.partitions(batch_rows):
            rows += len(part)
    engine.dispose()
    return time.perf_counter() - started, rows


def pulled_ids(zone: Path, relative: str) -> list[int]:
    with (zone / relative).open(newline="", encoding="utf-8") as handle:
        return [int(row["id"]) for row in csv.DictReader(handle)]


def bench_database(
    args: argparse.Namespace, url: str, engine: Any, zone: Path, work: Path, figures: Figures
) -> None:
    import psycopg
    from psycopg import sql

    from pipelines.ingest.pulls.config import DatabaseConfig
    from resources.database import libpq_url

    name = f"bench_gl_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(url).replace("/recon?", "/postgres?")
    other = libpq_url(url).replace("/recon?", f"/{name}?")
    n, extra = args.rows, max(1, args.rows // 100)
    batch = DatabaseConfig.model_fields["batch_rows"].default
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        started = time.perf_counter()
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE gl_entries (id bigint PRIMARY KEY, entry_ref text, "
                "posting_date date, posted_at timestamp, value numeric(12, 2), memo text)"
            )
        insert_gl_rows(other, 1, n)
        with psycopg.connect(other) as conn:
            size = conn.execute("SELECT pg_total_relation_size('gl_entries')").fetchone()[0]
        print(
            f"DATABASE: {name}.gl_entries, {n:,} rows ({size / MB:.0f} MB with index) made in "
            f"{time.perf_counter() - started:.1f} s; batch_rows {batch:,}",
            flush=True,
        )
        sa_url = other.replace("postgresql://", "postgresql+psycopg://", 1)
        config = {"url": sa_url, "table": "gl_entries", "incremental_column": "id"}
        org = f"Bench pulls {uuid.uuid4().hex[:6]}"
        for r in range(args.repeat):
            with psycopg.connect(other, autocommit=True) as conn:  # back to N rows
                if conn.execute("DELETE FROM gl_entries WHERE id > %s", (n,)).rowcount:
                    conn.execute("VACUUM ANALYZE gl_entries")
            copy_s, copy_bytes = copy_baseline(other, work / "copy.csv")
            source = fresh_source(engine, org, f"gl{r + 1}", "DATABASE", config)
            first, pull_s, rss = timed_pull(engine, zone, source, DAY1)
            assert (first.records, first.watermark_to) == (n, n), first
            pull_mb = (zone / first.file).stat().st_size / MB
            (zone / first.file).unlink()
            stream_s, streamed = stream_only(sa_url, batch)  # after the pull: its RSS is clean
            assert streamed == n, streamed
            insert_gl_rows(other, n + 1, n + extra)
            second, incr_s, _ = timed_pull(engine, zone, source, DAY2)
            marks = (second.watermark_from, second.watermark_to)
            assert second.records == extra and marks == (n, n + extra), second
            assert pulled_ids(zone, second.file) == list(range(n + 1, n + extra + 1))
            (zone / second.file).unlink()
            growth = (rss["peak"] - rss["baseline"]) / MB
            add(figures, f"DB day-1 pull, {n:,} rows", "s", pull_s)
            add(figures, "DB day-1 pull rate", "rows/s", n / pull_s)
            add(figures, "DB day-1 pull peak RSS above baseline", "MB", growth)
            add(figures, "DB process RSS before the pull", "MB", rss["baseline"] / MB)
            add(figures, f"DB day-2 incremental pull, {extra:,} rows", "s", incr_s)
            add(figures, "DB day-2 pull rate", "rows/s", extra / incr_s)
            add(figures, "DB baseline COPY ... CSV HEADER", "s", copy_s)
            add(figures, "DB baseline COPY rate", "rows/s", n / copy_s)
            add(figures, "DB ratio pull / COPY", "x", pull_s / copy_s)
            # what the row-by-row path (databases other than PostgreSQL) pays before any CSV
            add(figures, "DB diag: SQLAlchemy row stream only, no CSV", "s", stream_s)
            print(
                f"  repeat {r + 1}: pull {pull_s:.2f} s ({pull_mb:.0f} MB file, RSS +{growth:.0f} "
                f"MB), day 2 {incr_s:.2f} s, COPY {copy_s:.2f} s ({copy_bytes / MB:.0f} MB), "
                f"stream only {stream_s:.2f} s",
                flush=True,
            )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- REST_API -------------------------------------------------------------------------------


def make_records(count: int) -> list[dict[str, Any]]:
    """Bank-transaction-like records with an int `id` 1..count."""
    return [
        {"id": i, "ref": f"TXN-{i:08d}", "booked_at": f"2026-03-{1 + i % 28:02d}T09:{i % 60:02d}Z"}
        | {"amount": f"{((i * 7919) % 2000000 - 1000000) / 100:.2f}", "currency": "EUR"}
        | {"payee": PAYEES[i % len(PAYEES)], "memo": f"invoice {i}"}
        for i in range(1, count + 1)
    ]


def serve_records(count: int, pipe: Connection, stop: Any) -> None:
    """Child process: RestServer (cursor paging) over `count` records until `stop` is set."""
    sys.path.insert(0, str(ROOT / "tests"))
    from rest_server import RestServer

    with RestServer(make_records(count), "cursor", page_size=PAGE_SIZE) as server:
        pipe.send(server.url)
        stop.wait()


def requests_baseline(url: str) -> tuple[float, int]:
    """(seconds, records) of the pages fetched by a plain requests loop following the cursor."""
    import requests

    started = time.perf_counter()
    total, cursor = 0, None
    with requests.Session() as http:
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            response = http.get(url, params=params, timeout=60)
            response.raise_for_status()
            body = response.json()
            total += len(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return time.perf_counter() - started, total


def bench_rest(args: argparse.Namespace, engine: Any, zone: Path, figures: Figures) -> None:
    from pipelines.ingest.pulls import rest_api
    from pipelines.ingest.pulls.pull import declaration

    m = args.records
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    stop = context.Event()
    server = context.Process(target=serve_records, args=(m, theirs, stop), daemon=True)
    server.start()
    try:
        if not mine.poll(120):
            raise SystemExit("the REST server did not start")
        url = mine.recv()
        started = time.perf_counter()
        from dlt.sources.helpers import rest_client  # noqa: F401 - the import a first pull pays

        took = time.perf_counter() - started
        print(
            f"REST_API: {m:,} records at {url}, cursor paging, {PAGE_SIZE} a page; dlt's client "
            f"imported (once per process, not timed below) in {took:.2f} s",
            flush=True,
        )
        config = {"url": url, "items": "data", "paginator": "cursor", "page_size": PAGE_SIZE}
        config |= {
            "cursor_path": "next_cursor",
            "cursor_param": "cursor",
            "incremental_field": "id",
        }
        org = f"Bench pulls {uuid.uuid4().hex[:6]}"
        for r in range(args.repeat):
            base_s, fetched = requests_baseline(url)
            assert fetched == m, fetched
            source = fresh_source(engine, org, f"api{r + 1}", "REST_API", config)
            result, pull_s, rss = timed_pull(engine, zone, source, DAY1)
            assert (result.records, result.watermark_to) == (m, m), result
            (zone / result.file).unlink()
            started = time.perf_counter()
            paged = sum(len(page) for page in rest_api.fetch_pages(declaration(source), None))
            fetch_s = time.perf_counter() - started
            assert paged == m, paged
            growth = (rss["peak"] - rss["baseline"]) / MB
            add(figures, f"API pull, {m:,} records", "s", pull_s)
            add(figures, "API pull rate", "rec/s", m / pull_s)
            add(figures, "API pull peak RSS above baseline", "MB", growth)
            add(figures, "API baseline requests loop", "s", base_s)
            add(figures, "API baseline rate", "rec/s", m / base_s)
            add(figures, "API ratio pull / requests loop", "x", pull_s / base_s)
            add(figures, "API diag: fetch_pages only (dlt + checks)", "s", fetch_s)
            print(
                f"  repeat {r + 1}: pull {pull_s:.2f} s (RSS +{growth:.0f} MB), requests loop "
                f"{base_s:.2f} s, fetch_pages only {fetch_s:.2f} s",
                flush=True,
            )
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.terminate()
            server.join(10)


# --- main -----------------------------------------------------------------------------------


def print_table(figures: Figures, repeat: int) -> None:
    print(f"\n{'figure':<48}{'median':>12}{'min':>12}{'max':>12}  unit (of {repeat} repeats)")
    for name, (unit, values) in figures.items():
        cells = (statistics.median(values), min(values), max(values))
        shown = "".join(f"{v:>12,.0f}" if abs(v) >= 1000 else f"{v:>12.2f}" for v in cells)
        print(f"{name:<48}{shown}  {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="DATABASE table rows")
    parser.add_argument("--records", type=int, default=100_000, help="REST_API records")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of every measurement")
    parser.add_argument("--keep", action="store_true", help="keep the RECON_HOME")
    args = parser.parse_args()
    if args.rows < 1 or args.records < 1 or args.repeat < 1:
        parser.error("--rows, --records and --repeat must be at least 1")

    begun = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="bench-pulls-", dir="/tmp"))
    os.environ["RECON_HOME"] = str(home)
    os.environ.pop("RECON_DATABASE_URL", None)
    from recon.cli_db import ready_url
    from resources import migrations
    from resources.database import engine_for
    from resources.embedded import stop_embedded_server
    from resources.file_store import FileStoreResource

    figures: Figures = {}
    try:
        url = ready_url()
        migrations.migrate(url)
        engine = engine_for(url)
        zone = FileStoreResource().store().landing
        print(f"RECON_HOME {home}; {os.cpu_count()} CPUs; load {os.getloadavg()}", flush=True)
        bench_database(args, url, engine, zone, home, figures)
        bench_rest(args, engine, zone, figures)
        engine.dispose()
    finally:
        stop_embedded_server(home)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print_table(figures, args.repeat)
    print(f"\nwhole run {time.perf_counter() - begun:.0f} s; load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
