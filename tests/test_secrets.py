"""Secrets: data source credentials encrypted at rest, and no password anywhere it should not be.

Unit tests (no database) hold the envelope format, key handling and rotation. The end-to-end
test plants three secrets (a password in RECON_DATABASE_URL, a data source password and a
data source URL with a password), runs real commands on them, and then looks for the plain
values in everything the commands printed, every file under RECON_HOME (and the server's own
directory), every Dagster table (compressed snapshots opened) and every product table.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
import zlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg import sql

from pipelines.ingest import landing
from recon.samples import write_samples
from resources import secrets
from resources.database import engine_for
from resources.errors import ReconError
from resources.settings import DAGSTER_SCHEMA

REPO = Path(__file__).resolve().parent.parent
DEMO_RULES = REPO / "recon" / "demo_rules.yaml"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECON_HOME", str(tmp_path))
    monkeypatch.delenv(secrets.ENV_KEY, raising=False)
    return tmp_path


CONFIG: dict[str, Any] = {
    "columns": [{"name": "token", "dataType": "string", "required": True}],
    "host": "db.internal",
    "password": "pa:ss@word",
    "Client-Secret": "cs-1",
    "service_account": {"credentials": {"type": "sa", "key": "k-1"}},
    "warehouse": {"url": "postgresql://reader:p%40ss@wh:5432/dw?sslmode=require"},
    "mirrors": ["https://bot:tok-9@mirror.example/x", "https://public.example/y"],
    "empty_password": "",
}
PLAIN = ["pa:ss@word", "cs-1", "k-1", "p%40ss", "tok-9"]


# ---------------------------------------------------------------- envelopes and keys


def test_round_trip_seals_every_credential_and_nothing_else(home: Path) -> None:
    ring = secrets.load_keys(create=True)
    sealed = secrets.encrypt_config(CONFIG, ring)
    text = json.dumps(sealed)
    for plain in PLAIN:
        assert plain not in text
    assert sealed["columns"] == CONFIG["columns"]  # declarations are never credentials
    assert sealed["host"] == "db.internal" and sealed["empty_password"] == ""
    assert secrets.is_sealed(sealed["password"]) and secrets.is_sealed(sealed["Client-Secret"])
    assert secrets.is_sealed(sealed["service_account"]["credentials"])
    assert sealed["warehouse"]["url"]["url"] == "postgresql://reader:***@wh:5432/dw?sslmode=require"
    assert sealed["mirrors"][1] == "https://public.example/y"
    assert {kid for _p, kid in secrets.sealed_paths(sealed)} == {secrets.key_id(ring.keys[0])}
    assert secrets.encrypt_config(sealed, ring) == sealed  # envelopes are left alone

    opened = secrets.decrypt_config(sealed)  # the key from RECON_HOME/secret.key
    assert str(opened["password"]) == "**********" and "pa:ss" not in repr(opened)
    assert secrets.reveal(opened) == CONFIG
    assert secrets.plain_credential_paths(CONFIG) == [
        "password",
        "Client-Secret",
        "service_account.credentials",
        "warehouse.url",
        "mirrors[0]",
    ]
    assert secrets.plain_credential_paths(sealed) == []


def test_key_file_is_made_0600_and_a_loose_one_is_refused_in_one_line(home: Path) -> None:
    assert secrets.load_keys() is None  # nothing is created just by looking
    ring = secrets.load_keys(create=True)
    path = home / secrets.KEY_FILE_NAME
    assert ring.path == path and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.load_keys(create=True).keys == ring.keys  # made once, then reused
    os.chmod(path, 0o640)
    with pytest.raises(ReconError) as err:
        secrets.load_keys()
    assert str(err.value).count("\n") == 0 and f"chmod 600 {path}" in str(err.value)
    os.chmod(path, 0o600)
    path.write_text("not-a-key\n")
    with pytest.raises(ReconError, match="not a Fernet key"):
        secrets.load_keys()


def test_a_wrong_key_or_no_key_is_one_clear_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = secrets.load_keys(create=True)
    sealed = secrets.encrypt_config({"password": "hunter2"}, ring)
    (home / secrets.KEY_FILE_NAME).unlink()
    with pytest.raises(ReconError) as err:
        secrets.decrypt_config(sealed)
    assert "no key" in str(err.value) and "\n" not in str(err.value)
    other = Fernet.generate_key().decode()
    monkeypatch.setenv(secrets.ENV_KEY, other)
    with pytest.raises(ReconError) as err:
        secrets.decrypt_config(sealed)
    message = str(err.value)
    assert "\n" not in message and "hunter2" not in message and other not in message
    assert secrets.key_id(ring.keys[0]) in message and "RECON_SECRET_KEY does not hold" in message
    assert secrets.decrypt_config({"host": "h"}) == {"host": "h"}  # no envelope, no key needed


def test_rotation_keeps_values_readable_and_the_old_key_opens_nothing(home: Path) -> None:
    old = secrets.load_keys(create=True)
    sealed = secrets.encrypt_config(CONFIG, old)
    new = secrets.KeyRing((secrets.new_key(), *old.keys), "test")
    rotated = secrets.rotate_config(sealed, new)
    assert {kid for _p, kid in secrets.sealed_paths(rotated)} == {secrets.key_id(new.keys[0])}
    only_new = secrets.KeyRing(new.keys[:1], "new key")
    assert secrets.reveal(secrets.decrypt_config(rotated, only_new)) == CONFIG
    with pytest.raises(ReconError, match="was encrypted with key"):
        secrets.decrypt_config(rotated, old)
    # a plain credential found while rotating is sealed too
    assert secrets.is_sealed(secrets.rotate_config({"api_key": "x"}, only_new)["api_key"])


def test_atomic_key_file_replacement(home: Path) -> None:
    path = home / secrets.KEY_FILE_NAME
    keys = (secrets.new_key(), secrets.new_key())
    secrets.write_key_file(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.load_keys().keys == keys
    assert [p.name for p in home.iterdir()] == [secrets.KEY_FILE_NAME]  # no temporary left


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("password", True),
        ("DB_PASSWD", True),
        ("apiKey", True),
        ("api-key", True),
        ("private_key", True),
        ("aws_secret_access_key", True),
        ("refresh_token", True),
        ("credentials", True),
        ("host", False),
        ("username", False),
        ("key_column", False),
    ],
)
def test_which_keys_are_credentials(name: str, credential: bool) -> None:
    assert secrets.is_credential_key(name) is credential


# ---------------------------------------------------------------- end to end: zero leaks


def _recon(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("recon")), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout, done.stderr


def _files_holding(root: Path, needles: list[bytes]) -> tuple[list[str], int]:
    """Files under `root` containing any needle, and how many files were read."""
    hits, read = [], 0
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        read += 1
        hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits, read


def _tables_as_text(url: str, schema: str) -> dict[str, str]:
    """Every table of `schema` dumped as text; bytea columns zlib-opened where they are."""
    dumped: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchall()
        ]
        for table in tables:
            name = sql.Identifier(schema, table)
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} t").format(name)).fetchall()
            parts = [r[0] for r in rows]
            binary = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND data_type = 'bytea'",
                (schema, table),
            ).fetchall()
            for (column,) in binary:
                query = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), name)
                for (blob,) in conn.execute(query).fetchall():
                    try:
                        parts.append(zlib.decompress(bytes(blob)).decode("utf-8", "replace"))
                    except (zlib.error, TypeError):
                        pass
            dumped[table] = "\n".join(parts)
    return dumped


def test_no_secret_in_output_files_logs_or_tables(
    fresh_database: Any, recon_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_password = f"dbpw-{uuid.uuid4().hex}"
    source_password = f"srcpw-{uuid.uuid4().hex}"
    url_password = f"urlpw-{uuid.uuid4().hex}"
    plain_url = fresh_database()
    assert plain_url.startswith("postgresql://postgres@")
    # the embedded server trusts its socket, so the password is carried everywhere, never checked
    url = plain_url.replace("postgresql://postgres@", f"postgresql://postgres:{db_password}@")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in (secrets.ENV_KEY, "DAGSTER_HOME")}
    env |= {"RECON_HOME": str(home), "RECON_DATABASE_URL": url}
    outputs: list[str] = []

    def recon(*args: str, stdin: str | None = None, ok: bool = True) -> str:
        code, out, err = _recon(env, *args, stdin=stdin)
        outputs.extend([out, err])
        assert (code == 0) is ok, f"recon {' '.join(args)}: {code}\n{out}\n{err[-3000:]}"
        return out + err

    shown = recon("db", "up")
    assert "postgres:***@" in shown
    org = "Secrets Org"
    files = tmp_path / "files"
    write_samples(files / "a" / "bank", files / "a" / "ledger", rows=60, seed=5)
    write_samples(files / "b" / "bank", files / "b" / "ledger", rows=60, seed=6)

    def reconcile(batch: str) -> dict[str, Any]:
        out = recon(
            "run", "--no-embed", "--org", org, "--name", f"secrets {batch}",
            "--source", str(files / batch / "bank" / "bank_export.csv"),
            "--target", str(files / batch / "ledger" / "ledger.csv"),
            "--rules", str(DEMO_RULES),
        )  # fmt: skip
        summary = json.loads(outputs[-2].strip().splitlines()[-1])
        assert summary["status"] == "COMPLETED", out[-2000:]
        return summary

    reconcile("a")
    assert "none yet" in recon("secrets", "status")
    recon("secrets", "set", "--org", org, "--data-source", "bank_export", "password",
          stdin=source_password + "\n")  # fmt: skip
    recon("secrets", "set", "--org", org, "--data-source", "bank_export", "warehouse.url",
          stdin=f"postgresql://reader:{url_password}@wh.internal/dw")  # fmt: skip
    key_path = home / secrets.KEY_FILE_NAME
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    old_keys = secrets.KeyRing(secrets._parse_keys(key_path.read_text(), "old"), "the old key")

    # a wrong key (and only that) is refused in one line, and nothing changes
    wrong = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    env[secrets.ENV_KEY] = wrong
    code, out, err = _recon(env, "secrets", "rotate")
    outputs.extend([out, err])
    del env[secrets.ENV_KEY]
    assert code == 1 and err.count("\n") == 1 and "was encrypted with key" in err, err
    assert wrong.split(",")[0] not in out + err

    before = recon("secrets", "rotate")
    assert "re-encrypted 2 value(s) in 1 data source(s)" in before
    summary = reconcile("b")  # lands files of a data source whose config holds envelopes
    status = recon("secrets", "status")
    assert f"key: key file {key_path}" in status and "2 encrypted value(s)" in status
    recon("runs")
    recon("runs", "--json")
    engine = engine_for(plain_url)
    with engine.connect() as conn:
        exception_id = conn.exec_driver_sql(
            f"SELECT min(id) FROM reconciliation_exceptions "
            f"WHERE reconciliation_id = {int(summary['reconciliation_id'])}"
        ).scalar_one()
        source_id, config = conn.exec_driver_sql(
            "SELECT d.id, d.config FROM data_sources d JOIN organizations o "
            "ON o.id = d.organization_id WHERE o.name = %s AND d.name = 'bank_export'",
            (org,),
        ).one()
    recon("lineage", str(exception_id), "--org", org)
    recon("lineage", str(exception_id), "--org", org, "--json")
    env_lines = recon("db", "env")
    # `eval "$(recon db env)"` still gives Dagster the real URL, asked from `recon db url`
    evaluated = subprocess.run(
        ["bash", "-c", 'eval "$(recon db env)" && printf %s "$RECON_DAGSTER_PG_URL"'],
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"postgres:{db_password}@" in evaluated.stdout, evaluated.stderr
    assert "RECON_DAGSTER_PG_URL" in env_lines

    # stored encrypted, under the new key only; readable with the key file in force
    monkeypatch.setenv("RECON_HOME", str(home))
    monkeypatch.delenv(secrets.ENV_KEY, raising=False)
    assert secrets.plain_credential_paths(config) == []
    opened = secrets.reveal(landing.data_source_config(engine, source_id, decrypt=True))
    assert opened["password"] == source_password
    assert opened["warehouse"]["url"] == f"postgresql://reader:{url_password}@wh.internal/dw"
    with pytest.raises(ReconError, match="was encrypted with key"):
        secrets.decrypt_config(config, old_keys)
    assert landing.data_source_config(engine, source_id) == config  # sealed unless asked

    # the scan: every secret, everywhere
    needles = [db_password, source_password, url_password]
    printed = "\n".join(outputs)
    assert [n for n in needles if n in printed] == []
    raw = [n.encode() for n in needles]
    hits, read = _files_holding(home, raw)
    assert hits == [] and read > 3  # key file, Dagster storage, landed and canonical files
    hits, read = _files_holding(recon_home, raw)  # the server's data files and logs
    assert hits == [] and read > 100
    dagster = _tables_as_text(plain_url, DAGSTER_SCHEMA)
    product = _tables_as_text(plain_url, "public")
    assert "mapped_records" in dagster["snapshots"]  # the compressed snapshots were opened
    assert org in product["organizations"] and "$secret" in product["data_sources"]
    assert any("bank_export" in text for text in dagster.values())
    leaks = [
        f"{schema}.{table}"
        for schema, tables in (("dagster", dagster), ("public", product))
        for table, text in tables.items()
        for needle in needles
        if needle in text
    ]
    assert leaks == []
