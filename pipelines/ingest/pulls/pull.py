"""A pull of a DATABASE or REST_API source: new records into the landing zone, with a watermark.

A pull is for a business date. It starts from the watermark of the source's newest successful
pull of an *earlier* date (or the declared `initial_watermark`), asks for the records above it,
and writes them as one file into `<landing>/<organization>/<data source>/` named
`<data source>-<date>-pull<sync log id>.csv` (DATABASE) or `.jsonl` (REST_API), whole or not
at all (`ZoneDrop`). The landing sensor then lands it like any file: same assets, same
validation, and a feed naming the data source reconciles it for that date. Pulling a date again
re-reads from the same starting watermark, so its new file (a superset) supersedes the earlier
one for that date; pulling a date older than the newest pulled date is refused (its rows
would overlap the later file's).

Each pull is a `sync_logs` row (system `database-pull` / `rest-api-pull`; RUNNING, then
SUCCESS or FAILED with a one-line error) whose `details` keep the query or URL (credentials
masked), the watermarks, the file's name and SHA-256: `uploaded_files.content_sha256` of the
landed file leads back to the pull (`pull_of_file`). One pull per source at a time (an
advisory lock); a pull interrupted (kill -9) leaves a RUNNING row that the next pull marks
FAILED, and a hidden `.tmp` file no scan lands. Nothing is lost: the watermark only moves
with a SUCCESS.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest.pulls.config import (
    PULLED_TYPES,
    DatabaseConfig,
    RestApiConfig,
    source_config,
    watermark_value,
)
from pipelines.ingest.zone_writer import ZoneDrop
from resources import secrets
from resources.errors import ReconError

SYSTEMS = {"DATABASE": "database-pull", "REST_API": "rest-api-pull"}


@dataclass(frozen=True)
class PulledSource:
    """A DATABASE or REST_API data source, as stored."""

    id: int
    organization_id: int
    organization: str
    name: str
    type: str
    config: dict[str, Any]  # decrypted (pydantic Secrets)

    @property
    def label(self) -> str:
        return f"{self.organization}/{self.name}"


@dataclass
class PullResult:
    """What one pull did (the sync log's content)."""

    source: str
    status: str  # SUCCESS or FAILED
    business_date: str
    records: int = 0
    watermark_from: Any = None
    watermark_to: Any = None
    file: str | None = None
    sha256: str | None = None
    query: str | None = None
    sync_log_id: int | None = None
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def pulled_sources(
    engine: sa.Engine, organization: str | None = None, names: list[str] | None = None
) -> list[PulledSource]:
    """Active DATABASE / REST_API sources (of one organization, of these names)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.id, d.organization_id, o.name AS organization, d.name, d.type, "
                "d.config FROM data_sources d JOIN organizations o ON o.id = d.organization_id "
                "WHERE d.active AND d.type = ANY(:types) "
                "AND (CAST(:org AS text) IS NULL OR o.name = :org) ORDER BY o.name, d.name"
            ),
            {"types": list(PULLED_TYPES), "org": organization},
        ).all()
    found = [
        PulledSource(r.id, r.organization_id, r.organization, r.name, r.type, r.config or {})
        for r in rows
        if not names or r.name in names
    ]
    missing = sorted(set(names or []) - {s.name for s in found})
    if missing:
        raise ReconError(
            f"no active DATABASE or REST_API data source named {', '.join(map(repr, missing))}"
            + (f" in {organization!r}" if organization else "")
            + "; see `recon sources list`"
        )
    return found


def declaration(source: PulledSource) -> DatabaseConfig | RestApiConfig:
    """The source's validated config (credentials opened)."""
    return source_config(source.type, secrets.decrypt_config(source.config), source.label)


def start_watermark(conn: sa.Connection, source: PulledSource, day: date, initial: Any) -> Any:
    """The watermark a pull for `day` starts from; refuses a date older than one pulled."""
    later = conn.execute(
        sa.text(
            "SELECT max(details->>'business_date') FROM sync_logs WHERE data_source_id = :s "
            "AND system = :sys AND status = 'SUCCESS' AND details->>'business_date' > :d"
        ),
        {"s": source.id, "sys": SYSTEMS[source.type], "d": day.isoformat()},
    ).scalar()
    if later is not None:
        raise ReconError(
            f"{source.label} was already pulled for {later}: a pull for {day.isoformat()} would "
            "overlap it (pull the newest date again instead)"
        )
    row = conn.execute(
        sa.text(
            "SELECT details->'watermark_to' FROM sync_logs WHERE data_source_id = :s "
            "AND system = :sys AND status = 'SUCCESS' AND details->>'business_date' < :d "
            "AND details->'watermark_to' IS NOT NULL AND details->'watermark_to' <> 'null' "
            "ORDER BY details->>'business_date' DESC, id DESC LIMIT 1"
        ),
        {"s": source.id, "sys": SYSTEMS[source.type], "d": day.isoformat()},
    ).first()
    return row[0] if row is not None else initial


def _chunks(source: PulledSource, config: Any, since: Any) -> Iterator[tuple[bytes, int, Any]]:
    """(bytes, records, last watermark) chunks of the file the pull writes."""
    if source.type == "DATABASE":
        from pipelines.ingest.pulls import database

        yield from database.fetch_csv(config, since)
        return
    from pipelines.ingest.pulls import rest_api

    for page in rest_api.fetch_pages(config, since):
        if not page:
            continue
        marks = [rest_api.watermark_of(r, config.incremental_field) for r in page]
        body = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in page)
        yield body.encode(), len(page), max(marks, key=_order)


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def _query_text(source: PulledSource, config: Any, since: Any) -> str:
    if source.type == "DATABASE":
        from pipelines.ingest.pulls import database

        dialect = sa.make_url(config.url).get_dialect()()
        return f"{database.masked_url(config)}: {database.pull_sql(config, dialect, since)}"
    param = f" ({config.incremental_param}={since})" if config.incremental_param else ""
    return f"GET {config.url}{param}, newer than {config.incremental_field}={since!r}"


def _finish(conn: sa.Connection, result: PullResult) -> None:
    conn.execute(
        sa.text(
            "UPDATE sync_logs SET status = :st, records_processed = :r, error_message = :e, "
            "completed_at = NOW(), details = CAST(:d AS jsonb) WHERE id = :i"
        ),
        {
            "st": result.status,
            "r": result.records,
            "e": result.error,
            "d": json.dumps(result.as_json(), default=str),
            "i": result.sync_log_id,
        },
    )


def pull_source(engine: sa.Engine, zone: Path, source: PulledSource, day: date) -> PullResult:
    """Pull `source`'s new records for business date `day` into the landing zone.

    Never raises for the source's own failures (they are the result's FAILED status and
    error, recorded in `sync_logs`), so one failing source never stops the others.
    """
    started = time.perf_counter()
    result = PullResult(source.label, "FAILED", day.isoformat())
    with engine.connect() as lock_conn:
        locked = lock_conn.execute(
            sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": f"pull:{source.id}"}
        ).scalar()
        if not locked:
            result.error = f"{source.label}: a pull of this source is already running"
            return result
        try:
            _pull_locked(engine, zone, source, day, result)
        finally:
            lock_conn.execute(
                sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"pull:{source.id}"}
            )
            lock_conn.commit()
    result.seconds = round(time.perf_counter() - started, 3)
    if result.sync_log_id is not None:
        with engine.begin() as conn:
            _finish(conn, result)
    return result


def _pull_locked(
    engine: sa.Engine, zone: Path, source: PulledSource, day: date, result: PullResult
) -> None:
    system = SYSTEMS[source.type]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE sync_logs SET status = 'FAILED', completed_at = NOW(), error_message = "
                "'interrupted: the pull stopped before it finished (nothing of it counts)' "
                "WHERE data_source_id = :s AND system = :sys AND status = 'RUNNING'"
            ),
            {"s": source.id, "sys": system},
        )
        result.sync_log_id = conn.execute(
            sa.text(
                "INSERT INTO sync_logs (organization_id, data_source_id, system, direction, "
                "status, details) VALUES (:o, :s, :sys, 'INBOUND', 'RUNNING', "
                "CAST(:d AS jsonb)) RETURNING id"
            ),
            {
                "o": source.organization_id,
                "s": source.id,
                "sys": system,
                "d": json.dumps({"business_date": day.isoformat()}),
            },
        ).scalar_one()
    drop: ZoneDrop | None = None
    try:
        config = declaration(source)
        with engine.connect() as conn:
            since = start_watermark(conn, source, day, config.initial_watermark)
        result.watermark_from = result.watermark_to = since
        result.query = _query_text(source, config, since)
        drop = ZoneDrop(zone, source.organization, source.name)
        digest = hashlib.sha256()
        for chunk, count, last in _chunks(source, config, since):
            drop.write(chunk)
            digest.update(chunk)
            if count:  # a chunk without rows of its own (a COPY block) moves nothing
                result.records += count
                result.watermark_to = watermark_value(last)
        if result.records:
            suffix = ".csv" if source.type == "DATABASE" else ".jsonl"
            item = drop.commit(f"{source.name}-{day.isoformat()}-pull{result.sync_log_id}{suffix}")
            result.file, result.sha256 = str(item.relative), digest.hexdigest()
        result.status, result.error = "SUCCESS", None
    except ReconError as err:
        text = str(err)
        result.error = text if text.startswith(source.label) else f"{source.label}: {text}"
    except Exception as err:  # noqa: BLE001 - a source's failure is recorded, the others carry on
        result.error = f"{source.label}: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
    finally:
        if drop is not None:
            drop.discard()


def pull_all(
    engine: sa.Engine, zone: Path, sources: list[PulledSource], day: date
) -> list[PullResult]:
    """Pull every source for `day`, each whatever the others did."""
    return [pull_source(engine, zone, source, day) for source in sources]


def pull_of_file(conn: sa.Connection, data_source_id: int | None, sha256: str | None) -> Any:
    """The pull (`sync_logs.details`) that wrote a landed file, if a pull did."""
    if data_source_id is None or sha256 is None:
        return None
    return conn.execute(
        sa.text(
            "SELECT id, system, details FROM sync_logs WHERE data_source_id = :s "
            "AND system = ANY(:sys) AND status = 'SUCCESS' AND details->>'sha256' = :h "
            "ORDER BY id DESC LIMIT 1"
        ),
        {"s": data_source_id, "sys": list(SYSTEMS.values()), "h": sha256},
    ).first()
