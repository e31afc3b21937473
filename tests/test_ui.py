"""`recon ui` serves the Dagster UI and runs the daemon, both on the PostgreSQL instance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from helpers import free_port, graphql, stop_process_group


def test_recon_ui_serves_the_code_location_and_runs_the_daemon(database_url: str) -> None:
    port = free_port()
    recon = Path(sys.executable).with_name("recon")
    proc = subprocess.Popen(
        [str(recon), "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    try:
        assets: list[str] = []
        heartbeats = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (assets and heartbeats):
            time.sleep(2)
            assert proc.poll() is None, "recon ui exited early"
            try:
                data = graphql(port, "{ assetNodes { assetKey { path } } }")
                assets = ["/".join(n["assetKey"]["path"]) for n in data["data"]["assetNodes"]]
            except (OSError, KeyError, TypeError):
                continue
            with psycopg.connect(database_url) as conn:
                heartbeats = conn.execute(
                    "SELECT count(*) FROM dagster.daemon_heartbeats"
                ).fetchone()[0]
        assert "database_schema" in assets
        assert heartbeats > 0, "the daemon wrote no heartbeat to PostgreSQL"
    finally:
        stop_process_group(proc)
