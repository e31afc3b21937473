"""Run slots: the runs `recon` commands execute themselves stay inside the queue's limit.

`max_concurrent_runs` (2 in `dagster.yaml`) is a set of PostgreSQL advisory locks: two holders
run, a third waits until one ends, and a holder killed with SIGKILL frees its slot because
PostgreSQL drops a dead session's locks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import psycopg

from recon.execution import SLOT_NAMESPACE, run_slot, slot_count
from resources.dagster_instance import dagster_instance

HOLD_A_SLOT = """
import sys, time
from recon.execution import run_slot
from resources.dagster_instance import dagster_instance
url = sys.argv[1]
with run_slot(dagster_instance(url), url):
    print("holding", flush=True)
    time.sleep(600)
"""


def _held(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objsubid = 2 AND granted",
            (SLOT_NAMESPACE,),
        ).fetchone()[0]


def _third_waits(url: str, instance: object) -> tuple[threading.Thread, threading.Event, list]:
    entered, said = threading.Event(), []

    def third() -> None:
        with run_slot(instance, url, said.append):  # type: ignore[arg-type]
            entered.set()

    thread = threading.Thread(target=third, daemon=True)
    thread.start()
    return thread, entered, said


def test_two_runs_hold_the_two_slots_and_a_third_waits_for_one(database_url: str) -> None:
    instance = dagster_instance(database_url)
    assert slot_count(instance) == 2
    with ExitStack() as first:
        first.enter_context(run_slot(instance, database_url))
        with run_slot(instance, database_url):
            assert _held(database_url) == 2
            thread, entered, said = _third_waits(database_url, instance)
            assert not entered.wait(3.0), "a third run started beside two"
            assert said and "waiting for a run slot" in said[0]
        # the second ended: the third gets its slot
        assert entered.wait(10.0)
        thread.join(10.0)
    assert _held(database_url) == 0


def test_a_killed_holder_frees_its_slot(database_url: str) -> None:
    instance = dagster_instance(database_url)
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_A_SLOT, database_url],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        thread, entered, _said = _third_waits(database_url, instance)
        assert not entered.wait(3.0)
        os.killpg(holders[0].pid, signal.SIGKILL)
        holders[0].wait(30)
        started = time.monotonic()
        assert entered.wait(30.0), "the killed holder's slot was never freed"
        assert time.monotonic() - started < 30
        thread.join(10.0)
    finally:
        for holder in holders:
            if holder.poll() is None:
                os.killpg(holder.pid, signal.SIGKILL)
                holder.wait(30)
