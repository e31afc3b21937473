"""Database access: which PostgreSQL to use, a checked connection to it, and the Dagster resource.

`resolve_database_url()` is the single answer to "which database": `RECON_DATABASE_URL` when
set, otherwise the embedded server under `RECON_HOME`. `check_database()` turns the usual
ways that goes wrong (server unreachable, wrong credentials, no pgvector, too old a server)
into one-line `ReconError`s. `DatabaseResource` hands Dagster assets a SQLAlchemy engine
(psycopg 3) on that database. `organization_transaction` is a transaction of that engine as
the role `recon_app` with one organization set, under row-level security (migration 0010).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import polars as pl
import psycopg
import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy.engine import URL, make_url

from resources.embedded import ensure_embedded_server
from resources.errors import ReconError
from resources.settings import (
    DEFAULT_CACHE_IDLE_DAYS,
    configured_database_url,
    home_path,
    recon_home,
)

MIN_SERVER_VERSION = 150000
CONNECT_TIMEOUT_SECONDS = 5
COPY_CHUNK_ROWS = 100_000
# migration 0010: the role organization-scoped queries run as, and the setting naming the
# organization whose rows it sees
APP_ROLE = "recon_app"
ORGANIZATION_SETTING = "recon.organization_id"


def resolve_database_url() -> str:
    """The libpq URL of the database to use, starting the embedded server if that is the one."""
    return configured_database_url() or ensure_embedded_server(recon_home())


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as err:
        raise ReconError(
            "RECON_DATABASE_URL is not a database URL (not shown: it may hold a password); "
            "expected postgresql://user:password@host:port/database"
        ) from err
    if parsed.get_backend_name() not in {"postgresql", "postgres"}:
        raise ReconError(
            f"RECON_DATABASE_URL names a {parsed.get_backend_name()} database; "
            "Smart Reconciliation needs PostgreSQL 15+ with pgvector"
        )
    return parsed


def redacted(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def with_driver(url: str, driver: str, **query: str) -> str:
    """The URL for a SQLAlchemy driver (`psycopg`, `psycopg2`), with extra query parameters."""
    parsed = _parse(url).set(drivername=f"postgresql+{driver}")
    if query:
        parsed = parsed.update_query_dict(query)
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str, *, hide_password: bool = False) -> str:
    """A plain `postgresql://` URL that psql and libpq accept (password as `***` if hidden).

    Only `recon db url` (whose job it is) and connections use the password; anything printed
    or logged elsewhere is `masked_url`.
    """
    rendered = (
        _parse(url).set(drivername="postgresql").render_as_string(hide_password=hide_password)
    )
    base, sep, query = rendered.partition("?")
    # libpq takes a socket directory unescaped; it reads better that way too.
    return base + sep + query.replace("%2F", "/")


def masked_url(url: str) -> str:
    """The URL to show a person: the password replaced by `***`."""
    return libpq_url(url, hide_password=True)


def check_database(url: str) -> str:
    """Connect once and check the server is usable; return its version string."""
    conninfo = libpq_url(url)
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            version_num = int(conn.execute("SHOW server_version_num").fetchone()[0])
            version = conn.execute("SHOW server_version").fetchone()[0]
            has_vector = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ReconError(
            f"cannot connect to PostgreSQL at {redacted(url)}: {reason}; check RECON_DATABASE_URL "
            "(or unset it to use the embedded server)"
        ) from err
    if version_num < MIN_SERVER_VERSION:
        raise ReconError(
            f"PostgreSQL at {redacted(url)} is version {version}; Smart Reconciliation needs 15 "
            "or newer: upgrade it or unset RECON_DATABASE_URL to use the embedded server"
        )
    if not has_vector:
        raise ReconError(
            f"PostgreSQL at {redacted(url)} has no pgvector extension available: install pgvector "
            "on that server (package postgresql-<version>-pgvector) or unset RECON_DATABASE_URL "
            "to use the embedded server"
        )
    return version


@cache
def engine_for(url: str) -> sa.Engine:
    """One pooled engine per database URL and process."""
    return sa.create_engine(with_driver(url, "psycopg"), pool_pre_ping=True, future=True)


@contextmanager
def organization_transaction(engine: sa.Engine, organization_id: int) -> Iterator[sa.Connection]:
    """A transaction as `recon_app` with `organization_id` set (both `SET LOCAL`: gone at its
    end, so a pooled connection comes back as the owner with nothing set).

    Row-level security then shows and accepts only that organization's rows: another's are
    not there (no error) and writing one is refused. Committed when the block ends, rolled
    back when it raises. COPY FROM is not allowed on these tables as `recon_app` (PostgreSQL
    refuses COPY FROM under row-level security): COPY into a temporary table and INSERT from it.
    """
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT set_config('role', :role, true), set_config(:setting, :org, true)"),
            {"role": APP_ROLE, "setting": ORGANIZATION_SETTING, "org": str(int(organization_id))},
        )
        yield conn


@contextmanager
def scoped_transaction(engine: sa.Engine, organization_id: int | None) -> Iterator[sa.Connection]:
    """`organization_transaction` when an organization is given, else the owner's own
    transaction (the callers not yet given their organization, and owner-level work)."""
    if organization_id is None:
        with engine.begin() as conn:
            yield conn
    else:
        with organization_transaction(engine, organization_id) as conn:
            yield conn


def copy_rows(
    conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Bulk-insert `rows` with COPY on the connection's own transaction; returns the count."""
    dbapi = conn.connection.driver_connection
    assert isinstance(dbapi, psycopg.Connection)
    column_list = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in columns)
    statement = psycopg.sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg.sql.Identifier(table), column_list
    )
    count = 0
    with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_frame(conn: sa.Connection, table: str, frame: pl.DataFrame) -> int:
    """Bulk-insert a polars frame with COPY (CSV written by polars, not row by row)."""
    if frame.height == 0:
        return 0
    dbapi = conn.connection.driver_connection
    assert isinstance(dbapi, psycopg.Connection)
    column_list = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in frame.columns)
    statement = psycopg.sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        psycopg.sql.Identifier(table), column_list
    )
    with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, frame.height, COPY_CHUNK_ROWS):
            chunk = frame.slice(start, COPY_CHUNK_ROWS)
            copy.write(chunk.write_csv(include_header=False, null_value=""))
    return frame.height


class DatabaseResource(ConfigurableResource):
    """The product database for Dagster assets, configured in `pipelines/definitions.py`.

    `url` (RECON_DATABASE_URL) names an existing server; blank, the embedded server under
    `home` (RECON_HOME). Built with neither (a helper outside the definitions), it is the
    `recon` commands' own choice, `resolve_database_url()`.
    """

    url: str | None = Field(
        default=None,
        description="PostgreSQL URL (RECON_DATABASE_URL); empty: the embedded server under home",
    )
    home: str | None = Field(
        default=None, description="State directory of the embedded server (RECON_HOME)"
    )
    cache_idle_days: int = Field(
        default=DEFAULT_CACHE_IDLE_DAYS,
        description="Upkeep deletes embedding-cache entries unused this many days "
        "(RECON_CACHE_IDLE_DAYS)",
    )

    def database_url(self) -> str:
        url = (self.url or "").strip()
        if url:
            return url
        if self.home is None:
            return resolve_database_url()
        return ensure_embedded_server(home_path(self.home))

    def engine(self) -> sa.Engine:
        return engine_for(self.database_url())
