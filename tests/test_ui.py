"""`recon ui` serves the Dagster UI and runs the daemon, both on the PostgreSQL instance."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
from helpers import stop_process_group


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_recon_ui_serves_the_code_location_and_runs_the_daemon(database_url: str) -> None:
    port = _free_port()
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
                data = _graphql(port, "{ assetNodes { assetKey { path } } }")
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
