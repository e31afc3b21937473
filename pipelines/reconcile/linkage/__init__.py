"""Linkage: which records are the same transaction (pairing), judged afterwards by tolerance.

A reconciliation asks two questions. "Are these the same transaction?" is answered here, on
identity evidence (references, counterparty, date proximity, amount proximity); "do they
agree?" is answered by the exceptions stage with the rules' tolerances. A pair that is clearly
one transaction but a bank fee short is matched and becomes an AMOUNT_MISMATCH, never two
missing records. Pairing runs in five passes, each on what the ones before left, each one to
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
4. Near (`NEAR`, `near_pass`): leftovers whose names agree strongly, amounts within 25 % and
   dates within the window, at most one of them beyond tolerance, paired only where the
   choice is clear (`assign_unambiguous`).
5. Amount (`AMOUNT`, `amount_pass`): leftovers with no identifier or name to go on (a blank
   bank reference), whose amount and date agree within tolerance and that are each other's
   only such candidate.

Records repeating a matched record on every field stay out of the later passes (duplicates).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.linkage.model import (
    _blocking_candidates,
    _choose_blocking,
    _linker,
    _predict,
    _rule_sql,
    _training_candidates,
    data_profile,
    model_misfit,
    train_model,
)
from pipelines.reconcile.linkage.near import amount_pass, near_pass
from pipelines.reconcile.linkage.passes import (
    LINK_SCHEMA,
    MIN_PAIR_BUDGET,
    PAIRS_PER_RECORD,
    _duckdb,
    _safe_names,
    assign_one_to_one,
    assign_unambiguous,
    exact_prepass,
    identifier_keys,
    key_prepass,
)
from pipelines.reconcile.mapping import HINTS, ROW, Conformed
from pipelines.reconcile.rules import RuleSet
from pipelines.reconcile.suggested_match import best_candidates

__all__ = [
    "LINK_SCHEMA",
    "LinkResult",
    "assign_one_to_one",
    "assign_unambiguous",
    "data_profile",
    "identifier_keys",
    "link",
    "match_weights_html",
    "model_misfit",
]

Progress = Callable[[str], None]


@dataclass
class LinkResult:
    """Matched pairs and what a person needs to judge the unmatched ones."""

    links: pl.DataFrame  # source_row, target_row, score, kind
    # source_row, best_probability, suggested_row, suggested_score (`best_candidates`)
    best_source: pl.DataFrame
    best_target: pl.DataFrame  # target_row, best_probability, suggested_row, suggested_score
    model: dict[str, Any] | None
    trained: bool
    stats: dict[str, Any] = field(default_factory=dict)


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


def _leftovers(
    wholes: tuple[pl.DataFrame, pl.DataFrame],
    rests: tuple[pl.DataFrame, pl.DataFrame],
    paired: pl.DataFrame,
    new: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the next pass sees of each side: the rest less the records `new` paired and the
    repeats of any record paired so far (`paired`)."""
    return tuple(  # type: ignore[return-value]
        _without(_unmatched_originals(whole, rest, paired, column), new, column)
        for whole, rest, column in zip(wholes, rests, ("source_row", "target_row"), strict=True)
    )


def link(
    conformed: Conformed,
    rule_set: RuleSet,
    *,
    model: dict[str, Any] | None = None,
    model_facts: dict[str, Any] | None = None,
    progress: Progress | None = None,
    quotes: pl.DataFrame | None = None,
    connect: Callable[[], Any] = _duckdb,
    predict: Callable[..., pl.DataFrame] = _predict,
) -> LinkResult:
    """Link the valid records of both sides.

    `connect` gives the connection every pass queries (DuckDB; the Spark engine's runs the same
    SQL on Spark) and `predict` scores the remainder with the Splink model
    (`linkage.spark_engine.link_spark` passes both).

    A given model is used when it fits the records (`model_misfit`, with its training facts);
    otherwise, or without one, a model is trained and the reason is said. With `aggregation:`
    rules, the leftovers are then grouped (`pipelines.reconcile.aggregation`; `quotes` from
    `aggregation_groups.quotes_frame`) and `links` gains `match_group`.
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
    con = connect()
    con.register("s", source.to_arrow())
    con.register("t", target.to_arrow())
    exact, stats = exact_prepass(con, rules, col, budget)
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
    # free-text hints stand in for one text identifier (see key_prepass)
    hints = HINTS in source.columns and len(keys) == 1 and source.schema[keys[0]] == pl.String
    keyed, key_stats = key_prepass(con, rules, col, keys, key_budget, hints=hints)
    stats.update(key_stats)
    stats["key_matches"] = keyed.height
    say(f"identifier pre-pass paired {keyed.height} more (same reference, judged later)")
    lap("key_prepass")

    # a record paired through a reference its free text quotes is no original for the
    # records that repeat its fields without quoting it (twins with blank references)
    hinted = pl.lit(False)
    if hints:
        blank_s = source.filter(pl.col(keys[0]).is_null()).get_column(ROW)
        blank_t = target.filter(pl.col(keys[0]).is_null()).get_column(ROW)
        hinted = pl.col("source_row").is_in(blank_s.implode()) | pl.col("target_row").is_in(
            blank_t.implode()
        )
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
            scored = predict(rest_source, rest_target, model, blocking)
            accepted = scored.filter(pl.col("score") >= rule_set.match_threshold)
            probabilistic = assign_one_to_one(accepted)
        lap("splink_predict")
    paired = pl.concat([paired, probabilistic])
    rest_source, rest_target = _leftovers(
        (source, target), (rest_source, rest_target), paired, probabilistic
    )
    passed: dict[str, pl.DataFrame] = {}
    for kind, run_pass, what in (
        ("near", near_pass, "each other's clear nearest candidate"),
        ("amount", amount_pass, "the one amount and date that fit"),
    ):
        passed[kind] = pl.DataFrame(schema=LINK_SCHEMA)
        if rest_source.height and rest_target.height:
            _register(con, rest_source, rest_target)
            passed[kind], pass_stats = run_pass(con, rules, col, budget)
            stats.update(pass_stats)
            say(f"{kind} pass paired {passed[kind].height} leftovers ({what})")
            lap(f"{kind}_pass")
            paired = pl.concat([paired, passed[kind]])
            rest_source, rest_target = _leftovers(
                (source, target), (rest_source, rest_target), paired, passed[kind]
            )
    con.close()
    stats["candidate_pairs_scored"] = scored.height
    stats["probabilistic_matches"] = probabilistic.height
    links = pl.concat([exact, keyed, probabilistic, *passed.values()]).sort("source_row")
    if rule_set.aggregation:
        from pipelines.reconcile.aggregation import aggregate  # it builds on these passes

        links, stats["aggregation"] = aggregate(conformed, rule_set, links, quotes=quotes)
        say(f"aggregation grouped leftovers into {stats['aggregation']['groups']} matches")
        lap("aggregation")
    # each unmatched record's best probability and best still-unmatched candidate (kept as
    # the suggested match of its MISSING exception), one group-by a side
    best_source = best_candidates(scored, links, "source")
    best_target = best_candidates(scored, links, "target")
    lap("best_candidates")
    stats["timings"] = timings
    return LinkResult(links, best_source, best_target, model, trained, stats)
