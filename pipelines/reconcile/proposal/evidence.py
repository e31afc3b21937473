"""Value evidence: how alike two columns' values are (containment, fuzzy share, code value
sets, Kolmogorov-Smirnov, date ranges), with the facts each score rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.reconcile.proposal.columns import _as_text, _Column, _normalise, _number_keys
from pipelines.reconcile.proposal.constants import (
    FUZZY_SOURCE_SAMPLE,
    FUZZY_TARGET_SAMPLE,
    FUZZY_THRESHOLD,
    SEED,
)


def _containment(sample: pl.Series, other: set[Any]) -> float:
    if sample.len() == 0 or not other:
        return 0.0
    return sum(1 for v in sample.to_list() if v in other) / sample.len()


def _fuzzy_share(
    source_sample: pl.Series, target: pl.Series, target_set: set[Any], *, seed: int = SEED
) -> float:
    """Share of (up to FUZZY_SOURCE_SAMPLE) sampled values equal to, or within Jaro-Winkler
    FUZZY_THRESHOLD of, a value of the target (sampled distinct values for the fuzzy part)."""
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler

    if source_sample.len() == 0 or target.len() == 0:
        return 0.0
    picked = source_sample.head(FUZZY_SOURCE_SAMPLE).to_list()
    pending = [v for v in picked if v not in target_set]
    if not pending:
        return 1.0
    choices = target.unique()
    if choices.len() > FUZZY_TARGET_SAMPLE:
        choices = choices.sample(FUZZY_TARGET_SAMPLE, seed=seed)
    best = process.cdist(
        pending,
        choices.to_list(),
        scorer=JaroWinkler.normalized_similarity,
        score_cutoff=FUZZY_THRESHOLD,
        workers=-1,
    ).max(axis=1)
    found = len(picked) - len(pending) + int((best >= FUZZY_THRESHOLD).sum())
    return found / len(picked)


def _ks_similarity(a: pl.Series, b: pl.Series) -> float:
    from scipy.stats import ks_2samp

    if a.len() < 2 or b.len() < 2:
        return 0.0
    result = ks_2samp(a.to_numpy(), b.to_numpy())
    return float(1.0 - result.statistic)


def _days(series: pl.Series) -> pl.Series:
    if isinstance(series.dtype, pl.Datetime):
        series = series.dt.date()
    return series.cast(pl.Int32)


@dataclass
class _Evidence:
    """Value-profile similarity of one pair, with what it rests on."""

    score: float
    facts: str


def _text_evidence(s: _Column, t: _Column) -> _Evidence:
    if s.is_code and t.is_code:
        a, b = s.value_set("norm"), t.value_set("norm")
        jaccard = len(a & b) / len(a | b) if a | b else 0.0
        return _Evidence(jaccard, f"codes, value sets Jaccard {jaccard:.2f}")
    s_norm, t_norm = _normalise(_as_text(s.sample)), _normalise(_as_text(t.sample))
    forward = _containment(s_norm, t.value_set("norm"))
    backward = _containment(t_norm, s.value_set("norm"))
    overlap = max(forward, backward)
    if s.is_identifier or t.is_identifier or s.family != t.family:
        return _Evidence(overlap, f"overlap {overlap:.2f}")
    fuzzy = _fuzzy_share(s_norm, _normalise(_as_text(t.values)), t.value_set("norm"))
    return _Evidence(max(overlap, 0.9 * fuzzy), f"overlap {overlap:.2f}, fuzzy overlap {fuzzy:.2f}")


def _number_evidence(s: _Column, t: _Column) -> _Evidence:
    forward = _containment(_number_keys(s.sample), t.value_set("number"))
    backward = _containment(_number_keys(t.sample), s.value_set("number"))
    overlap = max(forward, backward)
    ks = _ks_similarity(s.sample.cast(pl.Float64), t.sample.cast(pl.Float64))
    return _Evidence(0.5 * overlap + 0.5 * ks, f"overlap {overlap:.2f}, 1-KS {ks:.2f}")


def _date_evidence(s: _Column, t: _Column) -> _Evidence:
    a, b = _days(s.values), _days(t.values)
    if a.len() == 0 or b.len() == 0:
        return _Evidence(0.0, "no dates")
    a_lo, a_hi, b_lo, b_hi = int(a.min()), int(a.max()), int(b.min()), int(b.max())
    union = max(a_hi, b_hi) - min(a_lo, b_lo) + 1
    common = max(0, min(a_hi, b_hi) - max(a_lo, b_lo) + 1)
    ranges = common / union
    ks = _ks_similarity(_days(s.sample), _days(t.sample))
    return _Evidence(0.5 * ranges + 0.5 * ks, f"date ranges overlap {ranges:.2f}, 1-KS {ks:.2f}")


def _type_agreement(s: _Column, t: _Column) -> float:
    if s.data_type == t.data_type:
        return 1.0
    if s.family == t.family:
        return 0.8
    families = {s.family, t.family}
    if families == {"text", "number"} and "INTEGER" in (s.data_type, t.data_type):
        return 0.3  # identifiers typed as numbers on one side only
    return 0.0


def _value_evidence(s: _Column, t: _Column) -> _Evidence:
    agreement = _type_agreement(s, t)
    if agreement == 0.0 or s.filled == 0 or t.filled == 0:
        return _Evidence(0.0, f"{s.data_type} vs {t.data_type}")
    if s.family == t.family == "number":
        found = _number_evidence(s, t)
    elif s.family == t.family == "date":
        found = _date_evidence(s, t)
    elif s.family == t.family == "boolean":
        found = _Evidence(0.5, "booleans")
    else:
        found = _text_evidence(s, t)
    types = s.data_type if s.data_type == t.data_type else f"{s.data_type}/{t.data_type}"
    return _Evidence(0.15 * agreement + 0.85 * found.score, f"{types}, {found.facts}")
