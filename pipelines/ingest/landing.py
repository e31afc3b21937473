"""File landing: the landing zone, the file store and the `uploaded_files` bookkeeping.

A landing zone is `<root>/<organization>/<data source>/<file>`. Landing a file hashes it
(SHA-256, streamed), links it into the file store under a UUID-based name, and records it in
`uploaded_files` (linked to its `data_sources` row, created on first sight as type FILE) and in
`sync_logs`. Identical content already landed for the organization is recognised by its hash
and not processed again. The landing-zone copy is moved out (to `processed/` or `quarantine/`)
only after the database rows saying what happened are committed; nothing is ever deleted.

The sensor hashes each waiting file to name its partition, and hands the run that hash with the
file's size and modification time (a `Fingerprint`, carried in run tags). Landing trusts that
hash only while the file's size and mtime_ns are still those, and hashes the file again
otherwise, so a large file is read for hashing once, not twice, and a file replaced or edited
in between is never recorded under the hash of its earlier content.

Only regular files really inside the zone are read (`refusal`): a symlink (to a file or a
folder), a device, a pipe or a path resolving elsewhere is refused, left where it is and
never moved; the sensor says so once in its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

import sqlalchemy as sa

from resources.errors import ReconError
from resources.file_store import FileStore

SYNC_SYSTEM = "landing-zone"
HASH_CHUNK = 1 << 20
SHA256_TAG = "recon/sha256"
SIZE_TAG = "recon/size"
MTIME_NS_TAG = "recon/mtime_ns"
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A full SHA-256 as `sha256_of` writes it (lowercase hex)."""


@dataclass(frozen=True)
class LandingPath:
    """A file in the landing zone, split into its organization, data source and name."""

    path: Path
    relative: Path
    organization: str
    data_source: str

    @property
    def display_name(self) -> str:
        return safe_display_name(self.relative.name)


@dataclass(frozen=True)
class LandedFile:
    """What landing recorded: the `uploaded_files` row and where the original now is."""

    uploaded_file_id: int
    organization_id: int
    data_source_id: int
    original_filename: str
    stored_path: Path
    landing_relative: str
    sha256: str
    size: int
    duplicate_of: int | None = None


def safe_display_name(name: str) -> str:
    """A file name fit to show and store: control characters escaped, path parts removed."""
    name = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(
        ch if unicodedata.category(ch)[0] != "C" else f"\\x{ord(ch):02x}" for ch in name
    )
    return cleaned[:500] or "unnamed"


def folder_name(name: str, what: str) -> str:
    """`name` as one landing-zone folder, exactly; refused when it cannot be one.

    The folder decides the organization (or data source) of every file dropped in it, so a
    name is never reduced to a part of itself: `Attacker/TenantB` must not become `TenantB`.
    """
    if (
        not name.strip()
        or name in (".", "..")
        or name.startswith(".")
        or safe_display_name(name) != name
        or len(name.encode()) > 200
    ):
        raise ReconError(
            f"{what} name {name!r} cannot name a landing-zone folder: use one without '/', "
            "'\\', control characters or a leading '.', at most 200 bytes"
        )
    return name


def partition_key_for(relative: Path, sha256: str) -> str:
    """A Dagster partition key for a landed file: its zone path plus a content-hash prefix."""
    text = "/".join(safe_display_name(part) for part in relative.parts)
    text = re.sub(r"\\x[0-9a-f]{2}", "_", text).replace("...", "_")
    return f"{text}#{sha256[:12]}"


def parse_landing_path(zone: Path, path: Path) -> LandingPath | None:
    """Split `path` into organization / data source / file; None when not at that depth."""
    try:
        relative = path.relative_to(zone)
    except ValueError:
        return None
    if len(relative.parts) != 3 or any(p.startswith(".") for p in relative.parts[:2]):
        return None
    return LandingPath(path, relative, relative.parts[0], relative.parts[1])


def refusal(zone: Path, path: Path) -> str | None:
    """Why a landing-zone entry must not be read (None: a regular file really inside the zone).

    Refused: a symlink (the file, or its organization or data-source folder), anything that is
    not a regular file (a device, a FIFO, a socket, a folder), and a path that resolves outside
    the zone. A symlink to `/etc/passwd` dropped in the zone is never read nor moved.
    """
    try:
        relative = path.relative_to(zone)
    except ValueError:
        return "not inside the landing zone"
    current = zone
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return f"{current.relative_to(zone)} is a symbolic link (only regular files land)"
    try:
        mode = path.lstat().st_mode
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not S_ISREG(mode):
        return "not a regular file (a device, pipe, socket or folder)"
    try:
        path.resolve(strict=True).relative_to(zone.resolve())
    except (OSError, ValueError):
        return "resolves outside the landing zone"
    return None


def _entries(zone: Path) -> list[Path]:
    """`<organization>/<source>/<file>` entries, without following any symlink."""
    found = []
    for org in sorted(zone.iterdir()):
        if org.name.startswith(".") or not org.is_dir() or org.is_symlink():
            if org.is_symlink():
                found.append(org)
            continue
        for source in sorted(org.iterdir()):
            if source.is_symlink():
                found.append(source)
            elif source.is_dir() and not source.name.startswith("."):
                found.extend(sorted(source.iterdir()))
    return found


def scan_landing_zone(zone: Path) -> list[LandingPath]:
    """Files waiting in the zone, oldest first (hidden, partial `.tmp` and refused skipped)."""
    return [item for item, reason in scan_with_refusals(zone) if reason is None]


def scan_with_refusals(zone: Path) -> list[tuple[LandingPath, str | None]]:
    """Every entry waiting in the zone with the reason it is refused (None: it may land)."""
    if not zone.exists():
        return []
    found = []
    for path in _entries(zone):
        if path.name.startswith(".") or path.suffix == ".tmp":
            continue
        relative = path.relative_to(zone)
        parts = relative.parts
        item = LandingPath(path, relative, parts[0], parts[1] if len(parts) > 1 else "")
        reason = refusal(zone, path)
        if reason is None and len(parts) != 3:
            continue
        found.append((item, reason))
    return sorted(found, key=lambda p: (_mtime(p[0].path), str(p[0].relative)))


def _mtime(path: Path) -> int:
    try:
        return path.lstat().st_mtime_ns
    except OSError:
        return 0


class LandingRefused(ReconError):
    """A landing-zone entry that must not be read (see `refusal`)."""


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in chunks into one reused buffer.

    Reading into the same buffer spares allocating (and faulting in) a new bytes object per
    chunk, and hashlib releases the GIL while it digests each chunk. (A memory map is hardly
    faster and would kill the process with SIGBUS if the file were truncated meanwhile.)
    """
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """A file's SHA-256 with the size and mtime_ns it had when it was hashed."""

    sha256: str
    size: int
    mtime_ns: int

    def tags(self) -> dict[str, str]:
        """Run tags carrying the fingerprint from the sensor to the run."""
        return {
            SHA256_TAG: self.sha256,
            SIZE_TAG: str(self.size),
            MTIME_NS_TAG: str(self.mtime_ns),
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Fingerprint | None:
        """The fingerprint in run tags; None when absent or malformed (then the file is hashed)."""
        sha = tags.get(SHA256_TAG, "")
        try:
            size, mtime_ns = int(tags[SIZE_TAG]), int(tags[MTIME_NS_TAG])
        except (KeyError, ValueError):
            return None
        return cls(sha, size, mtime_ns) if SHA256_RE.fullmatch(sha) else None

    def matches(self, stat: os.stat_result) -> bool:
        """Whether a file with this stat is, as far as size and mtime tell, the one hashed."""
        return stat.st_size == self.size and stat.st_mtime_ns == self.mtime_ns


def fingerprint(
    path: Path, stat: os.stat_result | None = None, known_sha256: str | None = None
) -> Fingerprint:
    """A file's fingerprint: `known_sha256` if given, else its hash, with its size and mtime_ns.

    `stat` (taken now when None) must be from before hashing: a write while hashing then
    changes the mtime, the fingerprint no longer matches the file, and whoever trusts it
    hashes again.
    """
    stat = stat if stat is not None else path.stat()
    sha = known_sha256 if known_sha256 is not None else sha256_of(path)
    return Fingerprint(sha, stat.st_size, stat.st_mtime_ns)


def ensure_organization(conn: sa.Connection, name: str) -> int:
    """The organization's id, created on first sight."""
    conn.execute(
        sa.text("INSERT INTO organizations (name) VALUES (:n) ON CONFLICT (name) DO NOTHING"),
        {"n": name},
    )
    return conn.execute(
        sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": name}
    ).scalar_one()


def ensure_data_source(conn: sa.Connection, organization_id: int, name: str) -> int:
    """The data source's id (type FILE), created on first sight."""
    conn.execute(
        sa.text(
            "INSERT INTO data_sources (name, type, organization_id, config) "
            "VALUES (:n, 'FILE', :o, '{}'::jsonb) ON CONFLICT (organization_id, name) DO NOTHING"
        ),
        {"n": name, "o": organization_id},
    )
    return conn.execute(
        sa.text("SELECT id FROM data_sources WHERE organization_id = :o AND name = :n"),
        {"o": organization_id, "n": name},
    ).scalar_one()


def data_source_config(engine: sa.Engine, data_source_id: int) -> dict[str, Any]:
    """The data source's declared config (required columns, types, ranges, keys)."""
    with engine.connect() as conn:
        config = conn.execute(
            sa.text("SELECT config FROM data_sources WHERE id = :i"), {"i": data_source_id}
        ).scalar_one()
    return config or {}


def _sync_log(
    conn: sa.Connection,
    landed: LandedFile,
    status: str,
    records: int = 0,
    error: str | None = None,
) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO sync_logs (organization_id, data_source_id, uploaded_file_id, system, "
            "direction, status, records_processed, error_message, completed_at) "
            "VALUES (:o, :d, :f, :s, 'INBOUND', :st, :r, :e, NOW())"
        ),
        {
            "o": landed.organization_id,
            "d": landed.data_source_id,
            "f": landed.duplicate_of or landed.uploaded_file_id,
            "s": SYNC_SYSTEM,
            "st": status,
            "r": records,
            "e": error,
        },
    )


def land_file(
    engine: sa.Engine,
    store: FileStore,
    item: LandingPath,
    *,
    partition_key: str | None = None,
    run_id: str | None = None,
    known: Fingerprint | None = None,
) -> LandedFile:
    """Record a landing-zone file and link it into the file store (status PROCESSING).

    Identical content already PROCESSED for the organization is not landed again: the
    result names the earlier file in `duplicate_of`, and the zone copy moves to `processed/`.
    `known` is the sensor's fingerprint of the file: its hash is used, and the file not read,
    only while the file's size and mtime_ns are still the fingerprint's; otherwise the file is
    hashed here. A symlink, a non-regular file or a path outside the zone is refused
    (`LandingRefused`), nothing read or moved.
    """
    reason = refusal(store.landing, item.path)
    if reason is not None:
        raise LandingRefused(f"{item.relative}: refused: {reason}")
    stat = item.path.stat()
    if known is not None and known.matches(stat):
        sha = known.sha256
    else:
        sha = sha256_of(item.path)
        stat = item.path.stat()
    size = stat.st_size
    suffix = "".join(item.path.suffixes[-1:]).lower()[:10]
    with engine.begin() as conn:
        org_id = ensure_organization(conn, item.organization)
        source_id = ensure_data_source(conn, org_id, item.data_source)
        existing = conn.execute(
            sa.text(
                "SELECT id, status, stored_filename FROM uploaded_files "
                "WHERE organization_id = :o AND content_sha256 = :h FOR UPDATE"
            ),
            {"o": org_id, "h": sha},
        ).first()
        if existing is not None and existing.status == "PROCESSED":
            landed = LandedFile(
                existing.id,
                org_id,
                source_id,
                item.display_name,
                store.original(existing.stored_filename),
                str(item.relative),
                sha,
                size,
                duplicate_of=existing.id,
            )
            _sync_log(
                conn,
                landed,
                "SKIPPED",
                0,
                f"identical content already landed as file {existing.id}",
            )
        else:
            stored_filename = existing.stored_filename if existing else f"{uuid.uuid4()}{suffix}"
            params = {
                "name": item.display_name,
                "stored": stored_filename,
                "size": size,
                "path": str(store.original(stored_filename)),
                "source": source_id,
                "org": org_id,
                "sha": sha,
                "pk": partition_key,
                "run": run_id,
            }
            if existing is None:
                file_id = conn.execute(
                    sa.text(
                        "INSERT INTO uploaded_files (original_filename, stored_filename, "
                        "content_type, file_size, file_path, status, data_source_id, "
                        "organization_id, content_sha256, partition_key, dagster_run_id) "
                        "VALUES (:name, :stored, 'application/octet-stream', :size, :path, "
                        "'UPLOADING', :source, :org, :sha, :pk, :run) RETURNING id"
                    ),
                    params,
                ).scalar_one()
            else:
                file_id = existing.id
                conn.execute(
                    sa.text(
                        "UPDATE uploaded_files SET original_filename = :name, "
                        "status = 'UPLOADING', processing_error = NULL, data_source_id = :source, "
                        "partition_key = :pk, dagster_run_id = :run WHERE id = :id"
                    ),
                    {**params, "id": file_id},
                )
            landed = LandedFile(
                file_id,
                org_id,
                source_id,
                item.display_name,
                store.original(stored_filename),
                str(item.relative),
                sha,
                size,
            )
    if landed.duplicate_of is not None:
        archive(store, item, "processed", landed.duplicate_of)
        return landed
    _link_or_copy(item.path, landed.stored_path)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE uploaded_files SET status = 'PROCESSING' WHERE id = :i"),
            {"i": landed.uploaded_file_id},
        )
    return landed


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)  # same filesystem: free, and the bytes are never duplicated
    except OSError:
        tmp = target.with_suffix(target.suffix + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.rename(target)


def archive(store: FileStore, item: LandingPath, kind: str, uploaded_file_id: int | None) -> Path:
    """Move a landing-zone file to `processed/` or `quarantine/` (after its rows are committed)."""
    target = store.archive(kind, item.relative, uploaded_file_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    # only a regular file really inside the zone is moved, never what a symlink points at
    if item.path.exists() and refusal(store.landing, item.path) is None:
        shutil.move(item.path, target)
    return target


def record_processed(
    engine: sa.Engine,
    landed: LandedFile,
    *,
    content_type: str,
    detected_schema: list[dict[str, Any]],
    row_count: int,
    invalid_row_count: int,
    preview: list[list[Any]],
) -> None:
    """Mark a file PROCESSED with what was detected, and log the landing as a success."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE uploaded_files SET status = 'PROCESSED', content_type = :ct, "
                "detected_schema = CAST(:schema AS jsonb), row_count = :rows, "
                "column_count = :cols, preview_data = CAST(:preview AS jsonb), "
                "invalid_row_count = :invalid, processing_error = NULL WHERE id = :id"
            ),
            {
                "ct": content_type,
                "schema": json.dumps(detected_schema, default=str),
                "rows": row_count,
                "cols": len(detected_schema),
                "preview": json.dumps(preview, default=str),
                "invalid": invalid_row_count,
                "id": landed.uploaded_file_id,
            },
        )
        _sync_log(conn, landed, "SUCCESS", row_count)


def record_failed(engine: sa.Engine, landed: LandedFile, error: str) -> None:
    """Mark a file FAILED with an error a person can act on, and log the failed landing."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE uploaded_files SET status = 'FAILED', processing_error = :e WHERE id = :id"
            ),
            {"e": error, "id": landed.uploaded_file_id},
        )
        _sync_log(conn, landed, "FAILED", 0, error)


def landed_file_for_partition(
    engine: sa.Engine, store: FileStore, partition_key: str
) -> LandedFile | None:
    """The file an earlier run landed for this partition (for re-runs and backfills)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, organization_id, data_source_id, original_filename, stored_filename, "
                "content_sha256, file_size FROM uploaded_files WHERE partition_key = :k "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"k": partition_key},
        ).first()
    if row is None:
        return None
    return LandedFile(
        row.id,
        row.organization_id,
        row.data_source_id,
        row.original_filename,
        store.original(row.stored_filename),
        partition_key.rsplit("#", 1)[0],
        row.content_sha256,
        row.file_size,
    )
