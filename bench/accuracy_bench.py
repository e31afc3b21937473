"""Accuracy benchmark: `recon run` against a known truth, beside a plain Splink baseline.

    .venv/bin/python bench/accuracy_bench.py --dataset febrl
    .venv/bin/python bench/accuracy_bench.py --dataset bankgen --rows 100000 [--no-baseline]
    .venv/bin/python bench/accuracy_bench.py --dataset messy --rows 10000 [--no-rules]
    .venv/bin/python bench/accuracy_bench.py --dataset receipts --rows 5000 [--seed 7]

Generates the data into a temporary directory (``febrl.py``: FEBRL4, 5,000 x 5,000;
``bankgen.py``: ``--rows`` ledger entries against a messy bank export; ``messygen.py``:
``--rows`` ledger rows against a bank export written from how real exports differ, with its own
hand-written ``rules.yaml``; ``receiptgen.py``: ``--rows`` bank receipts settling one to five AR
invoices each, with ``rules.yaml`` declaring ``aggregation:``), runs
``recon run --source S --target T --rules bench/rules/X.yaml --name NAME`` (the ``recon`` script
next to this Python; with ``--no-rules`` without ``--rules``, so the product proposes its own
rule set), parses the JSON object on its last stdout line, and reads the
reconciliation's ``reconciliation_matches`` and ``reconciliation_exceptions`` from PostgreSQL
(psycopg, URL from ``recon db url``). Prints:

- pairwise precision / recall / F1 of the matched (source_row_number, target_row_number) pairs
  against the truth (for bankgen and messy also the recall per noise tag of the true pairs).
  When truth_pairs.csv has a ``twin_group`` column (messy), the pairs of a group cannot be told
  apart: predicted pairs that pair sources and targets of one group one-to-one are
  canonicalised to the group's true pairs (each such pair counts as correct) before scoring;
- exception-type precision / recall / F1, per type and micro-averaged. An expected exception
  is the key (type, side, row_number); an actual one gets its key from the row's ``type`` and
  ``_row_number``: from ``source_data`` for MISSING_IN_TARGET, AMOUNT_MISMATCH and
  DATE_MISMATCH (side ``source``), from ``target_data`` for MISSING_IN_SOURCE (side
  ``target``), and for DUPLICATE_FOUND / VALIDATION_ERROR from ``source_data`` when it carries
  a ``_row_number``, else ``target_data``. Every actual exception whose key is not expected,
  or repeats a key already counted, is a false positive. Also the micro F1 over just
  MISSING_IN_TARGET + MISSING_IN_SOURCE + AMOUNT_MISMATCH ("3-type") and the DUPLICATE_FOUND
  recall;
- the plain Splink baseline (``plain_splink.py``, in its own process, same files), unless
  ``--no-baseline``; for receipts instead the same rules without ``aggregation:``
  (``rules_plain.yaml``, one to one), run and scored the same way. Receipts' pairs are member
  pairs (a receipt with each invoice it settles), and a short-paid group's AMOUNT_MISMATCH is
  keyed on the receipt;
- the targets beside the figures: FEBRL4 pairwise F1 >= 0.999; bankgen at 100k rows a side
  pairwise F1 >= 0.998 and exception-type micro F1 >= 0.98; messy (any size) pairwise F1 >=
  0.998, 3-type F1 >= 0.98, DUPLICATE_FOUND recall >= 0.90, with ``--no-rules`` pairwise F1 >=
  0.995 and 3-type F1 >= 0.97 (duplicate recall target unchanged); receipts (any size)
  member-pair F1 >= 0.99 and exception-type micro F1 >= 0.97.

The last stdout line is a JSON summary. Exit status 1 when ``recon run`` fails, or with
``--strict`` when a target is missed. ``--self-check`` feeds the truth itself through the same
scoring path instead of running ``recon`` (every figure must come out 1.0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import polars as pl
from plain_splink import describe, pairwise_scores, read_truth_pairs

BENCH = Path(__file__).resolve().parent
RULES = {"febrl": BENCH / "rules" / "febrl4.yaml", "bankgen": BENCH / "rules" / "bankgen.yaml"}
EXCEPTION_TYPES = (
    "MISSING_IN_TARGET",
    "MISSING_IN_SOURCE",
    "AMOUNT_MISMATCH",
    "DATE_MISMATCH",
    "DUPLICATE_FOUND",
    "VALIDATION_ERROR",
)
SOURCE_SIDE = frozenset({"MISSING_IN_TARGET", "AMOUNT_MISMATCH", "DATE_MISMATCH"})
TARGET_SIDE = frozenset({"MISSING_IN_SOURCE"})
THREE_TYPES = ("MISSING_IN_TARGET", "MISSING_IN_SOURCE", "AMOUNT_MISMATCH")
TARGETS = {
    "febrl": {"pairwise_f1": 0.999},
    "bankgen": {"pairwise_f1": 0.998, "exception_f1": 0.98},
    "messy": {"pairwise_f1": 0.998, "exception3_f1": 0.98, "duplicate_recall": 0.90},
    "messy --no-rules": {"pairwise_f1": 0.995, "exception3_f1": 0.97, "duplicate_recall": 0.90},
    "receipts": {"pairwise_f1": 0.99, "exception_f1": 0.97},
}

ExceptionKey = tuple[str, str, int | None]


def recon_bin() -> Path:
    """The `recon` script of the venv this Python belongs to."""
    return Path(sys.executable).parent / "recon"


def last_json_line(stdout: str) -> dict:
    """The JSON object on the last non-blank line of `stdout`."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------
# Data and truth
# --------------------------------------------------------------------------------------------


def make_data(dataset: str, rows: int, seed: int, work: Path):
    """Generate the data set into `work`; returns the generator's result (paths + counts)."""
    if dataset == "febrl":
        from febrl import write_febrl4

        return write_febrl4(work)
    if dataset == "messy":
        from messygen import generate as generate_messy

        return SimpleNamespace(**generate_messy(work, rows, seed))
    if dataset == "receipts":
        from receiptgen import generate as generate_receipts

        return generate_receipts(work, rows, seed)
    from bankgen import generate

    return generate(work, rows, seed)


def active_targets(dataset: str, rows: int, no_rules: bool = False) -> dict[str, float]:
    """The targets that apply to this run (bankgen's are stated for 100k rows a side)."""
    if dataset == "bankgen" and rows != 100_000:
        return {}
    if dataset == "messy" and no_rules:
        return TARGETS["messy --no-rules"]
    return TARGETS[dataset]


def read_twin_groups(path: Path | str) -> dict[int, tuple[int, int]]:
    """Source row -> (twin_group, true target row), for the pairs of truth_pairs.csv in a group."""
    frame = pl.read_csv(path, infer_schema=False)
    if "twin_group" not in frame.columns:
        return {}
    out = {}
    for s, t, g in frame.select("source_row_number", "target_row_number", "twin_group").iter_rows():
        if g not in (None, ""):
            out[int(s)] = (int(g), int(t))
    return out


def canonical_pairs(
    pairs: Iterable[tuple[int, int]], twins: dict[int, tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, int]]:
    """Predicted pair -> the pair it is scored as (itself, unless canonicalised in a twin group).

    Within a twin group any one-to-one assignment is right: when the predicted pairs between
    the group's sources and the group's targets are one-to-one, each becomes the true pair of
    its source.
    """
    pairs = list(pairs)
    out = {p: p for p in pairs}
    if not twins:
        return out
    group_of_target = {t: g for g, t in twins.values()}
    inside: dict[int, list[tuple[int, int]]] = {}
    for s, t in pairs:
        if s in twins and group_of_target.get(t) == twins[s][0]:
            inside.setdefault(twins[s][0], []).append((s, t))
    for members in inside.values():
        if len({s for s, _ in members}) == len({t for _, t in members}) == len(members):
            for s, t in members:
                out[(s, t)] = (s, twins[s][1])
    return out


def read_truth_exceptions(path: Path | str) -> set[ExceptionKey]:
    """Expected (type, side, row_number) keys of a truth_exceptions.csv."""
    frame = pl.read_csv(
        path,
        schema_overrides={
            "type": pl.String,
            "side": pl.String,
            "row_number": pl.Int64,
            "other_row_number": pl.Int64,
        },
    )
    return set(frame.select("type", "side", "row_number").iter_rows())


def _row_number(data: object) -> int | None:
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict) or data.get("_row_number") in (None, ""):
        return None
    return int(float(data["_row_number"]))


def exception_key(kind: str, source_data: object, target_data: object) -> ExceptionKey:
    """The (type, side, row_number) key of one stored exception."""
    if kind in SOURCE_SIDE:
        return kind, "source", _row_number(source_data)
    if kind in TARGET_SIDE:
        return kind, "target", _row_number(target_data)
    row = _row_number(source_data)
    if row is not None:
        return kind, "source", row
    return kind, "target", _row_number(target_data)


def exception_scores(expected: set[ExceptionKey], actual: Iterable[ExceptionKey]) -> dict:
    """Per-type and micro-averaged precision/recall/F1 of exceptions (keys as above)."""
    counts = Counter(actual)
    types = [t for t in EXCEPTION_TYPES if any(k[0] == t for k in [*expected, *counts])]
    types += sorted({k[0] for k in [*expected, *counts]} - set(types))
    out: dict[str, dict] = {}
    totals = Counter()
    for kind in types:
        exp = {k for k in expected if k[0] == kind}
        act = {k: n for k, n in counts.items() if k[0] == kind}
        tp = len(exp & act.keys())
        fp = sum(act.values()) - tp
        fn = len(exp) - tp
        out[kind] = _prf(tp, fp, fn)
        out[kind]["examples"] = {
            "missed": sorted(exp - act.keys(), key=str)[:5],
            "unexpected": sorted(
                [k for k in act if k not in exp] + [k for k, n in act.items() if n > 1],
                key=str,
            )[:5],
        }
        totals.update({"tp": tp, "fp": fp, "fn": fn})
    out["micro"] = _prf(totals["tp"], totals["fp"], totals["fn"])
    return out


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def noise_recall(truth_pairs: Path, predicted: set[tuple[int, int]]) -> dict[str, dict]:
    """Recall of the true pairs per noise tag (bankgen's truth_pairs.csv ``noise`` column).

    The extra key ``missed combinations`` counts the missed pairs per full noise label.
    """
    frame = pl.read_csv(truth_pairs)
    if "noise" not in frame.columns:
        return {}
    out: dict[str, dict] = {}
    missed: Counter[str] = Counter()
    for s, t, noise in frame.select("source_row_number", "target_row_number", "noise").iter_rows():
        found = (s, t) in predicted
        if not found:
            missed[noise] += 1
        for tag in noise.split("+"):
            entry = out.setdefault(tag, {"pairs": 0, "found": 0})
            entry["pairs"] += 1
            entry["found"] += found
    for entry in out.values():
        entry["recall"] = entry["found"] / entry["pairs"]
    return {"tags": out, "missed combinations": dict(missed.most_common(8))}


# --------------------------------------------------------------------------------------------
# recon run and the database
# --------------------------------------------------------------------------------------------


def run_recon(source: Path, target: Path, rules: Path | None, name: str, org: str | None) -> dict:
    """Run `recon run` (without ``--rules`` when `rules` is None); JSON summary + wall time."""
    cmd = [str(recon_bin()), "run", "--no-embed", "--source", str(source), "--target", str(target)]
    if rules is not None:
        cmd += ["--rules", str(rules)]
    cmd += ["--name", name]
    if org:
        cmd += ["--org", org]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail}")
    summary = last_json_line(done.stdout)
    summary["_wall_seconds"] = wall
    return summary


def database_url() -> str:
    done = subprocess.run(
        [str(recon_bin()), "db", "url"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def fetch_results(
    reconciliation_id: int | str,
) -> tuple[list[tuple[int, int, float, str]], list[tuple[str, object, object]]]:
    """Matches (source row, target row, score, kind) and exceptions (type, source, target)."""
    import psycopg

    with psycopg.connect(database_url()) as conn:
        matches = conn.execute(
            "SELECT source_row_number, target_row_number, match_score, match_kind "
            "FROM reconciliation_matches WHERE reconciliation_id = %s",
            (int(reconciliation_id),),
        ).fetchall()
        exceptions = conn.execute(
            "SELECT type, source_data, target_data "
            "FROM reconciliation_exceptions WHERE reconciliation_id = %s",
            (int(reconciliation_id),),
        ).fetchall()
    return [tuple(m) for m in matches], [tuple(e) for e in exceptions]


def fake_results_from_truth(
    truth_pairs: Path, truth_exceptions: Path
) -> tuple[list[tuple[int, int, float, str]], list[tuple[str, object, object]]]:
    """The truth in the database's shape, for ``--self-check``."""
    pairs = read_truth_pairs(truth_pairs)
    matches = [(s, t, 1.0, "EXACT") for s, t in sorted(pairs)]
    frame = pl.read_csv(truth_exceptions, schema_overrides={"other_row_number": pl.Int64})
    exceptions = []
    for kind, side, row, other in frame.iter_rows():
        mine = {"_row_number": row}
        theirs = {"_row_number": other} if other is not None and side == "source" else None
        if side == "source":
            exceptions.append((kind, mine, theirs if kind != "DUPLICATE_FOUND" else None))
        else:
            exceptions.append((kind, None, json.dumps(mine)))
    return matches, exceptions


def run_baseline(source: Path, target: Path, dataset: str, truth_pairs: Path) -> dict:
    """Run plain_splink.py in its own process (so its peak RSS is its own)."""
    cmd = [sys.executable, str(BENCH / "plain_splink.py"), "--source", str(source)]
    cmd += ["--target", str(target), "--dataset", dataset, "--truth", str(truth_pairs)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"plain_splink.py exited {done.returncode}:\n{tail}")
    return last_json_line(done.stdout)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _target_note(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"  (target >= {target}: {'met' if value >= target else 'MISSED'})"


def score(
    dataset: str,
    made,
    matches: list[tuple[int, int, float, str]],
    exceptions: list[tuple[str, object, object]],
) -> dict:
    """Pairwise and exception scores of one reconciliation's stored results."""
    truth = read_truth_pairs(made.truth_pairs)
    raw = [(int(m[0]), int(m[1])) for m in matches]
    canon = canonical_pairs(raw, read_twin_groups(made.truth_pairs))
    predicted = {canon[p] for p in raw}
    expected = read_truth_exceptions(made.truth_exceptions)
    actual = [exception_key(kind, s, t) for kind, s, t in exceptions]
    kinds = Counter(m[3] for m in matches)
    correct_by_kind = Counter(m[3] for m, p in zip(matches, raw, strict=True) if canon[p] in truth)
    by_type = exception_scores(expected, actual)
    three = exception_scores(
        {k for k in expected if k[0] in THREE_TYPES}, [k for k in actual if k[0] in THREE_TYPES]
    )["micro"]
    duplicate = by_type.get("DUPLICATE_FOUND")
    return {
        "pairwise": pairwise_scores(predicted, truth),
        "canonicalised_twin_pairs": sum(1 for p in raw if canon[p] != p),
        "match_kinds": {
            k: {"pairs": n, "correct": correct_by_kind[k]} for k, n in sorted(kinds.items())
        },
        "noise_recall": noise_recall(made.truth_pairs, predicted),
        "exceptions": by_type,
        "exceptions_3type": three,
        "duplicate_recall": duplicate["recall"] if duplicate else None,
        "expected_exceptions": dict(Counter(k[0] for k in expected)),
        "actual_exceptions": dict(Counter(k[0] for k in actual)),
    }


def print_report(
    dataset: str, rows: int, summary: dict | None, scores: dict, no_rules: bool = False
) -> None:
    targets = active_targets(dataset, rows, no_rules)
    if summary is not None:
        keys = (
            "reconciliation_id status total_source_records total_target_records matched_records "
            "unmatched_source_records unmatched_target_records exception_count match_rate"
        ).split()
        print("recon run: " + ", ".join(f"{k}={summary.get(k)}" for k in keys))
        if "_wall_seconds" in summary:
            print(f"    wall {summary['_wall_seconds']:.1f}s")
        if isinstance(summary.get("timings"), dict):
            for stage, seconds in summary["timings"].items():
                print(f"    {stage:<40} {seconds}")
    p = scores["pairwise"]
    print(
        f"pairwise: P {p['precision']:.4f}  R {p['recall']:.4f}  F1 {p['f1']:.4f}  "
        f"(tp {p['tp']:,} fp {p['fp']:,} fn {p['fn']:,})"
        + _target_note(p["f1"], targets.get("pairwise_f1"))
    )
    if scores.get("canonicalised_twin_pairs"):
        print(
            f"    {scores['canonicalised_twin_pairs']} predicted pairs canonicalised in twin groups"
        )
    for kind, n in scores["match_kinds"].items():
        print(f"    match_kind {kind:<14} {n['pairs']:>9,} pairs, {n['correct']:>9,} true")
    noise = scores["noise_recall"]
    for tag, n in sorted(noise.get("tags", {}).items()):
        print(f"    true pairs with {tag:<16} {n['pairs']:>8,}  recall {n['recall']:.4f}")
    if noise.get("missed combinations"):
        print(f"    missed pairs by noise: {noise['missed combinations']}")
    ex = scores["exceptions"]
    print(
        f"exceptions expected {scores['expected_exceptions']}\n"
        f"           actual   {scores['actual_exceptions']}"
    )
    for kind, s in ex.items():
        if kind == "micro":
            continue
        print(
            f"    {kind:<18} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  "
            f"(tp {s['tp']:,} fp {s['fp']:,} fn {s['fn']:,})"
        )
        for what, keys in s["examples"].items():
            if keys:
                print(f"        {what}: {keys}")
    m = ex["micro"]
    print(
        f"exception-type micro: P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}"
        + _target_note(m["f1"], targets.get("exception_f1"))
    )
    t = scores["exceptions_3type"]
    print(
        f"exception 3-type (MISSING_IN_TARGET + MISSING_IN_SOURCE + AMOUNT_MISMATCH) micro: "
        f"P {t['precision']:.4f}  R {t['recall']:.4f}  F1 {t['f1']:.4f}"
        + _target_note(t["f1"], targets.get("exception3_f1"))
    )
    if scores["duplicate_recall"] is not None:
        print(
            f"DUPLICATE_FOUND recall: {scores['duplicate_recall']:.4f}"
            + _target_note(scores["duplicate_recall"], targets.get("duplicate_recall"))
        )


def receipts_baseline(made, rows: int, name: str) -> dict:
    """The same receipts with the same rules less `aggregation:` (one to one), scored alike."""
    print("baseline: the same rules without aggregation (rules_plain.yaml)")
    summary = run_recon(made.source, made.target, made.rules_plain, f"{name}-plain", None)
    matches, exceptions = fetch_results(summary["reconciliation_id"])
    scores = score("receipts", made, matches, exceptions)
    print_report("receipts", rows, summary, scores)
    return {
        "seconds": summary["_wall_seconds"],
        "scores": {"pairwise": scores["pairwise"], "exceptions": scores["exceptions"]["micro"]},
    }


def targets_met(dataset: str, rows: int, scores: dict, no_rules: bool = False) -> bool:
    targets = active_targets(dataset, rows, no_rules)
    figures = {
        "pairwise_f1": scores["pairwise"]["f1"],
        "exception_f1": scores["exceptions"]["micro"]["f1"],
        "exception3_f1": scores["exceptions_3type"]["f1"],
        "duplicate_recall": scores["duplicate_recall"],
    }
    return all(figures[k] is None or figures[k] >= target for k, target in targets.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=["febrl", "bankgen", "messy", "receipts"], required=True
    )
    parser.add_argument("--rows", type=int, default=100_000, help="bankgen / messy ledger rows")
    parser.add_argument("--seed", type=int, default=7, help="bankgen / messy seed")
    parser.add_argument(
        "--no-rules",
        action="store_true",
        help="run recon without --rules (the product proposes its own rule set)",
    )
    parser.add_argument("--org", help="organization name passed to recon run")
    parser.add_argument("--no-baseline", action="store_true", help="skip plain Splink")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--self-check", action="store_true", help="score the truth itself instead of recon run"
    )
    args = parser.parse_args()
    rows = 5_000 if args.dataset == "febrl" else args.rows

    work = Path(tempfile.mkdtemp(prefix=f"bench-accuracy-{args.dataset}-"))
    failed = False
    try:
        made = make_data(args.dataset, args.rows, args.seed, work)
        print(
            f"{args.dataset}: source {made.source_rows:,} rows, target {made.target_rows:,} rows,"
            f" {made.pairs:,} true pairs ({work})"
        )
        summary: dict | None = None
        scores: dict | None = None
        if args.self_check:
            matches, exceptions = fake_results_from_truth(made.truth_pairs, made.truth_exceptions)
        else:
            try:
                tag = "-norules" if args.no_rules else ""
                name = f"bench-{args.dataset}{tag}-{rows}-{time.strftime('%Y%m%d-%H%M%S')}"
                rules = None
                if not args.no_rules:
                    own = args.dataset in ("messy", "receipts")
                    rules = made.rules if own else RULES[args.dataset]
                summary = run_recon(made.source, made.target, rules, name, args.org)
                matches, exceptions = fetch_results(summary["reconciliation_id"])
            except Exception as exc:  # the run, its output or the database: report, go on
                print(f"recon run failed: {exc}")
                failed = True
        if not failed:
            scores = score(args.dataset, made, matches, exceptions)
            print_report(args.dataset, rows, summary, scores, args.no_rules)
        baseline = None
        if args.dataset == "receipts" and not args.no_baseline and not args.self_check:
            baseline = receipts_baseline(made, rows, name)
        elif not args.no_baseline and args.dataset != "receipts":
            try:
                baseline = run_baseline(made.source, made.target, args.dataset, made.truth_pairs)
                print(describe(baseline))
            except RuntimeError as exc:
                print(f"baseline failed: {exc}")
        out = {
            "dataset": args.dataset,
            "rows": rows,
            "recon": {k: v for k, v in (summary or {}).items() if k != "exceptions_by_type"},
            "pairwise": scores and scores["pairwise"],
            "no_rules": args.no_rules,
            "exceptions_micro": scores and scores["exceptions"]["micro"],
            "exceptions_3type": scores and scores["exceptions_3type"],
            "duplicate_recall": scores and scores["duplicate_recall"],
            "baseline": baseline
            and {k: baseline.get(k) for k in ("seconds", "peak_rss_mb", "scores")},
        }
        print(json.dumps(out, default=str))
        if failed or (
            args.strict
            and scores is not None
            and not targets_met(args.dataset, rows, scores, args.no_rules)
        ):
            sys.exit(1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
