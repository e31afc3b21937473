"""Aggregate matching's candidates: which many-side leftovers could settle each one-side record.

One DuckDB query over the leftovers `o` (one side) and `m` (many side), each with `r` (row),
`g0`, `g1`, ... (the `group_by` values), `cents` and `d` (date); `m` also has `owner` (the
one-side row of the break it is paired in, if any) and `kid` (its `group_by` values as one
integer: members of a group share it).

- The first `group_by` field is compared once per pair of distinct values (`names`: FUZZY at the
  rule set's Jaro-Winkler threshold, blocked on the first three characters; EXACT equal), then
  joined as integers; the other fields are compared per pair.
- Same sign, within `date_window_days` (date buckets as wide as the window, so each pair is
  met once), no larger than the one-side amount plus a short payment.
- Records the one side's free text quotes (`qo`/`qm` words) are candidates too, within four
  windows, and rank first.
- At most `CANDIDATE_BUDGET` a record: quoted first, then the one side's own `group_by` values
  over merely similar ones, nearest dates, lower rows.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.reconcile.aggregation_kernel import SHORT_ABSOLUTE, SHORT_SHARE
from pipelines.reconcile.aggregation_rules import AggregationRule
from pipelines.reconcile.linkage.passes import _duckdb
from pipelines.reconcile.rules import RuleSet

CANDIDATE_BUDGET = 20  # many-side candidates per one-side record
QUOTE_WINDOWS = 4  # a quoted record may be this many date windows away
PART_RECORDS = 100_000  # one-side records a candidate query covers at once
COLUMNS = ("one_row", "many_row", "cents", "days", "key", "quoted", "foreign_", "same")


def _agreement(rule_set: RuleSet, rule: AggregationRule) -> tuple[str, list[str], list[str]]:
    """(names query, conditions of the other fields, their equalities) over `o` and `m`."""
    conditions, equal = [], []
    names = ""
    for i, name in enumerate(rule.group_by):
        c = f"g{i}"
        kind = next(
            (r for r in rule_set.matching_rules if name in r.fields and r.match_type == "FUZZY"),
            None,
        )
        t = (kind.threshold or 0.85) if kind else 0.0
        agree = f"jaro_winkler_similarity(o.{c}, m.{c}, {t}) >= {t}" if kind else ""
        if i == 0:  # a table of its own: else DuckDB scores the names once per record
            on = f"substr(o.{c}, 1, 3) = substr(m.{c}, 1, 3)" if kind else "o.id = m.id"
            names = f"SELECT o.id AS a, m.id AS b FROM ov AS o JOIN mv AS m ON {on}"
            names += f" WHERE {agree}" if kind else ""
        else:
            conditions.append(agree or f"o.{c} = m.{c}")
            equal.append(f"coalesce(o.{c}, '') = coalesce(m.{c}, '')")
    return names, conditions, equal


def _encoded(o: pl.DataFrame, m: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
    """`o` and `m` with `g0` as an integer `n0` (one dictionary for both sides), and each
    side's distinct (id, g0)."""
    vocabulary = (
        pl.concat([o.get_column("g0"), m.get_column("g0")])
        .drop_nulls()
        .unique()
        .to_frame()
        .with_row_index("id")
        .with_columns(pl.col("id").cast(pl.Int64))
    )
    o, m = (
        side.join(vocabulary, on="g0", how="left").rename({"id": "n0"}).drop("g0")
        for side in (o, m)
    )
    seen = (vocabulary.filter(pl.col("id").is_in(side["n0"].implode())) for side in (o, m))
    return o, m, *seen


def _sql(rule_set: RuleSet, rule: AggregationRule, quoted: bool, part: str) -> str:
    """The candidates of the one-side records meeting `part` (a condition on `o.r`)."""
    _, agree, equal = _agreement(rule_set, rule)
    window = int(rule.date_window_days)
    # in doubles: a decimal literal made DuckDB compare every pair in DECIMAL(38, 18)
    share = f"CAST({SHORT_SHARE / (1 - SHORT_SHARE)} AS DOUBLE)"
    room = f"abs(o.cents) + greatest(abs(o.cents) * {share}, {SHORT_ABSOLUTE}) "
    room += f"+ {round(rule.tolerance * 100)}"
    common = " AND ".join(["sign(o.cents) = sign(m.cents)", f"abs(m.cents) <= {room}", *agree])
    # narrow types: a million records have about five million candidates
    columns = "m.r::INTEGER AS many_row, abs(m.cents) AS cents, m.kid::INTEGER AS key"
    owned = "coalesce(m.owner <> o.r, FALSE) AS foreign_"
    width = max(window, 1)
    bucket = f"floor(date_diff('day', DATE '1970-01-01', d) / {width})::BIGINT"
    sql = (
        f"WITH oc AS (SELECT * FROM o WHERE {part}), ob AS (SELECT *, unnest([k - 1, k, k + 1]) "
        f"AS bucket FROM (SELECT *, {bucket} AS k FROM oc)), "
        f"mb AS (SELECT *, {bucket} AS bucket FROM m), "
        f"plain AS (SELECT o.r::INTEGER AS one_row, {columns}, "
        f"abs(date_diff('day', o.d, m.d))::INTEGER AS days, FALSE AS quoted, {owned}, "
        f"{' AND '.join(['n.a = n.b', *equal])} AS same "
        f"FROM ob AS o JOIN names AS n ON o.n0 = n.a "
        f"JOIN mb AS m ON m.n0 = n.b AND o.bucket = m.bucket "
        f"AND m.d BETWEEN o.d - {window} AND o.d + {window} WHERE {common})"
    )
    if not quoted:
        return sql + " SELECT * FROM plain"
    # not an equality DuckDB can hash o against m on: `sign(o.cents) = sign(m.cents)` joined
    # every one-side record to every same-signed many-side record (minutes at 100k)
    far = window * QUOTE_WINDOWS
    same = " AND ".join(["coalesce(o.n0, -1) = coalesce(m.n0, -1)", *equal])
    return sql + (
        f", quoted AS (SELECT DISTINCT o.r::INTEGER AS one_row, {columns}, "
        f"coalesce(abs(date_diff('day', o.d, m.d)), {far})::INTEGER AS days, TRUE AS quoted, "
        f"{owned}, "
        f"{same} AS same FROM qo JOIN qm ON qo.word = qm.word JOIN oc AS o ON o.r = qo.r "
        f"JOIN m ON m.r = qm.r WHERE sign(o.cents) - sign(m.cents) = 0 "
        f"AND coalesce(abs(date_diff('day', o.d, m.d)), 0) <= {far}) "
        f"SELECT * FROM quoted UNION ALL SELECT * FROM plain AS p WHERE NOT EXISTS "
        f"(SELECT 1 FROM quoted AS q WHERE q.one_row = p.one_row AND q.many_row = p.many_row)"
    )


def candidates(
    o: pl.DataFrame,
    m: pl.DataFrame,
    quotes: tuple[pl.DataFrame, pl.DataFrame] | None,
    rule_set: RuleSet,
    rule: AggregationRule,
) -> pl.DataFrame:
    """Candidate rows (`COLUMNS`), at most `CANDIDATE_BUDGET` a one-side record."""
    o, m, ov, mv = _encoded(o, m)
    con: duckdb.DuckDBPyConnection = _duckdb()
    try:
        for name, frame in (("o", o), ("m", m), ("ov", ov), ("mv", mv)):
            con.register(name, frame.to_arrow())
        if quotes is not None:
            con.register("qo", quotes[0].to_arrow())
            con.register("qm", quotes[1].to_arrow())
        con.execute(f"CREATE TEMP TABLE names AS {_agreement(rule_set, rule)[0]}")
        # the one side in parts: each part's join, result and budget fit in less memory
        parts = max(1, -(-o.height // PART_RECORDS))
        found = [
            _budgeted(con.sql(_sql(rule_set, rule, quotes is not None, f"r % {parts} = {i}")))
            for i in range(parts)
        ]
    finally:
        con.close()
    return pl.concat(found)


def _budgeted(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """At most `CANDIDATE_BUDGET` candidates a one-side record, the best first."""
    found = pl.from_arrow(relation.to_arrow_table())
    assert isinstance(found, pl.DataFrame)
    order = ["one_row", "quoted", "same", "days", "many_row"]
    return (
        found.select(COLUMNS)
        .sort(order, descending=[False, True, True, False, False])
        .filter(pl.int_range(pl.len()).over("one_row") < CANDIDATE_BUDGET)
    )
