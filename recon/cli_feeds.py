"""`recon feeds ...`: load a feeds file, and each feed's latest business dates.

Loading feeds is managing feeds: acting as a user (`--as` / `RECON_USER`) it needs ADMIN of
the feeds' organization (`pipelines.work.admin`); the system user (no `--as`) may.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from recon.cli_db import ready_url as _ready_url
from recon.cli_users import AsOption
from resources import migrations

feeds_app = typer.Typer(
    help="Reconciliation feeds: which data source reconciles against which, per business date.",
    no_args_is_help=True,
)


@feeds_app.command("load")
def feeds_load(
    path: Annotated[
        Path | None,
        typer.Argument(help="Feeds YAML (default: RECON_FEEDS_FILE or RECON_HOME/feeds.yaml)."),
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Validate a feeds file and load it (rule sets stored, feeds added as partitions).

    The pairing sensor also reloads the default feeds file by itself when it changes.
    Acting as a user (`--as`), it needs ADMIN of the feeds' organization.
    """
    from pipelines.reconcile.feeds import load_feeds_file
    from pipelines.work import admin, audit
    from recon.backfill import load_feeds
    from resources.dagster_instance import dagster_instance
    from resources.database import engine_for
    from resources.settings import feeds_file

    url = _ready_url()
    migrations.migrate(url)
    target = path or feeds_file()
    engine = engine_for(url)
    organizations = [spec.organization for spec in load_feeds_file(target)]
    actor = admin.check_feeds(engine, as_user, organizations, target)
    with audit.acting_as(actor):
        outcome = load_feeds(engine, dagster_instance(url), target)
    typer.echo(f"feeds loaded from {target}:")
    for what, names in outcome.items():
        if names:
            typer.echo(f"  {what}: {', '.join(names)}")


@feeds_app.command("list")
def feeds_list(
    days: Annotated[int, typer.Option(help="How many recent business dates to show.")] = 7,
) -> None:
    """Each active feed and the state of its latest business dates."""
    from pipelines.reconcile import feeds as feed_store
    from resources.database import engine_for

    engine = engine_for(_ready_url())
    active = feed_store.active_feeds(engine)
    if not active:
        typer.echo("no active feeds: write a feeds file and run `recon feeds load FILE`")
    with engine.connect() as conn:
        for feed in active:
            typer.echo(
                f"{feed.name}: rule set #{feed.rule_set_id}, dates {feed.business_date.source}"
            )
            rows = conn.execute(
                sa.text(
                    "SELECT business_date, status, match_rate, exception_count, error_message "
                    "FROM reconciliations WHERE feed_id = :f ORDER BY business_date DESC LIMIT :n"
                ),
                {"f": feed.id, "n": days},
            ).all()
            for row in rows:
                detail = (
                    f"match rate {row.match_rate}%, {row.exception_count} exceptions"
                    if row.status == "COMPLETED"
                    else (row.error_message or "")
                )
                typer.echo(f"  {row.business_date} {row.status:<9} {detail}")
