"""Speed benchmark: `recon run` end to end on bankgen data, beside plain Splink.

    .venv/bin/python bench/recon_bench.py --rows 100000 [--rows 1000000] [--no-baseline]

For each ``--rows`` (ledger rows; the bank export has about 1% more) generates bankgen data
(``bankgen.py``, seed 7) into a temporary directory, brings the database up (``recon db up``,
not timed), then times ``recon run --source bank_export.csv --target ledger.csv
--rules bench/rules/bankgen.yaml`` end to end, and ``plain_splink.py`` on the same files.

Each command runs under a small wrapper process of its own, which reports
- wall time;
- peak RSS of the process tree: the sum of the RSS of the command and all its descendants,
  sampled every 50 ms with psutil (the embedded PostgreSQL server is not a descendant and is
  sampled separately when ``RECON_HOME/pg/postmaster.pid`` is found: ``db_peak_mb``);
- ``ru_maxrss`` of ``RUSAGE_CHILDREN``: the largest single descendant's peak, exact but not
  summed over the tree.

Prints the per-stage times when ``recon run``'s JSON has a ``timings`` object (whatever it
holds), and the target: at 1M rows a side, <= 60 s and <= 2 GB (tree peak). The last stdout
line is a JSON summary of all runs.
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

BENCH = Path(__file__).resolve().parent
RULES = BENCH / "rules" / "bankgen.yaml"
TARGET_ROWS, TARGET_SECONDS, TARGET_MB = 1_000_000, 60.0, 2048.0

WRAPPER = r"""
import json, os, resource, subprocess, sys, threading, time
import psutil

out_path, err_path, pidfile = sys.argv[1], sys.argv[2], sys.argv[3]
cmd = sys.argv[4:]


def tree_rss(proc):
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def server():
    try:
        return psutil.Process(int(open(pidfile).readline().strip()))
    except (OSError, ValueError, psutil.Error):
        return None


peaks = {"tree": 0, "db": 0}
db = server()
db_base = tree_rss(db) if db else 0
started = time.perf_counter()
with open(out_path, "w") as out, open(err_path, "w") as err:
    child = subprocess.Popen(cmd, stdout=out, stderr=err)
    root = psutil.Process(child.pid)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peaks["tree"] = max(peaks["tree"], tree_rss(root))
            if db is not None:
                peaks["db"] = max(peaks["db"], tree_rss(db))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
wall = time.perf_counter() - started
print(json.dumps({
    "returncode": code,
    "wall_seconds": wall,
    "tree_peak_mb": peaks["tree"] / 2**20,
    "max_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "db_peak_mb": peaks["db"] / 2**20 if db is not None else None,
    "db_before_mb": db_base / 2**20 if db is not None else None,
}))
"""


def recon_bin() -> Path:
    """The `recon` script of the venv this Python belongs to."""
    return Path(sys.executable).parent / "recon"


def postmaster_pidfile() -> Path:
    home = Path(os.environ.get("RECON_HOME") or ".recon").expanduser().resolve()
    return home / "pg" / "postmaster.pid"


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.strip():
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def measured(cmd: list[str], work: Path, label: str) -> dict:
    """Run `cmd` under the wrapper; measurements plus the command's last JSON line."""
    out, err = work / f"{label}.stdout", work / f"{label}.stderr"
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), str(err), str(postmaster_pidfile()), *cmd],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring wrapper failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stdout = out.read_text(errors="replace")
    result["json"] = last_json_line(stdout)
    if result["returncode"] != 0:
        tail = (err.read_text(errors="replace") or stdout).strip().splitlines()[-15:]
        result["error"] = "\n".join(tail)
    return result


def line(label: str, m: dict) -> str:
    text = (
        f"{label:<14} {m['wall_seconds']:7.1f}s  tree peak {m['tree_peak_mb']:7,.0f} MB  "
        f"largest process {m['max_child_mb']:7,.0f} MB"
    )
    if m.get("db_peak_mb") is not None:
        text += f"  (database server peak {m['db_peak_mb']:,.0f} MB)"
    return text


def bench_rows(rows: int, baseline: bool, keep: bool) -> dict:
    from bankgen import generate

    work = Path(tempfile.mkdtemp(prefix=f"bench-recon-{rows}-"))
    report: dict = {"rows": rows}
    try:
        t = time.perf_counter()
        made = generate(work, rows, 7)
        print(
            f"\n== {rows:,} ledger rows: bank {made.source_rows:,} rows "
            f"({made.source.stat().st_size / 1e6:.0f} MB), ledger {made.target_rows:,} rows "
            f"({made.target.stat().st_size / 1e6:.0f} MB), generated in "
            f"{time.perf_counter() - t:.1f}s ({work})"
        )
        name = f"bench-speed-{rows}-{time.strftime('%Y%m%d-%H%M%S')}"
        cmd = [str(recon_bin()), "run", "--no-embed", "--source", str(made.source), "--target"]
        cmd += [str(made.target), "--rules", str(RULES), "--name", name]
        recon = measured(cmd, work, "recon")
        report["recon"] = recon
        if recon["returncode"] != 0:
            print(f"recon run exited {recon['returncode']}:\n{recon.get('error', '')}")
        else:
            print(line("recon run", recon))
            summary = recon["json"] or {}
            keys = ("reconciliation_id", "status", "matched_records", "exception_count")
            print("    " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
            timings = summary.get("timings")
            if isinstance(timings, dict):
                for stage, value in timings.items():
                    shown = f"{value:8.2f}s" if isinstance(value, int | float) else f"{value}"
                    print(f"    {stage:<40} {shown}")
            if rows == TARGET_ROWS:
                ok = recon["wall_seconds"] <= TARGET_SECONDS and recon["tree_peak_mb"] <= TARGET_MB
                print(
                    f"    target at 1M rows a side: <= {TARGET_SECONDS:.0f} s and <= 2 GB: "
                    f"{'met' if ok else 'MISSED'}"
                )
        if baseline:
            cmd = [sys.executable, str(BENCH / "plain_splink.py"), "--source", str(made.source)]
            cmd += ["--target", str(made.target), "--dataset", "bankgen"]
            cmd += ["--truth", str(made.truth_pairs)]
            plain = measured(cmd, work, "plain_splink")
            report["plain_splink"] = plain
            if plain["returncode"] != 0:
                print(f"plain Splink exited {plain['returncode']}:\n{plain.get('error', '')}")
            else:
                print(line("plain Splink", plain))
                steps = (plain["json"] or {}).get("steps", {})
                for stage, seconds in steps.items():
                    print(f"    {stage:<48} {seconds:8.2f}s")
                scores = (plain["json"] or {}).get("scores")
                if scores:
                    print(f"    pairwise F1 {scores['f1']:.4f}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="ledger rows (repeatable; default 100000)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip plain Splink")
    parser.add_argument("--keep", action="store_true", help="keep generated files and logs")
    args = parser.parse_args()
    up = subprocess.run([str(recon_bin()), "db", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        print(f"recon db up failed (continuing): {(up.stderr or up.stdout).strip()[-500:]}")
    reports = [bench_rows(rows, not args.no_baseline, args.keep) for rows in args.rows or [100_000]]
    for report in reports:
        for key in ("recon", "plain_splink"):
            if key in report and report[key].get("json"):
                report[key]["json"] = {
                    k: v for k, v in report[key]["json"].items() if k != "exceptions_by_type"
                }
    print(json.dumps(reports, default=str))
    failed = any(r.get("recon", {}).get("returncode", 0) != 0 for r in reports)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
