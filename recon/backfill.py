"""`recon feeds` and `recon backfill`: load feeds, and re-run feed business dates.

A backfill re-runs the `reconcile_feed` assets for every (business date, feed) partition in a
date range. Either in this process, one Dagster run per partition, each on the
PostgreSQL-backed instance (a failing date is reported and the others carry on), or
`submit`ted as a Dagster asset backfill that the daemon of `recon ui` executes, visible under
Runs -> Backfills like one launched from the UI. Re-running is idempotent: each partition's
matches and exceptions are replaced atomically and human resolutions are kept (by fingerprint).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipelines.reconcile import feeds
from pipelines.reconcile.feed_store import store_feeds
from recon.execution import execute
from resources.errors import ReconError

# one backfill covers at most this many business dates (x feeds): a range of years is a mistake
MAX_BACKFILL_DAYS = 366


@dataclass(frozen=True)
class PartitionOutcome:
    """One partition of a backfill run in process."""

    partition_key: str
    success: bool
    run_id: str
    error: str | None
    reconciliation_id: int | None


def load_feeds(engine: sa.Engine, instance: Any, path: Path) -> dict[str, list[str]]:
    """Load a feeds file into the database and register each feed as a Dagster partition."""
    from pipelines.partitions import add_keys, feed_names

    specs = feeds.load_feeds_file(path)
    outcome = store_feeds(engine, specs, path)
    add_keys(instance, feed_names, [s.name for s in specs])
    return outcome


def partition_keys(
    engine: sa.Engine, instance: Any, feed_list: list[str], start: date, end: date
) -> list[str]:
    """`<date>|<feed>` keys for every date in [start, end] and every named (or active) feed.

    The dates and feeds become partitions if they were not (the date axis grows on demand).
    """
    from pipelines.partitions import add_business_dates, add_keys, feed_names

    if end < start:
        raise ReconError(f"--to {end} is before --from {start}")
    if end > date.today() + timedelta(days=1):
        raise ReconError(f"--to {end} is in the future; a business date has files by then")
    if (end - start).days >= MAX_BACKFILL_DAYS:
        raise ReconError(
            f"{start}..{end} is more than {MAX_BACKFILL_DAYS} days; backfill it in parts"
        )
    names = feed_list or [f.name for f in feeds.active_feeds(engine)]
    if not names:
        raise ReconError("no active feeds; load a feeds file first (`recon feeds load FILE`)")
    for name in names:
        feeds.feed_named(engine, name)  # a clear error for an unknown feed
    add_keys(instance, feed_names, names)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    add_business_dates(instance, days)
    return [feeds.feed_partition_key(d, n) for d in days for n in sorted(names)]


def _failure(result: Any) -> str | None:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            cause = error.cause if error and error.cause else error
            if cause is not None:
                return cause.message.strip().splitlines()[0]
    return None if result.success else "the run failed; see its log in `recon ui`"


def run_in_process(
    url: str,
    instance: Any,
    keys: list[str],
    *,
    say: Callable[[str], None] = lambda _m: None,
    tags: dict[str, str] | None = None,
) -> list[PartitionOutcome]:
    """Materialize the feed assets for each partition in turn; every partition is attempted."""
    from pipelines.automation import FEED_ASSETS
    from resources.database import engine_for

    engine = engine_for(url)
    backfill_id = f"local-{int(time.time())}"
    all_tags = {"recon/backfill": backfill_id, "recon/command": "backfill", **(tags or {})}

    def run(key: str, label: str) -> PartitionOutcome:
        result = execute(instance, url, FEED_ASSETS, partition_key=key, tags=all_tags, say=say)
        try:
            rid = feeds.reconciliation_for_partition(engine, key)
        except feeds.FeedError:
            rid = None
        outcome = PartitionOutcome(key, result.success, result.run_id, _failure(result), rid)
        state = "ok" if outcome.success else f"FAILED: {outcome.error}"
        say(f"{label} {key}: {state} (run {result.run_id})")
        return outcome

    outcomes = {key: run(key, f"[{i}/{len(keys)}]") for i, key in enumerate(keys, start=1)}
    # open items: a date whose earlier dates' open items changed after it ran (it ran first,
    # or an earlier date ran again) runs again, in date order, until none is stale; so the
    # backfill ends as running its dates in order would, whatever order they ran in
    names = sorted({feeds.split_partition_key(k)[1] for k in keys})
    for _round in range(len(keys) + 1):
        stale = feeds.stale_partitions(engine, names)
        if not stale:
            break
        for key in stale:
            outcomes[key] = run(key, "[again: earlier open items changed]")
    return list(outcomes.values())


def submit(instance: Any, keys: list[str], *, title: str | None = None) -> str:
    """Queue a Dagster asset backfill of the feed assets for the daemon; its id."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from pipelines.automation import FEED_SELECTION
    from pipelines.definitions import defs

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.get_repository_def().asset_graph,
        partition_names=keys,
        asset_selection=FEED_SELECTION,
        backfill_timestamp=time.time(),
        tags={"recon/command": "backfill"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description="submitted by recon backfill --submit",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id
