"""`recon sources test|pull` and how `sources add` declares a DATABASE or REST_API source.

- A DATABASE source: `recon sources add ledger --type DATABASE --table gl_entries
  --incremental id` with the SQLAlchemy URL on standard input or at a hidden prompt (it may
  hold a password: never an argument; stored encrypted). `--query 'SELECT ...'` instead of
  `--table`; `--config FILE.yaml` for the other keys (`pipelines.ingest.pulls.config`).
- A REST_API source: `recon sources add bank --type REST_API --url https://.../transactions
  --incremental id --config bank.yaml` (paginator, items, auth...); its token with
  `recon secrets set token --data-source bank`.
- `recon sources test NAME`: connects and reads one record above the watermark (or the first
  page), lands nothing, and records the outcome in `data_sources.last_tested_at /
  last_test_successful / last_test_error`. WEBHOOK: whether its secret is set; FILE: its
  landing folder.
- `recon sources pull [NAME...] --date D`: pulls now (what the `pull_sources` schedule does),
  then lands the files written (`--no-land`: leaves them to the landing sensor).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from recon.scope import DEFAULT_ORGANIZATION
from resources.errors import ReconError


def declared(
    kind: str,
    config_file: Path | None,
    table: str | None,
    query: str | None,
    incremental: str | None,
    url: str | None,
) -> dict[str, Any] | None:
    """The config `sources add` stores for a DATABASE / REST_API source (validated), else None."""
    from pipelines.ingest.pulls.config import source_config
    from resources.safe_yaml import load_yaml

    kind = kind.upper()
    given = {"table": table, "query": query, "incremental": incremental, "url": url}
    if kind not in ("DATABASE", "REST_API"):
        extra = [f"--{k}" for k, v in given.items() if v is not None] + (
            ["--config"] if config_file else []
        )
        if extra:
            raise ReconError(f"{', '.join(extra)}: only for DATABASE and REST_API sources")
        return None
    config: dict[str, Any] = {}
    if config_file is not None:
        loaded = load_yaml(config_file, ReconError)
        if not isinstance(loaded, dict):
            raise ReconError(f"{config_file}: expected a mapping of config keys")
        config.update(loaded)
    field = "incremental_column" if kind == "DATABASE" else "incremental_field"
    extra = {"table": table, "query": query, field: incremental}
    if kind == "DATABASE" and (table is not None or query is not None):
        config.pop("table", None), config.pop("query", None)
    if kind == "REST_API":
        extra["url"] = url
        if table or query:
            raise ReconError("--table / --query: only for DATABASE sources")
    elif url is not None:
        raise ReconError(
            "--url: a database URL may hold a password; give it on standard input or at the "
            "prompt, never as an argument"
        )
    config.update({k: v for k, v in extra.items() if v is not None})
    if kind == "DATABASE" and "url" not in config:
        from recon.cli_secrets import read_value

        config["url"] = read_value("url (SQLAlchemy URL of the database)")
    check = dict(config)
    if check.get("auth", "none") != "none" and check.get("token") is None:
        check["token"] = "(set later)"  # the token comes with `recon secrets set token`
    source_config(kind, check, "the declaration")
    return config


def _engine() -> sa.Engine:
    from recon.cli_db import migrated_engine

    return migrated_engine()


def _source_row(engine: sa.Engine, org: str, name: str) -> Any:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT d.id, d.organization_id, o.name AS organization, d.name, d.type, "
                "d.active, d.config FROM data_sources d JOIN organizations o "
                "ON o.id = d.organization_id WHERE o.name = :o AND d.name = :n"
            ),
            {"o": org, "n": name},
        ).first()
    if row is None:
        raise ReconError(f"no data source {name!r} in organization {org!r}")
    return row


def test_source(engine: sa.Engine, org: str, name: str, today: date) -> dict[str, Any]:
    """Check a source without landing anything; the outcome is stored on the source."""
    from pipelines.ingest.pulls.pull import PulledSource, declaration, start_watermark
    from resources.file_store import FileStoreResource
    from resources.webhook_auth import SECRET_KEY

    row = _source_row(engine, org, name)
    outcome: dict[str, Any] = {"source": f"{org}/{name}", "type": row.type}
    try:
        if row.type in ("DATABASE", "REST_API"):
            source = PulledSource(
                row.id, row.organization_id, row.organization, row.name, row.type, row.config
            )
            config = declaration(source)
            with engine.connect() as conn:
                since = start_watermark(conn, source, today, config.initial_watermark)
            outcome["watermark"] = since
            if row.type == "DATABASE":
                from pipelines.ingest.pulls import database

                outcome.update(database.probe(config, since))
            else:
                from pipelines.ingest.pulls import rest_api

                outcome.update(rest_api.probe(config))
        elif row.type == "WEBHOOK":
            if (row.config or {}).get(SECRET_KEY) is None:
                raise ReconError(
                    f"no {SECRET_KEY}: `recon secrets set {SECRET_KEY} --data-source {name}`"
                )
            outcome["webhook_secret"] = "set"
        else:
            folder = FileStoreResource().store().landing / org / name
            outcome["landing_folder"] = str(folder)
            outcome["waiting_files"] = (
                sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
                if folder.is_dir()
                else 0
            )
        outcome["ok"], error = True, None
    except ReconError as err:
        outcome["ok"], error = False, str(err)
        outcome["error"] = error
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE data_sources SET last_tested_at = NOW(), last_test_successful = :ok, "
                "last_test_error = :e WHERE id = :i"
            ),
            {"ok": outcome["ok"], "e": error, "i": row.id},
        )
    return outcome


OrgOption = Annotated[str, typer.Option("--org", help="The data source's organization.")]


def test_command(
    name: Annotated[str, typer.Argument(help="The data source to check.")],
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_json: Annotated[bool, typer.Option("--json", help="The outcome as JSON.")] = False,
) -> None:
    """Check a source can be reached (lands nothing): a DATABASE's query, a REST_API's first
    page, a WEBHOOK's secret, a FILE's landing folder. Exit 1 when it cannot."""
    outcome = test_source(_engine(), org, name, date.today())
    if as_json:
        typer.echo(json.dumps(outcome, default=str))
    elif outcome["ok"]:
        details = {k: v for k, v in outcome.items() if k not in ("ok", "source", "type")}
        shown = json.dumps(details, default=str)
        typer.echo(f"{outcome['source']} ({outcome['type']}): ok {shown}")
    else:
        typer.echo(f"{outcome['source']} ({outcome['type']}): FAILED: {outcome['error']}", err=True)
    if not outcome["ok"]:
        raise typer.Exit(1)


def pull_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Data sources to pull (default: every DATABASE and REST_API one).",
            show_default=False,
        ),
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="Only this organization.", show_default=False)
    ] = None,
    day: Annotated[
        str | None,
        typer.Option(
            "--date", help="Business date YYYY-MM-DD (default today).", show_default=False
        ),
    ] = None,
    land: Annotated[
        bool, typer.Option("--land/--no-land", help="Land the files now (else the sensor does).")
    ] = True,
) -> None:
    """Pull new records of DATABASE / REST_API sources into the landing zone (one file each).

    What the `pull_sources` schedule runs daily. A source starts from the watermark of its
    last pull of an earlier date; one failing source does not stop the others (exit 1).
    """
    from pipelines.ingest.pulls.pull import pull_all, pulled_sources
    from recon.cli_db import ready_url
    from resources.file_store import FileStoreResource

    engine = _engine()
    when = _parse_date(day)
    zone = FileStoreResource().store().landing
    results = pull_all(engine, zone, pulled_sources(engine, org, names or None), when)
    if land and any(r.file for r in results):
        from recon.land import land_path
        from recon.lifecycle import instance_for

        url = ready_url()
        instance = instance_for(url, lambda m: typer.echo(m, err=True))
    if not results:
        typer.echo("no DATABASE or REST_API data sources: `recon sources add NAME --type ...`")
    for r in results:
        if r.status != "SUCCESS":
            typer.echo(f"{r.source}: FAILED: {r.error}", err=True)
            continue
        typer.echo(
            f"{r.source}: {r.records} record(s), watermark {r.watermark_from!r} -> "
            f"{r.watermark_to!r}" + (f", {r.file}" if r.file else ", nothing new")
        )
        if land and r.file:
            summary = land_path(url, instance, zone / r.file, r.source.split("/")[0])
            problem = summary.get("processing_error") or summary.get("error")
            twice = summary.get("duplicate_of")
            typer.echo(
                f"  landed: uploaded file {summary.get('uploaded_file_id')} "
                f"{summary.get('status')} ({summary.get('row_count')} rows)"
                + (" (the same content as that file: not landed twice)" * bool(twice))
                + (f": {problem}" if problem else "")
            )
    if any(r.status != "SUCCESS" for r in results):
        raise typer.Exit(1)


def _parse_date(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReconError(f"--date {text!r}: expected YYYY-MM-DD") from None
