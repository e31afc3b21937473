"""The landing zone itself: `<root>/<organization>/<data source>/<file>`, read safely.

Names as folders (`folder_name`: a name is one folder exactly, never reduced to a part of
itself), paths split into organization, data source and file, partition keys, and what may be
read at all (`refusal`): only regular files really inside the zone, never a symlink (to a file
or a folder), a hard link (it cannot be told apart from a link to a file elsewhere), a device,
a FIFO, a socket or a path resolving elsewhere. `open_in_zone` opens what was scanned without
following any symlink and checks that the descriptor is still the file scanned (a swap between
scan and open is refused), so the bytes landed are read from that descriptor only.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from resources.errors import ReconError
from resources.file_store import FileStore


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
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ReconError(
            f"{what} name {shown!r} cannot name a landing-zone folder: use one without '/', "
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
    not a regular file (a device, a FIFO, a socket, a folder), a file with more than one hard
    link, and a path that resolves outside the zone. A symlink or hard link to `/etc/passwd`
    dropped in the zone is never read nor moved.
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
        found = path.lstat()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    reason = _file_refusal(found)
    if reason is not None:
        return reason
    try:
        path.resolve(strict=True).relative_to(zone.resolve())
    except (OSError, ValueError):
        return "resolves outside the landing zone"
    return None


def _file_refusal(found: os.stat_result) -> str | None:
    """Why a file with this (l)stat must not be read: its kind, or its hard links."""
    mode = found.st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a folder (files go directly in <organization>/<data source>/)"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a file"
        )
        return f"not a regular file: {kind}"
    if found.st_nlink > 1:
        return (
            f"a hard link ({found.st_nlink} names for one file): it cannot be told apart from "
            "a link to a file outside the landing zone; copy the file into the zone instead "
            "(cp, not ln)"
        )
    return None


def open_in_zone(zone: Path, path: Path, scanned: os.stat_result | None = None) -> int:
    """A read-only descriptor of the landing-zone file `path`; `LandingRefused` if it may not be.

    Each folder from the zone down is opened with O_NOFOLLOW | O_DIRECTORY and the file with
    O_NOFOLLOW | O_NONBLOCK, relative to its folder's descriptor, so a symlink swapped in at
    any level after the scan is refused rather than followed (and a FIFO cannot block). The
    descriptor's fstat must still be a regular file with one link, and the very file scanned
    (device, inode, size, mtime_ns): `scanned`, its lstat (taken here when None).
    """
    reason = refusal(zone, path)
    if reason is not None:
        raise LandingRefused(f"{path}: refused: {reason}")
    relative = path.relative_to(zone)
    scanned = scanned if scanned is not None else path.lstat()
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    folder = os.open(zone, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(relative.parts[-1], os.O_RDONLY | os.O_NONBLOCK | flags, dir_fd=folder)
    except OSError as err:
        raise LandingRefused(
            f"{relative}: refused: changed while being landed ({err.strerror}); drop it again"
        ) from None
    finally:
        os.close(folder)
    opened = os.fstat(fd)
    reason = _file_refusal(opened)
    if reason is None and scanned is not None and _identity(opened) != _identity(scanned):
        reason = "replaced or changed between the scan and the landing; drop it again"
    if reason is not None:
        os.close(fd)
        raise LandingRefused(f"{relative}: refused: {reason}")
    return fd


def _identity(found: os.stat_result) -> tuple[int, int, int, int]:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def archive(store: FileStore, item: LandingPath, kind: str, uploaded_file_id: int | None) -> Path:
    """Move a landing-zone file to `processed/` or `quarantine/` (after its rows are committed).

    Only a regular file really inside the zone is moved (a rename moves a link itself, never
    what it points at); anything refused stays where it is.
    """
    target = store.archive(kind, item.relative, uploaded_file_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    if item.path.exists() and refusal(store.landing, item.path) is None:
        shutil.move(item.path, target)
    return target


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
