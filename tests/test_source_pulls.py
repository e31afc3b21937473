"""DATABASE and REST_API pulls into the landing zone, against real databases and a real server.

The other database is a second PostgreSQL database on the session's embedded server (a new
database, its own tables) or a SQLite file; the API is `rest_server.RestServer` on loopback.
Each test asserts what a data engineer relies on: the exact rows pulled, the watermark moving
only with a successful pull, nothing landed twice, credentials never stored or shown in plain
text, one failing source not stopping the others.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from helpers import run_recon
from rest_server import RestServer

from pipelines.ingest.pulls.pull import pull_source, pulled_sources
from recon.cli_sources import add_source
from resources.database import engine_for
from resources.file_store import FileStoreResource

D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


def sa_url(libpq: str) -> str:
    return libpq.replace("postgresql://", "postgresql+psycopg://", 1)


def gl_rows(first: int, count: int) -> list[tuple[Any, ...]]:
    """Ledger lines as a GL table holds them: id, ref, posted date and time, amount, payee."""
    payees = ["ACME LTD", "Globex Corporation", "Initech", "Umbrella Corp", "Wayne Enterprises"]
    return [
        (
            i,
            f"INV-{5000 + i}",
            f"2026-03-{1 + i % 3:02d}",
            f"2026-03-{1 + i % 3:02d} 09:{i % 60:02d}:00",
            Decimal(f"{(i * 7919) % 100000 / 100:.2f}") * (-1 if i % 5 == 0 else 1),
            payees[i % len(payees)],
        )
        for i in range(first, first + count)
    ]


def make_pg_ledger(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS gl_entries (id INTEGER PRIMARY KEY, entry_ref TEXT, "
            "posting_date DATE, posted_at TIMESTAMP, value NUMERIC(12, 2), memo TEXT)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO gl_entries VALUES (%s, %s, %s, %s, %s, %s)", rows)


def make_sqlite_ledger(path: Path, rows: list[tuple[Any, ...]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS gl_entries (id INTEGER PRIMARY KEY, entry_ref TEXT, "
            "posting_date TEXT, posted_at TEXT, value TEXT, memo TEXT)"
        )
        conn.executemany(
            "INSERT INTO gl_entries VALUES (?, ?, ?, ?, ?, ?)",
            [(*r[:4], str(r[4]), r[5]) for r in rows],
        )


def read_pulled(zone: Path, relative: str | None) -> list[dict[str, str]]:
    assert relative is not None, "the pull wrote no file"
    with (zone / relative).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def org() -> str:
    return f"Pulls {uuid.uuid4().hex[:8]}"


@pytest.fixture()
def zone(database_url: str) -> Path:
    return FileStoreResource().store().landing


def the_source(engine: sa.Engine, org: str, name: str) -> Any:
    [source] = pulled_sources(engine, org, [name])
    return source


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_database_pull_takes_only_the_rows_above_the_last_watermark(
    kind: str, database_url: str, fresh_database: Any, tmp_path: Path, org: str, zone: Path
) -> None:
    engine = engine_for(database_url)
    if kind == "postgresql":
        other = fresh_database()
        make_pg_ledger(other, gl_rows(1, 120))
        url = sa_url(other)
    else:
        make_sqlite_ledger(tmp_path / "gl.sqlite", gl_rows(1, 120))
        url = f"sqlite:///{tmp_path / 'gl.sqlite'}"
    config = {"url": url, "table": "gl_entries", "incremental_column": "id", "batch_rows": 50}
    add_source(engine, org, "gl", "DATABASE", config=config)
    source = the_source(engine, org, "gl")

    first = pull_source(engine, zone, source, D1)
    assert first.status == "SUCCESS", first.error
    assert (first.records, first.watermark_from, first.watermark_to) == (120, None, 120)
    rows = read_pulled(zone, first.file)
    assert [int(r["id"]) for r in rows] == list(range(1, 121))
    assert rows[4]["value"] == "-395.95" and rows[0]["memo"] == "Globex Corporation"
    assert rows[0]["posting_date"] == "2026-03-02"
    assert first.file is not None and first.file.endswith(
        f"gl-{D1.isoformat()}-pull{first.sync_log_id}.csv"
    )

    # nothing new: SUCCESS, no file, the watermark where it was
    same_day = pull_source(engine, zone, source, D2)
    assert (same_day.status, same_day.records, same_day.file) == ("SUCCESS", 0, None)
    assert same_day.watermark_to == 120

    # the next day: only the rows added since
    if kind == "postgresql":
        make_pg_ledger(other, gl_rows(121, 17))
    else:
        make_sqlite_ledger(tmp_path / "gl.sqlite", gl_rows(121, 17))
    second = pull_source(engine, zone, source, D2)
    assert second.status == "SUCCESS", second.error
    assert (second.records, second.watermark_from, second.watermark_to) == (17, 120, 137)
    assert [int(r["id"]) for r in read_pulled(zone, second.file)] == list(range(121, 138))

    # a date older than one pulled would overlap it: refused, recorded, nothing written
    late = pull_source(engine, zone, source, D1)
    assert late.status == "FAILED" and "already pulled for 2026-03-03" in str(late.error)
    assert late.file is None

    with engine.connect() as conn:
        logs = conn.execute(
            sa.text(
                "SELECT status, records_processed, details FROM sync_logs "
                "WHERE data_source_id = :s AND system = 'database-pull' ORDER BY id"
            ),
            {"s": source.id},
        ).all()
    assert [(r.status, r.records_processed) for r in logs] == [
        ("SUCCESS", 120),
        ("SUCCESS", 0),
        ("SUCCESS", 17),
        ("FAILED", 0),
    ]
    details = logs[2].details
    assert details["watermark_from"] == 120 and details["watermark_to"] == 137
    assert details["file"] == second.file and len(details["sha256"]) == 64
    assert '"id" > :since' in details["query"] or "id > :since" in details["query"]


def test_a_query_source_with_a_timestamp_watermark(
    database_url: str, fresh_database: Any, org: str, zone: Path
) -> None:
    engine = engine_for(database_url)
    other = fresh_database()
    make_pg_ledger(other, gl_rows(1, 30))
    query = "SELECT entry_ref, posted_at, value, memo FROM gl_entries WHERE value > 0"
    config = {"url": sa_url(other), "query": query, "incremental_column": "posted_at"}
    add_source(engine, org, "gl-query", "DATABASE", config=config)
    source = the_source(engine, org, "gl-query")
    first = pull_source(engine, zone, source, D1)
    assert first.status == "SUCCESS", first.error
    positive = [r for r in gl_rows(1, 30) if r[4] > 0]
    assert first.records == len(positive)
    assert first.watermark_to == max(r[3] for r in positive).replace(" ", "T")
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO gl_entries VALUES (900, 'INV-LATE', '2026-03-04', "
            "'2026-03-04 18:00:00', 12.5, 'LATE PAYEE')"
        )
    second = pull_source(engine, zone, source, D2)
    assert second.status == "SUCCESS", second.error
    assert [r["entry_ref"] for r in read_pulled(zone, second.file)] == ["INV-LATE"]


def test_credentials_stay_sealed_and_a_failing_source_does_not_stop_the_others(
    database_url: str, fresh_database: Any, org: str, zone: Path
) -> None:
    engine = engine_for(database_url)
    password = f"pw-{uuid.uuid4().hex}"
    # a PostgreSQL URL with a password nobody can log in with (the server is not there)
    bad = f"postgresql+psycopg://reader:{password}@127.0.0.1:9/ledger"
    add_source(
        engine,
        org,
        "broken",
        "DATABASE",
        config={"url": bad, "table": "gl_entries", "incremental_column": "id"},
    )
    good_db = fresh_database()
    make_pg_ledger(good_db, gl_rows(1, 5))
    add_source(
        engine,
        org,
        "good",
        "DATABASE",
        config={"url": sa_url(good_db), "table": "gl_entries", "incremental_column": "id"},
    )
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT d.config::text FROM data_sources d JOIN organizations o "
                "ON o.id = d.organization_id WHERE o.name = :o AND d.name = 'broken'"
            ),
            {"o": org},
        ).scalar_one()
        audit_text = conn.execute(
            sa.text(
                "SELECT string_agg(a.after::text, ' ') FROM audit_log a JOIN organizations o "
                "ON o.id = a.organization_id WHERE o.name = :o AND a.entity = 'data_source'"
            ),
            {"o": org},
        ).scalar_one()
    assert password not in stored and "***" in stored
    assert password not in audit_text and "gl_entries" in audit_text

    results = {
        r.source.split("/")[1]: r
        for r in (pull_source(engine, zone, s, D1) for s in pulled_sources(engine, org))
    }
    assert results["broken"].status == "FAILED" and password not in str(results["broken"].error)
    assert "127.0.0.1" in str(results["broken"].error)
    assert results["good"].status == "SUCCESS" and results["good"].records == 5
    assert not list((zone / org / "broken").glob("*")) if (zone / org / "broken").exists() else True


def test_sources_add_test_and_pull_from_the_command_line(
    database_url: str, tmp_path: Path, org: str
) -> None:
    make_sqlite_ledger(tmp_path / "gl.sqlite", gl_rows(1, 12))
    url = f"sqlite:///{tmp_path / 'gl.sqlite'}"
    code, out, err = run_recon(
        "sources",
        "add",
        "gl",
        "--type",
        "DATABASE",
        "--org",
        org,
        "--table",
        "gl_entries",
        "--incremental",
        "id",
        input=url + "\n",
    )
    assert code == 0, err
    assert "recon sources test gl" in out

    code, out, err = run_recon("sources", "test", "gl", "--org", org, "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["ok"] and outcome["new_rows_waiting"] and "memo" in outcome["columns"]

    code, out, err = run_recon("sources", "pull", "gl", "--org", org, "--date", D1.isoformat())
    assert code == 0, err
    assert "12 record(s)" in out and "PROCESSED (12 rows)" in out, out

    landed = out.split("uploaded file ")[1].split()[0]

    # the same date again re-reads from the same watermark: the same content, not landed twice
    code, out, err = run_recon("sources", "pull", "gl", "--org", org, "--date", D1.isoformat())
    assert code == 0 and "12 record(s)" in out, (out, err)
    assert f"uploaded file {landed} " in out and "not landed twice" in out, out
    code, out, err = run_recon("sources", "pull", "gl", "--org", org, "--date", D2.isoformat())
    assert code == 0 and "0 record(s)" in out and "nothing new" in out, (out, err)

    # a source that cannot be reached: test says why, exit 1, and it is recorded on the source
    (tmp_path / "gl.sqlite").unlink()
    (tmp_path / "gl.sqlite").mkdir()
    code, out, err = run_recon("sources", "test", "gl", "--org", org)
    assert code == 1 and "FAILED" in err, (out, err)
    engine = engine_for(database_url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT d.last_test_successful, d.last_test_error FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id "
                "WHERE o.name = :o AND d.name = 'gl'"
            ),
            {"o": org},
        ).one()
    assert row.last_test_successful is False and row.last_test_error
    code, out, err = run_recon("sources", "list", "--org", org)
    assert code == 0, err
    assert "last pull SUCCESS for 2026-03-03: 0 record(s), watermark 12" in out, out
    assert "last test FAILED" in out, out

    # a secret set for a source is audited by key, never by value
    secret = f"s3cret-{uuid.uuid4().hex}"
    code, out, err = run_recon(
        "secrets", "set", "password", "--data-source", "gl", "--org", org, input=secret + "\n"
    )
    assert code == 0, err
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "SELECT a.action, a.after::text AS after FROM audit_log a JOIN organizations o "
                "ON o.id = a.organization_id WHERE o.name = :o AND a.entity = 'data_source' "
                "ORDER BY a.id"
            ),
            {"o": org},
        ).all()
    assert [e.action for e in events] == ["ADDED", "SECRET_SET"]
    assert '"password"' in events[1].after and all(secret not in e.after for e in events)

    code, out, err = run_recon(
        "sources",
        "add",
        "api",
        "--type",
        "REST_API",
        "--org",
        org,
        "--url",
        "ftp://x/y",
        "--incremental",
        "id",
    )
    assert code != 0 and "http" in (err + out), (out, err)


def test_a_rest_api_pull_lands_json_lines_with_its_token_sealed(
    database_url: str, org: str, zone: Path
) -> None:
    engine = engine_for(database_url)
    token = f"tok-{uuid.uuid4().hex}"
    records = [{"id": i, "amount": f"{i}.50", "payee": f"PAYEE {i}"} for i in range(1, 101)]
    with RestServer(records, "cursor", token=token, auth="bearer") as server:
        config = {
            "url": server.url,
            "items": "data",
            "paginator": "cursor",
            "page_size": 40,
            "auth": "bearer",
            "token": token,
            "incremental_field": "id",
            "incremental_param": "since",
        }
        add_source(engine, org, "bank-api", "REST_API", config=config)
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text(
                    "SELECT d.config::text FROM data_sources d JOIN organizations o "
                    "ON o.id = d.organization_id WHERE o.name = :o AND d.name = 'bank-api'"
                ),
                {"o": org},
            ).scalar_one()
        assert token not in stored
        source = the_source(engine, org, "bank-api")
        first = pull_source(engine, zone, source, D1)
        assert first.status == "SUCCESS", first.error
        assert (first.records, first.watermark_to) == (100, 100)
        lines = (zone / str(first.file)).read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in lines] == list(range(1, 101))
        server.records.extend({"id": i, "amount": "1.00", "payee": "NEW"} for i in (101, 102))
        server.requests.clear()
        second = pull_source(engine, zone, source, D2)
        assert (second.status, second.records, second.watermark_from) == ("SUCCESS", 2, 100)
        assert all(r["query"].get("since") == "100" for r in server.requests), server.requests


def test_a_rest_api_page_over_the_size_limit_is_refused_before_it_is_read(
    database_url: str, org: str, zone: Path
) -> None:
    engine = engine_for(database_url)
    records = [{"id": i, "memo": "x" * 500} for i in range(1, 41)]
    with RestServer(records, "offset") as server:
        config = {
            "url": server.url,
            "items": "data",
            "paginator": "offset",
            "page_size": 20,
            "incremental_field": "id",
            "max_page_bytes": 5_000,
        }
        add_source(engine, org, "huge-api", "REST_API", config=config)
        result = pull_source(engine, zone, the_source(engine, org, "huge-api"), D1)
    assert result.status == "FAILED" and "max_page_bytes=5,000" in str(result.error)
    assert result.file is None and result.records == 0


def test_csv_rows_keep_values_and_convert_only_bytes_and_booleans() -> None:
    from datetime import datetime

    from pipelines.ingest.pulls.database import _rows

    when = datetime(2026, 3, 2, 9, 30)
    part = [
        (1, Decimal("10.50"), when, None, "ACME", b"\x00\xff", None),
        (2, Decimal("-3"), when, "x", "Globex", None, True),
    ]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(_rows(part))
    assert text.getvalue().splitlines() == [
        "1,10.50,2026-03-02 09:30:00,,ACME,00ff,",
        "2,-3,2026-03-02 09:30:00,x,Globex,,true",
    ]
    plain = [(1, "a", Decimal("1.00")), (2, None, Decimal("2.50"))]
    assert _rows(plain) is plain, "nothing to convert: the batch as it is"


def test_a_database_password_kept_apart_from_the_url_is_used_and_never_shown() -> None:
    from pipelines.ingest.pulls.config import DatabaseConfig
    from pipelines.ingest.pulls.database import _engine, masked_url

    config = DatabaseConfig(
        url="postgresql+psycopg://reader@erp.internal/finance",
        password="pw-apart",
        table="gl",
        incremental_column="id",
    )
    engine = _engine(config)
    assert engine.url.password == "pw-apart" and engine.url.username == "reader"
    assert "pw-apart" not in masked_url(config) and "pw-apart" not in repr(engine.url)
