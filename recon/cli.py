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
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from recon.cli_db import db_app
from recon.cli_db import ready_url as _ready_url
from recon.cli_feeds import feeds_app
from recon.cli_land import land_command
from recon.cli_secrets import secrets_app
from recon.scope import DEFAULT_ORGANIZATION, require_owned
from resources import migrations
from resources.database import masked_url
from resources.errors import ReconError
from resources.settings import PROJECT_ROOT

# `recon run` embeds at most this many exceptions itself (~50 texts/s: under two minutes)
EMBED_NOW_LIMIT = 5_000

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
    embed: Annotated[
        bool,
        typer.Option(
            help="Afterwards, embed the exceptions for `recon search` and suggested resolutions "
            "(a Dagster run of its own; ~50 exception texts/s on 2 cores, cached by text). "
            f"Above {EMBED_NOW_LIMIT:,} exceptions it is left to `recon embed ID`."
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
        RunRequest(source=source, target=target, rules=rules, organization=org, name=name),
        # the definitions' embedder resource (the model loads only if a proposal is needed)
        propose_rules=partial(propose_rule_set, embedder=defs.resources["embedder"].embedder()),
        say=say,
    )
    count = summary["exception_count"] or 0
    if embed and summary["status"] == "COMPLETED" and count > EMBED_NOW_LIMIT:
        say(
            f"{count:,} exceptions: not embedded now (about {count // 50 // 60 + 1} min on this "
            f"machine); run `recon embed {summary['reconciliation_id']} --org {org!r}` when you "
            "want them searchable"
        )
    elif embed and summary["status"] == "COMPLETED" and count:
        say(f"embedding {count} exceptions for search and suggestions")
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


@app.command("runs")
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Unfinished Dagster runs and reconciliations, after failing those whose process died.

    A `recon run` or `recon backfill` that was killed leaves its run STARTED and its
    reconciliation RUNNING; this (like every `recon` command that runs something) notices that
    the owning process is gone, marks the run failed so the queue moves on, and fails the
    reconciliation and any file it was landing with the reason. Re-run it afterwards.
    """
    import json

    from recon.lifecycle import instance_for, unfinished
    from resources.database import engine_for

    url = _ready_url()
    said: list[str] = []
    instance = instance_for(url, said.append)
    state = unfinished(instance, engine_for(url))
    if as_json:
        typer.echo(json.dumps({"reaped": said, **state}, default=str))
        return
    for line in said:
        typer.echo(line)
    typer.echo(f"{len(state['runs'])} unfinished Dagster run(s)")
    for run in state["runs"]:
        alive = {True: "alive", False: "gone", None: "not this host's"}[run["owner_alive"]]
        typer.echo(
            f"  {run['run_id']} {run['job']} {run['status']} owner {run['owner'] or 'daemon'} "
            f"({alive})"
        )
    typer.echo(f"{len(state['reconciliations'])} reconciliation(s) pending or running")
    for rec in state["reconciliations"]:
        typer.echo(
            f"  #{rec['id']} {rec['name']!r} {rec['status']} {rec['progress']}% "
            f"run {rec['dagster_run_id'] or '-'}"
        )


@app.command("cancel")
def cancel(
    reconciliation_id: Annotated[int, typer.Argument(help="The reconciliation to cancel.")],
    org: Annotated[
        str, typer.Option(help="Organization the id belongs to (another's ids are refused).")
    ] = DEFAULT_ORGANIZATION,
) -> None:
    """Cancel a PENDING or RUNNING reconciliation (its run stops at the next stage)."""
    from pipelines.reconcile.records import cancel as cancel_reconciliation
    from resources.database import engine_for

    engine = engine_for(_ready_url())
    require_owned(engine, org, "reconciliation", reconciliation_id)
    if not cancel_reconciliation(engine, reconciliation_id):
        raise ReconError(f"reconciliation {reconciliation_id} is not pending or running")
    typer.echo(f"reconciliation {reconciliation_id} cancelled")


app.add_typer(feeds_app, name="feeds")
app.command("land")(land_command)


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReconError(f"{option} {value!r} is not a date (use YYYY-MM-DD)") from None


@app.command("backfill")
def backfill(
    start: Annotated[str, typer.Option("--from", help="First business date (YYYY-MM-DD).")],
    end: Annotated[
        str | None, typer.Option("--to", help="Last business date (default: --from).")
    ] = None,
    feed: Annotated[
        list[str] | None,
        typer.Option(help="Feed name (repeatable; default: every active feed)."),
    ] = None,
    submit: Annotated[
        bool,
        typer.Option(
            help="Queue a Dagster asset backfill for the daemon of `recon ui` (shown under "
            "Runs > Backfills) instead of running here."
        ),
    ] = False,
) -> None:
    """Re-run feed reconciliations for a range of business dates (idempotent).

    Each (date, feed) partition's matches and exceptions are replaced atomically; exceptions a
    person resolved or ignored keep their decision. A failing date is reported and the others
    carry on; the exit status is 1 when any date failed.
    """
    from recon.backfill import partition_keys, run_in_process
    from recon.backfill import submit as submit_backfill
    from recon.lifecycle import instance_for
    from resources.database import engine_for

    logging.getLogger("dagster").setLevel(logging.WARNING)
    logging.getLogger("splink").setLevel(logging.ERROR)
    url = _ready_url()
    migrations.migrate(url)
    instance = instance_for(url, lambda m: typer.echo(m, err=True))
    first = _date(start, "--from")
    last = _date(end, "--to") if end else first
    keys = partition_keys(engine_for(url), instance, feed or [], first, last)
    if submit:
        backfill_id = submit_backfill(instance, keys, title=f"recon backfill {first}..{last}")
        typer.echo(
            f"backfill {backfill_id} queued: {len(keys)} partitions; the daemon of `recon ui` "
            f"runs it (http://127.0.0.1:3000/runs/b/{backfill_id})"
        )
        return
    typer.echo(f"backfilling {len(keys)} partitions in this process", err=True)
    outcomes = run_in_process(url, instance, keys, say=lambda m: typer.echo(m, err=True))
    failed = [o for o in outcomes if not o.success]
    typer.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} partitions reconciled")
    for outcome in failed:
        typer.echo(f"FAILED {outcome.partition_key}: {outcome.error} (run {outcome.run_id})")
    if failed:
        raise typer.Exit(1)


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

    lost = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError)
    try:
        app()
    except ReconError as err:
        typer.echo(f"recon: error: {err}", err=True)
        sys.exit(1)
    except (*lost, psycopg2.OperationalError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        typer.echo(
            f"recon: error: the database connection was lost ({first[:200]}); check it with "
            "`recon db up`, then run the command again (`recon runs` shows what was cut short)",
            err=True,
        )
        sys.exit(1)
