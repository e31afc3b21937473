"""A `recon run` killed with SIGKILL mid-way is noticed and failed by the next `recon` command.

No daemon and no human action: the next command (here `recon runs`, and `recon run` itself)
finds the Dagster run whose owner process is gone, fails it so the queue moves on, fails the
reconciliation it was writing with the reason, and a new `recon run` of the same files
completes in place of the failed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from helpers import run_recon

from recon.lifecycle import OWNER_HOST, OWNER_PID, OWNER_STARTED, owner_alive, owner_tags

ROWS = 150_000
RULES = """\
name: lifecycle
field_mappings: []
matching_rules:
  - {name: reference, match_type: EXACT, fields: [ref]}
  - {name: amount, match_type: RANGE, fields: [amount], tolerance: 0.01}
  - {name: date, match_type: DATE_RANGE, fields: [booked], tolerance: 3}
"""


def test_the_owner_of_a_run_is_this_process_until_it_is_gone() -> None:
    mine = owner_tags()
    assert owner_alive(mine) is True
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = f"{__import__('psutil').Process(gone.pid).create_time():.3f}"
    gone.wait()
    assert owner_alive({**mine, OWNER_PID: str(gone.pid), OWNER_STARTED: started}) is False
    # a recycled pid is not the owner: another start time
    assert owner_alive({**mine, OWNER_STARTED: "1.000"}) is False
    assert owner_alive({**mine, OWNER_HOST: "another-host"}) is None
    assert owner_alive({}) is None


def _case(
    folder: Path, *, seed: int, rows: int, missing: float = 0.0, fee_every: int = 50
) -> tuple[Path, Path, Path]:
    """A bank file, a ledger and the rules: every `fee_every`-th ledger amount off by 5.00,
    each side missing `missing` of the records."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bank, ledger = ["ref,booked,amount"], ["ref,booked,amount"]
    for i in range(rows):
        day = date(2024, 1, 1) + timedelta(days=rng.randint(0, 300))
        amount = rng.randint(100, 900_000) / 100
        ref = f"S{seed}-{i:07}"
        if rng.random() >= missing:
            bank.append(f"{ref},{day.isoformat()},{amount:.2f}")
        if rng.random() >= missing:
            ledger.append(
                f"{ref},{day.isoformat()},{amount + (5 if i % fee_every == 0 else 0):.2f}"
            )
    paths = folder / "bank.csv", folder / "ledger.csv", folder / "rules.yaml"
    paths[0].write_text("\n".join(bank) + "\n", encoding="utf-8")
    paths[1].write_text("\n".join(ledger) + "\n", encoding="utf-8")
    paths[2].write_text(RULES, encoding="utf-8")
    return paths


def _reconciliation(url: str, name: str) -> tuple[int, str, str | None] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT r.id, r.status, r.error_message FROM reconciliations r "
            "JOIN uploaded_files f ON f.id = r.source_file_id "
            "JOIN organizations o ON o.id = f.organization_id "
            "WHERE r.name = %s ORDER BY r.id DESC LIMIT 1",
            (name,),
        ).fetchone()
    return row


def _started_runs_of(url: str, pid: int) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM dagster.runs r JOIN dagster.run_tags t ON t.run_id = r.run_id "
            "WHERE r.status IN ('STARTED', 'STARTING') AND t.key = %s AND t.value = %s",
            (OWNER_PID, str(pid)),
        ).fetchone()[0]


def test_a_killed_recon_run_is_failed_by_the_next_command(
    database_url: str, tmp_path: Path
) -> None:
    bank, ledger, rules = _case(tmp_path, seed=3, rows=ROWS)
    org, name = f"kill-{uuid.uuid4().hex[:8]}", "killed mid-way"
    recon = Path(sys.executable).with_name("recon")
    command = [str(recon), "run", "--no-embed", "--source", str(bank), "--target", str(ledger)]
    command += ["--rules", str(rules), "--org", org, "--name", name]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 240
    found = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = _reconciliation(database_url, name)
        if found and found[1] == "RUNNING":
            break
        time.sleep(0.1)
    assert found and found[1] == "RUNNING", f"never saw it running: {found}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert _started_runs_of(database_url, proc.pid) >= 1  # left behind, as a crash leaves it

    code, out, err = run_recon("runs", "--json")
    assert code == 0, err
    state = json.loads(out.strip().splitlines()[-1])
    assert any(f"pid {proc.pid}" in line and str(found[0]) in line for line in state["reaped"])
    assert _started_runs_of(database_url, proc.pid) == 0
    rid, status, reason = _reconciliation(database_url, name) or (None, None, None)
    assert (rid, status) == (found[0], "FAILED")
    assert reason and f"pid {proc.pid}" in reason and "ended without finishing" in reason
    assert all(r["id"] != rid for r in state["reconciliations"])

    # the next run of the same files completes, in place of the failed one
    code, out, err = run_recon(*command[1:], timeout=300)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["status"], summary["reconciliation_id"]) == ("COMPLETED", rid)
    assert f"reconciliation {rid} (FAILED) has these files, rules and name" in err
    assert "running it again in place" in err
    with psycopg.connect(database_url) as conn:
        same_name = conn.execute(
            "SELECT count(*) FROM reconciliations WHERE name = %s", (name,)
        ).fetchone()[0]
    assert same_name == 1


@pytest.mark.parametrize("as_json", [False, True])
def test_recon_runs_lists_what_is_unfinished(database_url: str, as_json: bool) -> None:
    code, out, err = run_recon("runs", *(["--json"] if as_json else []))
    assert code == 0, err
    if as_json:
        state = json.loads(out.strip().splitlines()[-1])
        assert set(state) == {"reaped", "runs", "reconciliations"}
    else:
        assert "unfinished Dagster run(s)" in out and "pending or running" in out


def _command(paths: tuple[Path, Path, Path], org: str) -> list[str]:
    recon = Path(sys.executable).with_name("recon")
    bank, ledger, rules = paths
    return [str(recon), "run", "--no-embed", "--source", str(bank), "--target", str(ledger)] + [
        "--rules",
        str(rules),
        "--org",
        org,
    ]


def _outcome(summary: dict) -> tuple:
    keys = ("status", "matched_records", "unmatched_source_records", "unmatched_target_records")
    return (*(summary[k] for k in keys), sorted(summary["exceptions_by_type"].items()))


def test_two_recon_runs_at_the_same_moment_each_come_out_as_alone(
    database_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    cases = [
        _case(tmp_path / name, seed=seed, rows=rows, missing=0.03, fee_every=40)
        for name, seed, rows in (("a", 1, 4000), ("b", 2, 6000))
    ]
    alone = []
    for index, case in enumerate(cases):
        code, out, err = run_recon(*_command(case, f"alone-{index}-{tag}")[1:], timeout=300)
        assert code == 0, err
        alone.append(json.loads(out.strip().splitlines()[-1]))
    procs = [
        subprocess.Popen(
            _command(case, f"together-{index}-{tag}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, case in enumerate(cases)
    ]
    together = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        together.append(json.loads(out.strip().splitlines()[-1]))
    assert [_outcome(s) for s in together] == [_outcome(s) for s in alone]
    assert alone[0]["matched_records"] != alone[1]["matched_records"]  # told apart


@pytest.mark.slow
def test_a_database_killed_mid_run_ends_in_one_line_and_the_next_command_fails_the_run(
    tmp_path: Path,
) -> None:
    """The embedded PostgreSQL (postmaster and backends) SIGKILLed while `recon run` works:
    the command ends with one line and exit 1; the next command restarts the server, and the
    run and its reconciliation are FAILED, nothing left STARTED."""
    import psutil

    from resources.embedded import server_pid

    home = tmp_path / "home"  # a server of its own: the session's keeps serving the others
    env = {**os.environ, "RECON_HOME": str(home)}
    env.pop("RECON_DATABASE_URL", None)
    code, out, err = run_recon("db", "up", env=env, timeout=180)
    assert code == 0, err
    code, url, err = run_recon("db", "url", env=env)
    url = url.strip().splitlines()[-1]
    bank, ledger, rules = _case(tmp_path / "case", seed=5, rows=ROWS)
    name = "database killed"
    recon = Path(sys.executable).with_name("recon")
    command = [str(recon), "run", "--no-embed", "--source", str(bank), "--target", str(ledger)]
    command += ["--rules", str(rules), "--name", name]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        found = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            found = _reconciliation(url, name)
            if found and found[1] == "RUNNING":
                break
            time.sleep(0.2)
        assert found and found[1] == "RUNNING", f"never saw it running: {found}"
        postmaster = psutil.Process(server_pid(home))
        for process in [*postmaster.children(recursive=True), postmaster]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("recon: error:"), err[-2000:]
    assert "recon runs" in lines[-1] or "database" in lines[-1]

    try:
        code, out, err = run_recon("runs", "--json", env=env, timeout=180)
        assert code == 0, err
        state = json.loads(out.strip().splitlines()[-1])
        assert any(str(found[0]) in line for line in state["reaped"]), state
        assert _started_runs_of(url, proc.pid) == 0
        rid, status, reason = _reconciliation(url, name) or (None, None, None)
        assert (rid, status) == (found[0], "FAILED")
        assert reason and "ended without finishing" in reason
    finally:
        run_recon("db", "down", env=env, timeout=120)
