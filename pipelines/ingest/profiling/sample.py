"""A typical export as text, any number of rows: the profiling tests' and benchmark's input.

Eight columns as a bank or ledger export writes them: an id, day-first dates, money with a
currency sign and thousands separators (some negative), free text, a currency code, a Y/N flag,
signed integers and ISO timestamps. Deterministic, built by polars expressions (1M rows in
about a second).
"""

from __future__ import annotations

import polars as pl


def typical_frame(n: int) -> pl.DataFrame:
    """`n` rows of eight typical text columns (money with thousands, day-first dates, ...)."""
    i = pl.int_range(0, n, dtype=pl.Int64)
    cents = (i * 7919) % 99_999_999
    dollars, fraction = cents // 100, (cents % 100).cast(pl.String).str.zfill(2)
    thousands, units = dollars // 1000, (dollars % 1000).cast(pl.String)
    grouped = (
        pl.when(thousands > 0)
        .then(pl.concat_str(thousands.cast(pl.String), pl.lit(","), units.str.zfill(3)))
        .otherwise(units)
    )
    money = pl.concat_str(pl.lit("$"), grouped, pl.lit("."), fraction)
    return pl.select(
        _row_number=i + 1,
        transaction_id=pl.concat_str(pl.lit("TX"), i.cast(pl.String).str.zfill(9)),
        posted=(pl.date(2020, 1, 1) + pl.duration(days=(i * 13) % 1800)).dt.strftime("%d/%m/%Y"),
        amount=pl.when(i % 10 == 0).then(pl.concat_str(pl.lit("-"), money)).otherwise(money),
        description=pl.concat_str(pl.lit("Payment to vendor "), (i % 5000).cast(pl.String)),
        currency=pl.when(i % 3 == 0)
        .then(pl.lit("USD"))
        .when(i % 3 == 1)
        .then(pl.lit("EUR"))
        .otherwise(pl.lit("GBP")),
        cleared=pl.when(i % 2 == 0).then(pl.lit("Y")).otherwise(pl.lit("N")),
        quantity=((i * 31) % 20001 - 10000).cast(pl.String),
        created_at=(pl.datetime(2024, 1, 1) + pl.duration(seconds=i * 37)).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    )
