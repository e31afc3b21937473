"""Landing files from a command, through the same landing zone and assets as the sensor.

- `land_path` (`recon land FILE`): the file is copied into `<landing>/<org>/<data source>/`
  (under a hidden temporary name, then renamed, so the sensor never sees half a file) and its
  `landed_files` partition (`uploaded_file` + `canonical_file`) runs in process, exactly what
  the sensor's run executes; a file already in the zone is landed where it is.
- `scan_pass` (`recon land --scan`): one pass over the zone as a sensor tick sees it: each
  refused entry recorded once in `sync_logs` (`pipelines.ingest.refusals`) and left in place,
  each waiting file through its partition. Landed files leave the zone (to `processed/` or
  `quarantine/`) and identical content is recognised by its hash, so a second pass lands
  nothing again; a file whose partition already has a run in progress (the daemon's) is left
  to it.
- `land_and_process`: how `recon run` lands its two files (the file id; an error unless
  PROCESSED).

Each landing's outcome is a summary of its `uploaded_files` row (`file_summary`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest import landing, refusals
from pipelines.ingest.readers import CONTENT_TYPES
from resources.database import engine_for
from resources.errors import ReconError

FORMATS = {content_type: fmt for fmt, content_type in CONTENT_TYPES.items()}
IN_PROGRESS = "IN_PROGRESS"


def process_file_partition(instance: Any, url: str, key: str, tags: dict[str, str]) -> Any:
    """One `landed_files` partition's `uploaded_file` + `canonical_file` run, in process."""
    from pipelines.files import canonical_file, uploaded_file
    from recon.execution import execute

    return execute(instance, url, [uploaded_file, canonical_file], partition_key=key, tags=tags)


def file_summary(engine: sa.Engine, file_id: int) -> dict[str, Any]:
    """What `recon land` prints about one `uploaded_files` row."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT f.id, f.status, f.content_type, f.row_count, f.invalid_row_count, "
                "f.processing_error, f.original_filename, o.name AS organization, "
                "d.name AS data_source FROM uploaded_files f "
                "JOIN organizations o ON o.id = f.organization_id "
                "LEFT JOIN data_sources d ON d.id = f.data_source_id WHERE f.id = :i"
            ),
            {"i": file_id},
        ).one()
    return {
        "uploaded_file_id": row.id,
        "status": row.status,
        "format": FORMATS.get(row.content_type),
        "row_count": row.row_count,
        "invalid_row_count": row.invalid_row_count,
        "processing_error": row.processing_error,
        "original_filename": row.original_filename,
        "organization": row.organization,
        "data_source": row.data_source,
    }


def _failed(item: landing.LandingPath, error: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": str(item.relative),
        "uploaded_file_id": None,
        "status": "FAILED",
        "format": None,
        "row_count": None,
        "processing_error": error,
        "duplicate_of": None,
        **extra,
    }


def _run_error(result: Any) -> str:
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None:
            return f"{error.message.strip()} (Dagster run {result.run_id})"
    return f"landing failed (Dagster run {result.run_id}); see `recon ui`"


def _running(instance: Any, key: str) -> str | None:
    """The id of a run of this partition that is queued or in progress, if any."""
    from dagster import RunsFilter

    from recon.lifecycle import UNFINISHED, WAITING

    runs = instance.get_runs(
        filters=RunsFilter(tags={"dagster/partition": key}, statuses=[*WAITING, *UNFINISHED]),
        limit=1,
    )
    return runs[0].run_id if runs else None


def land_item(
    url: str, instance: Any, zone: Path, item: landing.LandingPath, command: str
) -> dict[str, Any]:
    """Run the partition of one waiting landing-zone file as the sensor's run would; its summary.

    Raises `LandingRefused` when the file was swapped (for a link, another file) since the scan.
    """
    from pipelines.files import LANDING_PATH_TAG, landed_files

    # hashed once, through a checked descriptor: the run trusts it while size and mtime match
    found = landing.fingerprint(item.path, item.path.lstat(), zone=zone)
    key = landing.partition_key_for(item.relative, found.sha256)
    running = _running(instance, key)
    if running is not None:
        return _failed(item, f"a run of this file is in progress ({running})", status=IN_PROGRESS)
    if not instance.has_dynamic_partition(landed_files.name, key):
        instance.add_dynamic_partitions(landed_files.name, [key])
    tags = {"recon/command": command, LANDING_PATH_TAG: str(item.relative), **found.tags()}
    result = process_file_partition(instance, url, key, tags)
    try:
        landed = result.output_for_node("uploaded_file")
    except Exception:  # noqa: BLE001 - the run failed before landing: its error says why
        return _failed(item, _run_error(result), dagster_run_id=result.run_id)
    summary = file_summary(engine_for(url), landed.duplicate_of or landed.uploaded_file_id)
    return {
        "path": str(item.relative),
        **summary,
        "duplicate_of": landed.duplicate_of,
        "dagster_run_id": result.run_id,
    }


def drop_into_zone(zone: Path, path: Path, organization: str, source: str) -> landing.LandingPath:
    """Copy `path` into `<zone>/<organization>/<source>/` (renamed in place once complete)."""
    folder = (
        zone
        / landing.folder_name(organization, "organization")
        / landing.folder_name(source, "data source")
    )
    folder.mkdir(parents=True, exist_ok=True)
    name = landing.safe_display_name(path.name).lstrip(".") or "file"
    tmp = folder / f".{uuid.uuid4().hex}.tmp"  # hidden and .tmp: no scan picks it up
    try:
        shutil.copyfile(path, tmp)
        dropped = folder / name
        if dropped.exists() or dropped.is_symlink():
            dropped = folder / f"{uuid.uuid4().hex[:8]}-{name}"
        os.rename(tmp, dropped)
    finally:
        tmp.unlink(missing_ok=True)
    item = landing.parse_landing_path(zone, dropped)
    if item is None:
        raise ReconError(f"{dropped}: not a landing-zone path")
    return item


def _in_zone(zone: Path, path: Path) -> landing.LandingPath | None:
    """The landing-zone entry `path` names, when it is inside the zone (folders resolved)."""
    candidate = Path(os.path.realpath(path.absolute().parent)) / path.name
    try:
        relative = candidate.relative_to(zone.resolve())
    except ValueError:
        return None
    item = landing.parse_landing_path(zone, zone / relative)
    if item is None:
        raise ReconError(
            f"{path} is inside the landing zone but not at <organization>/<data source>/<file>"
        )
    return item


def land_path(
    url: str,
    instance: Any,
    path: Path,
    organization: str,
    source: str | None = None,
) -> dict[str, Any]:
    """Land one file (`recon land FILE`): copied into the zone, or where it is if inside it."""
    from resources.file_store import FileStoreResource

    landing.folder_name(organization, "organization")  # before anything is written
    zone = FileStoreResource().store().landing
    item = _in_zone(zone, path)
    if item is not None:
        if source not in (None, item.data_source):
            raise ReconError(
                f"{path} is already in the landing zone as {item.relative}: its folders name "
                "its organization and data source; drop --org / --data-source"
            )
        reason = landing.refusal(zone, item.path)
        if reason is not None:
            refusals.record_refusal(engine_for(url), item, reason)
            return _failed(item, f"refused: {reason}")
    else:
        if not path.is_file():
            raise ReconError(f"{path}: no such file (or not a regular file)")
        item = drop_into_zone(zone, path, organization, source or path.stem)
    return land_item(url, instance, zone, item, "land")


def scan_pass(
    url: str,
    instance: Any,
    organization: str | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """One pass over the landing zone (`recon land --scan`): landed, refused and failed entries."""
    from resources.file_store import FileStoreResource

    if organization is not None:
        landing.folder_name(organization, "organization")
    zone = FileStoreResource().store().landing
    engine = engine_for(url)
    entries = [
        (item, reason)
        for item, reason in landing.scan_with_refusals(zone)
        if organization is None or item.organization == organization
    ]
    outcome: dict[str, list[dict[str, Any]]] = {
        "landed": [],
        "refused": [],
        "failed": [],
        "in_progress": [],
    }

    def refuse(item: landing.LandingPath, reason: str) -> None:
        new = refusals.record_refusal(engine, item, reason)
        outcome["refused"].append({"path": str(item.relative), "reason": reason, "new": new})
        say(f"refused {item.relative}: {reason}{'' if new else ' (recorded before)'}")

    for item, reason in entries:
        if reason is not None:
            refuse(item, reason)
    for item, reason in entries:
        if reason is not None:
            continue
        say(f"landing {item.relative}")
        try:
            summary = land_item(url, instance, zone, item, "land --scan")
        except (OSError, landing.LandingRefused) as err:
            # gone or swapped since the scan: refused now if it must be, else a failure
            there = item.path.is_symlink() or item.path.exists()
            now = landing.refusal(zone, item.path) if there else None
            if now is not None:
                refuse(item, now)
            else:
                outcome["failed"].append(_failed(item, str(err)))
            continue
        kind = {"PROCESSED": "landed", IN_PROGRESS: "in_progress"}.get(summary["status"], "failed")
        outcome[kind].append(summary)
    return outcome


def land_and_process(url: str, instance: Any, path: Path, organization: str, source: str) -> int:
    """Land one file through the landing zone and its partition's assets; its file id.

    What `recon run` lands its files with: a file that is not PROCESSED is an error.
    """
    from resources.file_store import FileStoreResource

    zone = FileStoreResource().store().landing
    item = drop_into_zone(zone, path, organization, source)
    summary = land_item(url, instance, zone, item, "run")
    if summary["status"] != "PROCESSED":
        reason = summary["processing_error"] or "not recorded"
        raise ReconError(f"{path.name} could not be processed: {reason}")
    return summary["uploaded_file_id"]
