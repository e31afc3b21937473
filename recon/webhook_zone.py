"""What a webhook delivery writes: a file in `<landing>/<organization>/<data source>/`, atomically.

A delivery's body streams into a `ZoneDrop` (`pipelines.ingest.zone_writer`: a hidden
temporary file of its data source's folder, opened without following symlinks), renamed into
place once the body is complete and its signature checked, or deleted. This module names the
file (`file_name`) and tells a file's suffix from its content type.

A JSON batch (`application/json`: an array of objects) becomes JSON Lines, one record a line,
which the readers land like any JSON Lines file (`records_to_jsonl`).
"""

from __future__ import annotations

import json

from pipelines.ingest import landing
from pipelines.ingest.readers import CONTENT_TYPES
from pipelines.ingest.zone_writer import ZoneDrop as ZoneDrop  # re-exported

BATCH_TYPE = "application/json"
# a file body's content type -> the suffix its file gets when the sender names none
FILE_TYPES: dict[str, str] = {
    **{content_type: f".{fmt}" for fmt, content_type in CONTENT_TYPES.items()},
    "application/csv": ".csv",
    "application/jsonl": ".jsonl",
    "application/x-parquet": ".parquet",
    "text/plain": "",
    "application/xml": "",
    "text/xml": "",
    "application/octet-stream": "",  # the readers tell the format from the content
}


class BatchError(ValueError):
    """A JSON batch that is not a non-empty array of objects (HTTP 400)."""


def records_to_jsonl(body: bytes) -> tuple[bytes, int]:
    """A JSON array of objects as JSON Lines (keys in their order) and its record count."""
    try:
        records = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BatchError(f"the body is not JSON ({str(err)[:120]})") from None
    if not isinstance(records, list) or not records:
        raise BatchError("a JSON batch is a non-empty array of objects: [{...}, {...}]")
    lines = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not record:
            raise BatchError(f"record {number} is not a non-empty JSON object")
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode(), len(records)


def file_name(given: str | None, suffix: str, timestamp: str, digest: str) -> str:
    """The landed file's name: the sender's (made safe), else `webhook-<timestamp>-<digest>`."""
    name = landing.safe_display_name(given).lstrip(". ") if given else ""
    if not name:
        name = f"webhook-{timestamp}-{digest[:12]}{suffix}"
    if name.lower().endswith(".tmp"):  # the scan skips .tmp files as partial: never one
        name += ".dat"
    return name[:200]
