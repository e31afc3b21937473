"""How one reconcile stage hands its `ReconciliationWork` to the next: per run, not per asset.

Dagster's default IO manager keeps an unpartitioned asset's output at one path per asset key,
so two ad-hoc reconciliations in flight at once (two `recon run`s, or a run beside the daemon)
would overwrite each other's hand-off and a later stage could pick up the other
reconciliation. `RunScopedIOManager` keeps each output under its run id (and partition):
`<RECON_HOME>/dagster/storage/handoff/<run id>/<asset key>[/<partition>].pickle`. A stage reads
its upstream's output of the same run; a stage run alone later reads the one of the run that
last materialized its upstream (the re-execution of a failed run reads the parent run's).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    InputContext,
    IOManager,
    OutputContext,
    io_manager,
)

from resources.settings import recon_home


def _path(run_id: str, key: AssetKey, partition: str | None) -> Path:
    path = recon_home() / "dagster" / "storage" / "handoff" / run_id / Path(*key.path)
    if partition is not None:
        path = path / partition.replace("/", "_")
    return path.with_suffix(".pickle")


def _last_run_of(instance: DagsterInstance, key: AssetKey, partition: str | None) -> str:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        raise FileNotFoundError(f"{key.to_user_string()} has not been materialized yet")
    return records[0].run_id


class RunScopedIOManager(IOManager):
    """Pickles each output under its run id (see the module docstring)."""

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        partition = context.partition_key if context.has_partition_key else None
        path = _path(context.run_id, context.asset_key, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(obj))

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None
        key = context.asset_key
        partition = context.asset_partition_key if context.has_asset_partitions else None
        try:
            run_id = upstream.run_id
        except Exception:  # noqa: BLE001 - no run of its own: the upstream was materialized before
            run_id = _last_run_of(context.instance, key, partition)
        path = _path(run_id, key, partition)
        if not path.exists() and run_id != context.run_id:
            path = _path(_last_run_of(context.instance, key, partition), key, partition)
        return pickle.loads(path.read_bytes())


@io_manager(description="Reconcile stages' hand-off, kept per run id (pipelines/handoff.py).")
def run_scoped_io_manager() -> RunScopedIOManager:
    """The IO manager resource of the reconcile assets."""
    return RunScopedIOManager()
