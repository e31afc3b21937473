"""Encrypted credentials on the database side: `data_sources.config` written, rotated, counted.

Every change takes one PostgreSQL advisory lock (transaction-scoped) before it reads the key,
so a `recon secrets set` never encrypts with a key that a rotation running at the same moment
is about to drop. A rotation is crash-safe in three steps:

1. the key file becomes `NEW, OLD...` (atomic replace): new values are encrypted with NEW,
   and every key still opens what is stored;
2. one transaction re-encrypts every data source's envelopes with NEW (and seals any
   credential found in plain text);
3. after the commit, the key file becomes `NEW` alone (atomic replace): the old key is gone.

Interrupted between 1 and 3, the key file keeps both keys, everything stays readable, and the
next rotation finishes the job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from resources import secrets
from resources.errors import ReconError

LOCK_KEY = "recon secrets"


def lock(conn: sa.Connection) -> None:
    """Serialise secret changes (held to the end of the transaction); then read the key."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": LOCK_KEY})


def write_config(
    conn: sa.Connection, data_source_id: int, config: dict[str, Any], ring: secrets.KeyRing
) -> None:
    """Store a data source's config with every credential encrypted."""
    conn.execute(
        sa.text("UPDATE data_sources SET config = CAST(:c AS jsonb) WHERE id = :i"),
        {"c": json.dumps(secrets.encrypt_config(config, ring)), "i": data_source_id},
    )


def set_path(config: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """`config` with `value` at `path` (intermediate objects created as needed)."""
    node = config
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value
    return config


def config_path(key: str) -> list[str]:
    """`connection.password` -> ["connection", "password"]; refuses what is not a config key."""
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise ReconError(f"{key!r} is not a config key (e.g. password or connection.password)")
    if parts[0] in secrets.NOT_CREDENTIALS or any(p.startswith("$") for p in parts):
        raise ReconError(f"{key!r} cannot hold a secret (columns and $-keys are reserved)")
    return parts


@dataclass
class Rotation:
    """What a rotation did (key ids only, never a key)."""

    new_key_id: str
    dropped_key_ids: list[str]
    values: int = 0
    data_sources: int = 0
    sealed_now: list[str] = field(default_factory=list)  # plain credentials found and sealed
    env_key: bool = False  # RECON_SECRET_KEY: its first key, no key file replaced


def rotate(engine: sa.Engine) -> Rotation:
    """A new key (or, with RECON_SECRET_KEY, its first one) re-encrypting every secret."""
    with engine.begin() as conn:
        lock(conn)
        ring = secrets.load_keys()
        if ring is not None and ring.path is None:  # RECON_SECRET_KEY: nothing to replace
            if len(ring.keys) == 1:
                raise ReconError(
                    f"{secrets.ENV_KEY} is set, so there is no key file to replace: put a new "
                    f'key first, {secrets.ENV_KEY}="NEW,OLD" (make one with {secrets.MAKE_KEY}), '
                    "run `recon secrets rotate`, then drop OLD"
                )
            target, path = ring, None
        else:
            path = ring.path if ring is not None else secrets.key_file()
            old = ring.keys if ring is not None else ()
            target = secrets.KeyRing((secrets.new_key(), *old), f"key file {path}", path)
            secrets.write_key_file(path, target.keys)  # step 1: NEW first, OLD still there
        outcome = Rotation(
            secrets.key_id(target.keys[0]),
            [secrets.key_id(k) for k in target.keys[1:]],
            env_key=path is None,
        )
        rows = conn.execute(
            sa.text(
                "SELECT d.id, o.name AS org, d.name, d.config FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id ORDER BY d.id FOR UPDATE OF d"
            )
        ).all()
        for row in rows:
            plain = secrets.plain_credential_paths(row.config)
            rotated = secrets.rotate_config(row.config, target)
            count = sum(1 for _ in secrets.sealed_paths(rotated))
            if count:
                outcome.values += count
                outcome.data_sources += 1
                outcome.sealed_now += [f"{row.org}/{row.name}: {p}" for p in plain]
                conn.execute(
                    sa.text("UPDATE data_sources SET config = CAST(:c AS jsonb) WHERE id = :i"),
                    {"c": json.dumps(rotated), "i": row.id},
                )
    if path is not None:  # step 3, after the commit: the old keys go
        secrets.write_key_file(path, target.keys[:1])
    return outcome


@dataclass
class Status:
    """Where the key comes from and what it protects (key ids only, never a key)."""

    source: str
    key_ids: list[str]
    values_by_key: dict[str, int]
    data_sources: int
    plain: list[str]  # "org/data source: path" of credentials not encrypted

    @property
    def values(self) -> int:
        return sum(self.values_by_key.values())


def status(engine: sa.Engine) -> Status:
    """Key source, key ids, and how many values each key encrypted (nothing is decrypted)."""
    ring = secrets.load_keys()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT o.name AS org, d.name, d.config FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id ORDER BY d.id"
            )
        ).all()
    by_key = secrets.count_by_key([r.config for r in rows])
    holding = sum(1 for r in rows if any(True for _ in secrets.sealed_paths(r.config)))
    plain = [
        f"{r.org}/{r.name}: {p}" for r in rows for p in secrets.plain_credential_paths(r.config)
    ]
    if ring is None:
        source = (
            f"none yet (the key file {secrets.key_file()} is made on first `recon secrets set`)"
        )
    else:
        source = ring.source
    return Status(source, ring.key_ids() if ring else [], dict(by_key), holding, plain)
