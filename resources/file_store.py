"""The file store resource: landing zone, original files and canonical parquet under RECON_HOME.

`root` defaults to RECON_HOME; `landing` overrides where the landing zone is (default
`<root>/landing`), so a team can point the sensor at a shared drop folder.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from dagster import ConfigurableResource

from resources.settings import recon_home


@dataclass(frozen=True)
class FileStore:
    """Where files live under RECON_HOME: landing zone, originals, canonical parquet, archives."""

    root: Path
    landing_zone: Path | None = None

    @property
    def landing(self) -> Path:
        return self.landing_zone or self.root / "landing"

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


class FileStoreResource(ConfigurableResource):
    """Where landed, stored and canonical files live."""

    root: str | None = None
    landing: str | None = None

    def store(self) -> FileStore:
        return FileStore(
            Path(self.root) if self.root else recon_home(),
            Path(self.landing) if self.landing else None,
        )
