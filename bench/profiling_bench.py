"""Benchmark: schema detection and conversion of a typical export at 1M rows.

Builds `--rows` rows (default 1,000,000) of eight text columns as an export writes them
(`pipelines.ingest.profiling.sample.typical_frame`: day-first dates, money with `$` and
thousands separators, Y/N flags, ISO timestamps, ...), then, `--repeat` times (default 3):

- product: `detect_schema` + `convert` (what landing does to every file);
- baseline: converting the same columns with the formats already known (polars
  `str.to_date` / `str.to_datetime` / a money strip + cast), i.e. the cost with no detection.

Prints the median and spread of each and the product's overhead over the baseline.

    .venv/bin/python bench/profiling_bench.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.ingest.profiling import convert, detect_schema  # noqa: E402
from pipelines.ingest.profiling.sample import typical_frame  # noqa: E402


def product(frame: pl.DataFrame) -> float:
    started = time.perf_counter()
    schema = detect_schema(frame)
    result = convert(frame, schema)
    elapsed = time.perf_counter() - started
    assert result.failures.height == 0 and result.frame.height == frame.height
    return elapsed


def baseline(frame: pl.DataFrame) -> float:
    started = time.perf_counter()
    money = pl.col("amount").str.replace_all(r"[$,]", "").cast(pl.Decimal(18, 2))
    typed = frame.select(
        pl.col("transaction_id"),
        pl.col("posted").str.to_date("%d/%m/%Y"),
        money,
        pl.col("description"),
        pl.col("currency"),
        pl.col("cleared") == "Y",
        pl.col("quantity").cast(pl.Int64),
        pl.col("created_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC"),
    )
    elapsed = time.perf_counter() - started
    assert typed.height == frame.height
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frame = typical_frame(args.rows)
    runs = {"product": [], "baseline": []}
    for _ in range(args.repeat):
        runs["product"].append(product(frame))
        runs["baseline"].append(baseline(frame))
    print(f"{args.rows:,} rows x 8 columns, {args.repeat} runs (seconds)")
    for name, times in runs.items():
        print(
            f"  {name:9} median {statistics.median(times):6.2f}  "
            f"min {min(times):6.2f}  max {max(times):6.2f}"
        )
    ratio = statistics.median(runs["product"]) / statistics.median(runs["baseline"])
    print(f"  detection + conversion costs {ratio:.1f}x converting with known formats")


if __name__ == "__main__":
    main()
