"""Suggested matches kept from linkage: the best candidate Splink scored for an unmatched record.

A record left unmatched by every pass may still have been scored by Splink against records of
the other file, below `match_threshold`. `best_candidates` keeps, per unmatched record, its
best probability (any candidate: the exception's confidence) and its best candidate that is
itself still unmatched (one paired later, by the near pass or aggregation, is no suggestion;
ties go to the lowest row), in one group-by. `with_suggested_matches` puts that candidate on
the record's MISSING exception as `suggested_match`, a JSON object:
`{"source_row", "target_row", "score", "threshold", "why": [{field, source_value,
target_value, delta}]}`: `why` holds each matching field's two (normalized) values, with the
difference for amounts (source - target) and days for dates. Splink's per-comparison weights
are not kept by its prediction, so the values are the evidence a person reads.
`pipelines.work.suggestions` offers the kept candidate first.
"""

from __future__ import annotations

import polars as pl

from pipelines.reconcile.mapping import ROW, Conformed

__all__ = ["best_candidates", "with_suggested_matches"]

MISSING_SIDES = {"MISSING_IN_TARGET": "source", "MISSING_IN_SOURCE": "target"}


def best_candidates(scored: pl.DataFrame, links: pl.DataFrame, side: str) -> pl.DataFrame:
    """Per `side` record in no link that Splink scored: `best_probability` (any candidate) and
    `suggested_row` / `suggested_score`, its best candidate in no link (null when none)."""
    other = "target" if side == "source" else "source"
    mine, theirs = f"{side}_row", f"{other}_row"
    unmatched = scored.filter(~pl.col(mine).is_in(links.get_column(mine).implode()))
    best = unmatched.group_by(mine).agg(pl.col("score").max().alias("best_probability"))
    top = pl.col("score").max()
    candidates = (
        unmatched.filter(~pl.col(theirs).is_in(links.get_column(theirs).implode()))
        .group_by(mine)
        .agg(
            pl.col(theirs).filter(pl.col("score") == top).min().alias("suggested_row"),
            top.alias("suggested_score"),
        )
    )
    return best.join(candidates, on=mine, how="left")


def _why_items(conformed: Conformed) -> list[pl.Expr]:
    """One JSON object per matching field: both values, and the difference where numeric."""
    items = []
    for name, kind in conformed.field_types.items():
        s, t = pl.col(f"{name}__s"), pl.col(f"{name}__t")
        parts = [pl.lit(name).alias("field"), s.alias("source_value"), t.alias("target_value")]
        if kind == "RANGE":
            parts.append((s - t).round(6).alias("delta"))
        elif kind == "DATE_RANGE":
            parts.append((s - t).dt.total_days().alias("delta"))
        items.append(pl.struct(parts).struct.json_encode())
    return items


def _suggestions(
    conformed: Conformed, best: pl.DataFrame, side: str, threshold: float
) -> pl.DataFrame | None:
    """`ROW`, `suggested_match` (JSON text) for the `side` records that have a candidate."""
    mine = f"{side}_row"
    if "suggested_row" not in best.columns:
        return None
    pairs = best.drop_nulls("suggested_row")
    if pairs.height == 0:
        return None
    s_col, t_col = (mine, "suggested_row") if side == "source" else ("suggested_row", mine)
    fields = list(conformed.field_types)
    pairs = pairs.select(
        pl.col(mine).alias(ROW),
        pl.col(s_col).cast(pl.Int64).alias("_s"),
        pl.col(t_col).cast(pl.Int64).alias("_t"),
        pl.col("suggested_score"),
    )
    for key, frame, suffix in (("_s", conformed.source, "__s"), ("_t", conformed.target, "__t")):
        values = frame.filter(pl.col(ROW).is_in(pairs.get_column(key).implode()))
        values = values.select(ROW, *fields).rename({f: f"{f}{suffix}" for f in fields})
        pairs = pairs.join(values.rename({ROW: key}), on=key, how="left")
    text = pl.concat_str(
        pl.lit('{"source_row": '),
        pl.col("_s"),
        pl.lit(', "target_row": '),
        pl.col("_t"),
        pl.lit(', "score": '),
        pl.col("suggested_score").fill_nan(None).round(6),  # NaN is no JSON: no suggestion
        pl.lit(f', "threshold": {float(threshold)!r}, "why": ['),
        pl.concat_str(_why_items(conformed), separator=", ") if fields else pl.lit(""),
        pl.lit("]}"),
    )
    return pairs.select(ROW, text.alias("suggested_match"))


def with_suggested_matches(
    body: pl.DataFrame,
    conformed: Conformed,
    best: dict[str, pl.DataFrame],
    threshold: float,
) -> pl.DataFrame:
    """`body` (exceptions) with `suggested_match` on the MISSING ones whose record has a kept
    candidate (`best`: side -> `best_candidates`), null elsewhere."""
    found = []
    for kind, side in MISSING_SIDES.items():
        frame = _suggestions(conformed, best[side], side, threshold)
        if frame is not None:
            found.append(frame.with_columns(pl.lit(kind).alias("type")))
    if not found:
        return body.with_columns(pl.lit(None, dtype=pl.String).alias("suggested_match"))
    own_row = (
        pl.when(pl.col("type") == "MISSING_IN_TARGET")
        .then(pl.col("source_row_number"))
        .otherwise(pl.col("target_row_number"))
    )
    return (
        body.with_columns(own_row.alias(ROW))
        .join(pl.concat(found), on=["type", ROW], how="left", maintain_order="left")
        .drop(ROW)
    )
