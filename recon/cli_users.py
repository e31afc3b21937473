"""`recon users ...`: an organization's users and roles; and who every working command acts as.

`acting()` is the edge shared with `recon exceptions`: the organization named by `--org`, one
`organization_transaction` (row-level security as `recon_app`) and the acting user of `--as`
/ `RECON_USER` (default: the organization's system user, ADMIN, recorded as `system`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import sqlalchemy as sa
import typer

from pipelines.work.users import Actor, acting_user, organization_id
from recon.cli_db import ready_url as _ready_url
from recon.scope import DEFAULT_ORGANIZATION
from resources import migrations

OrgOption = Annotated[str, typer.Option("--org", help="The organization acted in.")]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        envvar="RECON_USER",
        help="Act as this user (email; or RECON_USER); default: the organization's system "
        "user (ADMIN, recorded as 'system').",
        show_default=False,
    ),
]

users_app = typer.Typer(
    help="An organization's users and their roles (ADMIN, EDITOR, VIEWER).", no_args_is_help=True
)


@contextmanager
def acting(org: str, as_user: str | None) -> Iterator[tuple[sa.Connection, Actor]]:
    """One transaction of `org` as `recon_app`, and the user it acts as (committed at the end)."""
    from resources.database import engine_for, organization_transaction

    url = _ready_url()
    migrations.migrate(url)
    engine = engine_for(url)
    org_id = organization_id(engine, org)
    with organization_transaction(engine, org_id) as conn:
        yield conn, acting_user(conn, org_id, as_user)


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The user's email (unique).")],
    name: Annotated[str, typer.Option(help="The user's name.", show_default=False)],
    role: Annotated[str, typer.Option(help="ADMIN, EDITOR or VIEWER.")] = "VIEWER",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Add a user to an organization (needs ADMIN; the system user is one)."""
    from pipelines.work.users import add_user, parse_role

    with acting(org, as_user) as (conn, actor):
        user_id = add_user(conn, actor, email, name, parse_role(role))
    typer.echo(f"user #{user_id} {email} ({parse_role(role).name}) added to {org!r}")


@users_app.command("deactivate")
def users_deactivate(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Deactivate a user: they can no longer act (needs ADMIN); their history stays."""
    from pipelines.work.users import set_active

    with acting(org, as_user) as (conn, actor):
        set_active(conn, actor, email, active=False)
    typer.echo(f"user {email} deactivated")


@users_app.command("list")
def users_list(org: OrgOption = DEFAULT_ORGANIZATION, as_user: AsOption = None) -> None:
    """The organization's users and roles."""
    from pipelines.work.users import list_users

    with acting(org, as_user) as (conn, _actor):
        users = list_users(conn)
    for user in users:
        state = "" if user["active"] else "  (inactive)"
        typer.echo(f"{user['email']:<32} {user['role']:<7} {user['name']}{state}")
    if not users:
        typer.echo(f"no users in {org!r} yet: `recon users add EMAIL --name NAME --role ADMIN`")
