"""`recon run --engine spark`: the whole command on the Spark linkage engine (issue 20).

The end-to-end case of `test_recon_run` (planted breaks, a real rules file) reconciled with
`--engine spark` on `local[2]`: the summary says `engine: spark` and counts what the DuckDB
engine counts, the same pairs are written; a Spark master that runs nothing fails the run with
a one-line error naming the setting, never a quiet run on DuckDB; an unknown engine is refused.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import run_recon
from test_recon_run import EXPECTED_BY_TYPE, Case, write_case

from resources.database import engine_for


def _run(case: Case, name: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    return run_recon(
        "run", "--source", str(case.bank), "--target", str(case.ledger), "--rules",
        str(case.rules), "--org", case.org, "--name", name, "--no-embed", *extra, env=env,
        timeout=900,
    )  # fmt: skip


def _pairs(url: str, reconciliation_id: int) -> set[tuple[int, int]]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT source_row_number, target_row_number FROM reconciliation_matches "
                "WHERE reconciliation_id = :r"
            ),
            {"r": reconciliation_id},
        )
        return {tuple(r) for r in rows}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return write_case(tmp_path_factory.mktemp("spark-run"), f"spark-{uuid.uuid4().hex[:8]}")


def test_recon_run_on_spark_gives_the_duckdb_result(database_url: str, case: Case) -> None:
    code, out, err = _run(case, "on duckdb", "--engine", "duckdb")
    assert code == 0, err[-3000:]
    duck = json.loads(out.strip().splitlines()[-1])
    env = {"RECON_SPARK_MASTER": "local[2]"}
    code, out, err = _run(case, "on spark", "--engine", "spark", env=env)
    assert code == 0, err[-3000:]
    spark = json.loads(out.strip().splitlines()[-1])
    assert duck["engine"] == "duckdb" and spark["engine"] == "spark"
    assert spark["exceptions_by_type"] == duck["exceptions_by_type"] == EXPECTED_BY_TYPE
    for key in ("matched_records", "unmatched_source_records", "unmatched_target_records"):
        assert spark[key] == duck[key], key
    duck_pairs = _pairs(database_url, duck["reconciliation_id"])
    assert _pairs(database_url, spark["reconciliation_id"]) == duck_pairs and duck_pairs


def test_spark_that_cannot_start_fails_the_run(case: Case, tmp_path: Path) -> None:
    env = {"RECON_SPARK_MASTER": "no-such-master"}
    code, out, err = _run(case, "no spark", "--engine", "spark", env=env)
    assert code == 1, (out, err)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "FAILED" and summary["engine"] is None
    assert "RECON_SPARK_MASTER" in summary["error_message"], summary["error_message"]
    code, _, err = _run(case, "no engine", "--engine", "flink")
    assert code != 0 and "--engine flink: choose duckdb or spark" in err, err
