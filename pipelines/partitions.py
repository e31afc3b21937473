"""The partitions of the reconcile assets: one ad-hoc reconciliation, or one feed's business date.

- `reconciliations` (dynamic): one key per ad-hoc `reconciliations.id` (`recon run` adds it
  when it creates the reconciliation), so the catalog keeps every reconciliation's
  materializations, not only the latest one's.
- `feed_partitions`: business date x feed, both dynamic. A feed name is added when the feeds
  file is loaded; a business date when a feed has files for it (the pairing sensor, the
  schedule, `recon backfill`, the demo), so the date axis starts at the first file, not at
  an arbitrary calendar date, and "Materialize all" offers only dates that have data.
  A key reads `<date>|<feed>`, e.g. `2024-06-03|bank-vs-ledger`.
"""

from __future__ import annotations

from datetime import date

from dagster import DagsterInstance, DynamicPartitionsDefinition, MultiPartitionsDefinition

reconciliations = DynamicPartitionsDefinition(name="reconciliations")
business_dates = DynamicPartitionsDefinition(name="business_dates")
feed_names = DynamicPartitionsDefinition(name="feeds")
feed_partitions = MultiPartitionsDefinition({"date": business_dates, "feed": feed_names})


def new_keys(
    instance: DagsterInstance, partitions: DynamicPartitionsDefinition, keys: list[str]
) -> list[str]:
    """The keys not yet among the dynamic partitions (in order, without repeats)."""
    assert partitions.name is not None
    seen: set[str] = set()
    fresh = []
    for key in keys:
        if key not in seen and not instance.has_dynamic_partition(partitions.name, key):
            fresh.append(key)
        seen.add(key)
    return fresh


def add_keys(
    instance: DagsterInstance, partitions: DynamicPartitionsDefinition, keys: list[str]
) -> list[str]:
    """Add the missing keys to a dynamic partitions definition; the ones added."""
    fresh = new_keys(instance, partitions, keys)
    if fresh:
        assert partitions.name is not None
        instance.add_dynamic_partitions(partitions.name, fresh)
    return fresh


def add_business_dates(instance: DagsterInstance, days: list[date]) -> list[str]:
    """Make business dates partitions (ISO keys); the ones that were new."""
    return add_keys(instance, business_dates, [d.isoformat() for d in days])
