"""Benchmark: wide files through reading, schema detection and pandera validation.

For 500, 1,000, 2,000 and 4,000 columns, each with 10 and with 10,000 data rows, writes a CSV
whose columns cycle through integers, money-like decimals, ISO dates, text and Y/N flags, then,
in a fresh process per file (so its peak RSS is its own), times three stages with the
product's own functions, `--repeat` times (default 3), and prints the median of each:

- read: `pipelines.ingest.readers.read_table`;
- detect: `pipelines.ingest.profiling.profile` (detect every column's schema and convert it);
- validate: `pipelines.ingest.validation.validate` (pandera, in parts of
  `COLUMNS_PER_SCHEMA` columns) on the typed frame, no declared columns.

Wall and CPU seconds are both printed (the machine is shared: CPU time is the steadier
figure). With `--old`, files of at most `--old-max-columns` columns (default 2,000) are also
validated once the way it was done before: one pandera schema over every column, which
pandera checks column by column against the whole frame's schema (quadratic).

    .venv/bin/python bench/wide_bench.py [--columns 500 1000 2000 4000] [--rows 10 10000]
        [--repeat 3] [--old] [--old-max-columns 2000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_wide_csv(path: Path, columns: int, rows: int) -> None:
    """A CSV of `columns` columns cycling int / money / date / text / flag, `rows` rows."""
    i = pl.int_range(0, rows)
    base = pl.select(
        int=(i * 7919 % 100_003).cast(pl.String),
        money=((i * 104_729 % 10_000_019).cast(pl.Float64) / 100).round(2).cast(pl.String),
        date=(pl.lit(date(2024, 1, 1)) + pl.duration(days=i % 3000)).cast(pl.String),
        text=pl.concat_str(pl.lit("name "), (i * 31 % 997).cast(pl.String)),
        flag=pl.when(i % 3 == 0).then(pl.lit("Y")).otherwise(pl.lit("N")),
    )
    kinds = base.columns
    frame = pl.DataFrame(
        [base.get_column(kinds[c % 5]).alias(f"{kinds[c % 5]}_{c}") for c in range(columns)]
    )
    frame.write_csv(path)


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure_one(path: Path, repeat: int, old: bool) -> dict[str, Any]:
    """Median wall/CPU seconds of each stage over `repeat` runs (this process), peak RSS."""
    import pandera.polars as pa

    from pipelines.ingest.profiling import profile
    from pipelines.ingest.readers import read_table
    from pipelines.ingest.validation import build_schema, validate

    times: dict[str, list[tuple[float, float]]] = {"read": [], "detect": [], "validate": []}
    for _ in range(repeat):
        read, *spent = _timed(lambda: read_table(path))
        times["read"].append(tuple(spent))
        profiled, *spent = _timed(lambda: profile(read.frame))  # noqa: B023
        times["detect"].append(tuple(spent))
        typed, schema = profiled.conversion.frame, profiled.schema
        _, *spent = _timed(lambda: validate(path.name, typed, schema, []))  # noqa: B023
        times["validate"].append(tuple(spent))
    out: dict[str, Any] = {
        stage: {
            "wall": statistics.median(w for w, _ in runs),
            "cpu": statistics.median(c for _, c in runs),
        }
        for stage, runs in times.items()
    }
    if old:

        def one_schema() -> None:
            try:
                build_schema(schema, []).validate(typed, lazy=True)
            except pa.errors.SchemaErrors:
                pass

        _, wall, cpu = _timed(one_schema)
        out["validate_one_schema"] = {"wall": wall, "cpu": cpu}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", action="store_true", help="also time one schema over all")
    parser.add_argument("--old-max-columns", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: measure one file
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.repeat, args.old)))
        return

    folder = Path(tempfile.mkdtemp(prefix="wide-bench-"))
    header = (
        f"{'columns':>7} {'rows':>6} {'MB':>6} | {'read':>11} | {'detect':>11} | "
        f"{'validate':>11} | {'peak RSS':>8}   (median of {args.repeat}; wall/CPU s)"
    )
    print(header)
    try:
        for rows in args.rows:
            for columns in args.columns:
                path = folder / f"wide_{columns}x{rows}.csv"
                write_wide_csv(path, columns, rows)
                old = args.old and columns <= args.old_max_columns
                child = [sys.executable, __file__, "--one", str(path), "--repeat", str(args.repeat)]
                done = subprocess.run(
                    [*child, *(["--old"] if old else [])],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                cells = " | ".join(
                    f"{result[stage]['wall']:5.2f}/{result[stage]['cpu']:5.2f}"
                    for stage in ("read", "detect", "validate")
                )
                size = path.stat().st_size / 1e6
                peak = result["peak_rss_mb"]
                line = f"{columns:>7} {rows:>6} {size:>6.1f} | {cells} | {peak:>6.0f}MB"
                if "validate_one_schema" in result:
                    before = result["validate_one_schema"]
                    line += f"   one pandera schema: {before['wall']:.2f}/{before['cpu']:.2f}"
                print(line, flush=True)
                if not args.keep:
                    path.unlink()
    finally:
        if args.keep:
            print(f"files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
