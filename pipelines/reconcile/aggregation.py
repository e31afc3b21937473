"""Aggregate matching: one record settled by several of the other side (1:N and N:1).

After the one-to-one passes, what is left is grouped by each `aggregation:` rule of the rule
set (`pipelines.reconcile.aggregation_rules`): for every one-side record still unpaired, or
paired one to one with an amount beyond the tolerance (a "break"), a bounded subset-sum over
the many side's leftovers picks the group that settles it.

- Candidates (one DuckDB join): many-side leftovers agreeing on every `group_by` field (the
  rule set's FUZZY rule at its threshold, EXACT equal; blocked on the first field's first three
  characters or its value), of the same sign, within `date_window_days`, no larger than the
  one-side amount plus a short payment. Records the one side's free text quotes
  (`reference_field` -> `reference_target_field`) are candidates too, within four windows,
  and rank first. At most `CANDIDATE_BUDGET` candidates a record, nearest dates first.
- Search (Python, integer cents, per record): combinations of 2..`max_group_size` members that
  agree among themselves on `group_by`, largest amounts first, pruned by the remaining sum;
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
  group, or a short-paid one short by less than that break. Records are served best group
  first; a record whose group lost a member searches again without it (three rounds).

The search itself is in `pipelines.reconcile.aggregation_search`.

A group is `kind` `AGGREGATE` links, one per member pair, sharing `match_group`.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.aggregation_rules import AggregationRule
from pipelines.reconcile.aggregation_search import (
    SHORT_ABSOLUTE,
    SHORT_SHARE,
    Candidate,
    CandidatePool,
    Group,
    best_group,
)
from pipelines.reconcile.linkage.passes import LINK_SCHEMA, _duckdb
from pipelines.reconcile.mapping import ROW, Conformed
from pipelines.reconcile.rules import RuleSet

__all__ = ["Candidate", "Group", "aggregate", "best_group"]

CANDIDATE_BUDGET = 20  # many-side candidates per one-side record
QUOTE_WINDOWS = 4  # a quoted record may be this many date windows away
ROUNDS = 3
GROUP_SCHEMA = {**LINK_SCHEMA, "match_group": pl.Int64}
QUOTES_SCHEMA = {"side": pl.String, ROW: pl.Int64, "word": pl.String}


def _agreement(rule_set: RuleSet, rule: AggregationRule) -> tuple[str, list[str], str, str]:
    """(block condition, agreement conditions, many-side and one-side key expressions) over
    `o` and `m`."""
    conditions, keys, mine = [], [], []
    block = ""
    for i, name in enumerate(rule.group_by):
        c = f"g{i}"
        kind = next(
            (r for r in rule_set.matching_rules if name in r.fields and r.match_type == "FUZZY"),
            None,
        )
        if kind is not None:
            conditions.append(f"jaro_winkler_similarity(o.{c}, m.{c}) >= {kind.threshold or 0.85}")
            block = block or f"substr(o.{c}, 1, 3) = substr(m.{c}, 1, 3)"
        else:
            conditions.append(f"o.{c} = m.{c}")
            block = block or f"o.{c} = m.{c}"
        keys.append(f"coalesce(m.{c}, '')")
        mine.append(f"coalesce(o.{c}, '')")
    key = "concat_ws('|', " + ", ".join(keys) + ")"
    return block, conditions, key, "concat_ws('|', " + ", ".join(mine) + ")"


def _candidates(
    con: duckdb.DuckDBPyConnection, rule_set: RuleSet, rule: AggregationRule, quoted: bool
) -> pl.DataFrame:
    """Candidate (one_row, many_row, cents, days, key, quoted) rows, budgeted per record."""
    block, agree, key, own = _agreement(rule_set, rule)
    window = int(rule.date_window_days)
    room = f"abs(o.cents) + greatest(abs(o.cents) * {SHORT_SHARE / (1 - SHORT_SHARE)}, "
    room += f"{SHORT_ABSOLUTE}) + {round(rule.tolerance * 100)}"
    common = "sign(o.cents) = sign(m.cents)"
    # the same, but not an equality DuckDB can hash o against m on: as `common` it joined every
    # one-side record to every same-signed many-side record before the quotes (minutes at 100k)
    apart = "sign(o.cents) - sign(m.cents) = 0"
    plain = (
        f"SELECT o.r AS one_row, m.r AS many_row, abs(m.cents) AS cents, "
        f"abs(date_diff('day', o.d, m.d)) AS days, {key} AS key, FALSE AS quoted, "
        f"coalesce(m.owner <> o.r, FALSE) AS foreign_, {key} = {own} AS same "
        f"FROM ob AS o JOIN mb AS m ON {block} AND o.bucket = m.bucket "
        f"AND m.d BETWEEN o.d - {window} AND o.d + {window} "
        f"WHERE {common} AND abs(m.cents) <= {room} AND {' AND '.join(agree)}"
    )
    # date buckets as wide as the window: a member within it is in the one side's bucket or a
    # neighbour, so each pair is met once and a block's pairs far apart in time never are
    width = max(window, 1)
    bucket = f"floor(date_diff('day', DATE '1970-01-01', d) / {width})::BIGINT"
    buckets = (
        f"ob AS (SELECT *, unnest([k - 1, k, k + 1]) AS bucket FROM (SELECT *, {bucket} AS k "
        f"FROM o)), mb AS (SELECT *, {bucket} AS bucket FROM m)"
    )
    if quoted:
        far = window * QUOTE_WINDOWS
        plain += (
            f" UNION ALL SELECT o.r, m.r, abs(m.cents), "
            f"coalesce(abs(date_diff('day', o.d, m.d)), {far}), {key}, TRUE, "
            f"coalesce(m.owner <> o.r, FALSE), {key} = {own} "
            f"FROM qo JOIN qm ON qo.word = qm.word JOIN o ON o.r = qo.r JOIN m ON m.r = qm.r "
            f"WHERE {apart} AND coalesce(abs(date_diff('day', o.d, m.d)), 0) <= {far}"
        )
    sql = (
        f"WITH {buckets}, c AS ({plain}), u AS (SELECT one_row, many_row, "
        f"any_value(cents) AS cents, min(days) AS days, any_value(key) AS key, "
        f"bool_or(quoted) AS quoted, "
        f"bool_or(foreign_) AS foreign_, bool_or(same) AS same FROM c "
        f"GROUP BY one_row, many_row) SELECT * FROM u QUALIFY row_number() OVER "
        f"(PARTITION BY one_row ORDER BY quoted DESC, same DESC, days, many_row) "
        f"<= {CANDIDATE_BUDGET}"
    )
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("one_row", "many_row")


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
        pair_diff = dict(
            zip(
                breaks[one_col].to_list(),
                (breaks["oc"] - breaks["mc"]).abs().to_list(),
                strict=True,
            )
        )
        partner = dict(zip(breaks[one_col].to_list(), breaks[many_col].to_list(), strict=True))
        gaps = dict(zip(breaks[many_col].to_list(), pair_diff.values(), strict=True))
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
        if o.height == 0 or m.height == 0:
            continue
        con = _duckdb()
        con.register("o", o.to_arrow())
        con.register("m", m.to_arrow())
        use_quotes = False
        if quotes is not None:
            qo = quotes.filter(pl.col("side") == f"one:{rule.name}").select(
                pl.col(ROW).alias("r"), "word"
            )
            qm = quotes.filter(pl.col("side") == f"many:{rule.name}").select(
                pl.col(ROW).alias("r"), "word"
            )
            if qo.height and qm.height:
                con.register("qo", qo.to_arrow())
                con.register("qm", qm.to_arrow())
                use_quotes = True
        found = _candidates(con, rule_set, rule, use_quotes)
        con.close()
        amounts = dict(zip(o["r"].to_list(), o["cents"].abs().to_list(), strict=True))
        pool = CandidatePool(found, gaps)
        del found
        used: set[int] = set()
        accepted: dict[int, Group] = {}
        pending = pool.records  # ascending
        for _ in range(ROUNDS):
            offers: list[tuple[tuple[Any, ...], int, Group]] = []
            for r in pending:
                free = [c for c in pool.of(r) if c.row not in used]
                group, exhausted = best_group(amounts[r], free, rule)
                stats["budget_exhausted"] += int(exhausted)
                if group is None:
                    continue
                if r in pair_diff and not (group.exact or abs(group.diff) < pair_diff[r]):
                    continue  # the one-to-one break explains the amount as well or better
                offers.append((group.rank, r, group))
            lost = []
            for _, r, group in sorted(offers, key=lambda x: (x[0], x[1])):
                if any(row in used for row in group.members):
                    lost.append(r)
                    continue
                used.update(group.members)
                accepted[r] = group
            pending = sorted(lost)
            if not pending:
                break
        rows: list[tuple[int, int, float, str, int]] = []
        for r in sorted(accepted):
            group = accepted[r]
            score = max(0.0, 1.0 - abs(group.diff) / max(group.total, 1))
            for member in group.members:
                pair = (r, member) if rule.one_side == "source" else (member, r)
                rows.append((*pair, round(score, 4), "AGGREGATE", next_group))
            stats["groups"] += 1
            stats["short_paid_groups"] += int(not group.exact)
            next_group += 1
        if not rows:
            continue
        # breaks dissolved: their one-side record took a group, or their partner joined one
        won = pl.Series([r for r in accepted if r in partner], dtype=pl.Int64).implode()
        taken = pl.Series(sorted(used), dtype=pl.Int64).implode()
        dissolved = pl.col("match_group").is_null() & (
            pl.col(one_col).is_in(won) | pl.col(many_col).is_in(taken)
        )
        stats["breaks_replaced"] = stats.get("breaks_replaced", 0) + links.filter(dissolved).height
        links = pl.concat(
            [links.filter(~dissolved), pl.DataFrame(rows, schema=GROUP_SCHEMA, orient="row")]
        )
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return links.sort("source_row", "target_row"), stats
