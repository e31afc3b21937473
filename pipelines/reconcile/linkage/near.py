"""Linkage's near pass: leftovers paired with their clear nearest candidate.

See `near_pass`. The candidate join is blocked on a name prefix (or a key) and, where a date
must agree, on date buckets as wide as the window: a pair within the window is in the same
bucket or a neighbour, so the join yields the same pairs without meeting every pair of a
common prefix far apart in time (with 1.7M invoices left for aggregate matching, the prefix
alone was over the pair budget and the pass skipped itself).
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.linkage.passes import (
    LINK_SCHEMA,
    _pairs_of,
    assign_unambiguous,
    date_window,
)
from pipelines.reconcile.mapping import ROW
from pipelines.reconcile.rules import TOLERANCE_EPSILON, MatchingRule

STRONG_NAME = 0.92  # Jaro-Winkler of a typo, not of two names sharing a first word
NEAR_MARGIN = 0.05  # a near candidate this close to a rival is ambiguous
# a bank fee of up to 25.00 on a payment of 100: a quarter of the larger amount
NEAR_AMOUNT_SHARE = 0.25


def _strong(a: str, b: str, threshold: float) -> str:
    """Strong agreement of two names: the same text, one cut short of the other (a bank's field
    width), or a typo apart - not two names that merely share a first word."""
    return (
        f"(jaro_winkler_similarity({a}, {b}) >= {threshold} OR (least(length({a}), "
        f"length({b})) >= 8 AND (starts_with({a}, {b}) OR starts_with({b}, {a}))))"
    )


def _blocking(
    con: duckdb.DuckDBPyConnection,
    name: tuple[str, float] | None,
    key: str,
    dated: tuple[str, float] | None,
    budget: int,
) -> tuple[str, str, str] | None:
    """(FROM clause joining `s` and `t`, SQL counting its pairs, SQL to run before the join),
    or None when the distinct names alone make more pairs to score than `budget`.

    With a FUZZY `name` (column, strong threshold) every candidate agrees strongly on it, so the
    join goes through `near_names`: the pairs of distinct names (sharing their first three
    characters) that agree strongly, scored once each. Else it is blocked on the EXACT `key`
    column. With `dated` (column, window) also on date buckets as wide as the window (each pair
    within the window is in the same bucket or a neighbour, and is met once).
    """
    sides, bucketed, prepare = ("s", "t"), ("", ""), ""
    if dated is not None:
        c, window = dated
        bucket = f"floor(date_diff('day', DATE '1970-01-01', {c}) / {max(window, 1.0)})::BIGINT"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW near_s AS SELECT *, unnest([k - 1, k, k + 1]) AS "
            f"_bucket FROM (SELECT *, {bucket} AS k FROM s)"
        )
        con.execute(f"CREATE OR REPLACE TEMP VIEW near_t AS SELECT *, {bucket} AS _bucket FROM t")
        sides, bucketed = ("near_s", "near_t"), (", _bucket", " AND a._bucket = b._bucket")
    if name is None:
        join = f"{sides[0]} AS s JOIN {sides[1]} AS t ON s.{key} = t.{key}"
        link = f"a.k = b.k{bucketed[1]}"
    else:
        c, threshold = name
        # the names' own pairs are bounded first: a file of distinct names sharing a prefix
        # must not make the scoring below quadratic
        pairs = con.execute(
            f"SELECT coalesce(sum(a.n * b.n), 0) FROM (SELECT substr({c}, 1, 3) AS k, "
            f"count(DISTINCT {c}) AS n FROM s GROUP BY ALL) AS a JOIN (SELECT substr({c}, 1, 3) "
            f"AS k, count(DISTINCT {c}) AS n FROM t GROUP BY ALL) AS b USING (k)"
        ).fetchall()[0][0]
        if int(pairs) > budget:
            return None
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE near_names AS SELECT a.{c} AS a, b.{c} AS b "
            f"FROM (SELECT DISTINCT {c} FROM s) AS a JOIN (SELECT DISTINCT {c} FROM t) AS b "
            f"ON substr(a.{c}, 1, 3) = substr(b.{c}, 1, 3) "
            f"WHERE {_strong(f'a.{c}', f'b.{c}', threshold)}"
        )
        # the one side with its names' strong partners, then one hash join on (name, bucket):
        # left to three joins, DuckDB joined the sides on the bucket alone first
        prepare = (
            f"CREATE OR REPLACE TEMP TABLE near_sn AS SELECT s.*, n.b AS _partner "
            f"FROM {sides[0]} AS s JOIN near_names AS n ON s.{c} = n.a"
        )
        join = f"near_sn AS s JOIN {sides[1]} AS t ON t.{c} = s._partner"
        key = c
        link = f"a.k = n.a AND b.k = n.b{bucketed[1]}"
    if dated is not None:
        join += " AND s._bucket = t._bucket"
    counts = [
        f"(SELECT {key} AS k{bucketed[0]}, count(*) AS n FROM {side} WHERE {key} IS NOT NULL "
        f"GROUP BY ALL) AS {alias}"
        for side, alias in zip(sides, ("a", "b"), strict=True)
    ]
    names = ", near_names AS n" if name is not None else ""
    count = f"SELECT coalesce(sum(a.n * b.n), 0) FROM {counts[0]}, {counts[1]}{names} WHERE {link}"
    return join, count, prepare


def _identity_terms(rule: MatchingRule, c: str) -> tuple[str, str, str]:
    """(condition, evidence, similarity) of an EXACT or FUZZY column for the leftover passes:
    a blank on either side or agreement (equal; a name strong at `STRONG_NAME` or the rule's
    threshold, whichever is higher), what agreement is, and the column's similarity."""
    absent = f"s.{c} IS NULL OR t.{c} IS NULL"
    if rule.match_type == "EXACT":
        agree = f"s.{c} = t.{c}"
        sim = f"CASE WHEN s.{c} = t.{c} THEN 1.0 ELSE 0.0 END"
    else:
        agree = _strong(f"s.{c}", f"t.{c}", max(rule.threshold or 0.85, STRONG_NAME))
        sim = f"jaro_winkler_similarity(s.{c}, t.{c})"
    return f"({absent} OR {agree})", agree, sim


def near_pass(
    con: duckdb.DuckDBPyConnection, rules: list[MatchingRule], col: dict[str, str], budget: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Leftovers paired with their nearest candidate (tables `s` and `t` on `con`).

    What is left after the other passes is mostly missing on the other side, plus the pairs
    no identifier ties together and whose amount kept Splink below the threshold: a payment
    a bank fee short with a blank reference. Two leftovers are candidates when their names
    agree at the rule's threshold (or an EXACT field is equal; a name or key is required),
    their amounts are of the same sign within `NEAR_AMOUNT_SHARE` of the larger and their dates
    within `date_window`, at most one amount or date is beyond its tolerance (one break, not
    two) and nothing else contradicts. Names must agree strongly: equal once normalised,
    one cut short of the other, or Jaro-Winkler `STRONG_NAME` (a typo), not merely share a
    first word. Candidates are assigned one to one, nearest first, and only where the choice
    is clear (`assign_unambiguous`): two candidates within `NEAR_MARGIN` of each other leave
    both records unmatched. The score is the rules' weighted similarity, an amount's falling
    to 0 at `NEAR_AMOUNT_SHARE` apart and a date's at `date_window`.
    """
    evidence, conditions, breaks, sims, weights = [], [], [], [], []
    keys = []
    dated: tuple[str, float] | None = None  # a date column that must agree, and its window
    named: tuple[str, float] | None = None  # the first name column, its strong threshold
    for rule in (r for r in rules if r.weight > 0):
        for name in rule.fields:
            c = col[name]
            if rule.match_type in ("EXACT", "FUZZY"):
                condition, agree, sim = _identity_terms(rule, c)
                conditions.append(condition)
                evidence.append(agree)
                if rule.match_type == "EXACT":
                    keys.append(c)
                else:
                    named = named or (c, max(rule.threshold or 0.85, STRONG_NAME))
            elif rule.match_type == "RANGE":
                larger = f"greatest(abs(s.{c}), abs(t.{c}))"
                diff = f"abs(s.{c} - t.{c})"
                conditions.append(
                    f"sign(s.{c}) = sign(t.{c}) AND {diff} <= {NEAR_AMOUNT_SHARE} * {larger}"
                )
                breaks.append(f"{diff} > {(rule.tolerance or 0.0) + TOLERANCE_EPSILON}")
                sim = f"1.0 - least(1.0, {diff} / greatest({NEAR_AMOUNT_SHARE} * {larger}, 0.01))"
            else:
                dated = dated or (c, date_window(rule))
                days = f"abs(date_diff('day', s.{c}, t.{c}))"
                conditions.append(f"{days} <= {date_window(rule)}")
                breaks.append(f"{days} > {(rule.tolerance or 0.0) + TOLERANCE_EPSILON}")
                sim = f"1.0 - {days} / {date_window(rule) + 1.0}"
            sims.append(f"{rule.weight} * coalesce({sim}, 0.5)")
            weights.append(rule.weight)
    if not evidence:
        return pl.DataFrame(schema=LINK_SCHEMA), {"near_pass": "skipped: no name or key rule"}
    # blocked on the name (or a key) and the date so the candidate join stays bounded
    blocking = _blocking(con, named, keys[0] if keys else "", dated, budget)
    if blocking is None or int(con.execute(blocking[1]).fetchall()[0][0]) > budget:
        return pl.DataFrame(schema=LINK_SCHEMA), {"near_pass": "skipped: too many candidates"}
    join, _, prepare = blocking
    if prepare:  # only once the pairs are known to be within the budget
        con.execute(prepare)
    score = f"({' + '.join(sims)}) / {sum(weights)}"
    sql = f"""
        SELECT s.{ROW} AS source_row, t.{ROW} AS target_row,
               least(1.0, greatest(0.0, {score}))::DOUBLE AS score, 'NEAR' AS kind
        FROM {join}
        WHERE ({" OR ".join(evidence)}) AND {" AND ".join(conditions)}
            AND ({" + ".join(f"({b})::INT" for b in breaks) or "0"}) <= 1
    """
    candidates = _pairs_of(con, sql)
    pairs, ambiguous = assign_unambiguous(candidates, NEAR_MARGIN)
    return pairs, {
        "near_candidates": candidates.height,
        "near_matches": pairs.height,
        "near_ambiguous": ambiguous,
    }


def amount_pass(
    con: duckdb.DuckDBPyConnection, rules: list[MatchingRule], col: dict[str, str], budget: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Leftovers with nothing but their amount and date to go on, paired where that is unique.

    A bank line with a blank reference (and, where the rules compare names, no name either)
    scores under the threshold in a small file: Splink has only the amount and the date. A
    reconciler still pairs it when the amount agrees within its tolerance, the date within its
    tolerance and no other leftover of either side would do (a mutually unique candidate): the
    same amount and date twice leaves both unmatched for a person. Nothing may contradict (an
    identifier or a name present on both sides must agree as in `near_pass`). Needs a RANGE and
    a DATE_RANGE rule; blocked on amount and date buckets as wide as their tolerances, so the
    join meets only pairs within them. Pairs have kind `AMOUNT`, scored as `near_pass` does.
    """
    conditions, sims, weights = [], [], []
    amount: tuple[str, float] | None = None
    dated: tuple[str, float] | None = None
    for rule in (r for r in rules if r.weight > 0):
        tolerance = (rule.tolerance or 0.0) + TOLERANCE_EPSILON
        for name in rule.fields:
            c = col[name]
            if rule.match_type in ("EXACT", "FUZZY"):
                condition, _, sim = _identity_terms(rule, c)
                conditions.append(condition)
            elif rule.match_type == "RANGE":
                amount = amount or (c, tolerance)
                conditions.append(f"abs(s.{c} - t.{c}) <= {tolerance}")
                sim = f"1.0 - least(1.0, abs(s.{c} - t.{c}) / {max(tolerance, 0.01)})"
            else:
                dated = dated or (c, tolerance)
                days = f"abs(date_diff('day', s.{c}, t.{c}))"
                conditions.append(f"{days} <= {tolerance}")
                sim = f"1.0 - {days} / {date_window(rule) + 1.0}"
            sims.append(f"{rule.weight} * coalesce({sim}, 0.5)")
            weights.append(rule.weight)
    if amount is None or dated is None:
        return pl.DataFrame(schema=LINK_SCHEMA), {"amount_pass": "skipped: no amount and date"}
    (a, a_width), (d, d_width) = amount, dated
    a_key = f"floor({a} / {max(a_width, 0.01)})::BIGINT"
    d_key = f"floor(date_diff('day', DATE '1970-01-01', {d}) / {max(d_width, 1.0)})::BIGINT"
    # each pair within both tolerances meets once: the source side in the 3 x 3 neighbouring
    # buckets, the target side in its own
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW amount_s3 AS SELECT s.*, {a_key} + o.x AS _ka, "
        f"{d_key} + p.x AS _kd FROM s, (VALUES (-1), (0), (1)) AS o(x), "
        f"(VALUES (-1), (0), (1)) AS p(x) WHERE {a} IS NOT NULL AND {d} IS NOT NULL"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW amount_t AS SELECT *, {a_key} AS _ka, {d_key} AS _kd FROM t"
    )
    join = "amount_s3 AS s JOIN amount_t AS t ON s._ka = t._ka AND s._kd = t._kd"
    pairs = con.execute(
        "SELECT coalesce(sum(a.n * b.n), 0) FROM (SELECT _ka, _kd, count(*) AS n FROM amount_s3 "
        "GROUP BY ALL) AS a JOIN (SELECT _ka, _kd, count(*) AS n FROM amount_t GROUP BY ALL) AS b "
        "USING (_ka, _kd)"
    ).fetchall()[0][0]
    if int(pairs) > budget:
        return pl.DataFrame(schema=LINK_SCHEMA), {"amount_pass": "skipped: too many candidates"}
    score = f"({' + '.join(sims)}) / {sum(weights)}"
    candidates = _pairs_of(
        con,
        f"""SELECT s.{ROW} AS source_row, t.{ROW} AS target_row,
               least(1.0, greatest(0.0, {score}))::DOUBLE AS score, 'AMOUNT' AS kind
        FROM {join} WHERE {" AND ".join(conditions)}""",
    )
    unique = candidates.filter(
        (pl.len().over("source_row") == 1) & (pl.len().over("target_row") == 1)
    )
    return unique, {
        "amount_candidates": candidates.height,
        "amount_matches": unique.height,
        "amount_ambiguous": candidates.height - unique.height,
    }
