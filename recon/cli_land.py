"""`recon land`: land one file, or one pass of the landing zone, through the sensor's assets.

`recon land FILE` copies FILE into `<landing>/<org>/<data source>/` (the original is kept where
it is) and runs its partition of `uploaded_file` + `canonical_file` in process: the assets the
landing sensor's runs execute (`recon.land`). `recon land --scan` does what one sensor tick
and its runs do. Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from recon.scope import DEFAULT_ORGANIZATION
from resources.errors import ReconError


def land_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The file to land (any supported format). It is copied into the landing zone; "
            "the original is left where it is. A file already inside the zone is landed there.",
            show_default=False,
        ),
    ] = None,
    scan: Annotated[
        bool,
        typer.Option(
            "--scan",
            help="Instead of FILE: one pass over the landing zone as the sensor would make it: "
            "every new file in <landing>/<org>/<data source>/ landed, every symlink, hard link, "
            "device, FIFO or socket refused (left in place, recorded once in sync_logs).",
        ),
    ] = False,
    org: Annotated[
        str | None,
        typer.Option(
            help="Organization (a landing-zone folder name). FILE: default "
            f"{DEFAULT_ORGANIZATION!r}. --scan: only its folder (default: every organization).",
            show_default=False,
        ),
    ] = None,
    data_source: Annotated[
        str | None,
        typer.Option(
            "--data-source",
            help="Data source FILE belongs to (a folder name; default: FILE's name without "
            "its extension). Created on first sight as type FILE.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Only print the JSON line.")] = False,
) -> None:
    """Land a file (or, with --scan, the landing zone) as the sensor would.

    FILE: the last stdout line is JSON: uploaded_file_id, status, format,
    row_count, processing_error, duplicate_of (content already landed for
    the organization is not processed again: that file's summary, with
    duplicate_of its id). Exit 0 when the file is PROCESSED; exit 1 when it
    could not be (status FAILED and processing_error saying why: the
    original kept, the landed copy in quarantine/, the failure recorded in
    uploaded_files and sync_logs) or could not be landed at all (one line).

    --scan: the last stdout line is JSON: landed, refused ({path, reason,
    new}), failed, in_progress. Exit 0 when the pass ran, whatever it
    found; 1 only when it could not run. Safe to repeat: landed files have
    left the zone and each refusal is recorded once per (path, size, mtime).
    """
    from recon.cli_db import ready_url
    from recon.land import land_path, scan_pass
    from recon.lifecycle import instance_for
    from resources import migrations

    if scan == (file is not None):
        raise ReconError("give either FILE or --scan (see `recon land --help`)")
    if scan and data_source is not None:
        raise ReconError("--data-source is for FILE; --scan takes each file's from its folder")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    say = (lambda _m: None) if quiet else (lambda m: typer.echo(m, err=True))
    url = ready_url()
    migrations.migrate(url)
    instance = instance_for(url, say)
    if scan:
        outcome = scan_pass(url, instance, org, say)
        say(
            f"{len(outcome['landed'])} landed, {len(outcome['refused'])} refused, "
            f"{len(outcome['failed'])} failed, {len(outcome['in_progress'])} in progress"
        )
        typer.echo(json.dumps(outcome, default=str))
        return
    assert file is not None
    say(f"landing {file}")
    summary = land_path(url, instance, file, org or DEFAULT_ORGANIZATION, data_source)
    typer.echo(json.dumps(summary, default=str))
    if summary["status"] != "PROCESSED":
        typer.echo(
            f"recon: error: {file}: {summary['status']}: {summary['processing_error']}", err=True
        )
        raise typer.Exit(1)
