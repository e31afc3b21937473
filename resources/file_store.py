"""The file store resource: landing zone, original files and canonical parquet under RECON_HOME.

`root` is RECON_HOME; `landing` overrides where the landing zone is (default
`<root>/landing`), so a team can point the sensor at a shared drop folder; `feeds_file` is the
feeds file the pairing sensor loads (RECON_FEEDS_FILE, default `<root>/feeds.yaml`).
`pipelines/definitions.py` configures them (EnvVar when the variable is set); a resource built
without `root` outside the definitions takes the `recon` commands' default, `recon_home()`.

Originals enter the store as copies of their bytes (`copy_into_store`), never as links to the
landing-zone file: a link would leave the stored original writable through the zone, and would
give the zone file a second name. Nothing outside the store is moved by it.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from resources.settings import feeds_file, feeds_path, home_path, recon_home


@dataclass(frozen=True)
class FileStore:
    """Where files live under RECON_HOME: landing zone, originals, canonical parquet, archives."""

    root: Path
    landing_zone: Path | None = None
    feeds: Path | None = None

    @property
    def landing(self) -> Path:
        return self.landing_zone or self.root / "landing"

    @property
    def feeds_file(self) -> Path:
        """The feeds file the pairing sensor loads (default `<root>/feeds.yaml`)."""
        return self.feeds or feeds_path(None, self.root)

    def original(self, stored_filename: str) -> Path:
        return self.root / "store" / "originals" / stored_filename

    def canonical(self, uploaded_file_id: int) -> Path:
        return self.root / "store" / "canonical" / f"{uploaded_file_id}.parquet"

    def row_failures(self, uploaded_file_id: int) -> Path:
        return self.root / "store" / "canonical" / f"{uploaded_file_id}.failures.parquet"

    def reconciliation_dir(self, reconciliation_id: int) -> Path:
        """Working files of one reconciliation (conformed records, links, exceptions)."""
        return self.root / "store" / "reconciliations" / str(reconciliation_id)

    def match_weights_chart(self, rule_set_id: int) -> Path:
        """Splink's match-weights chart (offline HTML) of the model of one rule-set version."""
        return self.root / "store" / "models" / f"rule_set_{rule_set_id}_match_weights.html"

    def archive(self, kind: str, relative: Path, uploaded_file_id: int | None) -> Path:
        """`processed/` or `quarantine/` path for a landing-zone file, never overwriting."""
        prefix = f"{uploaded_file_id}-" if uploaded_file_id is not None else f"{uuid.uuid4().hex}-"
        return self.root / kind / relative.parent / f"{prefix}{relative.name}"


COPY_CHUNK = 1 << 26


def copy_into_store(source_fd: int, target: Path) -> int:
    """Copy an open file's bytes (from its start) to `target` in the store; the bytes written.

    Written under a temporary name beside the target and renamed, so nobody sees a partial
    original; a target already there (the same content, landed before) is kept as it is.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return target.stat().st_size
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as out:
            os.lseek(source_fd, 0, os.SEEK_SET)
            copied = _copy_descriptor(source_fd, out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return copied


def _copy_descriptor(source: int, target: int) -> int:
    # copy_file_range copies in the kernel (a reflink where the filesystem can); filesystems or
    # kernels that cannot get a plain buffered copy
    copied = 0
    try:
        while size := os.copy_file_range(source, target, COPY_CHUNK):
            copied += size
        return copied
    except OSError as err:
        unsupported = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)
        if copied or err.errno not in unsupported:
            raise
    with io.FileIO(source, closefd=False) as src, io.FileIO(target, "w", closefd=False) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        return dst.tell()


class FileStoreResource(ConfigurableResource):
    """Where landed, stored and canonical files live, and the feeds file."""

    root: str | None = Field(default=None, description="State directory (RECON_HOME)")
    landing: str | None = Field(default=None, description="Landing zone (default <root>/landing)")
    feeds_file: str | None = Field(
        default=None, description="Feeds file (RECON_FEEDS_FILE, default <root>/feeds.yaml)"
    )

    def store(self) -> FileStore:
        root = recon_home() if self.root is None else home_path(self.root)
        if self.feeds_file:
            feeds = feeds_path(self.feeds_file, root)
        else:  # outside the definitions (no root either): the `recon` commands' default
            feeds = feeds_file() if self.root is None else None
        return FileStore(
            root, Path(self.landing).expanduser().resolve() if self.landing else None, feeds
        )
