"""Matching rules derived from a mapping's data as transformed and normalised, that is what
the engine will compare (EXACT, RANGE, DATE_RANGE, FUZZY), each with the evidence for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.reconcile.normalize import TextNormalization, normalize_text
from pipelines.reconcile.proposal.columns import _as_text, _Column, _number_keys
from pipelines.reconcile.proposal.constants import (
    DATE_RANGE_OVERLAP,
    DATE_TOLERANCE_DAYS,
    EXACT_OVERLAP,
    FUZZY_SHARE,
    FUZZY_THRESHOLD,
    ID_DISTINCT_RATIO,
    NUMBER_EVIDENCE,
    STATEMENT_TEXT_COLUMNS,
)
from pipelines.reconcile.proposal.evidence import (
    _containment,
    _days,
    _fuzzy_share,
    _number_evidence,
)
from pipelines.reconcile.proposal.mappings import _Mapping, _transform


@dataclass
class _Rule:
    mapping: _Mapping
    match_type: str
    weight: float
    threshold: float | None = None
    tolerance: float | None = None
    why: str = ""
    order: int = 0

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.mapping.target.name,
            "match_type": self.match_type,
            "fields": [self.mapping.target.name],
            "weight": self.weight,
        }
        if self.threshold is not None:
            data["threshold"] = self.threshold
        if self.tolerance is not None:
            data["tolerance"] = self.tolerance
        return data


def _compared(series: pl.Series, match_type: str) -> pl.Series:
    """Text as the engine compares it under `match_type` (normalised; blanks dropped)."""
    return normalize_text(_as_text(series), match_type, TextNormalization()).drop_nulls()


def _cross_overlap(m: _Mapping) -> float:
    """Exact overlap after the mapping's transformation, as the engine compares (both ways)."""
    s, t = m.source, m.target
    kind = m.transformation
    target_set = set(_compared(t.values, "EXACT").unique().to_list())
    forward = _containment(_compared(_transform(s.sample, kind), "EXACT"), target_set)
    source_set = set(_compared(_transform(s.values, kind), "EXACT").unique().to_list())
    backward = _containment(_compared(t.sample, "EXACT"), source_set)
    return max(forward, backward)


def _filled_share(c: _Column) -> float:
    return c.filled / c.rows if c.rows else 0.0


def _rule_for(m: _Mapping) -> _Rule | None:
    s, t = m.source, m.target
    if s.family == t.family == "date":
        a, b = _days(s.values), _days(t.values)
        if a.len() == 0 or b.len() == 0:
            return None
        common = min(int(a.max()), int(b.max())) - max(int(a.min()), int(b.min())) + 1
        shorter = min(int(a.max()) - int(a.min()), int(b.max()) - int(b.min())) + 1
        if common / shorter < DATE_RANGE_OVERLAP:
            return None
        return _Rule(
            m,
            "DATE_RANGE",
            0.6,
            tolerance=DATE_TOLERANCE_DAYS,
            order=2,
            why=f"dates, {common / shorter:.2f} of the shorter date range shared",
        )
    if s.family == t.family == "number":
        numbers = _number_evidence(s, t)
        if "DECIMAL" in (s.data_type, t.data_type):
            if numbers.score < NUMBER_EVIDENCE:
                return None
            scales = [c.scale for c in (s, t) if c.scale is not None]
            tolerance = 10.0 ** -min(scales) if scales else 0.01
            tolerance = round(min(max(tolerance, 0.0001), 1.0), 4)
            return _Rule(
                m,
                "RANGE",
                0.8,
                tolerance=tolerance,
                order=1,
                why=f"amounts, {numbers.facts}, tolerance from scale {min(scales, default=2)}",
            )
        overlap = _containment(_number_keys(s.sample), t.value_set("number"))
        if s.distinct_ratio >= ID_DISTINCT_RATIO or t.distinct_ratio >= ID_DISTINCT_RATIO:
            if overlap >= EXACT_OVERLAP:
                return _Rule(m, "EXACT", 1.0, order=0, why=f"numeric ids, overlap {overlap:.2f}")
            return None
        if s.is_code and t.is_code and s.value_set("number") == t.value_set("number"):
            return _Rule(m, "EXACT", 0.2, order=4, why="numeric codes, identical value sets")
        if numbers.score >= NUMBER_EVIDENCE:
            return _Rule(
                m, "RANGE", 0.8, tolerance=0.0, order=1, why=f"whole numbers, {numbers.facts}"
            )
        return None
    if s.family != "text" or t.family != "text":
        return None
    overlap = _cross_overlap(m)
    if s.is_code and t.is_code:
        source_set = set(_transform(s.values, m.transformation).unique().to_list())
        filled = min(_filled_share(s), _filled_share(t))
        if source_set == t.value_set("raw") and filled >= 0.95:
            return _Rule(
                m,
                "EXACT",
                0.2,
                order=4,
                why=f"codes, identical value sets ({len(source_set)} values), filled {filled:.2f}",
            )
        return None
    statement_text = {s.name, t.name} & STATEMENT_TEXT_COLUMNS
    if (s.is_identifier or t.is_identifier) and not statement_text:
        if overlap >= EXACT_OVERLAP:
            return _Rule(m, "EXACT", 1.0, order=0, why=f"identifiers, overlap {overlap:.2f}")
        return None
    names = _compared(t.values, "FUZZY")
    fuzzy = _fuzzy_share(
        _compared(_transform(s.sample, m.transformation), "FUZZY"), names, set(names.to_list())
    )
    if fuzzy >= FUZZY_SHARE:
        return _Rule(
            m,
            "FUZZY",
            0.5,
            threshold=FUZZY_THRESHOLD,
            order=3,
            why=f"names, overlap {overlap:.2f}, share within Jaro-Winkler "
            f"{FUZZY_THRESHOLD} {fuzzy:.2f}",
        )
    return None
