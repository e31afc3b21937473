"""The Splink stage of linkage: comparisons, blocking, training, prediction, model fit.

Comparisons come from the matching rules (amounts graded by relative proximity as evidence of
identity, dates by days apart, names by Jaro-Winkler, blanks neutral); blocking rules are
chosen from the data by counting the pairs each candidate key yields; the model is trained on
a sample (u by random sampling, m by EM on tight blocking rules) and kept with a profile of
the records it was trained on, so a later run reuses it only where it fits (`model_misfit`).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import duckdb
import polars as pl

from pipelines.reconcile.linkage.passes import (
    AMOUNT_STEPS,
    DATE_WINDOW_DAYS,
    LINK_SCHEMA,
    _duckdb,
    _pair_count,
)
from pipelines.reconcile.mapping import HINTS, ROW
from pipelines.reconcile.rules import TOLERANCE_EPSILON, RuleSet

logging.getLogger("splink").setLevel(logging.WARNING)

TRAIN_ROWS = 100_000
U_MAX_PAIRS = 1_000_000
PREDICT_FLOOR = 0.01
# bump when the comparisons change: a model of another format is never reused
MODEL_FORMAT = 3
NULL_SHARE_DRIFT = 0.15  # a stored model is retrained when a field's blank share moves more


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


def prediction_settings(
    model: dict[str, Any], blocking: list[list[str]], n_source: int, n_target: int, dialect: str
) -> dict[str, Any]:
    """A model's settings for prediction: its blocking rules (DuckDB SQL as `dialect`), the
    prior for these sides' sizes, no retained columns. The model's comparisons as they are (the
    Spark engine gives them in Spark SQL: `spark_engine.spark_model`)."""
    rules = [_rule_sql(k) for k in blocking]
    if dialect == "spark":  # sqlglot only: no Spark import
        from pipelines.reconcile.linkage.spark_sql import spark_sql

        rules = [spark_sql(rule) for rule in rules]
    settings = dict(model)
    settings["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": rule, "sql_dialect": dialect} for rule in rules
    ]
    settings["probability_two_random_records_match"] = _prior(n_source, n_target, 0.5)
    settings["retain_matching_columns"] = False
    settings["retain_intermediate_calculation_columns"] = False
    return settings


def oriented(frame: pl.DataFrame) -> pl.DataFrame:
    """Splink's scored pairs (l / r, either side first) as LINK_SCHEMA, PROBABILISTIC."""
    if frame.height == 0:
        return pl.DataFrame(schema=LINK_SCHEMA)
    left_is_source = pl.col("source_dataset_l") == "recon_source"
    left, right = pl.col(f"{ROW}_l"), pl.col(f"{ROW}_r")
    return frame.select(
        pl.when(left_is_source).then(left).otherwise(right).cast(pl.Int64).alias("source_row"),
        pl.when(left_is_source).then(right).otherwise(left).cast(pl.Int64).alias("target_row"),
        pl.col("match_probability").cast(pl.Float64).alias("score"),
        pl.lit("PROBABILISTIC").alias("kind"),
    )


def _predict(
    source: pl.DataFrame,
    target: pl.DataFrame,
    model: dict[str, Any],
    blocking: list[list[str]],
) -> pl.DataFrame:
    settings = prediction_settings(model, blocking, source.height, target.height, "duckdb")
    linker = _linker(source, target, settings)
    predicted = linker.inference.predict(threshold_match_probability=PREDICT_FLOOR)
    frame = pl.from_arrow(predicted.as_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return oriented(frame)


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
