"""Benchmark: landing + reading + schema detection + validation of a large CSV.

Generates a bank-export-like CSV (default 1,000,000 rows, 8 columns: ids, dd/MM/yyyy dates,
"$1,234.56" money with parenthesised negatives, text, currency codes, Y/N flags, integers,
ISO timestamps), then measures, each in a fresh process so peak RSS is its own:
- the floor: `polars.read_csv(path, infer_schema=False)` alone;
- ours: hash + store + record in PostgreSQL (the embedded server), read, detect the schema,
  convert to types, validate with pandera, write typed parquet: what `uploaded_file` and
  `canonical_file` do, without Dagster's own overhead.
Prints rows/s, wall time and peak RSS of each and the ratio to the floor, twice: for the whole
of ours, and for the profiling part alone (read + detect + convert + validate, the stages that
`read_csv` is the floor of; landing hashes and copies the file and the last stage writes
parquet, work `read_csv` does not do). Each measurement runs `--repeat` times, floor and ours
alternating, and the fastest run of each is reported (peak RSS is the largest of any run), so
that other load on the machine disturbs the comparison less.

    .venv/bin/python bench/ingest_bench.py [--rows 1000000] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = """
import json, sys, time, resource, polars as pl
t, c = time.perf_counter(), time.process_time()
frame = pl.read_csv(sys.argv[1], infer_schema=False)
elapsed, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"rows": frame.height, "seconds": elapsed, "cpu": cpu,
       "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

OURS = """
import json, sys, time, resource, uuid, shutil
from pathlib import Path
import polars as pl
from pipelines.ingest import landing
from pipelines.ingest.profiling import convert, detect_schema, preview_rows
from pipelines.ingest.readers import read_table
from pipelines.ingest.validation import validate
from resources import migrations
from resources.database import engine_for, resolve_database_url
from resources.file_store import FileStore

source, home = Path(sys.argv[1]), Path(sys.argv[2])
url = resolve_database_url(); migrations.migrate(url)
store = FileStore(home)
zone_file = store.landing / f"bench-{uuid.uuid4().hex[:6]}" / "bank" / source.name
zone_file.parent.mkdir(parents=True)
shutil.copyfile(source, zone_file)
stages, cpu = {}, {}
t0 = t = time.perf_counter(); c = time.process_time()
def done(stage):
    global t, c
    stages[stage], cpu[stage] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
item = landing.parse_landing_path(store.landing, zone_file)
landed = landing.land_file(engine_for(url), store, item)
done("land (hash, store, record)")
read = read_table(landed.stored_path, landed.original_filename)
done("read")
schema = detect_schema(read.frame)
done("detect schema")
converted = convert(read.frame, schema)
done("convert types")
failures = validate(landed.original_filename, converted.frame, schema, [])
done("validate (pandera)")
out = store.canonical(landed.uploaded_file_id); out.parent.mkdir(parents=True, exist_ok=True)
converted.frame.write_parquet(out)
landing.record_processed(engine_for(url), landed, content_type=read.content_type,
    detected_schema=schema, row_count=read.frame.height, invalid_row_count=0,
    preview=preview_rows(read.frame))
landing.archive(store, item, "processed", landed.uploaded_file_id)
done("write parquet + record")
print(json.dumps({"rows": read.frame.height, "seconds": time.perf_counter() - t0, "stages": stages,
       "cpu": cpu,
       "types": {c["name"]: c["dataType"] for c in schema},
       "conversion_failures": converted.failures.height + failures.height,
       "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
PROFILING_STAGES = ("read", "detect schema", "convert types", "validate (pandera)")


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write the benchmark CSV in chunks (bounded memory)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("txn_id,booking_date,amount,description,currency,is_fee,quantity,created_at\n")
        for start in range(0, rows, 100_000):
            lines = []
            for i in range(start, min(rows, start + 100_000)):
                cents = rng.randint(-500_000, 5_000_000)
                money = f"${abs(cents) / 100:,.2f}"
                money = f'"({money[1:]})"' if cents < 0 else f'"{money}"'
                day, month = rng.randint(1, 28), rng.randint(1, 12)
                lines.append(
                    f"TX{i:09d},{day:02d}/{month:02d}/2024,{money},Payment {rng.randint(1, 99999)},"
                    f"{rng.choice(['USD', 'EUR', 'GBP'])},{rng.choice('YN')},{rng.randint(1, 500)},"
                    f"2024-{month:02d}-{day:02d}T{rng.randint(0, 23):02d}:15:00Z\n"
                )
            out.write("".join(lines))


def run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    csv = work / "bank_export.csv"
    t = time.perf_counter()
    generate(csv, args.rows)
    print(
        f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - t:.1f}s: {csv}"
    )
    floors, ours_runs = [], []
    for _ in range(max(args.repeat, 1)):
        floors.append(run(FLOOR, str(csv)))
        ours_runs.append(run(OURS, str(csv), str(work / "home")))
    floor = min(floors, key=lambda r: r["seconds"])
    ours = min(ours_runs, key=lambda r: r["seconds"])
    peak = max(r["peak_mb"] for r in ours_runs)
    profiling = sum(ours["stages"][stage] for stage in PROFILING_STAGES)
    profiling_cpu = sum(ours["cpu"][stage] for stage in PROFILING_STAGES)
    print(f"fastest of {len(ours_runs)} run(s) each")
    print(
        f"floor  polars.read_csv: {floor['seconds']:6.2f}s  "
        f"{floor['rows'] / floor['seconds']:>10,.0f} rows/s  peak {floor['peak_mb']:6.0f} MB  "
        f"(cpu {floor['cpu']:.2f}s)"
    )
    print(
        f"ours   all stages:     {ours['seconds']:6.2f}s  "
        f"{ours['rows'] / ours['seconds']:>10,.0f} rows/s  peak {peak:6.0f} MB"
    )
    for stage, seconds in ours["stages"].items():
        print(f"         {stage:<28} {seconds:6.2f}s  (cpu {ours['cpu'][stage]:.2f}s)")
    print(
        f"ratio to floor: {ours['seconds'] / floor['seconds']:.2f}x all stages; "
        f"{profiling / floor['seconds']:.2f}x read+detect+convert+validate ({profiling:.2f}s, "
        f"target <= 3x); peak memory {peak:.0f} MB (target < 1536 MB)"
    )
    print(
        f"cpu time, for a loaded machine: floor {floor['cpu']:.2f}s, "
        f"read+detect+convert+validate {profiling_cpu:.2f}s"
    )
    print("detected types:", json.dumps(ours["types"]))
    print("conversion/validation failures:", ours["conversion_failures"])
    if not args.keep:
        csv.unlink()


if __name__ == "__main__":
    main()
