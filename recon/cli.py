"""The `recon` command line.

`recon db ...` manages the database (embedded by default, `RECON_DATABASE_URL` otherwise),
`recon ui` starts the Dagster webserver and daemon on the PostgreSQL-backed instance, and
`recon demo` shows the pipeline end to end. Errors the user can act on (`ReconError`) are
printed as one line on stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from recon.cli_db import db_app
from recon.cli_db import ready_url as _ready_url
from recon.cli_exceptions import exceptions_app
from recon.cli_feeds import feeds_app
from recon.cli_land import land_command
from recon.cli_match import match_command, unmatch_command
from recon.cli_runs import backfill, cancel, runs
from recon.cli_secrets import secrets_app
from recon.cli_sources import serve_command, sources_app
from recon.cli_users import AsOption, users_app
from recon.scope import DEFAULT_ORGANIZATION, require_owned
from resources import migrations
from resources.database import masked_url
from resources.errors import ReconError
from resources.settings import PROJECT_ROOT

# exceptions a second the default embedder's whole `recon embed` stores on 2 cores (the
# estimate `recon run` says; bench/retrieval_command.py)
EMBED_RATE = 300

app = typer.Typer(
    help="Smart Reconciliation: reconcile two data sets into a documented PostgreSQL schema.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(secrets_app, name="secrets")


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Address the webserver listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the webserver listens on.")] = 3000,
) -> None:
    """Start the Dagster webserver and daemon on the PostgreSQL-backed instance."""
    from resources.dagster_instance import dagster_process_environment

    url = _ready_url()
    migrations.migrate(url)
    child_env = dagster_process_environment(url)  # this process's environment is not changed
    base = f"http://{host}:{port}"
    typer.echo(f"Dagster UI on {base} (Ctrl-C stops it; the database keeps running)")
    typer.echo(
        f"""where to click:
  {base}/asset-groups       the graph: ingest -> reconcile / feed_reconcile -> ai, maintenance
  {base}/assets/feed/reconciliation_record   feed partitions (date x feed), metadata, checks
  {base}/runs                runs and backfills (start one by selecting partitions)
  {base}/automation          landing_zone_sensor, feed_pairing_sensor, daily_reconciliation
nothing there yet? `recon demo` lands sample files and a week of two feeds"""
    )
    command = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        host,
        "-p",
        str(port),
    ]
    raise typer.Exit(subprocess.call(command, cwd=PROJECT_ROOT, env=child_env))


def _engine_choice(engine: str | None) -> str | None:
    from resources.linkage_engine import ENGINES

    if engine is not None and engine.lower() not in ENGINES:
        raise ReconError(f"--engine {engine}: choose {' or '.join(ENGINES)}")
    return engine.lower() if engine else None


@app.command("run")
def run(
    source: Annotated[
        Path, typer.Option(help="The source file (for example a bank export).", show_default=False)
    ],
    target: Annotated[
        Path, typer.Option(help="The target file (for example the ledger).", show_default=False)
    ],
    rules: Annotated[
        Path | None,
        typer.Option(
            help="Rule set YAML (field_mappings, matching_rules); see README. Omit it to have "
            "one proposed from the data (stored with is_ai_generated, printed on stderr)."
        ),
    ] = None,
    org: Annotated[str, typer.Option(help="Organization the files belong to.")] = (
        "Default Organization"
    ),
    name: Annotated[
        str | None, typer.Option(help="Reconciliation name (default: 'SOURCE vs TARGET').")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Only print the JSON summary.")] = False,
    as_user: AsOption = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Linkage engine: duckdb (embedded) or spark (RECON_SPARK_MASTER, default "
            "local[*]); default RECON_LINKAGE_ENGINE, else duckdb. An engine that cannot "
            "start fails the run.",
            show_default=False,
        ),
    ] = None,
    embed: Annotated[
        bool,
        typer.Option(
            help="Afterwards, embed every exception for `recon search` and suggested "
            "resolutions (a Dagster run of its own, progress in its log; ~300 exceptions/s "
            "on 2 cores, cached by text). --no-embed leaves it to `recon embed ID`."
        ),
    ] = True,
) -> None:
    """Reconcile two files through the Dagster assets; the last stdout line is a JSON summary.

    Exit status 0 when the reconciliation COMPLETED, 1 with a one-line reason otherwise.
    """
    import json

    from pipelines.definitions import defs
    from pipelines.reconcile.proposal import propose_rule_set
    from recon.run import RunRequest, run_reconciliation

    logging.getLogger("dagster").setLevel(logging.WARNING)
    logging.getLogger("splink").setLevel(logging.ERROR)
    url = _ready_url()
    migrations.migrate(url)
    say = (lambda _m: None) if quiet else (lambda m: typer.echo(m, err=True))
    summary = run_reconciliation(
        url,
        RunRequest(
            source=source,
            target=target,
            rules=rules,
            organization=org,
            name=name,
            as_user=as_user,
            engine=_engine_choice(engine),
        ),
        # the definitions' embedder resource (the model loads only if a proposal is needed)
        propose_rules=partial(propose_rule_set, embedder=defs.resources["embedder"].embedder()),
        say=say,
    )
    count = summary["exception_count"] or 0
    if embed and summary["status"] == "COMPLETED" and count:
        minutes = count / EMBED_RATE / 60
        say(
            f"embedding {count:,} exceptions for search and suggestions"
            + (f" (about {minutes:.0f} min; --no-embed skips it)" if minutes >= 1 else "")
        )
        from pipelines.embeddings import PROGRESS_LOGGER
        from recon.execution import progress_on_stderr

        with progress_on_stderr(PROGRESS_LOGGER, enabled=not quiet):
            _embed(url, summary["reconciliation_id"])
    typer.echo(json.dumps(summary, default=str))
    if summary["status"] != "COMPLETED":
        typer.echo(
            f"recon: error: reconciliation {summary['reconciliation_id']} "
            f"{summary['status']}: {summary.get('error_message') or 'no reason recorded'}",
            err=True,
        )
        raise typer.Exit(1)


def _embed(url: str, reconciliation_id: int) -> bool:
    from recon.run import embed_exceptions
    from resources.dagster_instance import dagster_instance

    ok, run_id = embed_exceptions(dagster_instance(url), url, reconciliation_id)
    if not ok:
        typer.echo(
            f"recon: warning: embedding failed (Dagster run {run_id}); the reconciliation "
            "is complete; see the run in `recon ui` and try again with `recon embed "
            f"{reconciliation_id}`",
            err=True,
        )
    return ok


@app.command("embed")
def embed_command(
    reconciliation_id: Annotated[int, typer.Argument(help="A COMPLETED reconciliation.")],
    org: Annotated[
        str, typer.Option(help="Organization the id belongs to (another's ids are refused).")
    ] = DEFAULT_ORGANIZATION,
) -> None:
    """Embed a reconciliation's exceptions for search and suggested resolutions (cached)."""
    from resources.database import engine_for

    url = _ready_url()
    migrations.migrate(url)
    require_owned(engine_for(url), org, "reconciliation", reconciliation_id)
    typer.echo(f"embedding the exceptions of reconciliation {reconciliation_id}", err=True)
    if not _embed(url, reconciliation_id):
        raise typer.Exit(1)
    typer.echo(f"reconciliation {reconciliation_id}: exceptions embedded")


@app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    org: Annotated[str, typer.Option(help="Organization to search (never any other).")] = (
        "Default Organization"
    ),
    limit: Annotated[int, typer.Option(help="How many exceptions to show.", min=1)] = 10,
    reconciliation: Annotated[
        int | None, typer.Option(help="Only this reconciliation's exceptions.")
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this type, e.g. AMOUNT_MISMATCH.")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="Only this severity, e.g. HIGH.")] = None,
    status: Annotated[str | None, typer.Option(help="Only OPEN, RESOLVED or IGNORED.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Semantic search over exceptions (vector + full-text, hybrid ranking), one organization."""
    import json

    from pipelines.embed.search import search_organization

    url = _ready_url()
    migrations.migrate(url)
    hits = search_organization(
        url,
        text,
        organization=org,
        limit=limit,
        reconciliation_id=reconciliation,
        type=type_.upper() if type_ else None,
        severity=severity.upper() if severity else None,
        status=status.upper() if status else None,
    )
    for hit in hits:
        if as_json:
            typer.echo(json.dumps(hit, default=str))
            continue
        typer.echo(
            f"#{hit['exception_id']} (reconciliation {hit['reconciliation_id']}) {hit['type']} "
            f"{hit['severity']} {hit['status']}  score {hit['score']:.4f} [{hit['method']}]"
        )
        typer.echo(f"    {hit['description']}")
        suggestion = (hit.get("suggestion") or {}).get("resolution")
        if suggestion:
            typer.echo(f"    suggested resolution: {suggestion}")
    if not hits and not as_json:
        typer.echo("no matching exceptions (were they embedded? `recon run` embeds by default)")


@app.command("ask")
def ask(
    reconciliation_id: Annotated[int, typer.Argument(help="The reconciliation to ask about.")],
    question: Annotated[str, typer.Argument(help="Your question, in plain words.")],
    org: Annotated[
        str, typer.Option(help="Organization the id belongs to (another's ids are refused).")
    ] = DEFAULT_ORGANIZATION,
) -> None:
    """Ask about a reconciliation; the answer cites its exceptions (kept in chat_sessions)."""
    from pipelines.embed.chat import ask as answer_question
    from resources.database import engine_for
    from resources.embedder import EmbedderResource

    url = _ready_url()
    migrations.migrate(url)
    org_id = require_owned(engine_for(url), org, "reconciliation", reconciliation_id)
    answer = answer_question(
        engine_for(url), EmbedderResource().embedder(), reconciliation_id, question, org_id
    )
    typer.echo(answer.text)
    typer.echo(f"(chat session {answer.session_id})")


app.add_typer(feeds_app, name="feeds")
app.add_typer(users_app, name="users")
app.add_typer(exceptions_app, name="exceptions")
app.command("land")(land_command)
app.add_typer(sources_app, name="sources")
app.command("serve")(serve_command)
app.command("runs")(runs)
app.command("cancel")(cancel)
app.command("backfill")(backfill)
app.command("match")(match_command)
app.command("unmatch")(unmatch_command)


@app.command("lineage")
def lineage(
    exception_id: Annotated[int, typer.Argument(help="A reconciliation_exceptions.id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The chain as one JSON object.")] = False,
    org: Annotated[
        str, typer.Option(help="Organization the id belongs to (another's ids are refused).")
    ] = DEFAULT_ORGANIZATION,
) -> None:
    """From one exception to its rows, their files, the rule-set version and the Dagster run."""
    import json

    from pipelines.reconcile.lineage import exception_lineage, format_lineage
    from resources.database import engine_for
    from resources.file_store import FileStoreResource

    url = _ready_url()
    org_id = require_owned(engine_for(url), org, "exception", exception_id)
    store = FileStoreResource().store()
    chain = exception_lineage(engine_for(url), store, exception_id, organization_id=org_id)
    typer.echo(json.dumps(chain, default=str) if as_json else format_lineage(chain))


@app.command("demo")
def demo(
    days: Annotated[int, typer.Option(help="Days of feed files to land.", min=1, max=31)] = 7,
) -> None:
    """Run the product end to end on sample data, and say where to look in the UI.

    Lands and reconciles a bank export against a ledger (ad hoc, like `recon run`), then a
    week of files for two daily feeds (the sensors, the date x feed partitions), and queues a
    backfill for the daemon of `recon ui`.
    """
    from recon.demo import DEMO_ORGANIZATION, DEMO_RULES, run_demo

    url = _ready_url()
    shown = run_demo(url, typer.echo, days=days)
    rid = shown["reconciliation_id"]
    first, last = shown["week"]
    typer.echo(f"rules used: {DEMO_RULES}; feeds: {shown['feeds_file']}")
    typer.echo(f"database: {masked_url(url)}")
    typer.echo(
        f"""
next: `recon ui`, then open http://127.0.0.1:3000
  - Lineage: groups ingest, reconcile, feed_reconcile, ai, maintenance: the graph from landed
    file to embeddings; `canonical_file` shows each file's schema, preview and validation check
  - feed/reconciliation_record: the partitions ({first} .. {last} x 2 feeds), each with match
    rate, exceptions by type and severity, stage times, and checks against the feed's history
  - feed/record_links: the score distribution and a link to Splink's match-weights chart
  - Runs > Backfills: {shown["backfill_id"]} (queued; the daemon runs it, idempotently)
  - Automation: landing_zone_sensor, feed_pairing_sensor, daily_reconciliation
then: `recon search 'amount differs' --org '{DEMO_ORGANIZATION}'`, `recon ask {rid} 'what is
missing?' --org '{DEMO_ORGANIZATION}'`, `recon feeds list`, `recon lineage <exception id> --org
'{DEMO_ORGANIZATION}'`, `recon backfill --help`"""
    )


def main() -> None:
    """Console-script entry point: run the command, turning ReconError into one line.

    A database that goes away mid-command (a crashed or stopped server) is one line too; the
    run it was executing is failed by the next `recon` command (see `recon runs`).
    """
    import psycopg
    import psycopg2
    from dagster_postgres.utils import DagsterPostgresException

    lost = (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        psycopg.OperationalError,
        psycopg2.OperationalError,
        DagsterPostgresException,  # Dagster's run storage gave up reconnecting
    )
    # libraries that log through the root logger (dagster-postgres's reconnect warnings) would
    # make it print to stderr: a command's output is its own lines and, on failure, one line
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        app()
    except ReconError as err:
        typer.echo(f"recon: error: {err}", err=True)
        sys.exit(1)
    except lost as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        typer.echo(
            f"recon: error: the database connection was lost ({first[:200]}); check it with "
            "`recon db up`, then run the command again (`recon runs` shows what was cut short)",
            err=True,
        )
        sys.exit(1)
