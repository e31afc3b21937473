"""Feed partitions: one business date x one feed is one reconciliation.

The date dimension is daily from `RECON_FEED_START_DATE` (default 2024-01-01, read when the
code location loads) to today; the feed dimension is dynamic, one key per feed name, added when
the feeds file is loaded. A partition key reads `<date>|<feed>`, e.g. `2024-06-03|bank-vs-ledger`.
"""

import os

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
)

FEED_START_DATE = os.environ.get("RECON_FEED_START_DATE", "2024-01-01")

# end_offset=1: today's business date is a partition already (files land during the day)
business_dates = DailyPartitionsDefinition(start_date=FEED_START_DATE, end_offset=1)
feed_names = DynamicPartitionsDefinition(name="feeds")
feed_partitions = MultiPartitionsDefinition({"date": business_dates, "feed": feed_names})
