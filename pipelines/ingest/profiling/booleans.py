"""Booleans: the accepted true/false token pairs and the expression that turns text into
Boolean."""

from __future__ import annotations

import polars as pl

_BOOLEAN_PAIRS = (("Y", "N"), ("Yes", "No"), ("true", "false"), ("T", "F"), ("1", "0"))
_ALL_TRUE = frozenset(t.lower() for t, _ in _BOOLEAN_PAIRS)
_ALL_FALSE = frozenset(f.lower() for _, f in _BOOLEAN_PAIRS)


def _boolean_tokens(fmt: str | None) -> tuple[list[str], list[str]]:
    if fmt and "/" in fmt:
        true, false = fmt.split("/", 1)
        return [true.strip().lower()], [false.strip().lower()]
    return sorted(_ALL_TRUE), sorted(_ALL_FALSE)


def _boolean_expr(expr: pl.Expr, fmt: str | None) -> pl.Expr:
    trues, falses = _boolean_tokens(fmt)
    lowered = expr.str.to_lowercase()
    return (
        pl.when(lowered.is_in(trues))
        .then(pl.lit(True))
        .when(lowered.is_in(falses))
        .then(pl.lit(False))
        .otherwise(pl.lit(None, dtype=pl.Boolean))
    )
