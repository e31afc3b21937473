"""`exception_ageing`: open breaks by organization x type x severity and age, with its check."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from dagster import materialize
from test_recon_run import write_case

from pipelines.ageing import CHECK, exception_ageing_asset
from pipelines.definitions import defs
from pipelines.work.ageing import BUCKETS, bucket_chart, exception_ageing, stale_critical
from recon.run import RunRequest, run_reconciliation
from resources.dagster_instance import dagster_instance
from resources.database import engine_for


def _age(url: str, rid: int, days: int, **where: Any) -> int:
    """Backdate the reconciliation's open exceptions matching `where` by `days`; how many."""
    clause = " AND ".join(f"{k} = %({k})s" for k in where) or "TRUE"
    with psycopg.connect(url) as conn:
        return conn.execute(
            "UPDATE reconciliation_exceptions SET created_at = LOCALTIMESTAMP - "
            f"make_interval(days => %(d)s) WHERE reconciliation_id = %(r)s AND {clause}",
            {"d": days, "r": rid, **where},
        ).rowcount


def test_open_breaks_are_bucketed_by_age_and_stale_critical_ones_warn(
    database_url: str, tmp_path: Any
) -> None:
    case = write_case(tmp_path / "case", "ageing-org")
    summary = run_reconciliation(
        database_url,
        RunRequest(source=case.bank, target=case.ledger, rules=case.rules, organization=case.org),
    )
    rid = summary["reconciliation_id"]
    assert summary["status"] == "COMPLETED"
    engine = engine_for(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE reconciliation_exceptions SET severity = 'LOW' WHERE reconciliation_id = %s",
            (rid,),
        )
        conn.execute(
            "UPDATE reconciliation_exceptions SET severity = 'CRITICAL' WHERE id = "
            "(SELECT min(id) FROM reconciliation_exceptions WHERE reconciliation_id = %s "
            "AND type = 'MISSING_IN_TARGET')",
            (rid,),
        )
    assert _age(database_url, rid, 45, type="MISSING_IN_SOURCE") == 2
    assert _age(database_url, rid, 120, type="DATE_MISMATCH") == 1

    mine = [r for r in exception_ageing(engine) if r.organization == case.org]
    by_type: dict[str, list[int]] = {}
    for row in mine:
        counts = by_type.setdefault(row.type, [0, 0, 0, 0])
        for i, n in enumerate(row.buckets):
            counts[i] += n
    assert by_type["MISSING_IN_SOURCE"] == [0, 0, 2, 0]
    assert by_type["DATE_MISMATCH"] == [0, 0, 0, 1]
    assert by_type["MISSING_IN_TARGET"] == [2, 0, 0, 0]
    assert stale_critical(mine) == 0  # the CRITICAL one is new
    assert "| 31-90 |" in bucket_chart(mine)

    # a day later than a week: the CRITICAL break is stale, the asset check warns
    later = datetime.now() + timedelta(days=9)
    assert (
        stale_critical([r for r in exception_ageing(engine, later) if r.organization == case.org])
        == 1
    )
    _age(database_url, rid, 9, type="MISSING_IN_TARGET")
    # a resolved break no longer ages
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE reconciliation_exceptions SET status = 'RESOLVED' "
            "WHERE reconciliation_id = %s AND type = 'DATE_MISMATCH'",
            (rid,),
        )
    result = materialize(
        [exception_ageing_asset], instance=dagster_instance(database_url), resources=defs.resources
    )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK and check.passed is False
    metadata = result.asset_materializations_for_node("exception_ageing")[0].metadata
    assert metadata["stale_critical"].value >= 1
    table = [r.data for r in metadata["ageing"].value.records if r.data["organization"] == case.org]
    assert "DATE_MISMATCH" not in {r["type"] for r in table}
    assert {"MISSING_IN_SOURCE", "MISSING_IN_TARGET"} <= {r["type"] for r in table}
    assert all(set(BUCKETS) <= set(r) for r in table)
