"""`recon sources add|list|remove` and `recon serve`: data sources, and where WEBHOOKs deliver.

A data source is a `data_sources` row of one organization. FILE sources are created on first
sight by landing; a WEBHOOK source is added here, its secret set with `recon secrets set
webhook_secret --data-source NAME` (encrypted at rest), and its deliveries received by
`recon serve` (`recon/serve.py`) into the same landing-zone folder a FILE of that name uses.
`remove` deactivates (a WEBHOOK source then refuses deliveries); its files stay.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from recon.scope import DEFAULT_ORGANIZATION
from resources.errors import ReconError
from resources.webhook_auth import REPLAY_WINDOW_SECONDS, SECRET_KEY

# types `sources add` creates (DATABASE and REST_API need their connection settings first)
ADDABLE = ("FILE", "WEBHOOK")
DEFAULT_PORT = 8765

sources_app = typer.Typer(
    help="Data sources: add a WEBHOOK (or FILE) source, list them, deactivate one.",
    no_args_is_help=True,
)
OrgOption = Annotated[str, typer.Option("--org", help="The data source's organization.")]


def _engine() -> sa.Engine:
    from recon.cli_db import ready_url
    from resources import migrations
    from resources.database import engine_for

    url = ready_url()
    migrations.migrate(url)
    return engine_for(url)


def add_source(
    engine: sa.Engine, organization: str, name: str, kind: str, description: str | None = None
) -> tuple[int, str]:
    """Add (or reactivate) a data source; (its id, what happened). A FILE source may become a
    WEBHOOK one (its files stay); any other change of type is refused."""
    from pipelines.ingest import landing

    kind = kind.upper()
    if kind not in ADDABLE:
        raise ReconError(f"--type {kind}: `sources add` makes {' or '.join(ADDABLE)} sources")
    landing.folder_name(organization, "organization")
    landing.folder_name(name, "data source")
    with engine.begin() as conn:
        org_id = landing.ensure_organization(conn, organization)
        row = conn.execute(
            sa.text(
                "SELECT id, type, active FROM data_sources "
                "WHERE organization_id = :o AND name = :n FOR UPDATE"
            ),
            {"o": org_id, "n": name},
        ).first()
        if row is None:
            source_id = conn.execute(
                sa.text(
                    "INSERT INTO data_sources (name, description, type, organization_id, config) "
                    "VALUES (:n, :d, :t, :o, '{}'::jsonb) RETURNING id"
                ),
                {"n": name, "d": description, "t": kind, "o": org_id},
            ).scalar_one()
            return source_id, "added"
        if row.type != kind and not (row.type == "FILE" and kind == "WEBHOOK"):
            raise ReconError(
                f"{organization}/{name} is a {row.type} data source; give the new one another name"
            )
        conn.execute(
            sa.text(
                "UPDATE data_sources SET type = :t, active = TRUE, "
                "description = COALESCE(:d, description), updated_at = NOW() WHERE id = :i"
            ),
            {"t": kind, "d": description, "i": row.id},
        )
    changed = [f"was {row.type}"] * (row.type != kind) + ["reactivated"] * (not row.active)
    return row.id, ", ".join(changed) or "already there"


def list_sources(engine: sa.Engine, organization: str | None = None) -> list[dict[str, Any]]:
    """Every data source (of one organization), with whether it holds a webhook secret."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.id, o.name AS organization, d.name, d.type, d.active, "
                "d.config -> :k IS NOT NULL AS has_secret, count(f.id) AS files, "
                "max(f.created_at) AS last_landed FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id "
                "LEFT JOIN uploaded_files f ON f.data_source_id = d.id "
                "WHERE CAST(:org AS text) IS NULL OR o.name = :org "
                "GROUP BY d.id, o.name ORDER BY o.name, d.name"
            ),
            {"k": SECRET_KEY, "org": organization},
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
        }
        for r in rows
    ]


@sources_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="The data source's name (a landing-zone folder).")],
    kind: Annotated[str, typer.Option("--type", help="WEBHOOK or FILE.")] = "WEBHOOK",
    org: OrgOption = DEFAULT_ORGANIZATION,
    description: Annotated[str | None, typer.Option(show_default=False)] = None,
) -> None:
    """Add a data source (the organization is created on first sight).

    A WEBHOOK source then needs its secret:
    `recon secrets set webhook_secret --data-source NAME` (stdin or a hidden prompt).
    """
    source_id, what = add_source(_engine(), org, name, kind, description)
    typer.echo(f"{org}/{name} (data source {source_id}, {kind.upper()}): {what}")
    if kind.upper() == "WEBHOOK":
        typer.echo(
            f"next: recon secrets set {SECRET_KEY} --data-source {name!r} --org {org!r}; then "
            "`recon serve` receives POST /webhooks/<organization>/<data source>"
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
        typer.echo(
            f"{r['organization']}/{r['name']}  {r['type']}{off}{secret}  {r['files']} file(s)"
            + (f", last {r['last_landed']}" if r["last_landed"] else "")
        )
    if not rows:
        typer.echo("no data sources yet: `recon sources add NAME --type WEBHOOK` or `recon land`")


@sources_app.command("remove")
def remove_command(name: Annotated[str, typer.Argument()], org: OrgOption = DEFAULT_ORGANIZATION):
    """Deactivate a data source (a WEBHOOK one refuses deliveries); its files and rows stay."""
    with _engine().begin() as conn:
        done = conn.execute(
            sa.text(
                "UPDATE data_sources d SET active = FALSE, updated_at = NOW() "
                "FROM organizations o WHERE o.id = d.organization_id AND o.name = :o "
                "AND d.name = :n RETURNING d.id"
            ),
            {"o": org, "n": name},
        ).scalar()
    if done is None:
        raise ReconError(f"no data source {name!r} in organization {org!r}")
    typer.echo(f"{org}/{name} (data source {done}) deactivated")


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
