"""Around aggregate matching: quoted references in, and what a group shows out.

`quotes_frame` gives the aggregation search (`pipelines.reconcile.aggregation`) the identifiers
the one side's free text quotes and the many side's identifiers; `group_exceptions` judges each
matched group (one AMOUNT_MISMATCH for a group whose members' total is beyond the tolerance:
short-paid by a bank charge); `group_sizes` counts groups by their number of members.

A group's exception: the one side's data column (`source_data` when `many_side: target`) is
that record, with its `_row_number` at the top level as for any exception; the other column is
`{"members": [...]}`, each member with its `_row_number`; `diff` holds the totals and the
difference; the other side's row number is null (there are several).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipelines.reconcile.mapping import ROW, Conformed, apply_mappings
from pipelines.reconcile.normalize import normalize_identifier, normalize_plain
from pipelines.reconcile.record_json import records_as_json
from pipelines.reconcile.rule_shapes import SEVERITIES, SeverityPolicy
from pipelines.reconcile.rules import TOLERANCE_EPSILON, RuleSet

QUOTES_SCHEMA = {"side": pl.String, ROW: pl.Int64, "word": pl.String}
GROUP_EXCEPTION_COLUMNS = (
    "type",
    "severity",
    "description",
    "diff",
    "confidence",
    "source_row_number",
    "target_row_number",
    "source_data",
    "_s",
    "target_data",
    "_t",
)


def quotes_frame(
    source: pl.DataFrame, target: pl.DataFrame, rule_set: RuleSet
) -> pl.DataFrame | None:
    """Identifier words the one side quotes and the many side's identifiers, per aggregation.

    `source` is the source in the target vocabulary (mappings applied), `target` the target,
    both as read (with `_row_number`). Returns `side` ("one:<name>" / "many:<name>"),
    `_row_number`, `word`: the one side's runs of one to three words holding a digit and four
    or more characters and its own value of the identifier (a bank line's reference names its
    invoice as a quote would), the many side's identifier, normalised as EXACT identifiers.
    """
    parts = []
    for rule in rule_set.aggregation:
        if not rule.reference_field or not rule.reference_target_field:
            continue
        one = source if rule.one_side == "source" else target
        many = target if rule.many_side == "target" else source
        if rule.reference_field not in one.columns or rule.reference_target_field not in many:
            continue
        text = pl.col(rule.reference_field).cast(pl.String)
        words = normalize_plain(text).str.split(" ")
        w = pl.element()
        runs = pl.concat_list(
            words, words.list.eval(w + w.shift(-1)), words.list.eval(w + w.shift(-1) + w.shift(-2))
        ).list.eval(w.filter(w.str.contains(r"\d") & (w.str.len_chars() >= 4)).unique())
        # only texts holding a digit can quote an identifier (most remittances are blank)
        quoting = (
            one.filter(text.str.contains(r"\d"))
            .select(pl.lit(f"one:{rule.name}").alias("side"), pl.col(ROW), runs.alias("word"))
            .explode("word")
            .drop_nulls("word")
        )
        ident = normalize_identifier(
            pl.col(rule.reference_target_field), rule_set.text_normalization
        )
        if rule.reference_target_field in one.columns:  # its own identifier names one too
            own = one.select(
                pl.lit(f"one:{rule.name}").alias("side"),
                pl.col(ROW),
                ident.cast(pl.String).alias("word"),
            ).drop_nulls("word")
            quoting = pl.concat([quoting.cast(QUOTES_SCHEMA), own.cast(QUOTES_SCHEMA)])
        # and only the identifiers some text quotes can be met
        quoted = (
            many.select(pl.lit(f"many:{rule.name}").alias("side"), pl.col(ROW), ident.alias("word"))
            .drop_nulls("word")
            .join(quoting.select("word").unique(), on="word", how="semi", maintain_order="left")
        )
        parts += [quoting, quoted]
    if not parts:
        return None
    return pl.concat([p.cast(QUOTES_SCHEMA) for p in parts]).unique(maintain_order=True)


def write_quotes(
    work_dir: Path,
    source: pl.DataFrame,
    target: pl.DataFrame,
    rule_set: RuleSet,
    schema: list[dict[str, Any]] | None,
) -> None:
    """`quotes.parquet` in a reconciliation's working folder, when an aggregation declares
    references (`source`, `target`: the canonical frames; the source is mapped here)."""
    path = work_dir / "quotes.parquet"
    path.unlink(missing_ok=True)  # a re-run's own, never an earlier run's
    if any(a.reference_field for a in rule_set.aggregation):
        mapped = apply_mappings(source, rule_set, schema=schema)
        quotes = quotes_frame(mapped, target, rule_set)
        if quotes is not None:
            quotes.write_parquet(path)


def group_sizes(links: pl.DataFrame) -> dict[str, int]:
    """How many groups have each number of members (`{"2": 10, "3": 4}`)."""
    if "match_group" not in links.columns:
        return {}
    sizes = links.drop_nulls("match_group").group_by("match_group").len()
    counts = sizes.group_by("len").len(name="groups").sort("len")
    return {str(n): int(g) for n, g in counts.iter_rows()}


def _level(value: pl.Expr, thresholds: tuple[float, float, float]) -> pl.Expr:
    return sum((value >= t).cast(pl.Int8) for t in thresholds)  # type: ignore[return-value]


def group_exceptions(
    conformed: Conformed,
    links: pl.DataFrame,
    rule_set: RuleSet,
    *,
    source_records: pl.DataFrame | pl.LazyFrame,
    target_records: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """One AMOUNT_MISMATCH per matched group beyond its aggregation's tolerance."""
    empty = pl.DataFrame(
        schema={
            c: pl.Float64 if c == "confidence" else pl.Int64 if c.endswith("number") else pl.String
            for c in GROUP_EXCEPTION_COLUMNS
        }
    )
    if "match_group" not in links.columns or not rule_set.aggregation:
        return empty
    grouped = links.drop_nulls("match_group")
    if grouped.height == 0:
        return empty
    policy = SeverityPolicy.from_config(rule_set.severity)
    shapes = grouped.group_by("match_group").agg(
        pl.col("source_row").n_unique().alias("_ns"), pl.col("score").first()
    )
    parts = []
    for rule in rule_set.aggregation:
        one, many = rule.one_side, rule.many_side
        one_col, many_col = f"{one}_row", f"{many}_row"
        # the one side's record repeats in every row of its group
        mine = shapes.filter((pl.col("_ns") == 1) == (one == "source")).select("match_group")
        rows = grouped.join(mine, on="match_group").select("match_group", one_col, many_col)
        if rows.height == 0:
            continue
        amount = rule.amount_field
        one_amount = getattr(conformed, one).select(
            pl.col(ROW).alias(one_col), pl.col(amount).alias("_one")
        )
        many_amount = getattr(conformed, many).select(
            pl.col(ROW).alias(many_col), pl.col(amount).alias("_member")
        )
        totals = (
            rows.join(many_amount, on=many_col)
            .group_by("match_group")
            .agg(
                pl.col(one_col).first(),
                pl.col("_member").sum().alias("_members"),
                pl.col(many_col).sort().alias("_rows"),
            )
            .join(one_amount, on=one_col)
        )
        delta = (
            (pl.col("_one") - pl.col("_members"))
            if one == "source"
            else (pl.col("_members") - pl.col("_one"))
        )
        beyond = totals.with_columns(delta.alias("_delta")).filter(
            pl.col("_delta").abs() > rule.tolerance + TOLERANCE_EPSILON
        )
        if beyond.height == 0:
            continue
        s_total, t_total = ("_one", "_members") if one == "source" else ("_members", "_one")
        relative = pl.col("_delta").abs() / pl.max_horizontal(pl.col(t_total).abs(), 1e-9)
        level = pl.max_horizontal(
            _level(pl.col("_delta").abs(), policy.amount_absolute),
            _level(relative, policy.amount_relative),
        )
        judged = beyond.join(shapes.select("match_group", "score"), on="match_group").select(
            "match_group",
            pl.col(one_col).alias("_one_row"),
            "_rows",
            pl.lit("AMOUNT_MISMATCH").alias("type"),
            level.replace_strict(list(range(4)), list(SEVERITIES), return_dtype=pl.String).alias(
                "severity"
            ),
            pl.format(
                "{} of {} row {} differs by {} from the {} of its {} {} records (source {}, "
                "target {}; tolerance {}); matched as group {} ({})",
                pl.lit(amount),
                pl.lit(one),
                pl.col(one_col),
                pl.col("_delta").round(2),
                pl.lit("total"),
                pl.col("_rows").list.len(),
                pl.lit(many),
                pl.col(s_total).round(2),
                pl.col(t_total).round(2),
                pl.lit(f"{rule.tolerance:g}"),
                pl.col("match_group"),
                pl.lit(rule.name),
            ).alias("description"),
            pl.concat_str(
                pl.lit("["),
                pl.struct(
                    pl.lit(amount).alias("field"),
                    pl.col(s_total).round(6).alias("source_value"),
                    pl.col(t_total).round(6).alias("target_value"),
                    pl.col("_delta").round(6).alias("delta"),
                    pl.lit(rule.tolerance).alias("tolerance"),
                    pl.col("_rows").list.len().alias("members"),
                ).struct.json_encode(),
                pl.lit("]"),
            ).alias("diff"),
            pl.col("score").alias("confidence"),
        )
        one_records = source_records if one == "source" else target_records
        many_records = target_records if one == "source" else source_records
        one_json = records_as_json(one_records, judged.get_column("_one_row"))
        member_rows = judged.select("match_group", pl.col("_rows").alias(ROW)).explode(ROW)
        member_json = (
            member_rows.join(records_as_json(many_records, member_rows.get_column(ROW)), on=ROW)
            .sort("match_group", ROW)
            .group_by("match_group", maintain_order=True)
            .agg(
                pl.concat_str(
                    pl.lit('{"members": ['), pl.col("_json").str.join(", "), pl.lit("]}")
                ).alias("_members_json"),
                pl.col("_content").str.join(", ").alias("_members_content"),
            )
        )
        done = judged.join(one_json.rename({ROW: "_one_row"}), on="_one_row", how="left").join(
            member_json, on="match_group", how="left"
        )
        one_data, many_data = ("source", "target") if one == "source" else ("target", "source")
        parts.append(
            done.select(
                "type",
                "severity",
                "description",
                "diff",
                "confidence",
                pl.col("_one_row").alias(f"{one_data}_row_number"),
                pl.lit(None, dtype=pl.Int64).alias(f"{many_data}_row_number"),
                pl.col("_json").alias(f"{one_data}_data"),
                pl.col("_content").alias("_s" if one == "source" else "_t"),
                pl.col("_members_json").alias(f"{many_data}_data"),
                pl.col("_members_content").alias("_t" if one == "source" else "_s"),
            ).select(GROUP_EXCEPTION_COLUMNS)
        )
    if not parts:
        return empty
    return pl.concat([p.cast(empty.schema) for p in parts])
