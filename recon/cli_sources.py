"""`recon sources add|list|remove` and `recon serve`: data sources, and where WEBHOOKs deliver.

A data source is a `data_sources` row of one organization. FILE sources are created on first
sight by landing; a WEBHOOK source is added here, its secret set with `recon secrets set
webhook_secret --data-source NAME` (encrypted at rest), and its deliveries received by
`recon serve` (`recon/serve.py`) into the same landing-zone folder a FILE of that name uses.
`remove` deactivates (a WEBHOOK source then refuses deliveries); its files stay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from pipelines.ingest.pulls.pull import SYSTEMS
from recon.cli_users import AsOption
from recon.scope import DEFAULT_ORGANIZATION
from resources.errors import ReconError
from resources.webhook_auth import REPLAY_WINDOW_SECONDS, SECRET_KEY

ADDABLE = ("FILE", "WEBHOOK", "DATABASE", "REST_API")
DEFAULT_PORT = 8765

sources_app = typer.Typer(
    help="Data sources: add (WEBHOOK, DATABASE, REST_API, FILE), list, test, pull, deactivate.",
    no_args_is_help=True,
)
OrgOption = Annotated[str, typer.Option("--org", help="The data source's organization.")]


def _engine() -> sa.Engine:
    from recon.cli_db import migrated_engine

    return migrated_engine()


def add_source(
    engine: sa.Engine,
    organization: str,
    name: str,
    kind: str,
    description: str | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Add (or reactivate, or re-declare) a data source; (its id, what happened).

    `config` (a DATABASE or REST_API declaration) replaces the keys it names and keeps the
    others (a token set with `recon secrets set`); credentials in it are encrypted. A FILE
    source may become another type (its files stay); any other change of type is refused.
    Every change is in the audit trail (credentials as ***).
    """
    from pipelines.ingest import landing
    from pipelines.work import audit
    from resources import secret_store, secrets

    kind = kind.upper()
    if kind not in ADDABLE:
        raise ReconError(f"--type {kind}: `sources add` makes {' or '.join(ADDABLE)} sources")
    landing.folder_name(organization, "organization")
    landing.folder_name(name, "data source")
    with engine.begin() as conn:
        secret_store.lock(conn)
        org_id = landing.ensure_organization(conn, organization)
        row = conn.execute(
            sa.text(
                "SELECT id, type, active, config FROM data_sources "
                "WHERE organization_id = :o AND name = :n FOR UPDATE"
            ),
            {"o": org_id, "n": name},
        ).first()
        if row is not None and row.type != kind and row.type != "FILE":
            raise ReconError(
                f"{organization}/{name} is a {row.type} data source; give the new one another name"
            )
        if row is None:
            source_id = conn.execute(
                sa.text(
                    "INSERT INTO data_sources (name, description, type, organization_id, config) "
                    "VALUES (:n, :d, :t, :o, '{}'::jsonb) RETURNING id"
                ),
                {"n": name, "d": description, "t": kind, "o": org_id},
            ).scalar_one()
            what = "added"
        else:
            source_id = row.id
            conn.execute(
                sa.text(
                    "UPDATE data_sources SET type = :t, active = TRUE, "
                    "description = COALESCE(:d, description), updated_at = NOW() WHERE id = :i"
                ),
                {"t": kind, "d": description, "i": row.id},
            )
            changed = [f"was {row.type}"] * (row.type != kind)
            changed += ["reactivated"] * (not row.active) + ["config changed"] * bool(config)
            what = ", ".join(changed) or "already there"
        if config:
            merged = {**((row.config if row is not None else None) or {}), **config}
            ring = secrets.load_keys(create=secrets.plain_credential_paths(merged) != [])
            if ring is None:  # nothing to encrypt and no key yet: stored as given
                conn.execute(
                    sa.text("UPDATE data_sources SET config = CAST(:c AS jsonb) WHERE id = :i"),
                    {"c": json.dumps(merged), "i": source_id},
                )
            else:
                secret_store.write_config(conn, source_id, merged, ring)
        if what != "already there":
            stored = conn.execute(
                sa.text("SELECT config FROM data_sources WHERE id = :i"), {"i": source_id}
            ).scalar_one()
            audit.system_event(
                conn,
                organization_id=org_id,
                entity="data_source",
                entity_id=source_id,
                entity_key=f"data_source:{name}",
                action="ADDED" if row is None else "CHANGED",
                after={"type": kind, "what": what, "config": masked_config(stored)},
            )
    return source_id, what


def masked_config(config: Any) -> Any:
    """A stored config for people's eyes: every encrypted value as *** (a URL keeps its ***)."""
    from resources import secrets

    if secrets.is_sealed(config):
        return config.get("url", secrets.MASK)
    if isinstance(config, dict):
        return {k: masked_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [masked_config(v) for v in config]
    return config


def list_sources(engine: sa.Engine, organization: str | None = None) -> list[dict[str, Any]]:
    """Every data source (of one organization): webhook secret set, files landed, last test
    and (DATABASE / REST_API) last pull with its watermark."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.id, o.name AS organization, d.name, d.type, d.active, "
                "d.config -> :k IS NOT NULL AS has_secret, count(f.id) AS files, "
                "max(f.created_at) AS last_landed, d.last_test_successful, "
                "(SELECT json_build_object('status', s.status, 'at', s.started_at, "
                "'business_date', s.details->>'business_date', 'records', s.records_processed, "
                "'watermark', s.details->'watermark_to', 'error', s.error_message) "
                "FROM sync_logs s WHERE s.data_source_id = d.id AND s.system = ANY(:pulls) "
                "ORDER BY s.id DESC LIMIT 1) AS last_pull FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id "
                "LEFT JOIN uploaded_files f ON f.data_source_id = d.id "
                "WHERE CAST(:org AS text) IS NULL OR o.name = :org "
                "GROUP BY d.id, o.name ORDER BY o.name, d.name"
            ),
            {"k": SECRET_KEY, "org": organization, "pulls": list(SYSTEMS.values())},
        ).all()
    return [
        {
            "id": r.id,
            "organization": r.organization,
            "name": r.name,
            "type": r.type,
            "active": r.active,
            "webhook_secret": bool(r.has_secret),
            "files": r.files,
            "last_landed": r.last_landed.isoformat(timespec="seconds") if r.last_landed else None,
            "last_test_successful": r.last_test_successful,
            "last_pull": r.last_pull,
        }
        for r in rows
    ]


@sources_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="The data source's name (a landing-zone folder).")],
    kind: Annotated[
        str, typer.Option("--type", help="WEBHOOK, DATABASE, REST_API or FILE.")
    ] = "WEBHOOK",
    org: OrgOption = DEFAULT_ORGANIZATION,
    description: Annotated[str | None, typer.Option(show_default=False)] = None,
    table: Annotated[
        str | None, typer.Option(help="DATABASE: the table (schema.table).", show_default=False)
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="DATABASE: one SELECT (not a table).", show_default=False)
    ] = None,
    incremental: Annotated[
        str | None,
        typer.Option(
            help="The column (DATABASE) or record field (REST_API) whose values only grow.",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="REST_API: the endpoint (DATABASE: URL on stdin).", show_default=False),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML of further config keys.", show_default=False),
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Add a data source, or declare it again (the organization is created on first sight).

    Acting as a user (`--as`), it needs ADMIN of the organization.

    A WEBHOOK source then needs its secret:
    `recon secrets set webhook_secret --data-source NAME` (stdin or a hidden prompt).
    A DATABASE source reads its SQLAlchemy URL from stdin or a hidden prompt (encrypted at
    rest): `echo "$URL" | recon sources add gl --type DATABASE --table gl --incremental id`.
    A REST_API source: `--url`, `--incremental` and `--config` (paginator, items, auth);
    its token with `recon secrets set token --data-source NAME`. Then `recon sources test`.
    """
    from pipelines.work import admin, audit
    from recon.cli_pulls import declared

    engine = _engine()
    actor = admin.admin_of(engine, org, as_user, "declaring data sources")
    config = declared(kind, config_file, table, query, incremental, url)
    with audit.acting_as(actor):
        source_id, what = add_source(engine, org, name, kind, description, config)
    typer.echo(f"{org}/{name} (data source {source_id}, {kind.upper()}): {what}")
    if kind.upper() == "WEBHOOK":
        typer.echo(
            f"next: recon secrets set {SECRET_KEY} --data-source {name!r} --org {org!r}; then "
            "`recon serve` receives POST /webhooks/<organization>/<data source>"
        )
    elif config is not None:
        token = config.get("auth", "none") != "none" and "token" not in config
        typer.echo(
            (f"next: recon secrets set token --data-source {name!r} --org {org!r}; " * token)
            + f"then `recon sources test {name}` and `recon sources pull {name}` (or the "
            "pull_sources schedule)"
        )


@sources_app.command("list")
def list_command(
    org: Annotated[
        str | None, typer.Option("--org", help="Only this organization.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Data sources: organization, name, type, active, webhook secret set, files landed."""
    rows = list_sources(_engine(), org)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        secret = " secret set" if r["webhook_secret"] else ""
        off = "" if r["active"] else " (inactive)"
        pull = r["last_pull"]
        typer.echo(
            f"{r['organization']}/{r['name']}  {r['type']}{off}{secret}  {r['files']} file(s)"
            + (f", last {r['last_landed']}" if r["last_landed"] else "")
            + (
                f"; last pull {pull['status']} for {pull['business_date']}: "
                f"{pull['records']} record(s), watermark {pull['watermark']!r}"
                + (f" ({pull['error']})" if pull["error"] else "")
                if pull
                else ""
            )
            + {True: "; test ok", False: "; last test FAILED"}.get(r["last_test_successful"], "")
        )
    if not rows:
        typer.echo("no data sources yet: `recon sources add NAME --type WEBHOOK` or `recon land`")


def _register_pull_commands() -> None:
    from recon.cli_pulls import pull_command, test_command

    sources_app.command("test")(test_command)
    sources_app.command("pull")(pull_command)


_register_pull_commands()


@sources_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument()],
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
):
    """Deactivate a data source (a WEBHOOK one refuses deliveries); its files and rows stay.

    Acting as a user (`--as`), it needs ADMIN of the organization.
    """
    from pipelines.work import admin, audit

    engine = _engine()
    actor = admin.admin_of(engine, org, as_user, "removing data sources")
    with audit.acting_as(actor), engine.begin() as conn:
        done = conn.execute(
            sa.text(
                "UPDATE data_sources d SET active = FALSE, updated_at = NOW() "
                "FROM organizations o WHERE o.id = d.organization_id AND o.name = :o "
                "AND d.name = :n RETURNING d.id, d.organization_id"
            ),
            {"o": org, "n": name},
        ).first()
        if done is not None:
            from pipelines.work import audit

            audit.system_event(
                conn,
                organization_id=done.organization_id,
                entity="data_source",
                entity_id=done.id,
                entity_key=f"data_source:{name}",
                action="DEACTIVATED",
                after=None,
            )
    if done is None:
        raise ReconError(f"no data source {name!r} in organization {org!r}")
    typer.echo(f"{org}/{name} (data source {done.id}) deactivated")


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1, help="Largest body accepted (413 beyond).")
    ] = 100 << 20,
    replay_window: Annotated[
        int,
        typer.Option(min=1, help="Seconds a signed timestamp may be away from now (401 beyond)."),
    ] = REPLAY_WINDOW_SECONDS,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Landing worker processes (default: max_concurrent_runs).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Receive WEBHOOK deliveries: POST /webhooks/<organization>/<data source>.

    The body is a file (CSV, JSON Lines, Parquet, .xlsx, ...) or a JSON array of records,
    signed with the source's webhook_secret: headers X-Recon-Timestamp (unix seconds) and
    X-Recon-Signature: sha256=HMAC-SHA256(secret, timestamp + "." + body). Each delivery
    lands as `recon land` lands a file; the answer is JSON with its uploaded_file_id.
    """
    import logging

    import uvicorn

    from recon.cli_db import ready_url
    from recon.execution import slot_count
    from recon.lifecycle import instance_for
    from recon.serve import ServerState, create_app
    from recon.webhook_landing import LandingPool
    from resources import migrations
    from resources.database import engine_for
    from resources.file_store import FileStoreResource

    logging.getLogger("dagster").setLevel(logging.WARNING)
    url = ready_url()
    migrations.migrate(url)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    count = workers or slot_count(instance_for(url, say))
    zone = FileStoreResource().store().landing
    state = ServerState(engine_for(url), zone, LandingPool(url, count), max_bytes, replay_window)
    say(
        f"webhooks on http://{host}:{port}/webhooks/<organization>/<data source> "
        f"({count} landing worker(s), landing zone {zone}; Ctrl-C stops)"
    )
    uvicorn.run(create_app(state), host=host, port=port, log_level="info")
