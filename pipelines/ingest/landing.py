"""File landing: the landing zone, the file store and the `uploaded_files` bookkeeping.

A landing zone is `<root>/<organization>/<data source>/<file>`. Landing a file hashes it
(SHA-256, streamed), copies it into the file store under a UUID-based name, and records it in
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
folder), a hard link, a device, a FIFO, a socket or a path resolving elsewhere is refused, left
where it is and never moved; the sensor says so once in its log and records it once in
`sync_logs` (`pipelines.ingest.refusals`). The file is read (hashed, copied) only through the
descriptor `open_in_zone` checked, never by its path again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.ingest.column_schema import FileSchema
from pipelines.ingest.zone import LandingPath, LandingRefused, archive, open_in_zone, refusal
from pipelines.ingest.zone import (  # re-exported: the landing zone is part of landing
    folder_name as folder_name,
)
from pipelines.ingest.zone import (
    parse_landing_path as parse_landing_path,
)
from pipelines.ingest.zone import (
    partition_key_for as partition_key_for,
)
from pipelines.ingest.zone import (
    safe_display_name as safe_display_name,
)
from pipelines.ingest.zone import (
    scan_with_refusals as scan_with_refusals,
)
from resources import secrets
from resources.file_store import FileStore, copy_into_store

SYNC_SYSTEM = "landing-zone"
HASH_CHUNK = 1 << 20
SHA256_TAG = "recon/sha256"
SIZE_TAG = "recon/size"
MTIME_NS_TAG = "recon/mtime_ns"
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A full SHA-256 as `sha256_of` writes it (lowercase hex)."""


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


def sha256_of(path: Path | int) -> str:
    """SHA-256 of a file (a path, or an open descriptor read from its start), in chunks.

    Reading into the same buffer spares allocating (and faulting in) a new bytes object per
    chunk, and hashlib releases the GIL while it digests each chunk. (A memory map is hardly
    faster and would kill the process with SIGBUS if the file were truncated meanwhile.)
    """
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    if isinstance(path, int):
        os.lseek(path, 0, os.SEEK_SET)
    with open(path, "rb", buffering=0, closefd=not isinstance(path, int)) as handle:
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
    path: Path,
    stat: os.stat_result | None = None,
    known_sha256: str | None = None,
    zone: Path | None = None,
) -> Fingerprint:
    """A file's fingerprint: `known_sha256` if given, else its hash, with its size and mtime_ns.

    `stat` (taken now when None) must be from before hashing: a write while hashing then
    changes the mtime, the fingerprint no longer matches the file, and whoever trusts it
    hashes again. With `zone`, the file is read through `open_in_zone` (`LandingRefused` when
    it was swapped for a link or another file since `stat`).
    """
    stat = stat if stat is not None else path.stat()
    if known_sha256 is not None or zone is None:
        sha = known_sha256 if known_sha256 is not None else sha256_of(path)
        return Fingerprint(sha, stat.st_size, stat.st_mtime_ns)
    fd = open_in_zone(zone, path, stat)
    try:
        return Fingerprint(sha256_of(fd), stat.st_size, stat.st_mtime_ns)
    finally:
        os.close(fd)


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


def data_source_config(
    engine: sa.Engine, data_source_id: int, *, decrypt: bool = False
) -> dict[str, Any]:
    """The data source's declared config (columns, ...); credentials stay sealed unless
    `decrypt` (then pydantic `Secret`s). Written by `resources.secret_store.write_config`."""
    with engine.connect() as conn:
        config = conn.execute(
            sa.text("SELECT config FROM data_sources WHERE id = :i"), {"i": data_source_id}
        ).scalar_one()
    return secrets.decrypt_config(config) if decrypt else config or {}


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
    """Record a landing-zone file and copy it into the file store (status PROCESSING).

    Identical content already PROCESSED for the organization is not landed again: the
    result names the earlier file in `duplicate_of`, and the zone copy moves to `processed/`.
    `known` is the sensor's fingerprint of the file: its hash is used, and the file not read,
    only while the file's size and mtime_ns are still the fingerprint's; otherwise the file is
    hashed here. A symlink, a hard link, a non-regular file or a path outside the zone is
    refused (`LandingRefused`), nothing read or moved; the file is then read through one
    checked descriptor (`open_in_zone`) and its bytes copied into the store.
    """
    reason = refusal(store.landing, item.path)
    if reason is not None:
        raise LandingRefused(f"{item.relative}: refused: {reason}")
    fd = open_in_zone(store.landing, item.path)
    try:
        return _land_open_file(engine, store, item, fd, partition_key, run_id, known)
    finally:
        os.close(fd)


def _land_open_file(
    engine: sa.Engine,
    store: FileStore,
    item: LandingPath,
    fd: int,
    partition_key: str | None,
    run_id: str | None,
    known: Fingerprint | None,
) -> LandedFile:
    stat = os.fstat(fd)
    sha = known.sha256 if known is not None and known.matches(stat) else sha256_of(fd)
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
    fresh = not landed.stored_path.exists()
    copied = copy_into_store(fd, landed.stored_path)
    after = os.fstat(fd)
    if copied != size or (after.st_size, after.st_mtime_ns) != (size, stat.st_mtime_ns):
        # written to while copied: the copy may not be the content hashed; keep neither
        if fresh:
            landed.stored_path.unlink(missing_ok=True)
        message = f"{item.relative}: changed while being landed; it was not stored, drop it again"
        record_failed(engine, landed, message)
        raise LandingRefused(message)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE uploaded_files SET status = 'PROCESSING' WHERE id = :i"),
            {"i": landed.uploaded_file_id},
        )
    return landed


def record_processed(
    engine: sa.Engine,
    landed: LandedFile,
    *,
    content_type: str,
    detected_schema: FileSchema,
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
                "schema": json.dumps(detected_schema.to_json()),
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
