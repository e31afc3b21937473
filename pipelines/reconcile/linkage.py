"""Linkage: which records are the same transaction (pairing), judged afterwards by tolerance.

A reconciliation asks two questions. "Are these the same transaction?" is answered here, on
identity evidence (references, counterparty, date proximity, amount proximity); "do they
agree?" is answered by the exceptions stage with the rules' tolerances. A pair that is clearly
one transaction but a bank fee short is matched and becomes an AMOUNT_MISMATCH, never two
missing records. Pairing runs in four passes, each on what the ones before left, each one to
one (best evidence first, ties by row numbers, so results are deterministic):

1. Exact (`EXACT`): records that agree on every rule (EXACT fields equal, FUZZY at or above
   the threshold, RANGE / DATE_RANGE within tolerance) by a DuckDB join. At a million rows a
   couple of seconds; it usually settles most records.
2. Reference (`REFERENCE`, `key_prepass`): records sharing an identifier (an EXACT field at
   least half of whose values are distinct), or whose blank identifier the other's free text
   quotes, when nothing contradicts it (same sign and within half the amount, within
   `date_window`, names not far below the threshold). Tolerances are not applied here.
3. Splink (`PROBABILISTIC`) on the remainder, with comparisons from the rules (amounts graded
   by relative proximity, dates by days, names by Jaro-Winkler, blanks neutral) and blocking
   rules chosen from the data: every candidate key is counted first and kept only when it
   yields a bounded number of pairs. Pairs at or above `match_threshold` are accepted. The
   model (u by random sampling with `max_pairs` 1e6, m by EM on tight blocking rules) is kept
   per rule-set version and reused only where it fits the records (`model_misfit`).
4. Near (`NEAR`, `near_pass`): leftovers whose names agree strongly, amounts within 10 % and
   dates within the window, at most one of them beyond tolerance, paired only where the
   choice is clear (`assign_unambiguous`).

Records repeating a matched record on every field stay out of the later passes (duplicates).
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.mapping import HINTS, ROW, Conformed
from pipelines.reconcile.rules import TOLERANCE_EPSILON, MatchingRule, RuleSet

TRAIN_ROWS = 100_000
U_MAX_PAIRS = 1_000_000
MIN_PAIR_BUDGET = 200_000
PAIRS_PER_RECORD = 10
PREDICT_FLOOR = 0.01
DUCKDB_MEMORY = "512MB"  # per linkage connection; DuckDB spills to disk beyond it
IDENTIFIER_SHARE = 0.5  # an EXACT field whose values are at least this share distinct
DATE_WINDOW_DAYS = 10.0  # same transaction up to this many days apart (or 4x the tolerance)
AMOUNT_SHARE = 0.5  # same transaction up to this share of the larger amount apart
HINT_SIMILARITY = 0.8  # a reference found in free text, against 1.0 for the field itself
FUZZY_FLOOR = 0.3  # a name this far below the rule's threshold contradicts a shared reference
STRONG_NAME = 0.92  # Jaro-Winkler of a typo, not of two names sharing a first word
NEAR_MARGIN = 0.05  # a near candidate this close to a rival is ambiguous
# relative differences graded as identity evidence (a bank fee, FX, a partial payment)
AMOUNT_STEPS = (0.01, 0.1, AMOUNT_SHARE)
# bump when the comparisons change: a model of another format is never reused
MODEL_FORMAT = 3
NULL_SHARE_DRIFT = 0.15  # a stored model is retrained when a field's blank share moves more
logging.getLogger("splink").setLevel(logging.WARNING)

Progress = Callable[[str], None]


@dataclass
class LinkResult:
    """Matched pairs and what a person needs to judge the unmatched ones."""

    links: pl.DataFrame  # source_row, target_row, score, kind
    best_source: pl.DataFrame  # source_row, best_probability (unmatched Splink candidates)
    best_target: pl.DataFrame  # target_row, best_probability
    model: dict[str, Any] | None
    trained: bool
    stats: dict[str, Any] = field(default_factory=dict)


LINK_SCHEMA = {
    "source_row": pl.Int64,
    "target_row": pl.Int64,
    "score": pl.Float64,
    "kind": pl.String,
}


def _duckdb() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for linkage: two threads, a memory cap (it spills beyond it, to the
    system's temporary folder rather than `.tmp` in the working directory)."""
    spill = str(Path(tempfile.gettempdir()) / "recon-duckdb")
    config = {"threads": 2, "memory_limit": DUCKDB_MEMORY, "temp_directory": spill}
    con = duckdb.connect(config=config)
    con.execute("SET preserve_insertion_order = false")
    return con


def _safe_names(fields: list[str]) -> dict[str, str]:
    """SQL-safe, unique column names for the matching fields (any text is a valid field)."""
    out: dict[str, str] = {}
    for i, name in enumerate(fields):
        base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "field"
        out[name] = f"f{i}_{base}"
    return out


def assign_one_to_one(pairs: pl.DataFrame) -> pl.DataFrame:
    """Greedy one-to-one: highest score first, then lowest source row, then lowest target row."""
    if pairs.height == 0:
        return pairs
    pairs = pairs.sort(["score", "source_row", "target_row"], descending=[True, False, False])
    counted = pairs.with_columns(
        pl.len().over("source_row").alias("_ns"), pl.len().over("target_row").alias("_nt")
    )
    alone = counted.filter((pl.col("_ns") == 1) & (pl.col("_nt") == 1)).drop("_ns", "_nt")
    contested = counted.filter((pl.col("_ns") > 1) | (pl.col("_nt") > 1)).drop("_ns", "_nt")
    keep: list[int] = []
    used_s: set[int] = set()
    used_t: set[int] = set()
    rows = contested.select("source_row", "target_row").rows()
    for index, (s, t) in enumerate(rows):
        if s in used_s or t in used_t:
            continue
        used_s.add(s)
        used_t.add(t)
        keep.append(index)
    chosen = contested[keep] if keep else contested.clear()
    return pl.concat([alone, chosen]).sort("source_row")


# ---------------------------------------------------------------- the exact pre-pass


def assign_unambiguous(pairs: pl.DataFrame, margin: float) -> tuple[pl.DataFrame, int]:
    """One-to-one, best first, accepting a pair only when no rival is within `margin`.

    A rival is another candidate of either record whose other record is still free. An
    ambiguous pair is not taken and both its records stay out (a person decides); returns
    the accepted pairs and how many records were left out as ambiguous.
    """
    if pairs.height == 0:
        return pairs, 0
    rows = pairs.sort(["score", "source_row", "target_row"], descending=[True, False, False])
    by_source: dict[int, list[tuple[float, int]]] = {}
    by_target: dict[int, list[tuple[float, int]]] = {}
    for s, t, score in rows.select("source_row", "target_row", "score").iter_rows():
        by_source.setdefault(s, []).append((score, t))
        by_target.setdefault(t, []).append((score, s))
    used_s: set[int] = set()
    used_t: set[int] = set()
    keep: list[int] = []
    ambiguous = 0
    for index, (s, t, score) in enumerate(rows.select("source_row", "target_row", "score").rows()):
        if s in used_s or t in used_t:
            continue
        rival = max(
            [x for x, other in by_source[s] if other != t and other not in used_t]
            + [x for x, other in by_target[t] if other != s and other not in used_s],
            default=-1.0,
        )
        used_s.add(s)
        used_t.add(t)
        if rival > score - margin:
            ambiguous += 2
            continue
        keep.append(index)
    return (rows[keep] if keep else rows.clear()), ambiguous


def _similarity_sql(rule: MatchingRule, col: dict[str, str]) -> tuple[list[str], list[str]]:
    """(conditions, similarity expressions) of one rule for the pre-pass."""
    conditions, sims = [], []
    for name in rule.fields:
        c = col[name]
        if rule.match_type == "EXACT":
            conditions.append(f"s.{c} = t.{c}")
            sims.append("1.0")
        elif rule.match_type == "FUZZY":
            sim = f"jaro_winkler_similarity(s.{c}, t.{c})"
            conditions.append(f"{sim} >= {rule.threshold}")
            sims.append(sim)
        else:
            diff = (
                f"abs(s.{c} - t.{c})"
                if rule.match_type == "RANGE"
                else f"abs(date_diff('day', s.{c}, t.{c}))"
            )
            tol = rule.tolerance or 0.0
            conditions.append(f"{diff} <= {tol + TOLERANCE_EPSILON}")
            sims.append(f"1.0 - 0.5 * {diff} / {tol}" if tol > 0 else "1.0")
    return conditions, sims


def _pairs_of(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    """A pass's candidate pairs (source_row, target_row, score, kind) from its query."""
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.cast(LINK_SCHEMA)


def _pair_count(con: duckdb.DuckDBPyConnection, keys: list[str]) -> int:
    """How many pairs a join of `s` and `t` on these key expressions would produce."""
    s_keys = ", ".join(k.format(side="s") for k in keys)
    t_keys = ", ".join(k.format(side="t") for k in keys)
    names = ", ".join(f"k{i}" for i in range(len(keys)))
    aliased_s = ", ".join(f"{k.format(side='s')} AS k{i}" for i, k in enumerate(keys))
    aliased_t = ", ".join(f"{k.format(side='t')} AS k{i}" for i, k in enumerate(keys))
    not_null_s = " AND ".join(f"{k.format(side='s')} IS NOT NULL" for k in keys)
    not_null_t = " AND ".join(f"{k.format(side='t')} IS NOT NULL" for k in keys)
    sql = (
        f"SELECT coalesce(sum(a.n * b.n), 0) FROM "
        f"(SELECT {aliased_s}, count(*) AS n FROM s WHERE {not_null_s} GROUP BY {s_keys}) a "
        f"JOIN (SELECT {aliased_t}, count(*) AS n FROM t WHERE {not_null_t} GROUP BY {t_keys}) b "
        f"USING ({names})"
    )
    return int(con.execute(sql).fetchall()[0][0])


def exact_prepass(
    con: duckdb.DuckDBPyConnection, rules: list[MatchingRule], col: dict[str, str], budget: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Candidate pairs agreeing on every rule (tables `s` and `t` registered on `con`)."""
    active = [r for r in rules if r.weight > 0]
    keys = [f"{{side}}.{col[f]}" for r in active if r.match_type == "EXACT" for f in r.fields]
    if not keys:  # no EXACT rule: join on equal values of the range fields instead
        keys = [
            f"{{side}}.{col[f]}"
            for r in active
            if r.match_type in ("RANGE", "DATE_RANGE")
            for f in r.fields
        ]
    if not keys:
        return pl.DataFrame(schema=LINK_SCHEMA), {"prepass": "skipped: no equality key"}
    expected = _pair_count(con, keys)
    if expected > budget:
        return pl.DataFrame(schema=LINK_SCHEMA), {
            "prepass": f"skipped: its join would yield {expected} pairs (budget {budget})"
        }
    conditions, sims, weights = [], [], []
    for rule in active:
        c, s = _similarity_sql(rule, col)
        conditions += c
        sims += [f"{rule.weight} * ({x})" for x in s]
        weights += [rule.weight] * len(s)
    equal = " AND ".join(f"{k.format(side='s')} = {k.format(side='t')}" for k in keys)
    score = f"({' + '.join(sims)}) / {sum(weights)}"
    sql = (
        f"SELECT s.{ROW} AS source_row, t.{ROW} AS target_row, "
        f"least(1.0, greatest(0.0, {score}))::DOUBLE AS score, 'EXACT' AS kind "
        f"FROM s JOIN t ON {equal} WHERE {' AND '.join(conditions)}"
    )
    candidates = _pairs_of(con, sql)
    return candidates, {"prepass_candidates": candidates.height}


def identifier_keys(
    source: pl.DataFrame, target: pl.DataFrame, rules: list[MatchingRule], col: dict[str, str]
) -> list[str]:
    """EXACT fields that identify a transaction: at least half their values distinct, both sides.

    A reference or document number qualifies; a currency, an account or a status does not.
    """
    keys = []
    for rule in rules:
        if rule.match_type != "EXACT" or rule.weight <= 0:
            continue
        for name in rule.fields:
            c = col[name]
            shares = []
            for frame in (source, target):
                present = frame.get_column(c).drop_nulls()
                shares.append(present.n_unique() / present.len() if present.len() else 0.0)
            if min(shares) >= IDENTIFIER_SHARE:
                keys.append(c)
    return list(dict.fromkeys(keys))


def date_window(rule: MatchingRule) -> float:
    """Days apart two records may be and still be the same transaction (beyond tolerance)."""
    return max(4 * (rule.tolerance or 0.0), DATE_WINDOW_DAYS)


def key_prepass(
    con: duckdb.DuckDBPyConnection,
    rules: list[MatchingRule],
    col: dict[str, str],
    keys: list[str],
    budget: int,
    *,
    hints: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Pairs that are the same transaction by their identifiers, whether or not they agree.

    Records equal on every identifier key (tables `s` and `t` on `con`) pair when nothing
    else contradicts it: amounts of the same sign within half of the larger, dates within
    `date_window`, names at least `FUZZY_FLOOR` below the rule's threshold, other EXACT
    fields equal; a blank on either side is no evidence. Tolerances are NOT applied: a pair
    beyond them is a break (AMOUNT_MISMATCH / DATE_MISMATCH), judged later. With `hints`
    (one text key), a record whose key is blank also pairs with the record whose key its
    free text quotes, under the same conditions.
    """
    if not keys:
        return pl.DataFrame(schema=LINK_SCHEMA), {"key_prepass": "skipped: no identifier field"}
    expected = _pair_count(con, [f"{{side}}.{k}" for k in keys])
    if expected > budget:
        return pl.DataFrame(schema=LINK_SCHEMA), {
            "key_prepass": f"skipped: its join would yield {expected} pairs (budget {budget})"
        }
    conditions, sims, weights = [], [], []
    for rule in (r for r in rules if r.weight > 0):
        for name in rule.fields:
            c = col[name]
            absent = f"s.{c} IS NULL OR t.{c} IS NULL"
            if rule.match_type == "EXACT":
                if c in keys:
                    continue
                conditions.append(f"({absent} OR s.{c} = t.{c})")
                sim = f"CASE WHEN s.{c} = t.{c} THEN 1.0 ELSE 0.0 END"
            elif rule.match_type == "FUZZY":
                floor = max(0.5, (rule.threshold or 0.85) - FUZZY_FLOOR)
                sim = f"jaro_winkler_similarity(s.{c}, t.{c})"
                conditions.append(f"({absent} OR {sim} >= {floor})")
            elif rule.match_type == "RANGE":
                larger = f"greatest(abs(s.{c}), abs(t.{c}))"
                conditions.append(
                    f"({absent} OR (sign(s.{c}) = sign(t.{c}) AND abs(s.{c} - t.{c}) <= "
                    f"{AMOUNT_SHARE} * {larger}))"
                )
                sim = f"1.0 - least(1.0, abs(s.{c} - t.{c}) / greatest({larger}, 0.01))"
            else:
                window = date_window(rule)
                days = f"abs(date_diff('day', s.{c}, t.{c}))"
                conditions.append(f"({absent} OR {days} <= {window})")
                sim = f"1.0 - {days} / {window + 1.0}"
            sims.append(f"{rule.weight} * coalesce({sim}, 0.5)")
            weights.append(rule.weight)
    equal = " AND ".join(f"s.{k} = t.{k}" for k in keys)
    pairs = f"SELECT s.{ROW} AS sr, t.{ROW} AS tr, 1.0 AS key_sim FROM s JOIN t ON {equal}"
    if hints and len(keys) == 1:
        # a blank reference quoted in the other side's free text (see mapping._hints)
        k = keys[0]
        for quoting, other in (("s", "t"), ("t", "s")):
            words = f"SELECT {ROW} AS r, unnest({HINTS}) AS w FROM {quoting} WHERE {k} IS NULL"
            rows = ("h.r", f"{other}.{ROW}") if quoting == "s" else (f"{other}.{ROW}", "h.r")
            pairs += (
                f" UNION SELECT {rows[0]}, {rows[1]}, {HINT_SIMILARITY} FROM ({words}) h "
                f"JOIN {other} ON {other}.{k} = h.w"
            )
    where = " AND ".join(conditions) or "TRUE"
    score = f"({' + '.join([*sims, 'p.key_sim'])}) / {sum(weights) + 1.0}"
    sql = (
        f"WITH p AS ({pairs}) "
        f"SELECT p.sr AS source_row, p.tr AS target_row, "
        f"least(1.0, greatest(0.0, {score}))::DOUBLE AS score, 'REFERENCE' AS kind "
        f"FROM p JOIN s ON s.{ROW} = p.sr JOIN t ON t.{ROW} = p.tr WHERE {where}"
    )
    candidates = _pairs_of(con, sql)
    return candidates, {"key_prepass_candidates": candidates.height}


def near_pass(
    con: duckdb.DuckDBPyConnection, rules: list[MatchingRule], col: dict[str, str], budget: int
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Leftovers paired with their nearest candidate (tables `s` and `t` on `con`).

    What is left after the other passes is mostly missing on the other side, plus the pairs
    no identifier ties together and whose amount kept Splink below the threshold: a payment
    a bank fee short with a blank reference. Two leftovers are candidates when their names
    agree at the rule's threshold (or an EXACT field is equal; a name or key is required),
    their amounts are of the same sign within `AMOUNT_STEPS[1]` of the larger and their dates
    within `date_window`, at most one amount or date is beyond its tolerance (one break, not
    two) and nothing else contradicts. Names must agree strongly: equal once normalised,
    one cut short of the other, or Jaro-Winkler `STRONG_NAME` (a typo), not merely share a
    first word. Candidates are assigned one to one, nearest first, and only where the choice
    is clear (`assign_unambiguous`): two candidates within `NEAR_MARGIN` of each other leave
    both records unmatched. The score is the rules' weighted similarity, an amount's falling
    to 0 at `AMOUNT_STEPS[1]` apart and a date's at `date_window`.
    """
    evidence, conditions, breaks, sims, weights = [], [], [], [], []
    keys = []
    for rule in (r for r in rules if r.weight > 0):
        for name in rule.fields:
            c = col[name]
            absent = f"s.{c} IS NULL OR t.{c} IS NULL"
            if rule.match_type == "EXACT":
                keys.append(f"{{side}}.{c}")
                conditions.append(f"({absent} OR s.{c} = t.{c})")
                evidence.append(f"s.{c} = t.{c}")
                sim = f"CASE WHEN s.{c} = t.{c} THEN 1.0 ELSE 0.0 END"
            elif rule.match_type == "FUZZY":
                # strong agreement: the same text, one cut short of the other (a bank's field
                # width), or a typo apart - not two names that merely share a first word
                sim = f"jaro_winkler_similarity(s.{c}, t.{c})"
                shorter = f"least(length(s.{c}), length(t.{c}))"
                strong = (
                    f"({sim} >= {max(rule.threshold or 0.85, STRONG_NAME)} OR ({shorter} >= 8 "
                    f"AND (starts_with(s.{c}, t.{c}) OR starts_with(t.{c}, s.{c}))))"
                )
                conditions.append(f"({absent} OR {strong})")
                evidence.append(strong)
            elif rule.match_type == "RANGE":
                larger = f"greatest(abs(s.{c}), abs(t.{c}))"
                diff = f"abs(s.{c} - t.{c})"
                conditions.append(
                    f"sign(s.{c}) = sign(t.{c}) AND {diff} <= {AMOUNT_STEPS[1]} * {larger}"
                )
                breaks.append(f"{diff} > {(rule.tolerance or 0.0) + TOLERANCE_EPSILON}")
                sim = f"1.0 - least(1.0, {diff} / greatest({AMOUNT_STEPS[1]} * {larger}, 0.01))"
            else:
                days = f"abs(date_diff('day', s.{c}, t.{c}))"
                conditions.append(f"{days} <= {date_window(rule)}")
                breaks.append(f"{days} > {(rule.tolerance or 0.0) + TOLERANCE_EPSILON}")
                sim = f"1.0 - {days} / {date_window(rule) + 1.0}"
            sims.append(f"{rule.weight} * coalesce({sim}, 0.5)")
            weights.append(rule.weight)
    if not evidence:
        return pl.DataFrame(schema=LINK_SCHEMA), {"near_pass": "skipped: no name or key rule"}
    # block on a name prefix or a key so the candidate join stays bounded
    fuzzy = [col[f] for r in rules if r.match_type == "FUZZY" and r.weight > 0 for f in r.fields]
    blocks = [f"substr({{side}}.{c}, 1, 3)" for c in fuzzy] or keys
    if _pair_count(con, blocks[:1]) > budget:
        return pl.DataFrame(schema=LINK_SCHEMA), {"near_pass": "skipped: too many candidates"}
    block = blocks[0]
    score = f"({' + '.join(sims)}) / {sum(weights)}"
    sql = f"""
        SELECT s.{ROW} AS source_row, t.{ROW} AS target_row,
               least(1.0, greatest(0.0, {score}))::DOUBLE AS score, 'NEAR' AS kind
        FROM s JOIN t ON {block.format(side="s")} = {block.format(side="t")}
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


# ---------------------------------------------------------------- Splink


def _comparisons(rule_set: RuleSet, types: dict[str, str], col: dict[str, str]) -> list[Any]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    thresholds: dict[str, float] = {}
    tolerances: dict[str, float] = {}
    for rule in rule_set.matching_rules:
        for name in rule.fields:
            if rule.threshold is not None:
                thresholds.setdefault(name, rule.threshold)
            if rule.tolerance is not None:
                tolerances.setdefault(name, rule.tolerance)
    used = [f for r in rule_set.matching_rules if r.weight > 0 for f in r.fields]
    out = []
    for name in dict.fromkeys(used):
        c, kind = col[name], types[name]
        if kind == "EXACT":
            out.append(cl.ExactMatch(c))
        elif kind == "FUZZY":
            high = thresholds.get(name, 0.85)
            out.append(cl.JaroWinklerAtThresholds(c, sorted({high, max(0.5, high - 0.15)})[::-1]))
        elif kind == "RANGE":
            # proximity as evidence of identity, not agreement: a fee-short payment is near
            tol = tolerances.get(name, 0.0)
            levels = [cll.NullLevel(c), cll.ExactMatchLevel(c)]
            if tol > 0:
                levels.append(cll.AbsoluteDifferenceLevel(c, tol + TOLERANCE_EPSILON))
            larger = f'greatest(abs("{c}_l"), abs("{c}_r"))'
            for step in AMOUNT_STEPS:
                levels.append(
                    cll.CustomLevel(
                        f'sign("{c}_l") = sign("{c}_r") AND '
                        f'abs("{c}_l" - "{c}_r") <= {step} * {larger}',
                        label_for_charts=f"within {step:.0%}",
                    )
                )
            levels.append(cll.ElseLevel())
            out.append(cl.CustomComparison(levels, output_column_name=c))
        else:
            tol = max(tolerances.get(name, 0.0), 0.0)
            steps = sorted({t for t in (tol, max(tol * 4, DATE_WINDOW_DAYS), 60) if t > 0})
            out.append(
                cl.AbsoluteDateDifferenceAtThresholds(
                    c, input_is_string=False, metrics=["day"] * len(steps), thresholds=steps
                )
            )
    return out


def _blocking_candidates(
    rule_set: RuleSet, types: dict[str, str], col: dict[str, str]
) -> list[list[str]]:
    """Key expressions (with `{side}`) worth trying as blocking rules, most specific first."""
    used = list(dict.fromkeys(f for r in rule_set.matching_rules if r.weight > 0 for f in r.fields))
    exact = [f"{{side}}.{col[f]}" for f in used if types[f] == "EXACT"]
    ranges = [f"{{side}}.{col[f]}" for f in used if types[f] == "RANGE"]
    # amounts a little apart (within a tolerance below the unit) still share a rounded value
    tolerances = {
        f: max((r.tolerance or 0.0) for r in rule_set.matching_rules if f in r.fields)
        for f in used
        if types[f] == "RANGE"
    }
    rounded = [
        f"round({{side}}.{col[f]} / {max(1.0, 10 * tolerances[f]):g})"
        for f in used
        if types[f] == "RANGE"
    ]
    dates = [f"{{side}}.{col[f]}" for f in used if types[f] == "DATE_RANGE"]
    prefixes = [f"substr({{side}}.{col[f]}, 1, 4)" for f in used if types[f] == "FUZZY"]
    singles = [[k] for k in exact + ranges + rounded + prefixes]
    pairs = [
        list(p) for p in itertools.combinations(exact + ranges + rounded + dates + prefixes, 2)
    ]
    return singles + pairs


def _training_candidates(
    rule_set: RuleSet, types: dict[str, str], col: dict[str, str]
) -> list[list[str]]:
    """Blocking rules for EM sessions: tight ones, so recurring payments do not pose as matches.

    A rent paid every month shares its amount and payee with eleven other payments: a
    session blocked on the amount alone teaches EM that matches disagree on reference and
    date. So EXACT keys alone come first, then pairs that include a date (date and amount,
    date and a name prefix), then the other pairs.
    """
    used = list(dict.fromkeys(f for r in rule_set.matching_rules if r.weight > 0 for f in r.fields))
    exact = [[f"{{side}}.{col[f]}"] for f in used if types[f] == "EXACT"]
    dates = [f"{{side}}.{col[f]}" for f in used if types[f] == "DATE_RANGE"]
    others = [f"{{side}}.{col[f]}" for f in used if types[f] == "RANGE"] + [
        f"substr({{side}}.{col[f]}, 1, 4)" for f in used if types[f] == "FUZZY"
    ]
    with_date = [[d, o] for d in dates for o in others]
    rest = [list(p) for p in itertools.combinations(others, 2)]
    return exact + with_date + rest


def _choose_blocking(
    con: duckdb.DuckDBPyConnection, candidates: list[list[str]], budget: int
) -> tuple[list[list[str]], dict[str, int]]:
    chosen: list[list[str]] = []
    counts: dict[str, int] = {}
    for keys in candidates:
        if any(set(c) <= set(keys) for c in chosen):
            continue  # a looser rule already covers these pairs
        n = _pair_count(con, keys)
        counts[" & ".join(k.format(side="x") for k in keys)] = n
        if 0 < n <= budget:
            chosen.append(keys)
    return chosen, counts


def _rule_sql(keys: list[str]) -> str:
    return " AND ".join(f"{k.format(side='l')} = {k.format(side='r')}" for k in keys)


def _prior(n_source: int, n_target: int, share: float) -> float:
    if n_source == 0 or n_target == 0:
        return 1e-6
    return min(0.5, max(1e-12, share * min(n_source, n_target) / (n_source * n_target)))


def _linker(source: pl.DataFrame, target: pl.DataFrame, settings: dict[str, Any] | Any) -> Any:
    from splink import DuckDBAPI, Linker

    con = _duckdb()
    db_api = DuckDBAPI(connection=con)
    a = db_api.register(
        source.drop(HINTS, strict=False).to_arrow(), dataset_display_name="recon_source"
    )
    b = db_api.register(
        target.drop(HINTS, strict=False).to_arrow(), dataset_display_name="recon_target"
    )
    # Splink prints to stdout at INFO; its facts are kept in the linkage stats instead
    return Linker([a, b], settings, log_level=logging.ERROR)


def train_model(
    source: pl.DataFrame,
    target: pl.DataFrame,
    rule_set: RuleSet,
    types: dict[str, str],
    col: dict[str, str],
    training_rules: list[list[str]],
    seed: int = 42,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train a Splink model (u by sampling, m by EM) on a sample; returns (model, facts)."""
    from splink import SettingsCreator

    started = time.perf_counter()
    s = source.sample(min(TRAIN_ROWS, source.height), seed=seed) if source.height else source
    t = target.sample(min(TRAIN_ROWS, target.height), seed=seed) if target.height else target
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name=ROW,
        comparisons=_comparisons(rule_set, types, col),
        blocking_rules_to_generate_predictions=[_rule_sql(k) for k in training_rules[:1]],
        probability_two_random_records_match=_prior(s.height, t.height, 0.9),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = _linker(s, t, settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=seed)
    sessions = []
    covered: set[str] = set()
    names = set(col.values())
    for keys in training_rules:
        uses = {n for n in names if any(n in k for k in keys)}
        if (names - uses) <= covered:
            continue
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                _rule_sql(keys), estimate_without_term_frequencies=True
            )
        except Exception as err:  # noqa: BLE001 - a session that cannot converge is skipped
            sessions.append({"blocking": _rule_sql(keys), "error": str(err)[:200]})
            continue
        sessions.append({"blocking": _rule_sql(keys)})
        covered |= names - uses
        if covered >= names or len(sessions) >= 3:
            break
    model = linker.misc.save_model_to_json()
    facts = {
        "training_rows": [s.height, t.height],
        "em_sessions": sessions,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model, facts


def _predict(
    source: pl.DataFrame,
    target: pl.DataFrame,
    model: dict[str, Any],
    blocking: list[list[str]],
) -> pl.DataFrame:
    settings = dict(model)
    settings["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": _rule_sql(k), "sql_dialect": "duckdb"} for k in blocking
    ]
    settings["probability_two_random_records_match"] = _prior(source.height, target.height, 0.5)
    settings["retain_matching_columns"] = False
    settings["retain_intermediate_calculation_columns"] = False
    linker = _linker(source, target, settings)
    predicted = linker.inference.predict(threshold_match_probability=PREDICT_FLOOR)
    frame = pl.from_arrow(predicted.as_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return pl.DataFrame(schema=LINK_SCHEMA)
    left_is_source = pl.col("source_dataset_l") == "recon_source"
    return frame.select(
        pl.when(left_is_source)
        .then(pl.col(f"{ROW}_l"))
        .otherwise(pl.col(f"{ROW}_r"))
        .cast(pl.Int64)
        .alias("source_row"),
        pl.when(left_is_source)
        .then(pl.col(f"{ROW}_r"))
        .otherwise(pl.col(f"{ROW}_l"))
        .cast(pl.Int64)
        .alias("target_row"),
        pl.col("match_probability").cast(pl.Float64).alias("score"),
        pl.lit("PROBABILISTIC").alias("kind"),
    )


def _valid_records(conformed: Conformed) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str]]:
    """Both sides' valid records with SQL-safe column names (and the name map)."""
    col = _safe_names(list(conformed.field_types))
    rename = {name: col[name] for name in conformed.field_types}
    source = conformed.source.filter(pl.col("_valid")).drop("_valid").rename(rename)
    target = conformed.target.filter(pl.col("_valid")).drop("_valid").rename(rename)
    return source, target, col


def match_weights_html(conformed: Conformed, model: dict[str, Any]) -> str:
    """Splink's match-weights chart of a trained model, as a standalone (offline) HTML page."""
    source, target, _ = _valid_records(conformed)
    linker = _linker(source.head(2), target.head(2), dict(model))
    return linker.visualisations.match_weights_chart().to_html(inline=True)


def data_profile(source: pl.DataFrame, target: pl.DataFrame, col: dict[str, str]) -> dict:
    """What a model is fitted to: its format, the rows a side, each field's blank share."""
    shares = {
        name: [
            round(frame.get_column(c).null_count() / frame.height, 3) if frame.height else 0.0
            for frame in (source, target)
        ]
        for name, c in col.items()
    }
    return {"format": MODEL_FORMAT, "rows": [source.height, target.height], "null_share": shares}


def model_misfit(facts: dict[str, Any] | None, profile: dict[str, Any]) -> str | None:
    """None when a stored model fits these records; else why it does not (for the run log).

    A model fits when it has the current format, was trained on at least half the rows a
    side that training would take now, and no matching field's blank share moved by more
    than `NULL_SHARE_DRIFT` (blank references change what agreement means).
    """
    stored = (facts or {}).get("profile")
    if not stored:
        return "the stored model has no data profile (trained by an older version)"
    if stored.get("format") != MODEL_FORMAT:
        return f"the stored model has format {stored.get('format')}, this engine {MODEL_FORMAT}"
    trained = min(min(n, TRAIN_ROWS) for n in stored["rows"])
    needed = min(min(n, TRAIN_ROWS) for n in profile["rows"]) // 2
    if trained < needed:
        return f"it was trained on {trained} rows a side, these files have {min(profile['rows'])}"
    for name, (s_now, t_now) in profile["null_share"].items():
        s_then, t_then = stored["null_share"].get(name, (None, None))
        if s_then is None or t_then is None:
            return f"it was not trained on field {name!r}"
        drift = max(abs(s_now - s_then), abs(t_now - t_then))
        if drift > NULL_SHARE_DRIFT:
            return (
                f"{name!r} is blank in {s_now:.0%} / {t_now:.0%} of the records "
                f"(source / target), {s_then:.0%} / {t_then:.0%} where it was trained"
            )
    return None


def _register(con: duckdb.DuckDBPyConnection, source: pl.DataFrame, target: pl.DataFrame) -> None:
    for name, frame in (("s", source), ("t", target)):
        con.unregister(name)
        con.register(name, frame.to_arrow())


def _without(frame: pl.DataFrame, links: pl.DataFrame, column: str) -> pl.DataFrame:
    return frame.filter(~pl.col(ROW).is_in(links.get_column(column).implode()))


def _unmatched_originals(
    whole: pl.DataFrame, rest: pl.DataFrame, links: pl.DataFrame, column: str
) -> pl.DataFrame:
    """`rest` less the records that repeat a matched record on every field (duplicates).

    A bank line posted twice is equal on every matching field to the line that matched; left
    in, a later pass pairs it with whatever near record is left (another duplicate, a
    recurring payment). It stays unmatched and is reported as DUPLICATE_FOUND.
    """
    fields = [c for c in whole.columns if c not in (ROW, HINTS)]
    # one 64-bit hash of the fields instead of a window over the text itself (memory)
    marked = whole.select(
        ROW,
        pl.struct(fields).hash(seed=7).alias("_k"),
        pl.col(ROW).is_in(links.get_column(column).implode()).alias("_m"),
    )
    repeats = marked.filter(~pl.col("_m") & pl.col("_m").any().over("_k")).get_column(ROW)
    return rest.filter(~pl.col(ROW).is_in(repeats.implode()))


def link(
    conformed: Conformed,
    rule_set: RuleSet,
    *,
    model: dict[str, Any] | None = None,
    model_facts: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> LinkResult:
    """Link the valid records of both sides.

    A given model is used when it fits the records (`model_misfit`, with its training facts);
    otherwise, or without one, a model is trained and the reason is said.
    """
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    types = conformed.field_types
    rules = list(rule_set.matching_rules)
    source, target, col = _valid_records(conformed)
    profile = data_profile(source, target, col)
    budget = max(MIN_PAIR_BUDGET, PAIRS_PER_RECORD * (source.height + target.height))
    con = _duckdb()
    con.register("s", source.to_arrow())
    con.register("t", target.to_arrow())
    candidates, stats = exact_prepass(con, rules, col, budget)
    exact = assign_one_to_one(candidates)
    lap("prepass")
    say(f"exact pre-pass matched {exact.height} pairs that agree on every rule")
    stats["exact_matches"] = exact.height

    candidates_list = _blocking_candidates(rule_set, types, col)
    trained = False
    if model is not None:
        misfit = model_misfit(model_facts, profile)
        stats["model_reuse"] = f"retrained: {misfit}" if misfit else "reused: it fits"
        if misfit:
            say(f"not reusing the stored Splink model: {misfit}; training a new one")
            model = None
    if model is None:
        # training looks at both whole sides: EM needs the easy matches too
        training_rules, _ = _choose_blocking(
            con, _training_candidates(rule_set, types, col), budget
        )
        if training_rules and source.height and target.height:
            say("training the Splink model on these records")
            model, stats["training"] = train_model(
                source, target, rule_set, types, col, training_rules
            )
            stats["training"]["profile"] = profile
            trained = True
        lap("training")

    rest_source = _without(source, exact, "source_row")
    rest_target = _without(target, exact, "target_row")
    _register(con, rest_source, rest_target)
    keys = identifier_keys(source, target, rules, col)
    key_budget = max(MIN_PAIR_BUDGET, PAIRS_PER_RECORD * (rest_source.height + rest_target.height))
    hints = HINTS in source.columns and all(source.schema[k] == pl.String for k in keys)
    by_key, key_stats = key_prepass(con, rules, col, keys, key_budget, hints=hints)
    stats.update(key_stats)
    keyed = assign_one_to_one(by_key)
    stats["key_matches"] = keyed.height
    say(f"identifier pre-pass paired {keyed.height} more (same reference, judged later)")
    lap("key_prepass")

    # a record paired through a reference its free text quotes is no original for the
    # records that repeat its fields without quoting it (twins with blank references)
    hinted = pl.lit(False)
    if hints:
        quoted = pl.concat(
            [
                source.filter(pl.col(keys[0]).is_null()).select(pl.col(ROW).alias("source_row")),
                target.filter(pl.col(keys[0]).is_null()).select(pl.col(ROW).alias("target_row")),
            ],
            how="diagonal",
        )
        hinted = pl.col("source_row").is_in(
            quoted.get_column("source_row").drop_nulls().implode()
        ) | pl.col("target_row").is_in(quoted.get_column("target_row").drop_nulls().implode())
    paired = pl.concat([exact, keyed.filter(~hinted)])
    rest_source = _unmatched_originals(source, rest_source, paired, "source_row")
    rest_target = _unmatched_originals(target, rest_target, paired, "target_row")
    rest_source = _without(rest_source, keyed, "source_row")
    rest_target = _without(rest_target, keyed, "target_row")
    stats["remainder"] = [rest_source.height, rest_target.height]
    probabilistic = pl.DataFrame(schema=LINK_SCHEMA)
    scored = pl.DataFrame(schema=LINK_SCHEMA)
    if rest_source.height and rest_target.height and model is not None:
        _register(con, rest_source, rest_target)
        rest_budget = max(
            MIN_PAIR_BUDGET, PAIRS_PER_RECORD * (rest_source.height + rest_target.height)
        )
        blocking, counts = _choose_blocking(con, candidates_list, rest_budget)
        stats["blocking_rules"] = [_rule_sql(k) for k in blocking]
        stats["blocking_pair_counts"] = counts
        lap("blocking")
        if blocking:
            say(f"Splink scoring the remainder ({rest_source.height} x {rest_target.height})")
            scored = _predict(rest_source, rest_target, model, blocking)
            accepted = scored.filter(pl.col("score") >= rule_set.match_threshold)
            probabilistic = assign_one_to_one(accepted)
        lap("splink_predict")
    paired = pl.concat([paired, probabilistic])
    rest_source = _unmatched_originals(source, rest_source, paired, "source_row")
    rest_target = _unmatched_originals(target, rest_target, paired, "target_row")
    rest_source = _without(rest_source, probabilistic, "source_row")
    rest_target = _without(rest_target, probabilistic, "target_row")
    near = pl.DataFrame(schema=LINK_SCHEMA)
    if rest_source.height and rest_target.height:
        _register(con, rest_source, rest_target)
        near, near_stats = near_pass(con, rules, col, budget)
        stats.update(near_stats)
        say(f"near pass paired {near.height} leftovers (each other's clear nearest candidate)")
        lap("near_pass")
    con.close()
    stats["candidate_pairs_scored"] = scored.height
    stats["probabilistic_matches"] = probabilistic.height
    links = pl.concat([exact, keyed, probabilistic, near]).sort("source_row")
    matched_s = links.get_column("source_row").implode()
    matched_t = links.get_column("target_row").implode()
    best_source = (
        scored.filter(~pl.col("source_row").is_in(matched_s))
        .group_by("source_row")
        .agg(pl.col("score").max().alias("best_probability"))
    )
    best_target = (
        scored.filter(~pl.col("target_row").is_in(matched_t))
        .group_by("target_row")
        .agg(pl.col("score").max().alias("best_probability"))
    )
    stats["timings"] = timings
    return LinkResult(links, best_source, best_target, model, trained, stats)
