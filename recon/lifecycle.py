"""Runs whose process died are noticed and failed by the next `recon` command; no daemon needed.

`recon run`, `recon backfill` and `recon demo` execute their Dagster runs in their own process.
A `kill -9` (or a crash, or a lost machine) leaves such a run STARTED for ever: the queue counts
it against `max_concurrent_runs`, and the reconciliation it was writing stays RUNNING. So
every run a `recon` command executes carries its owner in its tags (`owner_tags`: host, pid
and the process's start time, so a recycled pid is not mistaken for the owner), and every
`recon` command that opens the instance first calls `reap_dead_runs`:

- a run STARTING or STARTED whose owner is a process of this host that no longer exists is
  reported failed to Dagster (`RUN_FAILURE` with the reason, so the queue moves on);
- the reconciliations it was writing (by run id, or the run's `recon/reconciliation_id` tag)
  become FAILED with the reason, and the files it was landing (still PROCESSING) FAILED too;
  a re-run replaces a failed reconciliation's results as any re-run does.

Runs of another host are left alone (their own host's next command reaps them); runs the
daemon launched are watched by Dagster's run monitoring (`dagster.yaml`). `recon runs` lists
what is unfinished after reaping.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import psutil
import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

OWNER_HOST = "recon/owner_host"
OWNER_PID = "recon/owner_pid"
OWNER_STARTED = "recon/owner_started"
RECONCILIATION_TAG = "recon/reconciliation_id"
UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run it executes in process."""
    me = psutil.Process()
    return {
        OWNER_HOST: socket.gethostname(),
        OWNER_PID: str(os.getpid()),
        OWNER_STARTED: f"{me.create_time():.3f}",
    }


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether a run's owner process still runs; None when this host cannot tell."""
    if OWNER_PID not in tags or tags.get(OWNER_HOST) != socket.gethostname():
        return None
    try:
        process = psutil.Process(int(tags[OWNER_PID]))
        started = process.create_time()
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True
    return abs(started - float(tags.get(OWNER_STARTED, started))) < 0.01


@dataclass
class Reaped:
    """A run found dead and what was failed with it."""

    run_id: str
    job: str
    owner: str
    reconciliations: list[int] = field(default_factory=list)
    files: list[int] = field(default_factory=list)


def reap_dead_runs(instance: DagsterInstance, engine: sa.Engine) -> list[Reaped]:
    """Fail every unfinished run of this host whose owner process is gone (see module doc)."""
    reaped = []
    for run in instance.get_runs(filters=RunsFilter(statuses=UNFINISHED)):
        if owner_alive(run.tags) is not False:
            continue
        owner = f"pid {run.tags[OWNER_PID]} on {run.tags[OWNER_HOST]}"
        reason = (
            f"the process running Dagster run {run.run_id} ({owner}) ended without finishing "
            "it (killed or crashed); run it again"
        )
        instance.report_run_failed(run, reason)
        reaped.append(_fail_its_rows(engine, run, owner, reason))
    return reaped


def _fail_its_rows(engine: sa.Engine, run: Any, owner: str, reason: str) -> Reaped:
    tagged = run.tags.get(RECONCILIATION_TAG, "")
    with engine.begin() as conn:
        reconciliations = conn.execute(
            sa.text(
                "UPDATE reconciliations SET status = 'FAILED', error_message = :m, "
                "completed_at = NOW() WHERE status IN ('PENDING', 'RUNNING') AND "
                "(dagster_run_id = :run OR CAST(id AS TEXT) = :tagged) RETURNING id"
            ),
            {"m": reason, "run": run.run_id, "tagged": tagged},
        ).scalars()
        reconciliation_ids = sorted(reconciliations)
        files = conn.execute(
            sa.text(
                "UPDATE uploaded_files SET status = 'FAILED', processing_error = :m "
                "WHERE status IN ('UPLOADING', 'PENDING', 'PROCESSING') AND dagster_run_id = :run "
                "RETURNING id"
            ),
            {"m": reason, "run": run.run_id},
        ).scalars()
        file_ids = sorted(files)
    return Reaped(run.run_id, run.job_name, owner, reconciliation_ids, file_ids)


def instance_for(url: str, say: Any = None) -> DagsterInstance:
    """The Dagster instance, after failing the runs whose process died (said through `say`)."""
    from resources.dagster_instance import dagster_instance
    from resources.database import engine_for

    instance = dagster_instance(url)
    for dead in reap_dead_runs(instance, engine_for(url)):
        if say is not None:
            say(
                f"run {dead.run_id} ({dead.job}) had lost its process ({dead.owner}): marked "
                f"failed; reconciliations {dead.reconciliations or 'none'}, files "
                f"{dead.files or 'none'} failed with it"
            )
    return instance


def unfinished(instance: DagsterInstance, engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """Runs not finished and reconciliations not ended, as plain rows for `recon runs`."""
    runs = [
        {
            "run_id": run.run_id,
            "job": run.job_name,
            "status": run.status.value,
            "owner": run.tags.get(OWNER_PID)
            and f"pid {run.tags[OWNER_PID]} on {run.tags.get(OWNER_HOST)}",
            "owner_alive": owner_alive(run.tags),
            "reconciliation_id": run.tags.get(RECONCILIATION_TAG),
        }
        for run in instance.get_runs(filters=RunsFilter(statuses=UNFINISHED + WAITING))
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, name, status, progress, dagster_run_id, created_at FROM "
                "reconciliations WHERE status IN ('PENDING', 'RUNNING') ORDER BY id"
            )
        ).mappings()
        reconciliations = [dict(r) for r in rows]
    return {"runs": runs, "reconciliations": reconciliations}
