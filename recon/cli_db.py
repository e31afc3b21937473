"""`recon db ...`: the database, embedded under RECON_HOME by default or RECON_DATABASE_URL."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import sqlalchemy as sa
import typer
from sqlalchemy.engine import make_url

from resources import migrations
from resources.database import check_database, libpq_url, masked_url, resolve_database_url
from resources.embedded import stop_embedded_server
from resources.errors import ReconError
from resources.settings import configured_database_url, recon_home

db_app = typer.Typer(
    help="Manage the database: the embedded server under RECON_HOME, or RECON_DATABASE_URL.",
    no_args_is_help=True,
)


def ready_url() -> str:
    """The database URL after checking the server is reachable and has pgvector."""
    url = resolve_database_url()
    check_database(url)
    return url


def migrated_engine() -> sa.Engine:
    """An engine on the ready database, its schema migrated to the newest version first."""
    from resources.database import engine_for

    url = ready_url()
    migrations.migrate(url)
    return engine_for(url)


@db_app.command("up")
def db_up() -> None:
    """Start (or reuse) the database and apply pending migrations."""
    from recon.lifecycle import instance_for

    url = ready_url()
    applied = migrations.migrate(url)
    where = "RECON_DATABASE_URL" if configured_database_url() else f"embedded, {recon_home()}"
    typer.echo(f"database ready ({where}): {masked_url(url)}")
    typer.echo(f"migrations applied now: {', '.join(applied) if applied else 'none (up to date)'}")
    instance_for(url, typer.echo)  # runs whose process died are failed now


@db_app.command("url")
def db_url(
    dagster: Annotated[
        bool, typer.Option("--dagster", hidden=True, help="Dagster's URL (for `db env`).")
    ] = False,
) -> None:
    """Print a libpq URL of the database (psql accepts it: psql "$(recon db url)")."""
    from resources.dagster_instance import dagster_pg_url

    url = ready_url()
    typer.echo(dagster_pg_url(url) if dagster else libpq_url(url))


@db_app.command("migrate")
def db_migrate(
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Check the database matches sql/migrations; exit 1 if not."),
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Roll back applied migrations instead of applying.")
    ] = False,
    steps: Annotated[
        int, typer.Option(help="With --rollback: how many migrations, newest first.", min=1)
    ] = 1,
    all_: Annotated[
        bool, typer.Option("--all", help="With --rollback: roll back every migration.")
    ] = False,
) -> None:
    """Apply pending migrations (default), verify them, or roll them back."""
    if verify and rollback:
        raise ReconError("choose one of --verify and --rollback")
    url = ready_url()
    if verify:
        problems = migrations.verify(url)
        for problem in problems:
            typer.echo(f"FAIL {problem}", err=True)
        if problems:
            raise typer.Exit(1)
        states = migrations.status(url)
        typer.echo(f"ok: {len(states)} migrations applied, newest {states[-1].id}")
    elif rollback:
        undone = migrations.rollback(url, None if all_ else steps)
        typer.echo(f"rolled back: {', '.join(undone) if undone else 'nothing (none applied)'}")
    else:
        applied = migrations.migrate(url)
        typer.echo(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@db_app.command("status")
def db_status() -> None:
    """List every migration and whether it is applied."""
    for state in migrations.status(ready_url()):
        typer.echo(f"{'applied' if state.applied else 'pending'}  {state.id}")


@db_app.command("env")
def db_env() -> None:
    """Print the shell exports Dagster needs to use this instance: eval "$(recon db env)"."""
    from resources.dagster_instance import prepare_dagster_environment

    url = ready_url()
    for key, value in prepare_dagster_environment(url).items():
        if key == "RECON_DAGSTER_PG_URL" and make_url(url).password:
            # only `recon db url` prints a password: the shell asks it when it evaluates this
            value = f"$({shlex.quote(sys.executable)} -m recon db url --dagster)"
            typer.echo(f'export {key}="{value}"')
        else:
            typer.echo(f"export {key}={shlex.quote(value)}")


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded server (data is kept; the next command starts it again)."""
    if configured_database_url():
        raise ReconError("RECON_DATABASE_URL is set: that server is not ours to stop")
    stopped = stop_embedded_server(recon_home())
    typer.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db_app.command("index")
def db_index(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild now, whatever the number of embeddings.")
    ] = False,
) -> None:
    """Build the search's IVF index when it is due (the daily upkeep does the same).

    Due: the embeddings reached 100,000 and have doubled since the last build; an exception
    type's own index (searches filtered on that type use it) at 5,000 of that type, and one of
    its RESOLVED exceptions (searches filtered on both) at 5,000 of those.

    Until then the HNSW index serves searches. The build runs CONCURRENTLY: searches go on.
    """
    from pipelines.embed.search.ivf import ensure_ivf

    done = ensure_ivf(migrated_engine(), force=force)
    typer.echo(f"IVF index {_ivf_state(done)}")
    for kind, found in done.get("types", {}).items():
        typer.echo(f"  {kind}: {_ivf_state(found)}")


def _ivf_state(done: dict) -> str:
    state = f"built in {done['seconds']} s" if done["built"] else f"not built: {done['reason']}"
    lists = f"{done['lists']} lists" if done["lists"] else "none yet"
    rows = "" if done["rows"] is None else f"{done['rows']:,} embeddings, "
    return f"({rows}{lists}): {state}"
