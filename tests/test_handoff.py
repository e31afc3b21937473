"""The reconcile stages' hand-off is kept per run, so two reconciliations in flight never mix."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, build_input_context, build_output_context

from pipelines.handoff import RunScopedIOManager


def test_two_runs_hand_off_to_their_own_next_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECON_HOME", str(tmp_path))
    manager = RunScopedIOManager()
    key = AssetKey(["mapped_records"])
    outputs = {}
    for run_id, work in (("run-a", {"reconciliation_id": 1}), ("run-b", {"reconciliation_id": 2})):
        outputs[run_id] = build_output_context(run_id=run_id, asset_key=key)
        manager.handle_output(outputs[run_id], work)
    for run_id, expected in (("run-a", 1), ("run-b", 2)):
        context = build_input_context(upstream_output=outputs[run_id], asset_key=key)
        assert manager.load_input(context)["reconciliation_id"] == expected
    stored = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pickle"))
    assert stored == [
        "dagster/storage/handoff/run-a/mapped_records.pickle",
        "dagster/storage/handoff/run-b/mapped_records.pickle",
    ]
