"""Linkage engines side by side: `duckdb` (`link`) against `spark` (`link_spark`) on bankgen data.

    .venv/bin/python bench/engine_bench.py --rows 100000 1000000 --repeat 3 [--master local[2]]

For each size, `bankgen.py` writes a bank export against a ledger (seed 7, once, into
``--data``, default a temporary folder); each file is read, profiled and validated as the
ingest stage does (`read_table`, `profile`, `validate`) and conformed with
``rules/bankgen.yaml``. Each run is a child process of this script (a fresh interpreter and,
for Spark, a fresh JVM) that links the records with one engine from scratch (the model is
trained as a first run trains it: by DuckDB on its sample, for both engines) and builds the
exceptions; it reports the seconds of the Spark session's start, of linkage and of the
exceptions. The parent samples the resident memory of the child and all its descendants
(the JVM that pyspark starts is one) every 0.1 s: peak RSS. Figures are the median of
``--repeat`` runs; the table also says whether the engines' pairs (source row, target row,
pass) and exceptions were equal. The last stdout line is a JSON summary.

`bankgen_case`, `link_with`, `pair_set` and `exception_set` are what `tests/test_spark_engine.py`
uses to compare the engines through the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RULES = BENCH / "rules" / "bankgen.yaml"
for folder in (BENCH, ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@dataclass
class Case:
    """A reconciliation's inputs as the link and exceptions stages see them."""

    conformed: Any  # pipelines.reconcile.mapping.Conformed
    rule_set: Any  # pipelines.reconcile.rules.RuleSet
    source: pl.DataFrame  # canonical records (typed, `_row_number`, `_valid`)
    target: pl.DataFrame
    source_failures: pl.DataFrame
    target_failures: pl.DataFrame


def _canonical(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, Any]:
    """A file as the ingest stage leaves it: typed frame with `_valid`, failures, schema."""
    from pipelines.ingest.profiling import profile
    from pipelines.ingest.readers import ROW_NUMBER, read_table
    from pipelines.ingest.validation import FAILURE_SCHEMA, validate

    read = read_table(path)
    profiled = profile(read.frame)
    converted = profiled.conversion
    failures = pl.concat(
        [
            converted.failures.select(
                pl.lit(path.name).alias("file"), "row_number", "column", "check", "value"
            ).cast(FAILURE_SCHEMA),
            validate(path.name, converted.frame, profiled.schema, []),
        ]
    )
    invalid = failures.get_column("row_number").unique()
    typed = converted.frame.with_columns(
        (~pl.col(ROW_NUMBER).is_in(invalid.implode())).alias("_valid")
    )
    return typed, failures, profiled.schema


def bankgen_case(rows: int, folder: Path | str, seed: int = 7) -> Case:
    """bankgen data of `rows` ledger entries (written once into `folder`), conformed."""
    from bankgen import generate

    from pipelines.reconcile.mapping import conform
    from pipelines.reconcile.rules import load_rule_set_file

    out = Path(folder) / f"bankgen-{rows}-{seed}"
    source_csv, target_csv = out / "bank_export.csv", out / "ledger.csv"
    if not (source_csv.exists() and target_csv.exists()):
        generate(out, rows, seed)
    rule_set = load_rule_set_file(RULES)
    source, source_failures, source_schema = _canonical(source_csv)
    target, target_failures, target_schema = _canonical(target_csv)
    conformed = conform(
        source, target, rule_set, source_schema=source_schema, target_schema=target_schema
    )
    return Case(conformed, rule_set, source, target, source_failures, target_failures)


def link_with(
    case: Case,
    engine: str,
    *,
    spark: Any = None,
    model: dict[str, Any] | None = None,
    model_facts: dict[str, Any] | None = None,
) -> tuple[Any, pl.DataFrame]:
    """(LinkResult, exceptions) of one engine, through the stages' own functions: linkage and
    the exceptions' breaks (`breaks.find_breaks`) on that engine."""
    from pipelines.reconcile.breaks import find_breaks
    from pipelines.reconcile.exceptions import build_exceptions

    if engine == "spark":
        from pipelines.reconcile.linkage.spark_engine import link_spark, spark_session
        from pipelines.reconcile.linkage.spark_sql import SparkConnection

        spark = spark if spark is not None else spark_session()
        linked = link_spark(
            case.conformed, case.rule_set, model=model, model_facts=model_facts, spark=spark
        )
        breaks = find_breaks(
            case.conformed, linked.links, case.rule_set, connect=lambda: SparkConnection(spark)
        )
    else:
        from pipelines.reconcile.linkage import link

        linked = link(case.conformed, case.rule_set, model=model, model_facts=model_facts)
        breaks = find_breaks(case.conformed, linked.links, case.rule_set)
    found = build_exceptions(
        case.conformed,
        linked,
        case.rule_set,
        source_records=case.source,
        target_records=case.target,
        source_failures=case.source_failures,
        target_failures=case.target_failures,
        breaks=breaks,
    )
    return linked, found


def pair_set(links: pl.DataFrame) -> set[tuple[int, int, str]]:
    """The matched pairs: (source row, target row, pass)."""
    return set(links.select("source_row", "target_row", "kind").iter_rows())


def exception_set(found: pl.DataFrame) -> set[tuple[Any, ...]]:
    """The exceptions: (type, severity, source row, target row, suggested match, description).

    The suggested match (JSON) names the best candidate and its score rounded to 6 places;
    the description quotes the pair's confidence as the exceptions stage formats it.
    """
    columns = ["type", "severity", "source_row_number", "target_row_number", "suggested_match"]
    return set(found.select(*columns, "description").iter_rows())


# ---------------------------------------------------------------- the benchmark


def _child(args: argparse.Namespace) -> None:
    """One measured run (in a child process): prints one JSON line."""
    case = bankgen_case(args.rows[0], args.data)
    spark, started_at = None, time.perf_counter()
    if args.child == "spark":
        from pipelines.reconcile.linkage.spark_engine import spark_session

        spark = spark_session(args.master)
    session = time.perf_counter() - started_at
    started_at = time.perf_counter()
    linked, found = link_with(case, args.child, spark=spark)
    linkage = time.perf_counter() - started_at
    out = Path(args.data) / f"result-{args.child}-{args.rows[0]}.parquet"
    linked.links.write_parquet(out)
    found.select(
        "type",
        "severity",
        "source_row_number",
        "target_row_number",
        "suggested_match",
        "description",
    ).write_parquet(out.with_suffix(".exceptions.parquet"))
    print(
        json.dumps(
            {
                "session_s": round(session, 2),
                "link_s": round(linkage, 2),
                "pairs": linked.links.height,
                "exceptions": found.height,
                "timings": linked.stats.get("timings", {}),
            }
        )
    )


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


def measured(engine: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """One child run: its own report plus wall seconds and peak RSS of its process tree."""
    command = [sys.executable, __file__, "--child", engine, "--rows", str(rows)]
    command += ["--data", str(args.data), "--master", args.master]
    started_at = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started_at
    if proc.returncode != 0:
        raise SystemExit(f"{engine} at {rows} rows failed:\n{stderr[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    return {**report, "wall_s": round(wall, 2), "peak_rss_mb": round(peak / 2**20)}


def _equal(data: Path, rows: int) -> dict[str, bool]:
    def read(engine: str, suffix: str) -> pl.DataFrame:
        return pl.read_parquet(data / f"result-{engine}-{rows}{suffix}")

    pairs = [pair_set(read(e, ".parquet")) for e in ("duckdb", "spark")]
    found = [exception_set(read(e, ".exceptions.parquet")) for e in ("duckdb", "spark")]
    return {"pairs_equal": pairs[0] == pairs[1], "exceptions_equal": found[0] == found[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark"])
    parser.add_argument("--master", default=os.environ.get("RECON_SPARK_MASTER", "local[2]"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--child", choices=["duckdb", "spark"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    args.data = args.data or Path(tempfile.mkdtemp(prefix="engine-bench-"))
    args.data.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"master": args.master, "cores": os.cpu_count(), "sizes": {}}
    print(f"{'rows':>9} {'engine':>7} {'link s':>8} {'session s':>9} {'wall s':>8} {'peak MB':>8}")
    for rows in args.rows:
        bankgen_case(rows, args.data)  # data written before anything is timed
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for engine in args.engines:
                runs.setdefault(engine, []).append(measured(engine, rows, args))
        size: dict[str, Any] = {}
        for engine, done in runs.items():
            med = {
                key: statistics.median(r[key] for r in done)
                for key in ("link_s", "session_s", "wall_s", "peak_rss_mb")
            }
            size[engine] = {**med, "runs": done}
            print(
                f"{rows:>9} {engine:>7} {med['link_s']:>8.1f} {med['session_s']:>9.1f} "
                f"{med['wall_s']:>8.1f} {med['peak_rss_mb']:>8.0f}"
            )
        if set(args.engines) >= {"duckdb", "spark"}:
            size.update(_equal(args.data, rows))
            print(
                f"{rows:>9} same pairs: {size['pairs_equal']}, "
                f"same exceptions: {size['exceptions_equal']}"
            )
        if set(args.engines) >= {"duckdb", "spark"}:
            size["spark_over_duckdb"] = round(size["spark"]["wall_s"] / size["duckdb"]["wall_s"], 2)
            print(f"{rows:>9} spark / duckdb wall: {size['spark_over_duckdb']}x")
        size["load_average"] = [round(x, 2) for x in os.getloadavg()]
        summary["sizes"][str(rows)] = size
    summary["crossover"] = crossover(summary["sizes"])
    print(f"crossover: {summary['crossover']}")
    print(json.dumps(summary))


def crossover(sizes: dict[str, dict[str, Any]]) -> str:
    """Where Spark's wall time would meet DuckDB's, from the two largest sizes' ratios
    (log-log straight line; an extrapolation, said as one)."""
    import math

    ratios = sorted(
        (int(rows), size["spark_over_duckdb"])
        for rows, size in sizes.items()
        if "spark_over_duckdb" in size
    )
    if len(ratios) < 2:
        return "needs two sizes with both engines"
    (n1, r1), (n2, r2) = ratios[-2:]
    if min(ratios, key=lambda x: x[1])[1] <= 1.0:
        return f"spark is faster at {min(n for n, r in ratios if r <= 1.0):,} rows"
    if r2 >= r1:
        return "none: spark's disadvantage does not shrink with size"
    slope = (math.log(r2) - math.log(r1)) / (math.log(n2) - math.log(n1))
    rows = n2 * math.exp(-math.log(r2) / slope)
    return f"none measured; extrapolated ~{rows:,.0f} rows a side (if the trend held)"


if __name__ == "__main__":
    main()
