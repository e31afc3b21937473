"""The DATABASE puller: the rows of another database's table or query above a watermark.

Any database SQLAlchemy reaches (PostgreSQL through psycopg, SQLite built in; others with
their driver installed). One read-only transaction (PostgreSQL: `SET TRANSACTION READ ONLY` and
a statement timeout), the rows above the watermark in the incremental column's order, streamed
from a server-side cursor in batches (`batch_rows`), so a large table never sits in memory.
A pull stops with an error past `max_rows`. Values reach the landing zone as CSV text: numbers
and decimals exactly as the database gives them, dates and timestamps in ISO 8601.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pipelines.ingest.pulls.config import DatabaseConfig
from resources.errors import ReconError


class DatabasePullError(ReconError):
    """The other database refused or failed (one line, credentials masked)."""


def _engine(config: DatabaseConfig) -> sa.Engine:
    try:
        url = sa.make_url(config.url)
    except sa.exc.ArgumentError:
        raise DatabasePullError("url is not a SQLAlchemy URL (postgresql+psycopg://...)") from None
    if config.password is not None:
        url = url.set(password=str(config.password))
    args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        args["connect_timeout"] = min(config.timeout_seconds, 30)
    elif url.get_backend_name() == "sqlite":
        args["timeout"] = min(config.timeout_seconds, 30)
    try:
        return sa.create_engine(url, poolclass=NullPool, connect_args=args)
    except (ImportError, sa.exc.NoSuchModuleError) as err:
        raise DatabasePullError(f"no driver for {url.drivername}: {err}") from None


def masked_url(config: DatabaseConfig) -> str:
    """The URL with its password hidden (for logs, lineage and errors)."""
    try:
        return sa.make_url(config.url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a URL)"


def _source_sql(config: DatabaseConfig, preparer: Any) -> str:
    if config.query is not None:
        return f"({config.query.strip().rstrip(';')}) AS recon_pull"
    return ".".join(preparer.quote(part) for part in str(config.table).split("."))


def pull_sql(config: DatabaseConfig, dialect: sa.Dialect, since: Any) -> str:
    """The statement a pull runs (`:since` bound when there is a watermark)."""
    column = dialect.identifier_preparer.quote(config.incremental_column)
    where = f" WHERE {column} > :since" if since is not None else ""
    source = _source_sql(config, dialect.identifier_preparer)
    return f"SELECT * FROM {source}{where} ORDER BY {column}"


def _failure(err: sa.exc.DBAPIError | sa.exc.OperationalError, config: DatabaseConfig) -> str:
    first = str(getattr(err, "orig", err)).strip().splitlines()
    return f"{masked_url(config)}: {first[0] if first else type(err).__name__}"


def _begin(conn: sa.Connection, config: DatabaseConfig) -> None:
    if conn.dialect.name == "postgresql":
        # one snapshot for the count and the rows (the COPY path reads twice)
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(config.timeout_seconds) * 1000}")


_NEEDS_CELL = (bytes, memoryview, bool)


def _rows(part: list[Any]) -> Any:
    """The rows as `csv` writes them: as they are (None is empty, numbers and decimals as
    Python prints them, dates and times ISO 8601 with a space), but a column holding bytes or
    booleans goes through `_cell` (per value in Python: 2-3x slower, so only where needed).
    The types come from the whole batch (transposed and mapped in C)."""
    columns = list(zip(*part, strict=True))
    odd = [
        i
        for i, col in enumerate(columns)
        if any(issubclass(t, _NEEDS_CELL) for t in set(map(type, col)))
    ]
    if not odd:
        return part
    for i in odd:
        columns[i] = tuple(map(_cell, columns[i]))
    return zip(*columns, strict=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def fetch_csv(config: DatabaseConfig, since: Any) -> Iterator[tuple[bytes, int, Any]]:
    """CSV chunks of the rows above `since`: (bytes, rows in the chunk, last watermark value).

    The first chunk starts with the header. Raises `DatabasePullError` (one line) when the
    database cannot be reached, refuses the statement, lacks the incremental column, or
    gives more than `max_rows` rows.
    """
    engine = _engine(config)
    total = 0
    try:
        with engine.connect() as conn:
            with conn.begin():
                _begin(conn, config)
                if conn.dialect.driver == "psycopg":
                    yield from _copy_csv(conn, config, since)
                    return
                sql = sa.text(pull_sql(config, conn.dialect, since))
                streamed = conn.execution_options(stream_results=True, yield_per=config.batch_rows)
                result = streamed.execute(sql, {"since": since} if since is not None else {})
                columns = list(result.keys())
                if config.incremental_column not in columns:
                    raise DatabasePullError(
                        f"incremental_column {config.incremental_column!r} is not a column of "
                        f"the result ({', '.join(columns[:20])})"
                    )
                at = columns.index(config.incremental_column)
                header = True
                for part in result.partitions(config.batch_rows):
                    total += len(part)
                    if total > config.max_rows:
                        raise DatabasePullError(
                            f"more than max_rows={config.max_rows} rows above the watermark; "
                            "raise max_rows or narrow the query"
                        )
                    text = io.StringIO()
                    writer = csv.writer(text, lineterminator="\n")
                    if header:
                        writer.writerow(columns)
                        header = False
                    writer.writerows(_rows(part))
                    yield text.getvalue().encode(), len(part), part[-1][at]
    except sa.exc.DBAPIError as err:
        raise DatabasePullError(_failure(err, config)) from None
    finally:
        engine.dispose()


COPY_CHUNK = 1 << 20


def _copy_csv(
    conn: sa.Connection, config: DatabaseConfig, since: Any
) -> Iterator[tuple[bytes, int, Any]]:
    """PostgreSQL: the rows as the server writes CSV (`COPY (query) TO STDOUT`, ~9x faster than
    formatting them in Python), counted and their watermark taken first in the same snapshot
    (so `max_rows` refuses before a row is read). Chunks carry no count; the last one does."""
    from psycopg import sql as pgsql

    column = conn.dialect.identifier_preparer.quote(config.incremental_column)
    source = _source_sql(config, conn.dialect.identifier_preparer)
    where = f" WHERE {column} > :since" if since is not None else ""
    params = {"since": since} if since is not None else {}
    names = list(conn.execute(sa.text(f"SELECT * FROM {source} LIMIT 0")).keys())
    if config.incremental_column not in names:
        raise DatabasePullError(
            f"incremental_column {config.incremental_column!r} is not a column of the result "
            f"({', '.join(names[:20])})"
        )
    count, last = conn.execute(
        sa.text(f"SELECT count(*), max({column}) FROM {source}{where}"), params
    ).one()
    if count > config.max_rows:
        raise DatabasePullError(
            f"{count:,} rows above the watermark, more than max_rows={config.max_rows}; "
            "raise max_rows or narrow the query"
        )
    if not count:
        return
    statement = pgsql.SQL(
        "COPY (SELECT * FROM {source}{where} ORDER BY {column}) TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(
        source=pgsql.SQL(source),  # the declared table (quoted) or query: the admin's SQL
        where=pgsql.SQL(f" WHERE {column} > ") + pgsql.Literal(since)
        if since is not None
        else pgsql.SQL(""),
        column=pgsql.SQL(column),
    )
    raw = conn.connection.driver_connection
    buffer = bytearray()
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for block in copy:
            buffer += block
            if len(buffer) >= COPY_CHUNK:
                yield bytes(buffer), 0, None
                buffer.clear()
    yield bytes(buffer), count, last


def probe(config: DatabaseConfig, since: Any) -> dict[str, Any]:
    """Connect and read one row above `since` (nothing landed): columns and whether rows wait."""
    engine = _engine(config)
    try:
        with engine.connect() as conn:
            with conn.begin():
                _begin(conn, config)
                sql = pull_sql(config, conn.dialect, since) + " LIMIT 1"
                result = conn.execute(sa.text(sql), {"since": since} if since is not None else {})
                columns = list(result.keys())
                row = result.first()
    except sa.exc.DBAPIError as err:
        raise DatabasePullError(_failure(err, config)) from None
    finally:
        engine.dispose()
    if config.incremental_column not in columns:
        raise DatabasePullError(
            f"incremental_column {config.incremental_column!r} is not a column of the result"
        )
    return {"columns": columns, "new_rows_waiting": row is not None, "url": masked_url(config)}
