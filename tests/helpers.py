"""Helpers for tests that drive the installed `recon` command as a user would, and scratch
databases on the session's server (`create_database`, `drop_database`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from resources.database import libpq_url


def _admin(database_url: str) -> str:
    return libpq_url(database_url).replace("/recon?", "/postgres?")


def create_database(database_url: str) -> tuple[str, str]:
    """An empty database `t_<hex>` on the server of the session's `recon` database at
    `database_url`: (its name, its libpq URL)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, libpq_url(database_url).replace("/recon?", f"/{name}?")


def drop_database(database_url: str, name: str) -> None:
    """Drop a `create_database` database (its connections closed first)."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(_admin(database_url), autocommit=True) as conn:
        conn.execute(drop)


def run_recon(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> tuple[int, str, str]:
    """Run the installed `recon` command (`input` on its stdin); (exit status, stdout, stderr)."""
    recon = Path(sys.executable).with_name("recon")
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [str(recon), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input if input is not None else "",
    )
    return done.returncode, done.stdout, done.stderr


def stop_process_group(proc: subprocess.Popen) -> None:
    """Ctrl-C to the whole process group, then SIGKILL to whatever is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    # code servers and run workers can outlive `dagster dev`; wait for them, then kill them
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    """One query to the Dagster webserver on that loopback port."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
