"""The runs `recon` commands execute themselves: in process, inside the queue's limits.

No `recon ui` or daemon is needed for `recon run`, `recon land`, `recon backfill` or `recon
demo`: each executes its Dagster runs itself (`materialize` on the PostgreSQL-backed instance,
the same assets, resources and run storage the UI shows). The instance's run queue
(`max_concurrent_runs` in `dagster.yaml`) still holds for them: a command waits for a *run
slot* before each run. A slot is a PostgreSQL session advisory lock (one of
`max_concurrent_runs`), taken on a connection of its own and held for the run, so

- two commands never hold the same slot, and a third waits (saying so once) until one ends;
- runs the daemon launched (no owner tags) count against the same limit;
- a killed command's slot frees itself: PostgreSQL drops a session's locks with its connection
  (its run is then failed by the next command: `recon.lifecycle`).

Every run carries `owner_tags()` so a dead owner is noticed, and `QUIET` console logging (its
full log, tracebacks included, is in the run's event log in the UI).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from dagster import DagsterInstance, RunsFilter

from recon.lifecycle import OWNER_PID, UNFINISHED, owner_tags
from resources.database import libpq_url

# Dagster's console logger stays quiet in commands (errors come as one line)
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# advisory-lock namespace of the run slots (pg_advisory_lock(int, int): namespace, slot)
SLOT_NAMESPACE = 0x5EC0
DEFAULT_SLOTS = 2
POLL_SECONDS = 1.0


def slot_count(instance: DagsterInstance) -> int:
    """`max_concurrent_runs` of the instance's run queue (2 when it has no queue)."""
    coordinator = instance.run_coordinator
    queue = getattr(coordinator, "get_run_queue_config", None)
    limit = queue().max_concurrent_runs if queue is not None else DEFAULT_SLOTS
    return max(1, int(limit)) if limit is not None and limit >= 0 else DEFAULT_SLOTS


def _daemon_runs(instance: DagsterInstance) -> int:
    """In-progress runs that no `recon` command owns (the daemon's, the UI's)."""
    runs = instance.get_runs(filters=RunsFilter(statuses=UNFINISHED))
    return sum(1 for run in runs if OWNER_PID not in run.tags)


def _held_slots(conn: psycopg.Connection) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objsubid = 2",
            (SLOT_NAMESPACE,),
        ).fetchone()[0]
    )


@contextmanager
def run_slot(
    instance: DagsterInstance, url: str, say: Callable[[str], None] = lambda _m: None
) -> Iterator[int]:
    """Hold one of the queue's run slots for the body (waits for one; see the module doc)."""
    limit = slot_count(instance)
    conn = psycopg.connect(libpq_url(url), autocommit=True)
    told = False
    try:
        while True:
            for slot in range(limit):
                taken = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (SLOT_NAMESPACE, slot)
                ).fetchone()[0]
                if not taken:
                    continue
                if _held_slots(conn) + _daemon_runs(instance) <= limit:
                    yield slot
                    return
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (SLOT_NAMESPACE, slot))
                break
            if not told:
                say(f"waiting for a run slot: {limit} runs in progress (max_concurrent_runs)")
                told = True
            time.sleep(POLL_SECONDS)
    finally:
        conn.close()  # the session's advisory locks go with it


def execute(
    instance: DagsterInstance,
    url: str,
    assets: Sequence[Any],
    *,
    tags: dict[str, str],
    partition_key: str | None = None,
    run_config: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> Any:
    """Materialize `assets` in process once a run slot is free; the run's result."""
    from dagster import materialize

    from pipelines.definitions import defs

    with run_slot(instance, url, say):
        return materialize(
            assets,
            partition_key=partition_key,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
            run_config={**QUIET, **(run_config or {})},
            tags={**tags, **owner_tags()},
        )


@contextmanager
def progress_on_stderr(logger: str, *, enabled: bool = True) -> Iterator[None]:
    """While inside, the INFO lines of the Python logger `logger` (a stage's progress, also in
    its run's log) are printed on stderr as `say` prints, since an in-process run's own
    console log is kept quiet (`QUIET`)."""
    if not enabled:
        yield
        return
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    target = logging.getLogger(logger)
    saved = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.setLevel(saved)
