"""What a webhook delivery writes: a file in `<landing>/<organization>/<data source>/`, atomically.

`ZoneDrop` writes a delivery's body, as it streams in, into a hidden `.<uuid>.tmp` file of
its data source's folder (no scan picks such a name up), then renames it into place
(`os.replace`) once the body is complete and its signature checked, or deletes it. Every folder
from the zone down is opened with O_NOFOLLOW | O_DIRECTORY and the file created with
O_CREAT | O_EXCL | O_NOFOLLOW relative to its folder's descriptor, as `open_in_zone` reads
(`pipelines.ingest.zone`): a symlink planted at any level makes the delivery fail rather than
write outside the zone. `pipelines.ingest.zone` only reads the zone, hence this writer.

A JSON batch (`application/json`: an array of objects) becomes JSON Lines, one record a line,
which the readers land like any JSON Lines file (`records_to_jsonl`).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

from pipelines.ingest import landing
from pipelines.ingest.readers import CONTENT_TYPES

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
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_LOCK = threading.Lock()  # name check + rename, so two deliveries never share a name


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


class ZoneDrop:
    """One delivery's temporary file inside `<zone>/<organization>/<data source>/`."""

    def __init__(self, zone: Path, organization: str, data_source: str) -> None:
        self.zone = zone
        self.relative_folder = Path(
            landing.folder_name(organization, "organization"),
            landing.folder_name(data_source, "data source"),
        )
        zone.mkdir(parents=True, exist_ok=True)
        self._dir = os.open(zone, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fd: int | None = None
        self._tmp = f".{uuid.uuid4().hex}.tmp"
        try:
            for part in self.relative_folder.parts:
                try:
                    os.mkdir(part, 0o750, dir_fd=self._dir)
                except FileExistsError:
                    pass
                inner = os.open(part, _DIR_FLAGS, dir_fd=self._dir)
                os.close(self._dir)
                self._dir = inner
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self._tmp, flags, 0o640, dir_fd=self._dir)
        except BaseException:
            os.close(self._dir)
            raise

    def write(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    def read(self) -> bytes:
        """What was written so far (a JSON batch, bounded by the size limit)."""
        assert self._fd is not None
        return os.pread(self._fd, os.fstat(self._fd).st_size, 0)

    def replace_content(self, data: bytes) -> None:
        """Write `data` instead of what was written (a batch converted to JSON Lines)."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self.write(data)

    def commit(self, name: str) -> landing.LandingPath:
        """Rename the complete file into place under `name` (prefixed if taken); its entry."""
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        try:
            with _RENAME_LOCK:
                final = name
                while self._exists(final):
                    final = f"{uuid.uuid4().hex[:8]}-{name}"
                os.replace(self._tmp, final, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        finally:
            self.discard()
        item = landing.parse_landing_path(self.zone, self.zone / self.relative_folder / final)
        assert item is not None  # three parts, none hidden: folder_name checked them
        return item

    def discard(self) -> None:
        """Delete the temporary file (if still there) and let go of the folder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir >= 0:
            try:
                os.unlink(self._tmp, dir_fd=self._dir)
            except FileNotFoundError:
                pass
            os.close(self._dir)
            self._dir = -1

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True
