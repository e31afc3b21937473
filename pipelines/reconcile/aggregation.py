"""Aggregate matching: one record settled by several of the other side (1:N and N:1).

After the one-to-one passes, what is left is grouped by each `aggregation:` rule of the rule
set (`pipelines.reconcile.aggregation_rules`): for every one-side record still unpaired, or
paired one to one with an amount beyond the tolerance (a "break"), a bounded subset-sum over
the many side's leftovers picks the group that settles it.

- Candidates (`pipelines.reconcile.aggregation_candidates`, one DuckDB join): many-side
  leftovers agreeing on every `group_by` field (the rule set's FUZZY rule at its threshold,
  EXACT equal), of the same sign, within `date_window_days`, no larger than the one-side amount
  plus a short payment. Records the one side's free text quotes (`reference_field` ->
  `reference_target_field`; its own value of that field too) are candidates too, within four
  windows, and rank first; a record quoting any takes only a group holding one of them. At most
  `CANDIDATE_BUDGET` candidates a record, nearest dates first.
- Search (`pipelines.reconcile.aggregation_kernel`, compiled, integer cents): combinations of
  2..`max_group_size` members that agree among themselves on `group_by`, largest amounts
  first, pruned by the remaining sum;
  at most `NODE_BUDGET` combinations visited a record. A group within `tolerance` is exact;
  one whose total exceeds the one-side amount (or, with `many_side: source`, falls short of it)
  by at most max(`SHORT_SHARE` of the total, `SHORT_ABSOLUTE`) is short-paid (a bank charge;
  the source side is taken to be the payment). Preference: a group of quoted members when they
  alone settle it; then exact over short-paid, more quoted members, members carrying the one
  side's own `group_by` values over merely similar ones, smaller shortfall, fewer members,
  closer dates, lower row numbers (deterministic). The short-payment bound is tight on purpose:
  with a customer's twenty open invoices, 2 % of a total is met by chance by some combination.
- Competition: a break's one-side record takes a group only when the group is exact or
  explains the amount better than the pair; the pair is then dissolved (its many-side record is
  a group member or becomes a leftover). Another record's break partner may join an exact
  group, or a short-paid one short by less than that break, unless an identifier made that
  pair (`IDENTIFIED`: equal references, or a quote). Records are served best group
  first; a record whose group lost a member searches again without it (three rounds).

`pipelines.reconcile.aggregation_search` runs the search and the competition.

A group is `kind` `AGGREGATE` links, one per member pair, sharing `match_group`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl

from pipelines.reconcile.aggregation_candidates import candidates
from pipelines.reconcile.aggregation_rules import AggregationRule
from pipelines.reconcile.aggregation_search import (
    Candidate,
    Group,
    Settled,
    best_group,
    candidate_pool,
    settle,
)
from pipelines.reconcile.linkage.passes import LINK_SCHEMA
from pipelines.reconcile.mapping import ROW, Conformed
from pipelines.reconcile.rules import RuleSet

__all__ = ["Candidate", "Group", "aggregate", "best_group"]

ROUNDS = 3
# the kinds of pair an identifier made (`linkage.passes`)
IDENTIFIED = ("EXACT", "REFERENCE")
GROUP_SCHEMA = {**LINK_SCHEMA, "match_group": pl.Int64}


def _side_frame(frame: pl.DataFrame, rule: AggregationRule) -> pl.DataFrame:
    return (
        frame.filter(pl.col("_valid"))
        .select(
            pl.col(ROW).alias("r"),
            *[pl.col(f).cast(pl.String).alias(f"g{i}") for i, f in enumerate(rule.group_by)],
            (pl.col(rule.amount_field) * 100).round(0).cast(pl.Int64).alias("cents"),
            pl.col(rule.date_field).cast(pl.Date).alias("d"),
        )
        .drop_nulls("cents")
    )


def _group_rows(settled: Settled, rule: AggregationRule, first_group: int) -> pl.DataFrame:
    """One `AGGREGATE` link per member pair, groups numbered from `first_group`."""
    size = settled.size
    score = np.maximum(0.0, 1.0 - np.abs(settled.diff) / np.maximum(settled.total, 1))
    one = np.repeat(settled.records, size)
    many = settled.members[settled.members >= 0]
    pairs = (one, many) if rule.one_side == "source" else (many, one)
    return pl.DataFrame(
        {
            "source_row": pairs[0],
            "target_row": pairs[1],
            "score": np.repeat(np.round(score, 4), size),
            "kind": "AGGREGATE",
            "match_group": np.repeat(np.arange(first_group, first_group + size.size), size),
        },
        schema=GROUP_SCHEMA,
    )


def aggregate(
    conformed: Conformed,
    rule_set: RuleSet,
    links: pl.DataFrame,
    *,
    quotes: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """`links` with the groups added (column `match_group`) and the breaks they won removed."""
    started = time.perf_counter()
    links = links.with_columns(pl.lit(None, dtype=pl.Int64).alias("match_group"))
    stats: dict[str, Any] = {"groups": 0, "short_paid_groups": 0, "budget_exhausted": 0}
    next_group = 1
    for rule in rule_set.aggregation:
        one_col, many_col = f"{rule.one_side}_row", f"{rule.many_side}_row"
        one = _side_frame(getattr(conformed, rule.one_side), rule)
        many = _side_frame(getattr(conformed, rule.many_side), rule)
        tol = round(rule.tolerance * 100)
        pairs = links.filter(pl.col("match_group").is_null()).select(one_col, many_col)
        pairs = pairs.join(
            one.select(pl.col("r").alias(one_col), pl.col("cents").alias("oc")), on=one_col
        ).join(many.select(pl.col("r").alias(many_col), pl.col("cents").alias("mc")), on=many_col)
        breaks = pairs.filter((pl.col("oc") - pl.col("mc")).abs() > tol)
        paired_one = links.get_column(one_col).implode()
        paired_many = links.get_column(many_col).implode()
        o = one.filter(
            ~pl.col("r").is_in(paired_one) | pl.col("r").is_in(breaks[one_col].implode())
        )
        m = many.filter(~pl.col("r").is_in(paired_many)).with_columns(
            pl.lit(None, dtype=pl.Int64).alias("owner")
        )
        owned = many.join(
            breaks.select(pl.col(many_col).alias("r"), pl.col(one_col).alias("owner")), on="r"
        )
        m = pl.concat([m, owned.select(m.columns)])
        # the many side's group_by values as one integer (in their sorted order)
        values = [pl.col(f"g{i}").fill_null("") for i in range(len(rule.group_by))]
        m = m.with_columns(
            pl.concat_str(values, separator="|").rank("dense").cast(pl.Int64).alias("kid")
        )
        if o.height == 0 or m.height == 0:
            continue
        pair = None
        if quotes is not None:
            pair = tuple(
                quotes.filter(pl.col("side") == f"{side}:{rule.name}").select(
                    pl.col(ROW).alias("r"), "word"
                )
                for side in ("one", "many")
            )
            pair = pair if pair[0].height and pair[1].height else None
        found = candidates(o, m, pair, rule_set, rule)
        # a pair an identifier made (equal references, or one quoting the other) keeps its
        # many-side record from other records' groups: their difference is a fee or a short
        # payment, not a sign that it belongs elsewhere (a bank line's own invoice was taken
        # into another line's group); its own one side may still take it in a group
        identified = links.filter(
            pl.col("match_group").is_null() & pl.col("kind").is_in(list(IDENTIFIED))
        ).get_column(many_col)
        found = found.filter(
            ~(pl.col("foreign_") & pl.col("many_row").cast(pl.Int64).is_in(identified.implode()))
        )
        gap_frame = breaks.select(
            pl.col(many_col).alias("many_row"), (pl.col("oc") - pl.col("mc")).abs().alias("gap")
        )
        pool, records = candidate_pool(found, gap_frame)
        del found
        wanted = pl.DataFrame({"r": records})
        amounts = wanted.join(o.select("r", pl.col("cents").abs()), on="r", how="left")
        diffs = wanted.join(
            breaks.select(pl.col(one_col).alias("r"), (pl.col("oc") - pl.col("mc")).abs()),
            on="r",
            how="left",
        )
        settled = settle(
            pool,
            records,
            amounts["cents"].to_numpy().astype(np.int64),
            diffs["oc"].fill_null(-1).to_numpy().astype(np.int64),
            rule,
            ROUNDS,
        )
        stats["budget_exhausted"] += settled.exhausted
        if not settled.records.size:
            continue
        group_rows = _group_rows(settled, rule, next_group)
        stats["groups"] += settled.records.size
        stats["short_paid_groups"] += int((~settled.exact).sum())
        next_group += settled.records.size
        # breaks dissolved: their one-side record took a group, or their partner joined one
        won = pl.Series(settled.records, dtype=pl.Int64).implode()
        taken = pl.Series(settled.used, dtype=pl.Int64).implode()
        dissolved = pl.col("match_group").is_null() & (
            pl.col(one_col).is_in(won) | pl.col(many_col).is_in(taken)
        )
        stats["breaks_replaced"] = stats.get("breaks_replaced", 0) + links.filter(dissolved).height
        links = pl.concat([links.filter(~dissolved), group_rows])
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return links.sort("source_row", "target_row"), stats
