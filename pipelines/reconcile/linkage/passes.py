"""The deterministic passes of linkage: exact and reference, and one-to-one assignment.

Each pass is a DuckDB query over tables `s` and `t` (the records still unpaired) returning
candidate pairs (`LINK_SCHEMA`); `assign_one_to_one` / `assign_unambiguous` make them one to
one. The exact and reference passes assign where their pairs are (`one_to_one_of`): on the
driver for DuckDB, by rounds of SQL on a connection that says it assigns in its engine
(`assigns_in_engine`: the Spark engine's), so only the chosen pairs leave Spark. The near
pass is in `pipelines.reconcile.linkage.near`; the package docstring
(`pipelines.reconcile.linkage`) says how the passes fit together.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.mapping import HINTS, ROW
from pipelines.reconcile.rules import TOLERANCE_EPSILON, MatchingRule

MIN_PAIR_BUDGET = 200_000
PAIRS_PER_RECORD = 10
DUCKDB_MEMORY = "512MB"  # per linkage connection; DuckDB spills to disk beyond it
IDENTIFIER_SHARE = 0.5  # an EXACT field whose values are at least this share distinct
DATE_WINDOW_DAYS = 10.0  # same transaction up to this many days apart (or 4x the tolerance)
AMOUNT_SHARE = 0.5  # same transaction up to this share of the larger amount apart
HINT_SIMILARITY = 0.8  # a reference found in free text, against 1.0 for the field itself
FUZZY_FLOOR = 0.3  # a name this far below the rule's threshold contradicts a shared reference
# relative differences graded as identity evidence (a bank fee, FX, a partial payment)
AMOUNT_STEPS = (0.01, 0.1, AMOUNT_SHARE)


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


ASSIGN_ROUNDS = 12  # rounds of mutual-best pairs in the engine before the driver finishes
DRIVER_FINISH = 50_000  # contested pairs few enough to finish on the driver


def _mutual_best_sql(pairs: str) -> str:
    """The pairs of `pairs` that are the first, in the greedy order, of both their records."""
    return (
        "SELECT source_row, target_row, score, kind FROM (SELECT *, "
        "row_number() OVER (PARTITION BY source_row ORDER BY score DESC, target_row) AS rs, "
        "row_number() OVER (PARTITION BY target_row ORDER BY score DESC, source_row) AS rt "
        f"FROM {pairs}) m WHERE rs = 1 AND rt = 1"
    )


def assign_in_engine(con: Any, sql: str) -> tuple[pl.DataFrame, int]:
    """`assign_one_to_one` of the pairs `sql` yields, computed on `con`'s engine.

    Greedy one-to-one under a strict order (score, then rows) takes exactly the pairs that are
    repeatedly each other's first choice among the records still free (a pair first for both
    its records is one greedy takes: nothing before it can claim either record). So each round
    keeps the mutual-best pairs and drops every pair touching their records, as SQL; only the
    chosen pairs come back. After `ASSIGN_ROUNDS` rounds, or once at most `DRIVER_FINISH`
    pairs are left, the driver finishes them with `assign_one_to_one` (a long chain of ever
    better rivals takes one round a link). Duplicate pairs keep their best score, as greedy
    does. Returns the chosen pairs and how many distinct candidate pairs there were.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE recon_pairs_0 AS SELECT source_row, target_row, "
        f"max(score) AS score, min(kind) AS kind FROM ({sql}) c GROUP BY source_row, target_row"
    )
    left = total = int(con.execute("SELECT count(*) FROM recon_pairs_0").fetchall()[0][0])
    chosen: list[pl.DataFrame] = []
    rounds = 0
    while left > DRIVER_FINISH and rounds < ASSIGN_ROUNDS:
        pairs, picked, rest = (f"recon_pairs_{rounds}", "recon_picked", f"recon_pairs_{rounds + 1}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {picked} AS {_mutual_best_sql(pairs)}")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {rest} AS SELECT c.* FROM {pairs} c "
            f"LEFT JOIN {picked} a ON c.source_row = a.source_row "
            f"LEFT JOIN {picked} b ON c.target_row = b.target_row "
            "WHERE a.source_row IS NULL AND b.target_row IS NULL"
        )
        left = int(con.execute(f"SELECT count(*) FROM {rest}").fetchall()[0][0])
        chosen.append(_pairs_of(con, f"SELECT * FROM {picked}"))
        con.execute(f"DROP TABLE IF EXISTS {pairs}")
        rounds += 1
    finish = f"recon_pairs_{rounds}"
    chosen.append(assign_one_to_one(_pairs_of(con, f"SELECT * FROM {finish}")))
    for name in (finish, "recon_picked"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return pl.concat(chosen).sort("source_row"), total


def one_to_one_of(con: Any, sql: str) -> tuple[pl.DataFrame, int]:
    """The one-to-one pairs of a pass's query and its candidate count, assigned where the
    connection's engine prefers (`assigns_in_engine`: in the engine; else on the driver)."""
    if getattr(con, "assigns_in_engine", False):
        return assign_in_engine(con, sql)
    candidates = _pairs_of(con, sql)
    return assign_one_to_one(candidates), candidates.height


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
    """Pairs agreeing on every rule (tables `s` and `t` registered on `con`), one to one."""
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
    pairs, count = one_to_one_of(con, sql)
    return pairs, {"prepass_candidates": count}


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
    (the caller decides: only for exactly one text key), a record whose key is blank also
    pairs with the record whose key its free text quotes, under the same conditions.
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
    if hints:
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
    pairs, count = one_to_one_of(con, sql)
    return pairs, {"key_prepass_candidates": count}
