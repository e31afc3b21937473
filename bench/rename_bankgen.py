"""Rule proposal accuracy: bankgen data with renamed, reformatted columns and no rules file.

    .venv/bin/python bench/rename_bankgen.py --rows 100000 [--seed 7] [--in-process] [--keep]

Generates ``bankgen.py`` data, then rewrites both files (rows and their order unchanged, so
``truth_pairs.csv`` still holds):

- the ledger (target): ``entry_id`` -> ``Doc No``, ``reference`` -> ``Invoice Ref``,
  ``counterparty`` -> ``Payee``, ``amount`` -> ``Net Amount``, ``posting_date`` -> ``Booked On``
  written ``MM/dd/yyyy``, ``currency`` -> ``Ccy``; columns in another order;
- the bank export (source): ``Transaction ID`` -> ``Txn Id``, ``Value Date`` -> ``Val Dt``
  (still ``dd/MM/yyyy``), ``Details`` -> ``Narrative``, ``Reference`` -> ``Customer Ref``,
  ``Counterparty Name`` -> ``Beneficiary``, ``Amount`` -> ``Txn Amt``, ``Currency`` -> ``CUR``.

Then, when ``recon run`` can propose rules itself (``recon/cli.py`` mentions ``propose_rule``;
it is then run without ``--rules``, and the answer "--rules is required" still means it cannot),
the run is scored from the database like
``accuracy_bench.py`` does. Otherwise, or with ``--in-process``, the proposal is applied in this
process with the engine's own functions: `read_table` + `detect_schema` + `convert` (``_valid``
all true), `pipelines.reconcile.mapping.conform` and `pipelines.reconcile.linkage.link`.
Prints the proposed rule set, pairwise precision / recall / F1 against ``truth_pairs.csv``
(1-based data row numbers = ``_row_number``) and recall per noise tag; the last stdout line
is a JSON summary. Exit status 1 when F1 is below ``--target`` (default 0.99).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(BENCH), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bankgen import generate  # noqa: E402
from plain_splink import pairwise_scores, read_truth_pairs  # noqa: E402

LEDGER_NAMES = {
    "entry_id": "Doc No",
    "reference": "Invoice Ref",
    "counterparty": "Payee",
    "amount": "Net Amount",
    "posting_date": "Booked On",
    "currency": "Ccy",
}
LEDGER_ORDER = ["Booked On", "Doc No", "Payee", "Ccy", "Net Amount", "Invoice Ref"]
BANK_NAMES = {
    "Transaction ID": "Txn Id",
    "Value Date": "Val Dt",
    "Details": "Narrative",
    "Reference": "Customer Ref",
    "Counterparty Name": "Beneficiary",
    "Amount": "Txn Amt",
    "Currency": "CUR",
}
EXPECTED_MAPPING = {
    "Val Dt": "Booked On",
    "Customer Ref": "Invoice Ref",
    "Beneficiary": "Payee",
    "Txn Amt": "Net Amount",
    "CUR": "Ccy",
}


def rename_files(source: Path, target: Path) -> None:
    """Rewrite bankgen's two files in place with other column names and date layout."""
    ledger = pl.read_csv(target, infer_schema=False)
    ledger = ledger.with_columns(
        pl.col("posting_date").str.to_date("%Y-%m-%d").dt.strftime("%m/%d/%Y")
    )
    ledger.rename(LEDGER_NAMES).select(LEDGER_ORDER).write_csv(target)
    bank = pl.read_csv(source, infer_schema=False)
    bank.rename(BANK_NAMES).write_csv(source)


def recon_run_proposes() -> bool:
    """Whether `recon run` looks wired to the proposal (read from its source: no database)."""
    cli = ROOT / "recon" / "cli.py"
    return cli.is_file() and "propose_rule" in cli.read_text(encoding="utf-8")


def recon_run(source: Path, target: Path, name: str) -> dict | None:
    """`recon run` without --rules; None when it cannot propose rules (not wired yet)."""
    cmd = [str(Path(sys.executable).parent / "recon"), "run", "--quiet", "--no-embed"]
    cmd += ["--source", str(source), "--target", str(target), "--name", name]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "--rules is required" in done.stderr + done.stdout:
            return None
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def pairs_from_database(reconciliation_id: int) -> set[tuple[int, int]]:
    from accuracy_bench import fetch_results

    matches, _ = fetch_results(reconciliation_id)
    return {(int(m[0]), int(m[1])) for m in matches}


def _typed(path: Path) -> tuple[pl.DataFrame, list[dict]]:
    from pipelines.ingest.profiling import profile
    from pipelines.ingest.readers import read_table

    frame = read_table(path, path.name).frame
    profiled = profile(frame)
    typed = profiled.conversion.frame.with_columns(pl.lit(True).alias("_valid"))
    return typed, profiled.schema


def in_process(source: Path, target: Path) -> tuple[set[tuple[int, int]], dict]:
    """Propose, conform and link in this process; the matched pairs and the timings."""
    from pipelines.reconcile.linkage import link
    from pipelines.reconcile.mapping import conform
    from pipelines.reconcile.proposal import propose_from_frames
    from pipelines.reconcile.rules import check_against_columns, parse_rule_set

    logging.getLogger("splink").setLevel(logging.ERROR)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    s_frame, s_schema = _typed(source)
    t_frame, t_schema = _typed(target)
    timings["read_profile_convert"] = time.perf_counter() - started
    started = time.perf_counter()
    rule_set = propose_from_frames(
        s_frame, t_frame, s_schema, t_schema, name=f"ai:{source.stem}-vs-{target.stem}"
    )
    timings["propose"] = time.perf_counter() - started
    parse_rule_set(rule_set.content())
    check_against_columns(
        rule_set,
        [c for c in s_frame.columns if not c.startswith("_")],
        [c for c in t_frame.columns if not c.startswith("_")],
    )
    print(rule_set.to_yaml())
    started = time.perf_counter()
    conformed = conform(s_frame, t_frame, rule_set, source_schema=s_schema)
    result = link(conformed, rule_set)
    timings["conform_link"] = time.perf_counter() - started
    links = result.links.select("source_row", "target_row").rows()
    mapping = {m.source_field: m.target_field for m in rule_set.field_mappings}
    return {(int(s), int(t)) for s, t in links}, {
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "mapping_as_expected": mapping == EXPECTED_MAPPING,
        "mapping": mapping,
        "rules": [f"{r.name}:{r.match_type}" for r in rule_set.matching_rules],
        "link_stats": {k: result.stats.get(k) for k in ("exact_matches", "remainder")},
    }


def noise_recall(truth_pairs: Path, predicted: set[tuple[int, int]]) -> dict[str, float]:
    frame = pl.read_csv(truth_pairs)
    found: dict[str, list[int]] = {}
    for s, t, noise in frame.iter_rows():
        for tag in noise.split("+"):
            entry = found.setdefault(tag, [0, 0])
            entry[0] += 1
            entry[1] += (s, t) in predicted
    return {tag: round(hit / n, 4) for tag, (n, hit) in sorted(found.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="ledger rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--in-process", action="store_true", help="never try `recon run`")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--target", type=float, default=0.99, help="pairwise F1 to reach")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-rename-bankgen-"))
    try:
        made = generate(work, args.rows, args.seed)
        rename_files(made.source, made.target)
        print(f"source {made.source_rows:,} rows, target {made.target_rows:,} rows ({work})")
        started = time.perf_counter()
        summary = None
        if not args.in_process and recon_run_proposes():
            summary = recon_run(made.source, made.target, f"rename-bankgen-{args.rows}")
        if summary is not None:
            mode, facts = "recon run", {"reconciliation_id": summary["reconciliation_id"]}
            predicted = pairs_from_database(int(summary["reconciliation_id"]))
        else:
            if not args.in_process:
                print("`recon run` without --rules is not wired yet: evaluating in process")
            mode = "in process"
            predicted, facts = in_process(made.source, made.target)
        wall = time.perf_counter() - started
        scores = pairwise_scores(predicted, read_truth_pairs(made.truth_pairs))
        print(
            f"{mode}: pairwise P {scores['precision']:.4f}  R {scores['recall']:.4f}  "
            f"F1 {scores['f1']:.4f}  (tp {scores['tp']:,} fp {scores['fp']:,} "
            f"fn {scores['fn']:,}), {wall:.1f}s"
        )
        recall = noise_recall(made.truth_pairs, predicted)
        print("recall per noise tag: " + ", ".join(f"{k} {v}" for k, v in recall.items()))
        out = {"rows": args.rows, "seed": args.seed, "mode": mode, "pairwise": scores, **facts}
        print(json.dumps(out, default=str))
        if scores["f1"] < args.target:
            sys.exit(1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
