"""Mappings: source columns assigned to target columns one-to-one (maximum total score),
and each mapping's transformation chosen from the data (DATE_FORMAT, UPPERCASE,
LOWERCASE, TRIM, DIRECT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipelines.reconcile.proposal.columns import _as_text, _Column
from pipelines.reconcile.proposal.constants import MIN_SCORE
from pipelines.reconcile.proposal.evidence import _containment, _Evidence


def _assign(scores: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs (maximum total score) among those scoring at least MIN_SCORE."""
    from scipy.optimize import linear_sum_assignment

    if scores.size == 0:
        return []
    allowed = np.where(scores >= MIN_SCORE, scores, 0.0)
    rows, cols = linear_sum_assignment(allowed, maximize=True)
    return sorted(
        (int(i), int(j)) for i, j in zip(rows, cols, strict=True) if allowed[i, j] >= MIN_SCORE
    )


def _transform(series: pl.Series, kind: str) -> pl.Series:
    text = _as_text(series)
    if kind == "UPPERCASE":
        return text.str.to_uppercase()
    if kind == "LOWERCASE":
        return text.str.to_lowercase()
    return text


def _choose_text_transformation(s: _Column, t: _Column) -> tuple[str, dict[str, float]]:
    """TRIM, or UPPERCASE/LOWERCASE when that raises the exact overlap with the target."""
    target = t.value_set("raw")
    overlaps = {
        kind: _containment(_transform(s.sample, kind), target)
        for kind in ("TRIM", "UPPERCASE", "LOWERCASE")
    }
    best = max(("UPPERCASE", "LOWERCASE"), key=lambda k: overlaps[k])
    if overlaps[best] > overlaps["TRIM"] + 0.005:
        return best, overlaps
    return "TRIM", overlaps


@dataclass
class _Mapping:
    source: _Column
    target: _Column
    score: float
    name_score: float
    evidence: _Evidence
    transformation: str = "DIRECT"
    config: dict[str, Any] | None = None
    note: str = ""


def _plan_mapping(m: _Mapping) -> None:
    s, t = m.source, m.target
    if s.family == "date" and t.family == "date":
        if s.fmt and s.fmt != t.fmt:
            m.transformation, m.config = "DATE_FORMAT", {"format": s.fmt}
            m.note = f"dates written {s.fmt} vs {t.fmt or t.data_type}"
    elif s.family == "text" and t.family == "text":
        m.transformation, overlaps = _choose_text_transformation(s, t)
        if m.transformation != "TRIM":
            m.note = (
                f"exact overlap {overlaps['TRIM']:.2f} as written, "
                f"{overlaps[m.transformation]:.2f} after {m.transformation}"
            )
