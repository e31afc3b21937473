"""The landing zone itself: `<root>/<organization>/<data source>/<file>`, read safely.

Names as folders (`folder_name`: a name is one folder exactly, never reduced to a part of
itself), paths split into organization, data source and file, partition keys, and what may be
read at all (`refusal`): only regular files really inside the zone, never a symlink (to a file
or a folder), a device, a pipe or a path resolving elsewhere.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from resources.errors import ReconError


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
