"""`recon runs`, `recon cancel`, `recon backfill`: what runs, stopping it, re-running dates.

Registered on the `recon` app in `recon.cli`.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

import typer

from recon.cli_db import ready_url as _ready_url
from recon.scope import DEFAULT_ORGANIZATION, require_owned
from resources import migrations
from resources.errors import ReconError


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


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReconError(f"{option} {value!r} is not a date (use YYYY-MM-DD)") from None


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
