"""Aggregate matching at scale (issue 16): receipts x invoices beside a one-to-one twin.

    .venv/bin/python bench/aggregation_scale_bench.py --receipts 1000000 [--repeat 1] \
        [--seed 7] [--recon-home DIR] [--keep]

Generates (`receiptgen_scale.py`, timed) N receipts against ~1.7 N invoices, 40 % of the
receipts settling two to five, and its one-to-one twin (the same receipts, each receipt's
invoices merged into one). Then, ``--repeat`` times each, alternating:

- ``aggregate``: ``recon run --no-embed --source bank.csv --target invoices.csv --rules
  rules.yaml`` (with ``aggregation:``);
- ``one-to-one``: ``recon run --no-embed --source bank.csv --target invoices_merged.csv --rules
  rules_plain.yaml`` (the same rules without it).

Every run is a first run: an organization of its own (``--org``), so it lands both files and
trains its model. Each runs under `recon_bench.measured` (wall time of the whole command, peak
RSS of its process tree sampled every 50 ms, and of the embedded database server apart),
prints the reconcile stage timings of its summary (``timings``), and is scored against the
truth as `accuracy_bench.py` scores receipts (member-pair F1, exception-type micro F1).

Under ``--recon-home`` (default: a temporary directory under /tmp) the database is brought up
first (not timed) and stopped at the end (``recon db down``). Prints the medians and the
targets: aggregate wall <= 2 x one-to-one wall, aggregate tree peak <= 2 GB. The last stdout
line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recon_bench import database_up, line, measured, median, recon_bin

TARGET_RATIO, TARGET_MB = 2.0, 2048.0


def one_run(label: str, made, work: Path, name: str) -> dict:
    """One measured `recon run` of `made` (its source, target and rules), scored."""
    from accuracy_bench import fetch_results, score

    cmd = [str(recon_bin()), "run", "--no-embed", "--source", str(made.source)]
    cmd += ["--target", str(made.target), "--rules", str(made.rules)]
    cmd += ["--name", name, "--org", name]
    run = measured(cmd, work, name)
    if run["returncode"] != 0:
        print(f"{label}: recon run exited {run['returncode']}:\n{run.get('error', '')}")
        return run
    summary = run["json"] or {}
    print(line(label, run))
    keys = ("matched_records", "matched_groups", "records_in_groups", "exception_count")
    print("    " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
    timings = summary.get("timings")
    if isinstance(timings, dict):
        print("    stages: " + ", ".join(f"{k} {v}s" for k, v in timings.items()))
        run["timings"] = timings
    matches, exceptions = fetch_results(summary["reconciliation_id"])
    scores = score("receipts", made, matches, exceptions)
    pair, micro = scores["pairwise"], scores["exceptions"]["micro"]
    run["pair_f1"], run["exception_f1"] = pair["f1"], micro["f1"]
    per_type = {k: round(v["f1"], 4) for k, v in scores["exceptions"].items() if k != "micro"}
    run["exception_f1_by_type"] = per_type
    print(
        f"    member-pair P {pair['precision']:.4f} R {pair['recall']:.4f} F1 {pair['f1']:.4f}; "
        f"exception-type micro F1 {micro['f1']:.4f} {per_type}"
    )
    return run


def medians(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["returncode"] == 0]
    stages = sorted({k for r in ok for k in r.get("timings", {})})
    return {
        "runs": len(ok),
        "wall_seconds": median(r["wall_seconds"] for r in ok),
        "tree_peak_mb": median(r["tree_peak_mb"] for r in ok),
        "db_peak_mb": median(r.get("db_peak_mb") for r in ok),
        "pair_f1": median(r["pair_f1"] for r in ok),
        "exception_f1": median(r["exception_f1"] for r in ok),
        "stages": {s: median(r.get("timings", {}).get(s) for r in ok) for s in stages},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recon-home", type=Path, help="RECON_HOME (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data, logs and home")
    args = parser.parse_args()
    from receiptgen_scale import generate

    temporary_home = args.recon_home is None
    home = args.recon_home or Path(tempfile.mkdtemp(prefix="agg-scale-home-"))
    os.environ["RECON_HOME"] = str(home.expanduser().resolve())
    work = Path(tempfile.mkdtemp(prefix=f"agg-scale-{args.receipts}-"))
    runs: dict[str, list[dict]] = {"aggregate": [], "one-to-one": []}
    try:
        started = time.perf_counter()
        made, twin = generate(work / "data", args.receipts, args.seed)
        print(
            f"generated {made.source_rows:,} receipts x {made.target_rows:,} invoices "
            f"({made.groups:,} multi-invoice receipts) and the one-to-one twin "
            f"({twin.target_rows:,} merged invoices) in {time.perf_counter() - started:.1f}s; "
            f"RECON_HOME {os.environ['RECON_HOME']}; logs in {work}"
        )
        database_up()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i in range(1, args.repeat + 1):
            for label, case in (("aggregate", made), ("one-to-one", twin)):
                name = f"agg-scale-{label}-{args.receipts}-{stamp}-{i}"
                runs[label].append(one_run(f"{label} {i}", case, work, name))
        result = {label: medians(r) for label, r in runs.items()}
        agg, base = result["aggregate"], result["one-to-one"]
        print(f"\n== medians over {args.repeat} run(s) each, {args.receipts:,} receipts")
        for label, med in result.items():
            if med["runs"]:
                print(
                    f"    {label:<11} wall {med['wall_seconds']:.1f}s  tree peak "
                    f"{med['tree_peak_mb']:,.0f} MB  pair F1 {med['pair_f1']:.4f}  "
                    f"exception F1 {med['exception_f1']:.4f}  stages {med['stages']}"
                )
        if agg["runs"] and base["runs"]:
            ratio = agg["wall_seconds"] / base["wall_seconds"]
            result["ratio"] = ratio
            print(
                f"    aggregate / one-to-one wall {ratio:.2f} (target <= {TARGET_RATIO:g}: "
                f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}); aggregate tree peak "
                f"{agg['tree_peak_mb']:,.0f} MB (target <= 2 GB: "
                f"{'met' if agg['tree_peak_mb'] <= TARGET_MB else 'MISSED'})"
            )
        print(json.dumps({"case": "aggregation-scale", "receipts": args.receipts, **result}))
    finally:
        subprocess.run([str(recon_bin()), "db", "down"], capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if temporary_home:
                shutil.rmtree(home, ignore_errors=True)
    failed = any(r["returncode"] != 0 for rs in runs.values() for r in rs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
