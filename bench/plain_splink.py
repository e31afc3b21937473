"""Baseline: plain Splink 5 + DuckDB, what a data engineer would write by hand.

    .venv/bin/python bench/plain_splink.py --source S.csv --target T.csv --dataset bankgen \
        [--truth truth_pairs.csv] [--threshold 0.9] [--pairs-out pairs.csv]

Reads the two CSV files with polars (every cell as a string), normalises them by hand
(bankgen: parses the bank's ``$1,234.56`` / ``(1,234.56)`` money and ``dd/MM/yyyy`` dates,
upper-cases references, renames the bank columns to the ledger's; messy (``messygen.py``):
the same money and date parsing, ``Ref#`` -> ``document_no`` (blank is null), ``Payee`` and
``vendor_name`` trimmed and upper-cased; febrl: drops ``rec_id``),
registers them with ``DuckDBAPI``, estimates lambda from deterministic rules, u by random
sampling (``max_pairs=1e6``) and m by EM on two blocking rules, predicts, keeps the pairs at or
above the threshold and makes them one-to-one greedily (highest probability first; ties go to
the lower source row, then the lower target row). Reports the wall time of every step, the
peak RSS of this process (DuckDB runs in-process, so it is included) and, given the truth,
pairwise precision/recall/F1 at the threshold and at a few others. ``seconds`` runs from
reading the files to the one-to-one pairs; Splink (and with it DuckDB) is first imported inside
it, as the step ``import splink``, so ``seconds_after_imports`` is ``seconds`` less that step
(polars is imported with the module, before either). ``--pairs-out`` writes the pairs.

The last stdout line is the result as one JSON object (`run_plain_splink`'s dict).
The scoring helpers (`greedy_one_to_one`, `pairwise_scores`, `read_truth_pairs`) are shared
with ``accuracy_bench.py``. Splink is imported only when a run starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path
from typing import Any, Literal

import polars as pl

SOURCE_NAME = "source_file"
TARGET_NAME = "target_file"
OTHER_THRESHOLDS = (0.5, 0.99)
IMPORT_STEP = "import splink"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_truth_pairs(path: Path | str) -> set[tuple[int, int]]:
    """The true (source_row_number, target_row_number) pairs of a truth_pairs.csv."""
    frame = pl.read_csv(
        path,
        columns=["source_row_number", "target_row_number"],
        schema_overrides={"source_row_number": pl.Int64, "target_row_number": pl.Int64},
    )
    return set(frame.iter_rows())


def greedy_one_to_one(scored: pl.DataFrame) -> pl.DataFrame:
    """Keep each source and target row in at most one pair, best probability first.

    `scored` has ``source_row_number``, ``target_row_number`` and ``match_probability``.
    """
    ordered = scored.sort(
        ["match_probability", "source_row_number", "target_row_number"],
        descending=[True, False, False],
    )
    used_s: set[int] = set()
    used_t: set[int] = set()
    keep = []
    for s, t in zip(
        ordered["source_row_number"].to_list(), ordered["target_row_number"].to_list(), strict=True
    ):
        keep.append(s not in used_s and t not in used_t)
        if keep[-1]:
            used_s.add(s)
            used_t.add(t)
    return ordered.filter(pl.Series(keep, dtype=pl.Boolean))


def pairwise_scores(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict:
    """Precision, recall and F1 of predicted pairs against true pairs."""
    tp = len(predicted & truth)
    fp = len(predicted) - tp
    fn = len(truth) - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


# --------------------------------------------------------------------------------------------
# Hand-written preparation and models
# --------------------------------------------------------------------------------------------


def _prepare_bankgen(source: Path, target: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    bank = pl.read_csv(source, infer_schema=False)
    ledger = pl.read_csv(target, infer_schema=False)
    negative = pl.col("Amount").str.starts_with("(")
    number = pl.col("Amount").str.replace_all(r"[$,()\s]", "").cast(pl.Float64)
    a = bank.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("unique_id"),
        pl.col("Reference").str.strip_chars().str.to_uppercase().alias("reference"),
        pl.col("Counterparty Name").str.strip_chars().alias("counterparty"),
        pl.when(negative).then(-number).otherwise(number).alias("amount"),
        pl.col("Value Date").str.to_date("%d/%m/%Y").alias("posting_date"),
        pl.col("Currency").str.to_uppercase().alias("currency"),
    )
    b = ledger.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("unique_id"),
        pl.col("reference").str.strip_chars().str.to_uppercase(),
        pl.col("counterparty").str.strip_chars(),
        pl.col("amount").cast(pl.Float64),
        pl.col("posting_date").str.to_date("%Y-%m-%d"),
        pl.col("currency").str.to_uppercase(),
    )
    cents = (pl.col("amount") * 100).round().cast(pl.Int64).alias("amount_cents")
    return a.with_columns(cents), b.with_columns(cents)


def _amount_comparison() -> Any:
    """Amounts: within a cent, within 100, else (both data sets' baselines)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="amount",
        comparison_levels=[
            cll.NullLevel("amount"),
            cll.AbsoluteDifferenceLevel("amount", 0.01),
            cll.AbsoluteDifferenceLevel("amount", 100),
            cll.ElseLevel(),
        ],
    )


def _bankgen_model() -> tuple[Any, list, list, float]:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    amount = _amount_comparison()
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.ExactMatch("reference"),
            amount,
            cl.AbsoluteDateDifferenceAtThresholds(
                "posting_date", input_is_string=False, metrics=["day", "day"], thresholds=[3, 31]
            ),
            cl.JaroWinklerAtThresholds("counterparty", [0.95, 0.85]),
            cl.ExactMatch("currency"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("reference"),
            block_on("amount_cents"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [block_on("reference")]
    em_rules = [block_on("reference"), block_on("amount_cents")]
    return settings, deterministic, em_rules, 0.95


def _prepare_messy(source: Path, target: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    bank = pl.read_csv(source, infer_schema=False)
    ledger = pl.read_csv(target, infer_schema=False)
    negative = pl.col("Amount").str.starts_with("(")
    number = pl.col("Amount").str.replace_all(r"[$,()\s]", "").cast(pl.Float64)
    blank_is_null = pl.when(pl.col("Ref#").str.strip_chars() != "").then(
        pl.col("Ref#").str.strip_chars().str.to_uppercase()
    )
    a = bank.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("unique_id"),
        blank_is_null.alias("document_no"),
        pl.col("Payee").str.strip_chars().str.to_uppercase().alias("vendor_name"),
        pl.when(negative).then(-number).otherwise(number).alias("amount"),
        pl.col("Txn Date").str.to_date("%d/%m/%Y").alias("posting_date"),
    )
    b = ledger.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("unique_id"),
        pl.col("document_no").str.strip_chars().str.to_uppercase(),
        pl.col("vendor_name").str.strip_chars().str.to_uppercase(),
        pl.col("amount").cast(pl.Float64),
        pl.col("posting_date").str.to_date("%Y-%m-%d"),
    )
    cents = (pl.col("amount") * 100).round().cast(pl.Int64).alias("amount_cents")
    return a.with_columns(cents), b.with_columns(cents)


def _messy_model() -> tuple[Any, list, list, float]:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    amount = _amount_comparison()
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.ExactMatch("document_no"),
            amount,
            cl.AbsoluteDateDifferenceAtThresholds(
                "posting_date", input_is_string=False, metrics=["day", "day"], thresholds=[3, 31]
            ),
            cl.JaroWinklerAtThresholds("vendor_name", [0.95, 0.80]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("document_no"),
            block_on("amount_cents"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [block_on("document_no")]
    em_rules = [block_on("document_no"), block_on("amount_cents")]
    return settings, deterministic, em_rules, 0.7


def _prepare_febrl(source: Path, target: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    frames = []
    for path in (source, target):
        frame = pl.read_csv(path, infer_schema=False).drop("rec_id")
        frames.append(
            frame.select(
                pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("unique_id"),
                pl.all().str.strip_chars(),
            )
        )
    return frames[0], frames[1]


def _febrl_model() -> tuple[Any, list, list, float]:
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("given_name", [0.95, 0.85]),
            cl.JaroWinklerAtThresholds("surname", [0.95, 0.85]),
            cl.DamerauLevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.95, 0.85]),
            cl.JaroWinklerAtThresholds("address_2", [0.95, 0.85]),
            cl.JaroWinklerAtThresholds("suburb", [0.95, 0.85]),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode", "street_number"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    deterministic = [
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
    ]
    em_rules = [block_on("date_of_birth"), block_on("given_name", "surname")]
    return settings, deterministic, em_rules, 0.7


def run_plain_splink(
    source_csv: Path | str,
    target_csv: Path | str,
    dataset: Literal["bankgen", "febrl", "messy"],
    threshold: float = 0.9,
    truth_pairs: Path | str | None = None,
    pairs_out: Path | str | None = None,
) -> dict:
    """Link `source_csv` to `target_csv` with plain Splink; timings, peak RSS and scores.

    With `pairs_out`, the one-to-one pairs at the threshold are written there as CSV
    (``source_row_number,target_row_number,match_probability``; not timed).
    """
    steps: dict[str, float] = {}
    started = t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = round(now - t, 3)
        t = now

    if dataset == "bankgen":
        a, b = _prepare_bankgen(Path(source_csv), Path(target_csv))
    elif dataset == "febrl":
        a, b = _prepare_febrl(Path(source_csv), Path(target_csv))
    elif dataset == "messy":
        a, b = _prepare_messy(Path(source_csv), Path(target_csv))
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    lap("read + prepare (polars)")

    import splink.comparison_level_library  # noqa: F401 - every Splink import in one timed step
    import splink.comparison_library  # noqa: F401
    from splink import DuckDBAPI, Linker

    lap(IMPORT_STEP)
    models = {"bankgen": _bankgen_model, "febrl": _febrl_model, "messy": _messy_model}
    settings, deterministic, em_rules, recall = models[dataset]()
    db_api = DuckDBAPI()
    sdf_a = db_api.register(a, dataset_display_name=SOURCE_NAME)
    sdf_b = db_api.register(b, dataset_display_name=TARGET_NAME)
    linker = Linker([sdf_a, sdf_b], settings, log_level=logging.WARNING)
    lap("settings + register")

    linker.training.estimate_probability_two_random_records_match(deterministic, recall=recall)
    lap("estimate lambda (deterministic rules)")
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    lap("estimate u (random sampling, 1e6 pairs)")
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
        lap(f"EM on {rule.get_blocking_rule('duckdb').blocking_rule_sql}")

    lowest = min((threshold, *OTHER_THRESHOLDS))
    predictions = linker.inference.predict(threshold_match_probability=lowest)
    relation = predictions.as_duckdbpyrelation()
    scored = pl.from_arrow(
        relation.select(
            "source_dataset_l, unique_id_l, unique_id_r, match_probability"
        ).to_arrow_table()
    )
    assert isinstance(scored, pl.DataFrame)
    left_is_source = pl.col("source_dataset_l") == SOURCE_NAME
    scored = scored.select(
        pl.when(left_is_source)
        .then(pl.col("unique_id_l"))
        .otherwise(pl.col("unique_id_r"))
        .cast(pl.Int64)
        .alias("source_row_number"),
        pl.when(left_is_source)
        .then(pl.col("unique_id_r"))
        .otherwise(pl.col("unique_id_l"))
        .cast(pl.Int64)
        .alias("target_row_number"),
        pl.col("match_probability").cast(pl.Float64),
    )
    lap(f"predict (>= {lowest})")

    at_threshold = scored.filter(pl.col("match_probability") >= threshold)
    matched = greedy_one_to_one(at_threshold)
    lap("greedy one-to-one")
    seconds = time.perf_counter() - started
    if pairs_out is not None:
        matched.write_csv(pairs_out)
    result: dict[str, Any] = {
        "engine": "plain splink 5 + duckdb",
        "dataset": dataset,
        "source_rows": a.height,
        "target_rows": b.height,
        "threshold": threshold,
        "predictions_at_threshold": at_threshold.height,
        "pairs": matched.height,
        "seconds": round(seconds, 3),
        "import_seconds": steps[IMPORT_STEP],
        "seconds_after_imports": round(seconds - steps[IMPORT_STEP], 3),
        "steps": steps,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if truth_pairs is not None:
        truth = read_truth_pairs(truth_pairs)
        result["scores"] = pairwise_scores(set(matched.select(pl.nth(0, 1)).iter_rows()), truth)
        result["scores_at"] = {}
        for other in OTHER_THRESHOLDS:
            kept = greedy_one_to_one(scored.filter(pl.col("match_probability") >= other))
            result["scores_at"][str(other)] = pairwise_scores(
                set(kept.select(pl.nth(0, 1)).iter_rows()), truth
            )
    return result


def describe(result: dict) -> str:
    """Human-readable lines for a `run_plain_splink` result."""
    lines = [
        f"plain Splink on {result['dataset']}: {result['source_rows']:,} x "
        f"{result['target_rows']:,} rows, {result['seconds']:.1f}s "
        f"({result.get('seconds_after_imports', result['seconds']):.1f}s after imports), "
        f"peak RSS {result['peak_rss_mb']:,.0f} MB, {result['pairs']:,} pairs at "
        f">= {result['threshold']} ({result['predictions_at_threshold']:,} before one-to-one)"
    ]
    lines += [f"    {name:<48} {seconds:7.2f}s" for name, seconds in result["steps"].items()]
    if "scores" in result:
        s = result["scores"]
        lines.append(
            f"    pairwise P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}  "
            f"(tp {s['tp']:,} fp {s['fp']:,} fn {s['fn']:,})"
        )
        for other, s in result["scores_at"].items():
            lines.append(
                f"    at >= {other}: P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--dataset", choices=["bankgen", "febrl", "messy"], required=True)
    parser.add_argument("--truth", type=Path, help="truth_pairs.csv, to score the pairs")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--pairs-out", type=Path, help="write the one-to-one pairs here (CSV)")
    args = parser.parse_args()
    result = run_plain_splink(
        args.source, args.target, args.dataset, args.threshold, args.truth, args.pairs_out
    )
    print(describe(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
