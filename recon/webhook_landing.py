"""The webhook server's side of the database and of Dagster: sources looked up, files landed.

`find_source` answers which WEBHOOK data source a delivery is for and its secret (decrypted
from `data_sources.config.webhook_secret`, read afresh for every delivery, so `recon secrets
set` or a deactivation takes effect at once). `LandingPool` lands each delivered file through
`recon.land.land_item`, the function `recon land FILE` ends in: the same partition of
`uploaded_file` + `canonical_file`, the same run slots and run storage.

Landings run in worker processes (spawned, each with its own Dagster instance): in-process
Dagster runs from several threads of one process deadlock (measured: two threads' runs hung
for good), and a worker's crash must not take the server down. There are as many workers as
the run queue has slots (`max_concurrent_runs`, 2 by default), so deliveries beyond that wait
for a worker as `recon land` waits for a slot.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from resources import secrets
from resources.webhook_auth import SECRET_KEY

WEBHOOK = "WEBHOOK"
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class WebhookSource:
    """An active WEBHOOK data source and the secret its deliveries are signed with."""

    id: int
    organization: str
    name: str
    secret: bytes = field(repr=False)


def find_source(engine: sa.Engine, organization: str, name: str) -> WebhookSource | None:
    """The organization's active WEBHOOK data source `name` with a secret; None otherwise."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT d.id, d.type, d.active, d.config FROM data_sources d "
                "JOIN organizations o ON o.id = d.organization_id "
                "WHERE o.name = :o AND d.name = :n"
            ),
            {"o": organization, "n": name},
        ).first()
    if row is None or row.type != WEBHOOK or not row.active:
        return None
    sealed = (row.config or {}).get(SECRET_KEY)
    if sealed is None:
        return None
    value = secrets.reveal(secrets.decrypt_config({SECRET_KEY: sealed})[SECRET_KEY])
    if not isinstance(value, str) or not value:
        return None
    return WebhookSource(row.id, organization, name, value.encode())


def _start_worker(url: str) -> None:
    """A worker process's Dagster instance (dead runs reaped, as every command does)."""
    from recon.lifecycle import instance_for

    logging.getLogger("dagster").setLevel(logging.WARNING)
    logging.getLogger().addHandler(logging.NullHandler())
    _WORKER["url"] = url
    _WORKER["instance"] = instance_for(url)


def _ready() -> bool:
    return "instance" in _WORKER


def _land(zone: str, relative: str) -> dict[str, Any]:
    """Land one file already in the zone, in a worker: `recon land`'s summary of it."""
    from pipelines.ingest import landing
    from recon.land import land_item

    root = Path(zone)
    item = landing.parse_landing_path(root, root / relative)
    assert item is not None
    return land_item(_WORKER["url"], _WORKER["instance"], root, item, "webhook")


class LandingPool:
    """Worker processes landing delivered files (see the module docstring)."""

    def __init__(self, url: str, workers: int) -> None:
        self.url = url
        self.workers = max(1, workers)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.url,),
        )

    async def start(self) -> None:
        """Start every worker now (each imports Dagster once), not on the first delivery."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self.workers))
        )

    async def land(self, zone: Path, relative: Path) -> dict[str, Any]:
        """Land `<zone>/<relative>`; a dead worker's pool is replaced (and the error raised)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, _land, str(zone), str(relative))
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
