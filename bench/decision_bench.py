"""A decision on many exceptions at once (`recon exceptions resolve --all-matching`): time it.

    .venv/bin/python bench/decision_bench.py [--rows 10000] [--repeat 3] [--baseline-rows N]

Runs in a scratch database (``decision_bench_<hex>``) on the configured server
(``RECON_DATABASE_URL``, else the embedded one under ``RECON_HOME``), migrated and dropped at
the end, so the product database is never touched. ``--rows`` OPEN exceptions (distinct
fingerprints) are planted for one reconciliation of a new organization. Then ``--repeat``
times: reset them to OPEN (as the owner), and resolve every one of them with a reason code
through ``pipelines.work.exceptions_work.decide`` with the filter ``--reconciliation``, as
``recon_app`` in ``organization_transaction`` (one set-based statement: lock, update, work
state upsert, one audit event per exception), timed to the commit. The baseline is the same
decision taken per row (``decide`` on one id at a time, all in one transaction) on
``--baseline-rows`` of them (default: all), once. Prints each run, the median, the target
(< 5 s for 10k) and one JSON summary line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg
import sqlalchemy as sa
from psycopg import sql

from pipelines.work.exceptions_work import Decision, Filters, decide
from pipelines.work.users import acting_user
from resources import migrations
from resources.database import (
    engine_for,
    libpq_url,
    organization_transaction,
    resolve_database_url,
)

TARGET_SECONDS = 5.0


def _on(base_url: str, database: str) -> str:
    return libpq_url(sa.engine.make_url(base_url).set(database=database).render_as_string(False))


def plant(engine: sa.Engine, rows: int) -> tuple[int, int]:
    """A new organization, a COMPLETED reconciliation and `rows` OPEN exceptions of it."""
    with engine.begin() as conn:
        org = conn.execute(
            sa.text("INSERT INTO organizations (name) VALUES (:n) RETURNING id"),
            {"n": f"decision-bench-{uuid.uuid4().hex[:6]}"},
        ).scalar_one()
        rid = conn.execute(
            sa.text(
                "INSERT INTO reconciliations (name, status, organization_id) "
                "VALUES ('decision bench', 'COMPLETED', :o) RETURNING id"
            ),
            {"o": org},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO reconciliation_exceptions (reconciliation_id, organization_id, type, "
                "severity, status, description, source_data, fingerprint, source_row_number) "
                "SELECT :r, :o, 'MISSING_IN_TARGET', 'MEDIUM', 'OPEN', "
                "'Source row ' || i || ' has no match in the target', "
                "jsonb_build_object('_row_number', i, 'amount', i * 1.5), "
                "encode(sha256(convert_to('bench' || i, 'UTF8')), 'hex'), i "
                "FROM generate_series(1, :n) AS i"
            ),
            {"r": rid, "o": org, "n": rows},
        )
    return org, rid


def set_based(engine: sa.Engine, org: int, rid: int) -> tuple[float, int]:
    decision = Decision("RESOLVE", note="bench: booked next period", reason_code="TIMING")
    started = time.perf_counter()
    with organization_transaction(engine, org) as conn:
        actor = acting_user(conn, org, None)
        outcome = decide(conn, actor, decision, filters=Filters(reconciliation_id=rid))
    return time.perf_counter() - started, outcome.changed


def per_row(engine: sa.Engine, org: int, rid: int, rows: int) -> tuple[float, int]:
    decision = Decision("RESOLVE", note="bench: booked next period", reason_code="TIMING")
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.text(
                    "SELECT id FROM reconciliation_exceptions WHERE reconciliation_id = :r "
                    "ORDER BY id LIMIT :n"
                ),
                {"r": rid, "n": rows},
            )
            .scalars()
            .all()
        )
    changed = 0
    started = time.perf_counter()
    with organization_transaction(engine, org) as conn:
        actor = acting_user(conn, org, None)
        for exception_id in ids:
            changed += decide(conn, actor, decision, ids=[exception_id]).changed
    return time.perf_counter() - started, changed


def main() -> None:
    """Plant, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=None, help="default: --rows")
    args = parser.parse_args()
    base_url = resolve_database_url()
    name = f"decision_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_on(base_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _on(base_url, name)
    engine = None
    try:
        migrations.migrate(url)
        engine = engine_for(url)
        org, rid = plant(engine, args.rows)
        runs = []
        for i in range(args.repeat):
            _reset(url, rid)
            seconds, changed = set_based(engine, org, rid)
            assert changed == args.rows, (changed, args.rows)
            runs.append(seconds)
            print(f"run {i + 1}: {changed:,} exceptions resolved in {seconds:.3f} s (set-based)")
        median = statistics.median(runs)
        baseline_rows = min(args.baseline_rows or args.rows, args.rows)
        _reset(url, rid)
        base_seconds, base_changed = per_row(engine, org, rid, baseline_rows)
        assert base_changed == baseline_rows
        scaled = base_seconds * args.rows / baseline_rows
        print(
            f"baseline: {baseline_rows:,} exceptions one by one in {base_seconds:.2f} s "
            f"({scaled:.2f} s for {args.rows:,})"
        )
        print(
            f"median of {args.repeat}: {median:.3f} s for {args.rows:,} exceptions "
            f"(target < {TARGET_SECONDS:.0f} s for 10,000; {scaled / median:.0f}x the per-row "
            "baseline)"
        )
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "runs_s": [round(r, 3) for r in runs],
                    "median_s": round(median, 3),
                    "baseline_rows": baseline_rows,
                    "baseline_s": round(base_seconds, 3),
                    "baseline_scaled_s": round(scaled, 3),
                    "target_s": TARGET_SECONDS,
                }
            )
        )
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(_on(base_url, "postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _reset(url: str, rid: int) -> None:
    """`reset` with a VACUUM between runs (autocommit: VACUUM runs outside a transaction)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE reconciliation_exceptions SET status = 'OPEN', resolution = NULL, "
            "resolved_by = NULL, resolved_at = NULL WHERE reconciliation_id = %s",
            (rid,),
        )
        conn.execute("DELETE FROM exception_work WHERE reconciliation_id = %s", (rid,))
        conn.execute("VACUUM ANALYZE reconciliation_exceptions")
        conn.execute("VACUUM ANALYZE exception_work")


if __name__ == "__main__":
    main()
