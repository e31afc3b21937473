"""The 1M x 1M scale case: `recon run` timed as a whole command, scored against the truth.

    .venv/bin/python bench/scale_bench.py --data DATA_DIR --rows 1000000 \
        --rules CASE/rules.yaml --baseline CASE/scale_splink.py [--repeat 3] \
        [--recon-home DIR] [--fresh-model] [--fresh-files] [--keep]

    # a small case to check the bench itself (100k rows a side)
    .venv/bin/python CASE/gen.py 100000 /tmp/scale100k 7
    .venv/bin/python bench/scale_bench.py --data /tmp/scale100k --rows 100000 \
        --rules CASE/rules.yaml --baseline CASE/scale_splink.py --repeat 2

CASE is the folder of the scale case (a synthetic bank statement vs general ledger: its
generator ``gen.py``, its rule set ``rules.yaml`` and a plain Splink script
``scale_splink.py``). It is kept outside the project; the bench reads only the paths it is
given. ``--data`` holds ``src_N.parquet``, ``tgt_N.parquet`` and ``truth_N.parquet`` as
``gen.py N DATA_DIR SEED`` writes them (N = ``--rows``); truth ids ``S<i>`` / ``T<j>`` are the
files' data rows i+1 / j+1 (checked against the files' own id columns before the runs).

Under ``--recon-home`` (default: a temporary directory, whose database server is stopped and
which is removed at the end unless ``--keep``) the database is brought up (``recon db up``, not
timed); the database is reused by every run. Then ``--repeat`` times (default 3)
``recon run --no-embed --source src_N.parquet --target tgt_N.parquet --rules RULES --name NAME``
(a distinct name per run) runs under a small wrapper process (``recon_bench.measured``) that
reports its wall time, process start to exit, and the peak RSS of its process tree (the sum
over the command and all its descendants, sampled every 50 ms with psutil) and, separately, of
the embedded PostgreSQL server, which is not a descendant (found from
``RECON_HOME/pg/postmaster.pid``; the sum of the postmaster and its backends, so shared
buffers count once per process that touched them).

A rule set's first run trains its Splink model and later runs reuse it; likewise a file
already landed in the organization is not processed again. Each run says whether it trained
(the run's ``statistics.modelTrainedNow``, cross-checked against ``linkage_models.trained_at``
and the database clock before the run) and whether it landed its files now.
``--fresh-model`` deletes the ``linkage_models`` rows of the rule set (its name and content
hash) before every run, so every run trains. ``--fresh-files`` runs every repeat under an
organization of its own, so every run lands and processes both files again and, its rule set
being new there, trains too: every run is then a first run.

Each run's ``reconciliation_matches`` are read with psycopg (URL from ``recon db url``) and
scored against the truth: pair precision, recall and F1, and the precision per ``match_kind``.

``--baseline`` runs the plain Splink script once, after the repeats, as
``PEER_DATA=DIR python SCRIPT N 1e6`` (this Python; DIR a scratch folder holding links to the
three parquet files, so the JSON file the script writes beside its data lands there, and it
runs in that folder). Its figures are its own: ``wall_in_script_s`` (after its imports),
``train_s``, ``predict_s`` and the F1 at its best threshold, pairwise and greedy one-to-one;
the whole command is also timed by the wrapper. The baseline F1 of the target is the better
of its two best-threshold F1s.

Prints each run, then the MEDIAN of wall time, tree peak RSS and pair F1 over the repeats,
beside the targets (stated for 1M rows a side): <= 60 s, <= 2 GB tree peak, pair F1 >=
baseline F1 - 0.001. The last stdout line is one JSON summary. Exit status 1 when a
``recon run`` fails.
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
from types import SimpleNamespace

from recon_bench import (
    database_up,
    database_url,
    db_clock,
    line,
    measured,
    median,
    recon_bin,
    run_facts,
    score_line,
    score_pairs,
    training_note,
)

TARGET_ROWS, TARGET_SECONDS, TARGET_MB, F1_SLACK = 1_000_000, 60.0, 2048.0, 0.001
U_MAX_PAIRS = "1e6"


def case_files(data: Path, rows: int) -> dict[str, Path]:
    files = {kind: data / f"{kind}_{rows}.parquet" for kind in ("src", "tgt", "truth")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (write them with gen.py {rows} DIR)")
    return files


def row_number(column: str):
    """`S<i>` / `T<j>` -> i + 1 / j + 1 (1-based data row)."""
    import polars as pl

    return pl.col(column).str.slice(1).cast(pl.Int64) + 1


def read_truth(files: dict[str, Path]) -> SimpleNamespace:
    """The true pairs as row numbers, after checking that id k sits on data row k + 1."""
    import polars as pl

    sizes = {}
    for kind, column in (("src", "src_id"), ("tgt", "tgt_id")):
        ids = pl.read_parquet(files[kind], columns=[column])
        bad = ids.with_row_index("k").filter(row_number(column) != pl.col("k") + 1)
        if bad.height:
            raise SystemExit(
                f"{files[kind]}: data row {bad['k'][0] + 1} holds {column} {bad[column][0]!r}; "
                "the truth's ids cannot be mapped onto rows"
            )
        sizes[kind] = ids.height
    truth = pl.read_parquet(files["truth"]).select(row_number("src_id"), row_number("tgt_id"))
    return SimpleNamespace(
        pairs=set(truth.iter_rows()), twins={}, source_rows=sizes["src"], target_rows=sizes["tgt"]
    )


def forget_models(rules: Path) -> int:
    """Delete the `linkage_models` rows of this rule set (name + content hash), any org."""
    import psycopg

    from pipelines.reconcile.rules import load_rule_set_file

    rule_set = load_rule_set_file(rules)
    with psycopg.connect(database_url()) as conn:
        deleted = conn.execute(
            "DELETE FROM linkage_models WHERE rule_set_id IN (SELECT id FROM rule_sets "
            "WHERE name = %s AND content_sha256 = %s)",
            (rule_set.name, rule_set.content_sha256()),
        ).rowcount
    return deleted


def recon_run(args, files, truth, work: Path, i: int, stamp: str) -> dict:
    deleted = forget_models(args.rules) if args.fresh_model else None
    cmd = [str(recon_bin()), "run", "--no-embed", "--source", str(files["src"])]
    cmd += ["--target", str(files["tgt"]), "--rules", str(args.rules)]
    cmd += ["--name", f"scale-bench-{args.rows}-{stamp}-{i}"]
    if args.fresh_files:
        cmd += ["--org", f"scale-bench-{stamp}-{i}"]
    started_at = db_clock()
    run = measured(cmd, work, f"recon-{i}")
    run["models_deleted_before"] = deleted
    if run["returncode"] != 0:
        print(f"run {i}: recon run exited {run['returncode']}:\n{run.get('error', '')}")
        return run
    summary = run["json"] or {}
    print(line(f"run {i}", run))
    keys = ("reconciliation_id", "status", "matched_records", "exception_count")
    print("    " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
    timings = summary.get("timings")
    if isinstance(timings, dict):
        print("    stages: " + ", ".join(f"{k} {v}s" for k, v in timings.items()))
    facts = run_facts(summary["reconciliation_id"], started_at)
    matches = facts.pop("matches")
    run.update(facts)
    if run["trained"] is None:  # not recorded by this version: trust the model's timestamp
        run["trained"] = run["trained_at_after_start"]
    note = training_note(facts)
    if deleted is not None:
        note += f"; {deleted} stored model(s) deleted before the run"
    print(f"    {note}")
    run["scores"] = score_pairs(matches, truth)
    print(score_line("recon", run["scores"]))
    for kind, n in run["scores"].get("match_kinds", {}).items():
        print(
            f"        match_kind {kind:<14} {n['pairs']:>9,} pairs, "
            f"{n['correct']:>9,} true, precision {n['precision']:.4f}"
        )
    return run


def parse_baseline(stdout: str) -> dict | None:
    """The script's JSON (printed with indent=1 over many lines) from its stdout."""
    lines = stdout.splitlines()
    starts = [k for k, text in enumerate(lines) if text.startswith("{")]
    for start in reversed(starts):  # the last object that parses to the end of the output
        try:
            parsed = json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return None


def baseline_run(args, files, work: Path) -> dict:
    scratch = work / "baseline"
    scratch.mkdir()
    for path in files.values():
        (scratch / path.name).symlink_to(path.resolve())
    env = {**os.environ, "PEER_DATA": str(scratch)}
    cmd = [sys.executable, str(args.baseline.resolve()), str(args.rows), U_MAX_PAIRS]
    run = measured(cmd, work, "baseline", sample_db=False, env=env, cwd=scratch)
    if run["returncode"] != 0:
        print(f"baseline exited {run['returncode']}:\n{run.get('error', '')}")
        return run
    own = parse_baseline(Path(run["stdout_path"]).read_text(errors="replace")) or {}
    pairwise = own.get("pairwise", {}).get("best", {})
    greedy = own.get("one_to_one_greedy", {}).get("best", {})
    run["json"] = {
        k: own.get(k)
        for k in (
            "wall_in_script_s",
            "train_s",
            "predict_s",
            "n_candidate_pairs",
            "n_truth_pairs",
            "pairwise",
            "one_to_one_greedy",
            "versions",
        )
    }
    f1s = {"pairwise": pairwise.get("F1"), "one_to_one_greedy": greedy.get("F1")}
    known = {k: v for k, v in f1s.items() if v is not None}
    run["f1_basis"] = max(known, key=known.get) if known else None
    run["f1"] = known.get(run["f1_basis"]) if known else None
    print(line("baseline", run))
    if own:
        print(
            f"    its own clock: {own['wall_in_script_s']:.1f}s after imports "
            f"(train {own['train_s']:.1f}s, predict {own['predict_s']:.1f}s), "
            f"{own['n_candidate_pairs']:,} candidate pairs"
        )
        for label, best in (("pairwise", pairwise), ("greedy one-to-one", greedy)):
            if best:
                print(
                    f"    {label:<18} best threshold {best['threshold']:.4f}: "
                    f"P {best['P']:.4f}  R {best['R']:.4f}  F1 {best['F1']:.4f}"
                )
        if run["f1"] is not None:
            print(f"    baseline F1 {run['f1']:.4f} ({run['f1_basis']}, its best threshold)")
    return run


def summarise(args, runs: list[dict], baseline: dict | None) -> dict:
    ok = [r for r in runs if r["returncode"] == 0]
    med = {
        "repeats": len(runs),
        "succeeded": len(ok),
        "wall_seconds": median(r["wall_seconds"] for r in ok),
        "tree_peak_mb": median(r["tree_peak_mb"] for r in ok),
        "db_peak_mb": median(r.get("db_peak_mb") for r in ok),
        "f1": median(r["scores"]["f1"] for r in ok),
        "runs_trained": sum(1 for r in ok if r.get("trained")),
        "runs_landing_files": sum(1 for r in ok if r.get("files_landed_now")),
    }
    print(f"\n== medians over {len(ok)} of {len(runs)} run(s), {args.rows:,} rows a side")
    if not ok:
        return {"medians": med, "targets": None}
    db = f", database server {med['db_peak_mb']:,.0f} MB" if med["db_peak_mb"] else ""
    print(
        f"    wall {med['wall_seconds']:.1f}s  tree peak {med['tree_peak_mb']:,.0f} MB{db}  "
        f"pair F1 {med['f1']:.4f}  ({med['runs_trained']} run(s) trained, "
        f"{med['runs_landing_files']} landed their files)"
    )
    base_f1 = baseline.get("f1") if baseline else None
    targets = {
        "wall_seconds": {"target": TARGET_SECONDS, "met": med["wall_seconds"] <= TARGET_SECONDS},
        "tree_peak_mb": {"target": TARGET_MB, "met": med["tree_peak_mb"] <= TARGET_MB},
        "f1": {
            "target": None if base_f1 is None else base_f1 - F1_SLACK,
            "met": None if base_f1 is None else med["f1"] >= base_f1 - F1_SLACK,
        },
    }
    where = "" if args.rows == TARGET_ROWS else f" (stated for {TARGET_ROWS:,} rows a side)"
    print(f"    targets{where}:")
    for label, key, shown in (
        ("wall time", "wall_seconds", f"<= {TARGET_SECONDS:.0f} s"),
        ("tree peak RSS", "tree_peak_mb", "<= 2 GB"),
    ):
        print(f"        {label:<14} {shown:<34} {'met' if targets[key]['met'] else 'MISSED'}")
    if base_f1 is None:
        print("        pair F1        >= baseline F1 - 0.001 (no baseline figure)")
    else:
        shown = f">= {base_f1:.4f} - 0.001 = {base_f1 - F1_SLACK:.4f}"
        print(f"        {'pair F1':<14} {shown:<34} {'met' if targets['f1']['met'] else 'MISSED'}")
    if baseline and baseline.get("returncode") == 0:
        own = baseline["json"]
        print(
            f"    baseline: {baseline['wall_seconds']:.1f}s whole command, "
            f"{own.get('wall_in_script_s') or 0:.1f}s after imports, tree peak "
            f"{baseline['tree_peak_mb']:,.0f} MB, F1 {base_f1}"
        )
    return {"medians": med, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of gen.py's files")
    parser.add_argument("--rows", type=int, required=True, help="N of src_N/tgt_N/truth_N")
    parser.add_argument("--rules", type=Path, required=True, help="the case's rules.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="the case's scale_splink.py (run once)")
    parser.add_argument("--recon-home", type=Path, help="RECON_HOME (default: a temporary one)")
    parser.add_argument(
        "--fresh-model", action="store_true", help="delete the stored model before every run"
    )
    parser.add_argument(
        "--fresh-files",
        action="store_true",
        help="every run under an organization of its own (lands the files again, trains)",
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and a temporary home")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not args.rules.is_file():
        parser.error(f"--rules {args.rules}: no such file")
    if args.baseline is not None and not args.baseline.is_file():
        parser.error(f"--baseline {args.baseline}: no such file")
    args.rules = args.rules.resolve()
    files = {k: p.resolve() for k, p in case_files(args.data, args.rows).items()}

    temporary_home = args.recon_home is None
    home = Path(tempfile.mkdtemp(prefix="scale-bench-home-")) if temporary_home else None
    home = (home or args.recon_home).expanduser().resolve()
    os.environ["RECON_HOME"] = str(home)
    if os.environ.get("RECON_DATABASE_URL"):
        print("note: RECON_DATABASE_URL is set: the runs use that database, not RECON_HOME's")
    work = Path(tempfile.mkdtemp(prefix=f"scale-bench-{args.rows}-"))
    runs: list[dict] = []
    baseline = None
    try:
        t = time.perf_counter()
        truth = read_truth(files)
        print(
            f"scale case {args.rows:,}: source {truth.source_rows:,} rows, target "
            f"{truth.target_rows:,} rows, {len(truth.pairs):,} true pairs (read in "
            f"{time.perf_counter() - t:.1f}s); RECON_HOME {home}; logs in {work}"
        )
        database_up()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i in range(1, args.repeat + 1):
            runs.append(recon_run(args, files, truth, work, i, stamp))
        if args.baseline is not None:
            baseline = baseline_run(args, files, work)
        result = summarise(args, runs, baseline)
        for run in runs:
            if run.get("json"):
                run["json"] = {k: v for k, v in run["json"].items() if k != "exceptions_by_type"}
        print(
            json.dumps(
                {
                    "case": "scale",
                    "rows": args.rows,
                    "rules": str(args.rules),
                    "fresh_model": args.fresh_model,
                    "fresh_files": args.fresh_files,
                    **result,
                    "runs": runs,
                    "baseline": baseline,
                },
                default=str,
            )
        )
    finally:
        if temporary_home:
            subprocess.run([str(recon_bin()), "db", "down"], capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if temporary_home:
                shutil.rmtree(home, ignore_errors=True)
    sys.exit(1 if any(r["returncode"] != 0 for r in runs) else 0)


if __name__ == "__main__":
    main()
