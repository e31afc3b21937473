"""Writing into the landing zone: a file appears in `<zone>/<organization>/<data source>/` whole.

`ZoneDrop` writes into a hidden `.<uuid>.tmp` file of its data source's folder (no scan picks
such a name up), then renames it into place (`os.replace`) once complete, or deletes it. Every
folder from the zone down is opened with O_NOFOLLOW | O_DIRECTORY and the file created with
O_CREAT | O_EXCL | O_NOFOLLOW relative to its folder's descriptor, as `open_in_zone` reads
(`pipelines.ingest.zone`): a symlink planted at any level makes the write fail rather than
land outside the zone. Used by webhook deliveries (`recon serve`) and source pulls
(`pipelines.ingest.pulls.pull`); `pipelines.ingest.zone` only reads the zone.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from pipelines.ingest import landing

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_LOCK = threading.Lock()  # name check + rename, so two writers never share a name


class ZoneDrop:
    """One file's temporary copy inside `<zone>/<organization>/<data source>/`."""

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
