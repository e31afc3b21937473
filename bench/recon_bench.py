"""Speed benchmark: `recon run` end to end beside a plain Splink script on the same files.

    .venv/bin/python bench/recon_bench.py --rows 100000 [--rows 1000000] [--no-baseline]
    .venv/bin/python bench/recon_bench.py --dataset messy --rows 200000 --repeat 3
    .venv/bin/python bench/recon_bench.py --dataset messy --rows 20000 --repeat 1 \
        --recon-home /tmp/recon-bench-home

For each ``--rows`` (ledger rows) generates the data with seed 7 (``--seed``) into a temporary
directory: ``--dataset bankgen`` (default; ``bankgen.py``, rules ``bench/rules/bankgen.yaml``)
or ``--dataset messy`` (``messygen.py``, a bank export against a ledger cash account, with its
own ``rules.yaml``). Brings the database up (``recon db up``, not timed) under ``--recon-home``
(default: ``RECON_HOME``, else ``.recon``), then ``--repeat`` times (default 1):

1. times ``recon run --no-embed --source S --target T --rules R --name NAME --org ORG`` as a
   whole command (process start to exit). ORG is new for every run, so every run lands and
   processes both files and trains its Splink model, as the script does (under one
   organization a second run of the same files would find them landed and the model trained);
   whether the run trained is printed;
2. times ``plain_splink.py --dataset D --truth truth_pairs.csv --pairs-out ...`` on the same
   files, as a whole command and by its own clock after its imports
   (``seconds_after_imports``: from reading the files to its one-to-one pairs, Splink's import
   excluded).

Each command runs under a small wrapper process of its own, which reports
- wall time;
- peak RSS of the process tree: the sum of the RSS of the command and all its descendants,
  sampled every 50 ms with psutil (the embedded PostgreSQL server is not a descendant and is
  sampled separately when ``RECON_HOME/pg/postmaster.pid`` is found: ``db_peak_mb``);
- ``ru_maxrss`` of ``RUSAGE_CHILDREN``: the largest single descendant's peak, exact but not
  summed over the tree.

Both sides' pairs are scored against ``truth_pairs.csv`` the same way: recon's from
``reconciliation_matches`` (psycopg, URL from ``recon db url``), the script's from its
``--pairs-out`` file; when the truth has a ``twin_group`` column (messy), predicted pairs that
pair a twin group's rows one-to-one are canonicalised first (``canonical_pairs`` and
``read_twin_groups`` of ``accuracy_bench.py``), then pairwise precision/recall/F1.

Prints each run (with recon's per-stage ``timings``), then the medians over the repeats: our
wall time and tree peak, the script's wall time (whole command and after imports), the ratio
ours / script-after-imports, and both pair F1s; and the targets: messy (stated at 200k ledger
rows): ratio <= 3 and our pair F1 >= the script's; bankgen at 1M rows a side: <= 60 s and
<= 2 GB (tree peak). The last stdout line is a JSON summary of all runs; exit status 1 when a
``recon run`` fails.

``measured``, ``run_facts`` and ``score_pairs`` are shared with ``scale_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RULES = {"bankgen": BENCH / "rules" / "bankgen.yaml"}
TARGET_ROWS, TARGET_SECONDS, TARGET_MB = 1_000_000, 60.0, 2048.0
MESSY_TARGET_ROWS, MESSY_TARGET_RATIO = 200_000, 3.0

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


def recon_home() -> Path:
    return Path(os.environ.get("RECON_HOME") or ".recon").expanduser().resolve()


def postmaster_pidfile() -> Path:
    return recon_home() / "pg" / "postmaster.pid"


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.strip():
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def database_up() -> None:
    """`recon db up` (not timed): start the embedded server and migrate before the runs."""
    up = subprocess.run([str(recon_bin()), "db", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        print(f"recon db up failed (continuing): {(up.stderr or up.stdout).strip()[-500:]}")


def measured(
    cmd: list[str],
    work: Path,
    label: str,
    *,
    sample_db: bool = True,
    env: dict | None = None,
    cwd: Path | None = None,
) -> dict:
    """Run `cmd` under the wrapper; measurements plus the command's last JSON line.

    The command's stdout and stderr are kept in `work` (``stdout_path`` in the result). With
    `sample_db` false the database server is not sampled (for commands that do not use it).
    """
    out, err = work / f"{label}.stdout", work / f"{label}.stderr"
    pidfile = str(postmaster_pidfile()) if sample_db else ""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), str(err), pidfile, *cmd],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring wrapper failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stdout = out.read_text(errors="replace")
    result["json"] = last_json_line(stdout)
    result["stdout_path"] = str(out)
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


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# --------------------------------------------------------------------------------------------
# The database: what a run did, its pairs
# --------------------------------------------------------------------------------------------

_URL: list[str] = []


def database_url() -> str:
    """`recon db url` of the current RECON_HOME (asked once)."""
    if not _URL:
        from accuracy_bench import database_url as ask

        _URL.append(ask())
    return _URL[0]


def db_clock() -> object:
    """The database server's `localtimestamp` (what `trained_at` and `created_at` default to)."""
    import psycopg

    with psycopg.connect(database_url()) as conn:
        return conn.execute("SELECT localtimestamp").fetchone()[0]


def run_facts(reconciliation_id: int, started_at: object) -> dict:
    """Whether a run trained its model and landed its files now, and its matched pairs.

    ``trained``: the run's ``statistics.modelTrainedNow`` (``None`` when not recorded);
    ``trained_at_after_start``: the rule set's ``linkage_models.trained_at`` is at or after
    `started_at` (the database clock before the run); ``files_landed_now``: both files'
    ``uploaded_files.created_at`` are at or after it (else a file was already landed and the
    run reused its processed copy). ``matches``: (source row, target row, match_kind).
    """
    import psycopg

    with psycopg.connect(database_url()) as conn:
        row = conn.execute(
            "SELECT r.statistics -> 'modelTrainedNow', "
            "r.statistics -> 'linkage' ->> 'model_reuse', r.rule_set_id, m.trained_at, "
            "s.created_at, t.created_at "
            "FROM reconciliations r LEFT JOIN linkage_models m ON m.rule_set_id = r.rule_set_id "
            "LEFT JOIN uploaded_files s ON s.id = r.source_file_id "
            "LEFT JOIN uploaded_files t ON t.id = r.target_file_id WHERE r.id = %s",
            (int(reconciliation_id),),
        ).fetchone()
        matches = conn.execute(
            "SELECT source_row_number, target_row_number, match_kind "
            "FROM reconciliation_matches WHERE reconciliation_id = %s",
            (int(reconciliation_id),),
        ).fetchall()
    trained, reuse, rule_set_id, trained_at, source_at, target_at = row
    landed = [at is not None and at >= started_at for at in (source_at, target_at)]
    return {
        "trained": trained,
        "model_reuse": reuse,
        "rule_set_id": rule_set_id,
        "trained_at_after_start": trained_at is not None and trained_at >= started_at,
        "files_landed_now": landed[0] and landed[1],
        "matches": [(int(s), int(t), str(k)) for s, t, k in matches],
    }


def training_note(facts: dict) -> str:
    trained = facts["trained"]
    if trained is None:
        trained = facts["trained_at_after_start"]
    text = "model trained now" if trained else "model reused"
    if facts.get("model_reuse"):
        text += f" ({facts['model_reuse']})"
    files = "files landed now" if facts["files_landed_now"] else "files already landed (reused)"
    return f"{text}; {files}"


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


class Truth:
    """The true pairs of a truth_pairs.csv and its twin groups (empty without the column)."""

    def __init__(self, path: Path) -> None:
        from accuracy_bench import read_twin_groups
        from plain_splink import read_truth_pairs

        self.pairs = read_truth_pairs(path)
        self.twins = read_twin_groups(path)


def score_pairs(pairs: Iterable[tuple], truth: Truth) -> dict:
    """Pairwise P/R/F1 of (source, target[, match_kind]) pairs, twin groups canonicalised.

    With a third element, ``match_kinds`` gives per kind the pairs, the true ones and the
    precision.
    """
    from accuracy_bench import canonical_pairs
    from plain_splink import pairwise_scores

    rows = list(pairs)
    raw = [(int(r[0]), int(r[1])) for r in rows]
    canon = canonical_pairs(raw, truth.twins)
    out = pairwise_scores({canon[p] for p in raw}, truth.pairs)
    out["canonicalised_twin_pairs"] = sum(1 for p in raw if canon[p] != p)
    if rows and len(rows[0]) > 2:
        kinds = Counter(r[2] for r in rows)
        correct = Counter(r[2] for r, p in zip(rows, raw, strict=True) if canon[p] in truth.pairs)
        out["match_kinds"] = {
            k: {"pairs": n, "correct": correct[k], "precision": correct[k] / n}
            for k, n in sorted(kinds.items())
        }
    return out


def read_pairs_csv(path: Path) -> list[tuple[int, int]]:
    import polars as pl

    frame = pl.read_csv(path, columns=["source_row_number", "target_row_number"])
    return [(int(s), int(t)) for s, t in frame.iter_rows()]


def score_line(label: str, s: dict) -> str:
    return (
        f"    {label} pairwise P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  "
        f"(tp {s['tp']:,} fp {s['fp']:,} fn {s['fn']:,})"
    )


# --------------------------------------------------------------------------------------------
# One size
# --------------------------------------------------------------------------------------------


def recon_once(made, dataset: str, rows: int, rules: Path, work: Path, i: int, truth) -> dict:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"bench-speed-{dataset}-{rows}-{stamp}-{i}"
    org = f"bench-{dataset}-{rows}-{stamp}-{i}"
    cmd = [str(recon_bin()), "run", "--no-embed", "--source", str(made.source), "--target"]
    cmd += [str(made.target), "--rules", str(rules), "--name", name, "--org", org]
    started_at = db_clock()
    recon = measured(cmd, work, f"recon-{i}")
    if recon["returncode"] != 0:
        print(f"recon run exited {recon['returncode']}:\n{recon.get('error', '')}")
        return recon
    print(line("recon run", recon))
    summary = recon["json"] or {}
    keys = ("reconciliation_id", "status", "matched_records", "exception_count")
    print("    " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
    timings = summary.get("timings")
    if isinstance(timings, dict):
        for stage, value in timings.items():
            shown = f"{value:8.2f}s" if isinstance(value, int | float) else f"{value}"
            print(f"    {stage:<40} {shown}")
    facts = run_facts(summary["reconciliation_id"], started_at)
    recon["scores"] = score_pairs(facts.pop("matches"), truth)
    recon.update(facts)
    print(f"    {training_note(facts)}")
    print(score_line("recon", recon["scores"]))
    for kind, n in recon["scores"].get("match_kinds", {}).items():
        print(
            f"        match_kind {kind:<14} {n['pairs']:>9,} pairs, precision {n['precision']:.4f}"
        )
    if rows == TARGET_ROWS and dataset == "bankgen":
        ok = recon["wall_seconds"] <= TARGET_SECONDS and recon["tree_peak_mb"] <= TARGET_MB
        print(
            f"    target at 1M rows a side: <= {TARGET_SECONDS:.0f} s and <= 2 GB: "
            f"{'met' if ok else 'MISSED'}"
        )
    return recon


def plain_once(made, dataset: str, work: Path, i: int, truth) -> dict:
    pairs_out = work / f"plain_splink-{i}.pairs.csv"
    cmd = [sys.executable, str(BENCH / "plain_splink.py"), "--source", str(made.source)]
    cmd += ["--target", str(made.target), "--dataset", dataset]
    cmd += ["--truth", str(made.truth_pairs), "--pairs-out", str(pairs_out)]
    plain = measured(cmd, work, f"plain_splink-{i}", sample_db=False)
    if plain["returncode"] != 0:
        print(f"plain Splink exited {plain['returncode']}:\n{plain.get('error', '')}")
        return plain
    own = plain["json"] or {}
    plain["seconds_after_imports"] = own.get("seconds_after_imports")
    print(line("plain Splink", plain))
    if plain["seconds_after_imports"] is not None:
        print(
            f"    its own clock: {own['seconds']:.2f}s, after imports "
            f"{plain['seconds_after_imports']:.2f}s (import {own['import_seconds']:.2f}s)"
        )
    for stage, seconds in own.get("steps", {}).items():
        print(f"    {stage:<48} {seconds:8.2f}s")
    plain["scores"] = score_pairs(read_pairs_csv(pairs_out), truth)
    print(score_line("script", plain["scores"]) + f"  at >= {own.get('threshold')}")
    return plain


def summarise(dataset: str, rows: int, runs: list[dict]) -> dict:
    """Medians over the repeats (of the runs that succeeded), the ratio and the targets."""
    ours = [r["recon"] for r in runs if r["recon"].get("returncode") == 0]
    plain = [r["plain_splink"] for r in runs if r.get("plain_splink", {}).get("returncode") == 0]
    med = {
        "repeats": len(runs),
        "recon_wall_seconds": median(r["wall_seconds"] for r in ours),
        "recon_tree_peak_mb": median(r["tree_peak_mb"] for r in ours),
        "recon_db_peak_mb": median(r.get("db_peak_mb") for r in ours),
        "recon_f1": median(r["scores"]["f1"] for r in ours),
        "recon_runs_trained": sum(1 for r in ours if r.get("trained")),
        "script_wall_seconds": median(r["wall_seconds"] for r in plain),
        "script_seconds_after_imports": median(r.get("seconds_after_imports") for r in plain),
        "script_tree_peak_mb": median(r["tree_peak_mb"] for r in plain),
        "script_f1": median(r["scores"]["f1"] for r in plain),
    }
    ratios = [
        r["recon"]["wall_seconds"] / r["plain_splink"]["seconds_after_imports"]
        for r in runs
        if r["recon"].get("returncode") == 0
        and r.get("plain_splink", {}).get("seconds_after_imports")
    ]
    med["ratio_per_run"] = ratios
    if med["recon_wall_seconds"] and med["script_seconds_after_imports"]:
        med["ratio"] = med["recon_wall_seconds"] / med["script_seconds_after_imports"]
    else:
        med["ratio"] = None
    print(f"-- medians over {len(runs)} run(s) of {dataset} at {rows:,} rows")
    if med["recon_wall_seconds"] is not None:
        print(
            f"    recon run: wall {med['recon_wall_seconds']:.1f}s, tree peak "
            f"{med['recon_tree_peak_mb']:,.0f} MB, pair F1 {med['recon_f1']:.4f} "
            f"({med['recon_runs_trained']} of {len(ours)} run(s) trained)"
        )
    if med["script_wall_seconds"] is not None:
        print(
            f"    script:    wall {med['script_wall_seconds']:.1f}s whole command, "
            f"{med['script_seconds_after_imports']:.1f}s after imports, tree peak "
            f"{med['script_tree_peak_mb']:,.0f} MB, pair F1 {med['script_f1']:.4f}"
        )
    if med["ratio"] is not None:
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"    ratio recon wall / script after imports: {med['ratio']:.2f} (runs: {shown})")
    if dataset == "messy" and med["ratio"] is not None and med["recon_f1"] is not None:
        speed = med["ratio"] <= MESSY_TARGET_RATIO
        accuracy = med["recon_f1"] >= med["script_f1"]
        where = "" if rows == MESSY_TARGET_ROWS else f" (stated at {MESSY_TARGET_ROWS:,} rows)"
        print(
            f"    target{where}: ratio <= {MESSY_TARGET_RATIO:.0f}: "
            f"{'met' if speed else 'MISSED'}; pair F1 >= the script's: "
            f"{'met' if accuracy else 'MISSED'}"
        )
        med["targets_met"] = speed and accuracy
    return med


def bench_rows(args: argparse.Namespace, rows: int) -> dict:
    from accuracy_bench import make_data

    work = Path(tempfile.mkdtemp(prefix=f"bench-recon-{args.dataset}-{rows}-"))
    report: dict = {"dataset": args.dataset, "rows": rows, "runs": []}
    try:
        t = time.perf_counter()
        made = make_data(args.dataset, rows, args.seed, work)
        rules = made.rules if args.dataset == "messy" else RULES[args.dataset]
        print(
            f"\n== {args.dataset}, {rows:,} ledger rows: source {made.source_rows:,} rows "
            f"({made.source.stat().st_size / 1e6:.0f} MB), target {made.target_rows:,} rows "
            f"({made.target.stat().st_size / 1e6:.0f} MB), {made.pairs:,} true pairs, "
            f"generated in {time.perf_counter() - t:.1f}s ({work})"
        )
        truth = Truth(made.truth_pairs)
        for i in range(1, args.repeat + 1):
            print(f"-- run {i} of {args.repeat}")
            run = {"recon": recon_once(made, args.dataset, rows, rules, work, i, truth)}
            if not args.no_baseline:
                run["plain_splink"] = plain_once(made, args.dataset, work, i, truth)
            report["runs"].append(run)
        report["medians"] = summarise(args.dataset, rows, report["runs"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["bankgen", "messy"], default="bankgen")
    parser.add_argument(
        "--rows", type=int, action="append", help="ledger rows (repeatable; default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command (medians)")
    parser.add_argument("--recon-home", type=Path, help="RECON_HOME for the runs")
    parser.add_argument("--no-baseline", action="store_true", help="skip plain Splink")
    parser.add_argument("--keep", action="store_true", help="keep generated files and logs")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.recon_home is not None:
        os.environ["RECON_HOME"] = str(args.recon_home.expanduser().resolve())
    if os.environ.get("RECON_DATABASE_URL"):
        print("note: RECON_DATABASE_URL is set: the runs use that database, not RECON_HOME's")
    database_up()
    reports = [bench_rows(args, rows) for rows in args.rows or [100_000]]
    for report in reports:
        for run in report["runs"]:
            for key in ("recon", "plain_splink"):
                if key in run and run[key].get("json"):
                    run[key]["json"] = {
                        k: v for k, v in run[key]["json"].items() if k != "exceptions_by_type"
                    }
    print(json.dumps(reports, default=str))
    failed = any(
        run["recon"].get("returncode", 0) != 0 for report in reports for run in report["runs"]
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
