"""`recon secrets ...`: data source credentials, encrypted at rest (`resources/secrets.py`).

`set` stores one value encrypted in a data source's config, reading it from standard input or
a hidden prompt (never from the command line, which `ps` shows to everyone); `rotate` makes a
new key and re-encrypts every value with it (`resources/secret_store.py`); `status` says
where the key comes from and what it protects. No command prints a secret or a key.
"""

from __future__ import annotations

import sys
from typing import Annotated

import sqlalchemy as sa
import typer

from recon.cli_users import AsOption
from recon.scope import DEFAULT_ORGANIZATION
from resources import secret_store, secrets
from resources.errors import ReconError

secrets_app = typer.Typer(
    help="Data source credentials, encrypted at rest (key: RECON_SECRET_KEY or "
    "RECON_HOME/secret.key).",
    no_args_is_help=True,
)


def _engine() -> sa.Engine:
    from recon.cli_db import migrated_engine

    return migrated_engine()


def read_value(key: str) -> str:
    """The value from standard input (one trailing newline dropped) or a hidden prompt."""
    if sys.stdin is None or not sys.stdin.isatty():
        value = sys.stdin.read() if sys.stdin is not None else ""
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    else:
        value = typer.prompt(f"value for {key}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise ReconError(f"no value for {key} (give it on standard input or at the prompt)")
    return value


def set_secret(
    engine: sa.Engine, organization: str, data_source: str, key: str, value: str
) -> tuple[int, bool]:
    """Store `value` encrypted at `key` (dotted: `connection.password`) of the data source's
    config, the data source created (type FILE) if missing; returns (its id, created)."""
    from pipelines.ingest.landing import ensure_data_source
    from pipelines.work import audit

    path = secret_store.config_path(key)
    with engine.begin() as conn:
        secret_store.lock(conn)
        org_id = conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": organization}
        ).scalar()
        if org_id is None:
            raise ReconError(f"no organization named {organization!r}")
        existed = conn.execute(
            sa.text("SELECT id FROM data_sources WHERE organization_id = :o AND name = :n"),
            {"o": org_id, "n": data_source},
        ).scalar()
        source_id = existed or ensure_data_source(conn, org_id, data_source)
        config = conn.execute(
            sa.text("SELECT config FROM data_sources WHERE id = :i FOR UPDATE"), {"i": source_id}
        ).scalar_one()
        ring = secrets.load_keys(create=True)
        assert ring is not None
        sealed = secret_store.set_path(config or {}, path, secrets.seal(value, ring))
        secret_store.write_config(conn, source_id, sealed, ring)
        audit.system_event(
            conn,
            organization_id=org_id,
            entity="data_source",
            entity_id=source_id,
            entity_key=f"data_source:{data_source}",
            action="SECRET_SET",
            after={"key": key},  # never the value
        )
    return source_id, existed is None


@secrets_app.command("set")
def set_command(
    key: Annotated[
        str, typer.Argument(help="Config key to hold the secret, e.g. password or conn.password.")
    ],
    data_source: Annotated[str, typer.Option("--data-source", help="The data source's name.")],
    org: Annotated[str, typer.Option(help="Organization of the data source.")] = (
        DEFAULT_ORGANIZATION
    ),
    as_user: AsOption = None,
) -> None:
    """Store a data source credential, encrypted; the value comes from stdin or a hidden prompt.

    Never give it as an argument: `echo "$PW" | recon secrets set password --data-source bank`
    (or type it at the prompt). Acting as a user (`--as`), it needs ADMIN of the organization.
    """
    from pipelines.work import admin, audit

    engine = _engine()
    actor = admin.admin_of(engine, org, as_user, "setting data source secrets")
    value = read_value(key)
    with audit.acting_as(actor):
        source_id, created = set_secret(engine, org, data_source, key, value)
    made = " (data source created)" if created else ""
    typer.echo(f"{org}/{data_source} (data source {source_id}){made}: {key} stored encrypted")


@secrets_app.command("rotate")
def rotate_command() -> None:
    """Make a new key and re-encrypt every data source secret with it; the old key goes.

    Re-encrypted in one transaction, then the key file is replaced atomically (with
    RECON_SECRET_KEY="NEW,OLD": everything moves to NEW; then drop OLD yourself).
    """
    done = secret_store.rotate(_engine())
    typer.echo(
        f"re-encrypted {done.values} value(s) in {done.data_sources} data source(s) with key "
        f"{done.new_key_id}"
    )
    for path in done.sealed_now:
        typer.echo(f"  was stored in plain text, now encrypted: {path}")
    if done.dropped_key_ids and done.env_key:
        typer.echo(
            f"now remove every key but the first from {secrets.ENV_KEY} "
            f"(old: {', '.join(done.dropped_key_ids)})"
        )
    elif done.dropped_key_ids:
        typer.echo(f"old key(s) {', '.join(done.dropped_key_ids)} removed from the key file")


@secrets_app.command("status")
def status_command() -> None:
    """Where the key comes from and how many values it encrypted (never a key or a value)."""
    state = secret_store.status(_engine())
    typer.echo(f"key: {state.source}")
    if state.key_ids:
        typer.echo(f"key id(s): {', '.join(state.key_ids)} (the first encrypts)")
    if len(state.key_ids) > 1 and state.source != secrets.ENV_KEY:
        typer.echo("more than one key in the file: a rotation was cut short; run it again")
    typer.echo(f"{state.values} encrypted value(s) in {state.data_sources} data source(s)")
    for kid, count in sorted(state.values_by_key.items()):
        known = "" if kid in state.key_ids else " (NOT a key in force: these cannot be read)"
        typer.echo(f"  key {kid}: {count}{known}")
    for path in state.plain:
        typer.echo(f"  plain text (run `recon secrets rotate` to encrypt it): {path}")
