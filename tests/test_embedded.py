"""The embedded server is shared by processes, survives them, and comes back after a SIGKILL.

Each test uses a RECON_HOME of its own, so killing its server never touches the session's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from resources.embedded import ensure_embedded_server, server_pid, stop_embedded_server

# A client process: start/reuse the server, write its pid into table `clients`, then wait.
CLIENT = """
import os, sys, time, psycopg
from pathlib import Path
from resources.embedded import ensure_embedded_server
url = ensure_embedded_server(Path(sys.argv[1]))
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS clients (pid int)")
    conn.execute("INSERT INTO clients VALUES (%s)", (os.getpid(),))
    print(url, flush=True)
    time.sleep(600)
"""


@pytest.fixture()
def own_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="re-", dir="/tmp"))
    yield home
    stop_embedded_server(home)
    shutil.rmtree(home, ignore_errors=True)


def _start_client(home: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(home)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("postgresql://"), f"client failed to start: {url!r}"
    return proc, url


def _client_pids(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM clients ORDER BY pid")]


def test_two_processes_share_one_server_and_outlive_each_other(own_home: Path) -> None:
    first, url_a = _start_client(own_home)
    second, url_b = _start_client(own_home)
    try:
        assert url_a == url_b
        postmaster = server_pid(own_home)
        assert postmaster is not None
        assert sorted(_client_pids(url_a)) == sorted([first.pid, second.pid])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # the survivor's server is untouched: same postmaster, still answering
        assert server_pid(own_home) == postmaster
        assert len(_client_pids(url_b)) == 2
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(10)
    # and it outlives every client
    assert server_pid(own_home) == postmaster


def test_server_killed_with_sigkill_restarts_with_its_data(own_home: Path) -> None:
    url = ensure_embedded_server(own_home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('survives a crash')")
    old_pid = server_pid(own_home)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server_pid(own_home) == old_pid and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pid(own_home) is None

    url_again = ensure_embedded_server(own_home)
    new_pid = server_pid(own_home)
    assert new_pid is not None and new_pid != old_pid
    with psycopg.connect(url_again) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("survives a crash",)]


def test_down_stops_and_next_use_starts_again(own_home: Path) -> None:
    ensure_embedded_server(own_home)
    assert stop_embedded_server(own_home) is True
    assert server_pid(own_home) is None
    assert stop_embedded_server(own_home) is False
    url = ensure_embedded_server(own_home)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_shared_buffers_are_a_quarter_of_memory_within_bounds() -> None:
    from resources.embedded import shared_buffers_gb

    gib = 2**30
    assert [shared_buffers_gb(n * gib) for n in (2, 8, 24, 64)] == [1, 2, 6, 8]


def test_memory_settings_are_in_effect_from_the_first_start(own_home: Path) -> None:
    """Shared buffers for vector search and maintenance memory for HNSW builds hold from a new
    server's first start (issue 21: a setting that waits for a restart nobody makes is none),
    and again after a restart, with postgresql.conf including them once."""
    from resources.embedded import SERVER_SETTINGS, data_dir

    for _ in range(2):
        url = ensure_embedded_server(own_home)
        with psycopg.connect(url) as conn:
            for name, value in SERVER_SETTINGS.items():
                assert conn.execute(f"SHOW {name}").fetchone() == (value,), name
            pending = conn.execute("SELECT name FROM pg_settings WHERE pending_restart").fetchall()
            assert pending == []
        stop_embedded_server(own_home)
    conf = (data_dir(own_home) / "postgresql.conf").read_text()
    assert conf.count("include_if_exists = 'recon.conf'") == 1
