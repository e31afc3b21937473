"""Reconciliation exceptions: what a person must look at, with severity, confidence and a diff.

Semantics (DESIGN.md):
- MISSING_IN_TARGET: a valid source record left unmatched; MISSING_IN_SOURCE: the same for a
  target record. Confidence = 1 - the best match probability any candidate reached (1 when
  no candidate was even scored).
- AMOUNT_MISMATCH / DATE_MISMATCH: a matched pair whose RANGE / DATE_RANGE field differs
  beyond the rule's tolerance (within it is a clean match). Confidence = the pair's score.
- DUPLICATE_FOUND: a record equal on every matching field to another record of the same file
  that is left over: a group's members match first (lowest row first); members left
  unmatched beyond the first unmatched one - or any, when a member matched - are duplicates,
  not missing records. `diff` names the row it repeats.
- A matched group (`aggregation:`) is judged on its totals: one AMOUNT_MISMATCH when the
  members' total is beyond the aggregation's tolerance (`aggregation_groups`); its members
  are matched, never MISSING_IN_*.
- VALIDATION_ERROR: a row that failed validation (kept out of matching), one per row, with
  every failing field, check and value in `diff`.
- A MISSING_* whose record Splink scored against a still-unmatched record of the other file
  carries that best candidate as `suggested_match` (`pipelines.reconcile.suggested_match`).

Severity (`SeverityPolicy`, configurable per rule set under `severity:`) grows with the size
of the difference: a band is reached when the absolute difference reaches its `amount_absolute`
threshold or the relative difference its `amount_relative` threshold (the higher band wins);
thresholds are for MEDIUM, HIGH and CRITICAL, below the first is LOW. Dates use `date_days`
(days beyond the match). A missing record is graded by its own amount (absolute bands); with
no amount field it gets `missing_default`. Duplicates and validation errors get fixed levels.

Each exception carries `source_data` / `target_data` (the record's fields plus `_row_number`),
a `diff` list of `{field, source_value, target_value, delta}` and a fingerprint (SHA-256 of
its type and records without row numbers, plus its occurrence) that stays the same when the
same data is reconciled again, so human resolutions can be carried over.
"""

from __future__ import annotations

import hashlib

import polars as pl

from pipelines.reconcile.aggregation_groups import group_exceptions
from pipelines.reconcile.breaks import Breaks, find_breaks
from pipelines.reconcile.linkage import LinkResult
from pipelines.reconcile.mapping import ROW, Conformed
from pipelines.reconcile.record_json import records_as_json
from pipelines.reconcile.rule_shapes import SEVERITIES, SeverityPolicy
from pipelines.reconcile.rules import RuleSet
from pipelines.reconcile.suggested_match import with_suggested_matches

__all__ = ["SEVERITIES", "SeverityPolicy", "build_exceptions"]

EXCEPTION_SCHEMA = {
    "type": pl.String,
    "severity": pl.String,
    "description": pl.String,
    "source_data": pl.String,
    "target_data": pl.String,
    "diff": pl.String,
    "confidence": pl.Float64,
    "source_row_number": pl.Int64,
    "target_row_number": pl.Int64,
    "suggested_match": pl.String,  # MISSING_*: the best candidate kept (`suggested_match`)
}


def _band(value: pl.Expr, thresholds: tuple[float, float, float]) -> pl.Expr:
    return sum((value >= t).cast(pl.Int8) for t in thresholds)  # type: ignore[return-value]


def _level(index: pl.Expr) -> pl.Expr:
    return index.replace_strict(
        list(range(4)), list(SEVERITIES), default="LOW", return_dtype=pl.String
    )


def _money(expr: pl.Expr) -> pl.Expr:
    return expr.round(2).cast(pl.String)


def _key_text(frame: pl.DataFrame, names: list[str]) -> pl.Expr:
    parts = [
        pl.concat_str([pl.lit(f"{n}="), pl.col(n).cast(pl.String).fill_null("-")])
        for n in names
        if n in frame.columns
    ]
    return pl.concat_str(parts, separator=", ") if parts else pl.lit("")


def build_exceptions(
    conformed: Conformed,
    linked: LinkResult,
    rule_set: RuleSet,
    *,
    source_records: pl.DataFrame | pl.LazyFrame,
    target_records: pl.DataFrame | pl.LazyFrame,
    source_failures: pl.DataFrame,
    target_failures: pl.DataFrame,
    breaks: Breaks | None = None,
) -> pl.DataFrame:
    """Every exception of a reconciliation, one row each, in EXCEPTION_SCHEMA plus fingerprint.

    `breaks`: the pairs beyond tolerance and the records left over, found by the linkage
    engine (`breaks.find_breaks`; by default found here on in-process DuckDB)."""
    policy = SeverityPolicy.from_config(rule_set.severity)
    links = linked.links
    fields_ = list(conformed.field_types)
    amount_fields = [f for f, k in conformed.field_types.items() if k == "RANGE"]
    parts: list[pl.DataFrame] = []

    # --- mismatches on matched pairs (a group is judged on its totals: aggregation_groups)
    if breaks is None:
        breaks = find_breaks(conformed, links, rule_set)
    for index, rule in enumerate(rule_set.matching_rules):
        if rule.match_type not in ("RANGE", "DATE_RANGE"):
            continue
        for name in rule.fields:
            s, t = pl.col(f"{name}__s"), pl.col(f"{name}__t")
            if rule.match_type == "RANGE":
                delta = s - t
                kind = "AMOUNT_MISMATCH"
                relative = delta.abs() / pl.max_horizontal(t.abs(), pl.lit(1e-9))
                severity = _level(
                    pl.max_horizontal(
                        _band(delta.abs(), policy.amount_absolute),
                        _band(relative, policy.amount_relative),
                    )
                )
                text = pl.format(
                    "{} differs by {} (source {}, target {}; tolerance {}); matched with "
                    "confidence {}",
                    pl.lit(name),
                    _money(delta),
                    _money(s),
                    _money(t),
                    pl.lit(f"{rule.tolerance:g}"),
                    pl.col("score").round(3),
                )
                delta_out = delta.round(6)
            else:
                delta = (s - t).dt.total_days()
                kind = "DATE_MISMATCH"
                severity = _level(_band(delta.abs() - (rule.tolerance or 0), policy.date_days))
                text = pl.format(
                    "{} differs by {} day(s) (source {}, target {}; tolerance {}); matched "
                    "with confidence {}",
                    pl.lit(name),
                    delta,
                    s.cast(pl.String),
                    t.cast(pl.String),
                    pl.lit(f"{rule.tolerance:g}"),
                    pl.col("score").round(3),
                )
                delta_out = delta.cast(pl.Float64)
            beyond = breaks.beyond[(index, name)]
            if beyond.height == 0:
                continue
            diff = pl.concat_str(
                [
                    pl.lit("["),
                    pl.struct(
                        pl.lit(name).alias("field"),
                        s.alias("source_value"),
                        t.alias("target_value"),
                        delta_out.alias("delta"),
                        pl.lit(rule.tolerance).alias("tolerance"),
                    ).struct.json_encode(),
                    pl.lit("]"),
                ]
            )
            parts.append(
                beyond.select(
                    pl.lit(kind).alias("type"),
                    severity.alias("severity"),
                    text.alias("description"),
                    diff.alias("diff"),
                    pl.col("score").alias("confidence"),
                    pl.col("source_row").alias("source_row_number"),
                    pl.col("target_row").alias("target_row_number"),
                )
            )

    # --- unmatched: duplicates and missing records, per side
    for side, best, kind, other in (
        ("source", linked.best_source, "MISSING_IN_TARGET", "target"),
        ("target", linked.best_target, "MISSING_IN_SOURCE", "source"),
    ):
        leftover = breaks.leftover[side]
        is_duplicate = (pl.col("_group") > 1) & (
            pl.col("_group_matched") | (pl.col(ROW) != pl.col("_first_unmatched"))
        )
        duplicates = leftover.filter(is_duplicate)
        missing = leftover.filter(~is_duplicate).join(
            best.rename({f"{side}_row": ROW}), on=ROW, how="left"
        )
        row_col = f"{side}_row_number"
        other_col = f"{other}_row_number"
        if duplicates.height:
            original = (
                pl.when(pl.col("_first") != pl.col(ROW))
                .then(pl.col("_first"))
                .otherwise(pl.col("_first_unmatched"))
            )
            parts.append(
                duplicates.select(
                    pl.lit("DUPLICATE_FOUND").alias("type"),
                    pl.lit(policy.duplicate).alias("severity"),
                    pl.format(
                        "{} row {} repeats row {} of the same file ({})",
                        pl.lit(side.capitalize()),
                        pl.col(ROW),
                        original,
                        _key_text(duplicates, fields_),
                    ).alias("description"),
                    pl.concat_str(
                        [
                            pl.lit('[{"field": "_row_number", "duplicate_of": '),
                            original.cast(pl.String),
                            pl.lit("}]"),
                        ]
                    ).alias("diff"),
                    pl.lit(1.0).alias("confidence"),
                    pl.col(ROW).alias(row_col),
                    pl.lit(None, dtype=pl.Int64).alias(other_col),
                )
            )
        if missing.height:
            if amount_fields:
                amount = pl.col(amount_fields[0]).abs()
                severity = (
                    pl.when(amount.is_null())
                    .then(pl.lit(policy.missing_default))
                    .otherwise(_level(_band(amount, policy.amount_absolute)))
                )
            else:
                severity = pl.lit(policy.missing_default)
            confidence = 1.0 - pl.col("best_probability").fill_null(0.0)
            parts.append(
                missing.select(
                    pl.lit(kind).alias("type"),
                    severity.alias("severity"),
                    pl.format(
                        "{} row {} has no match in the {} ({}); best candidate probability {}",
                        pl.lit(side.capitalize()),
                        pl.col(ROW),
                        pl.lit(other),
                        _key_text(missing, fields_),
                        pl.col("best_probability").fill_null(0.0).round(3),
                    ).alias("description"),
                    pl.lit("[]").alias("diff"),
                    confidence.alias("confidence"),
                    pl.col(ROW).alias(row_col),
                    pl.lit(None, dtype=pl.Int64).alias(other_col),
                )
            )

    # --- validation errors, one per failing row
    for side, failures in (("source", source_failures), ("target", target_failures)):
        if failures.height == 0:
            continue
        row_col = f"{side}_row_number"
        other_col = "target_row_number" if side == "source" else "source_row_number"
        per_row = failures.group_by("row_number").agg(
            pl.concat_str(
                [
                    pl.lit("["),
                    pl.struct(
                        pl.col("column").alias("field"),
                        pl.col("check"),
                        pl.col("value").alias(
                            "source_value" if side == "source" else "target_value"
                        ),
                    )
                    .struct.json_encode()
                    .str.join(", "),
                    pl.lit("]"),
                ]
            ).alias("diff"),
            pl.format("{} ({})", pl.col("column"), pl.col("check")).str.join("; ").alias("what"),
            pl.col("file").first(),
        )
        parts.append(
            per_row.select(
                pl.lit("VALIDATION_ERROR").alias("type"),
                pl.lit(policy.validation).alias("severity"),
                pl.format(
                    "{} row {} of {} failed validation: {}; kept out of matching",
                    pl.lit(side.capitalize()),
                    pl.col("row_number"),
                    pl.col("file"),
                    pl.col("what"),
                ).alias("description"),
                pl.col("diff"),
                pl.lit(1.0).alias("confidence"),
                pl.col("row_number").cast(pl.Int64).alias(row_col),
                pl.lit(None, dtype=pl.Int64).alias(other_col),
            )
        )

    added = ("source_data", "target_data", "suggested_match")  # joined below
    columns = [c for c in EXCEPTION_SCHEMA if c not in added]
    body = (
        pl.concat(
            [p.select(columns).cast({c: EXCEPTION_SCHEMA[c] for c in columns}) for p in parts]
        )
        if parts
        else pl.DataFrame(schema={c: EXCEPTION_SCHEMA[c] for c in columns})
    )
    # records as JSON only for the rows that have an exception (not the whole files)
    s_rec = records_as_json(source_records, body.get_column("source_row_number"))
    t_rec = records_as_json(target_records, body.get_column("target_row_number"))
    body = body.join(
        s_rec.rename({ROW: "source_row_number", "_json": "source_data", "_content": "_s"}),
        on="source_row_number",
        how="left",
    ).join(
        t_rec.rename({ROW: "target_row_number", "_json": "target_data", "_content": "_t"}),
        on="target_row_number",
        how="left",
    )
    groups = group_exceptions(
        conformed,
        links,
        rule_set,
        source_records=source_records,
        target_records=target_records,
    )
    if groups.height:
        body = pl.concat([body, groups.select(body.columns)])
    body = body.sort(["type", "source_row_number", "target_row_number"], nulls_last=True)
    key = pl.concat_str(
        [pl.col("type"), pl.col("_s").fill_null(""), pl.col("_t").fill_null("")], separator="|"
    )
    body = body.with_columns(key.alias("_key")).with_columns(
        pl.col("_key").cum_count().over("_key").alias("_occurrence")
    )
    prints = [
        hashlib.sha256(f"{k}|{n}".encode()).hexdigest()
        for k, n in zip(body.get_column("_key"), body.get_column("_occurrence"), strict=True)
    ]
    body = body.with_columns(pl.Series("fingerprint", prints, dtype=pl.String))
    best = {"source": linked.best_source, "target": linked.best_target}
    body = with_suggested_matches(body, conformed, best, rule_set.match_threshold)
    return body.select(*EXCEPTION_SCHEMA, "fingerprint")
