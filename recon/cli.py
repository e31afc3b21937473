"""The `recon` command line.

`recon db ...` manages the database (embedded by default, `RECON_DATABASE_URL` otherwise),
`recon ui` starts the Dagster webserver and daemon on the PostgreSQL-backed instance, and
`recon demo` shows the pipeline end to end. Errors the user can act on (`ReconError`) are
printed as one line on stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from resources import migrations
from resources.database import check_database, libpq_url, resolve_database_url
from resources.embedded import stop_embedded_server
from resources.errors import ReconError
from resources.settings import PROJECT_ROOT, configured_database_url, recon_home

DEMO_ORGANIZATION = "Demo Organization"
DEMO_RULES = Path(__file__).with_name("demo_rules.yaml")
# `recon run` embeds at most this many exceptions itself (~50 texts/s: under two minutes)
EMBED_NOW_LIMIT = 5_000

app = typer.Typer(
    help="Smart Reconciliation: reconcile two data sets into a documented PostgreSQL schema.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    help="Manage the database: the embedded server under RECON_HOME, or RECON_DATABASE_URL.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


def _ready_url() -> str:
    """The database URL after checking the server is reachable and has pgvector."""
    url = resolve_database_url()
    check_database(url)
    return url


@db_app.command("up")
def db_up() -> None:
    """Start (or reuse) the database and apply pending migrations."""
    url = _ready_url()
    applied = migrations.migrate(url)
    where = "RECON_DATABASE_URL" if configured_database_url() else f"embedded, {recon_home()}"
    typer.echo(f"database ready ({where}): {libpq_url(url)}")
    typer.echo(f"migrations applied now: {', '.join(applied) if applied else 'none (up to date)'}")


@db_app.command("url")
def db_url() -> None:
    """Print a libpq URL of the database (psql accepts it: psql "$(recon db url)")."""
    typer.echo(libpq_url(_ready_url()))


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
    url = _ready_url()
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
    for state in migrations.status(_ready_url()):
        typer.echo(f"{'applied' if state.applied else 'pending'}  {state.id}")


@db_app.command("env")
def db_env() -> None:
    """Print the shell exports Dagster needs to use this instance: eval "$(recon db env)"."""
    from resources.dagster_instance import prepare_dagster_environment

    for key, value in prepare_dagster_environment(_ready_url()).items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded server (data is kept; the next command starts it again)."""
    if configured_database_url():
        raise ReconError("RECON_DATABASE_URL is set: that server is not ours to stop")
    stopped = stop_embedded_server(recon_home())
    typer.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Address the webserver listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the webserver listens on.")] = 3000,
) -> None:
    """Start the Dagster webserver and daemon on the PostgreSQL-backed instance."""
    from resources.dagster_instance import prepare_dagster_environment

    url = _ready_url()
    migrations.migrate(url)
    prepare_dagster_environment(url)
    typer.echo(f"Dagster UI on http://{host}:{port} (Ctrl-C stops it; the database keeps running)")
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
    raise typer.Exit(subprocess.call(command, cwd=PROJECT_ROOT))


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
        propose_rules=propose_rule_set,
        say=say,
    )
    count = summary["exception_count"] or 0
    if embed and summary["status"] == "COMPLETED" and count > EMBED_NOW_LIMIT:
        say(
            f"{count:,} exceptions: not embedded now (about {count // 50 // 60 + 1} min on this "
            f"machine); run `recon embed {summary['reconciliation_id']}` when you want them "
            "searchable"
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

    ok, run_id = embed_exceptions(dagster_instance(url), reconciliation_id)
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
) -> None:
    """Embed a reconciliation's exceptions for search and suggested resolutions (cached)."""
    url = _ready_url()
    migrations.migrate(url)
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
) -> None:
    """Ask about a reconciliation; the answer cites its exceptions (kept in chat_sessions)."""
    from pipelines.embed.chat import ask as answer_question
    from resources.database import engine_for
    from resources.embedder import SentenceTransformerEmbedder

    url = _ready_url()
    migrations.migrate(url)
    answer = answer_question(
        engine_for(url), SentenceTransformerEmbedder(), reconciliation_id, question
    )
    typer.echo(answer.text)
    typer.echo(f"(chat session {answer.session_id})")


@app.command("cancel")
def cancel(
    reconciliation_id: Annotated[int, typer.Argument(help="The reconciliation to cancel.")],
) -> None:
    """Cancel a PENDING or RUNNING reconciliation (its run stops at the next stage)."""
    from pipelines.reconcile.records import cancel as cancel_reconciliation
    from resources.database import engine_for

    if not cancel_reconciliation(engine_for(_ready_url()), reconciliation_id):
        raise ReconError(f"reconciliation {reconciliation_id} is not pending or running")
    typer.echo(f"reconciliation {reconciliation_id} cancelled")


@app.command("demo")
def demo() -> None:
    """Bring the database up, land sample bank and ledger files, and run them through Dagster."""
    from dagster import build_sensor_context, materialize

    from pipelines.database import database_schema
    from pipelines.definitions import defs
    from pipelines.files import canonical_file, landed_files, landing_zone_sensor, uploaded_file
    from pipelines.reconcile.rules import load_rule_set_file
    from recon.samples import write_samples
    from resources.dagster_instance import dagster_instance
    from resources.database import engine_for
    from resources.file_store import FileStoreResource

    logging.getLogger("splink").setLevel(logging.ERROR)
    url = _ready_url()
    instance = dagster_instance(url)
    resources = defs.resources
    if not materialize([database_schema], instance=instance, resources=resources).success:
        raise ReconError("the database_schema run failed; open `recon ui` to see its logs")
    zone = FileStoreResource().store().landing / DEMO_ORGANIZATION
    write_samples(zone / "bank", zone / "ledger")
    typer.echo(f"landed sample files in {zone}")
    # what the landing-zone sensor does on its next tick, evaluated here so the demo is one step
    tick = landing_zone_sensor(
        build_sensor_context(instance=instance, resources={"file_store": FileStoreResource()})
    )
    keys = [request.partition_key for request in tick.run_requests]
    new = [k for k in keys if k and not instance.has_dynamic_partition(landed_files.name, k)]
    instance.add_dynamic_partitions(landed_files.name, new)
    for key in keys:
        result = materialize(
            [uploaded_file, canonical_file],
            partition_key=key,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        typer.echo(f"  run {result.run_id} for {key}: {'ok' if result.success else 'FAILED'}")
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.id, f.original_filename, f.status, f.row_count, f.invalid_row_count "
                "FROM uploaded_files f JOIN organizations o ON o.id = f.organization_id "
                "WHERE o.name = :o ORDER BY f.id"
            ),
            {"o": DEMO_ORGANIZATION},
        ).all()
    for row in rows:
        typer.echo(
            f"  uploaded_files #{row.id} {row.original_filename}: {row.status}, "
            f"{row.row_count} rows, {row.invalid_row_count} invalid"
        )
    by_name = {row.original_filename: row for row in rows}
    bank, ledger = by_name.get("bank_export.csv"), by_name.get("ledger.csv")
    if bank is None or ledger is None or "FAILED" in (bank.status, ledger.status):
        raise ReconError("the sample files were not processed; open `recon ui` to see why")
    from recon.run import reconcile_files

    rule_set = load_rule_set_file(DEMO_RULES)
    summary = reconcile_files(
        url, instance, bank.id, ledger.id, rule_set, name="demo: bank export vs ledger"
    )
    typer.echo(
        f"reconciliation #{summary['reconciliation_id']} {summary['status']}: "
        f"{summary['matched_records']} matched, match rate {summary['match_rate']}%, "
        f"{summary['exception_count']} exceptions {summary['exceptions_by_type']}"
    )
    if summary["status"] != "COMPLETED":
        raise ReconError(f"the demo reconciliation failed: {summary['error_message']}")
    from recon.run import embed_exceptions

    embedded, run_id = embed_exceptions(instance, summary["reconciliation_id"])
    typer.echo(
        "exceptions embedded for search: try `recon search 'amount differs' --org "
        f"'{DEMO_ORGANIZATION}'` and `recon ask {summary['reconciliation_id']} 'what is missing?'`"
        if embedded
        else f"embedding the exceptions failed (Dagster run {run_id}); see `recon ui`"
    )
    typer.echo(f"rules used: {DEMO_RULES}")
    typer.echo(f"database: {libpq_url(url)}")
    typer.echo(
        "next: `recon ui`, open http://127.0.0.1:3000: assets `canonical_file` (ingest) and "
        "`reconciliation_record` (reconcile) show what happened; try `recon run --help`"
    )


def main() -> None:
    """Console-script entry point: run the command, turning ReconError into one line."""
    try:
        app()
    except ReconError as err:
        typer.echo(f"recon: error: {err}", err=True)
        sys.exit(1)
