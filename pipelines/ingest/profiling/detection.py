"""Type detection on a column's cleaned sample: temporal formats (with day/month order
settled on the whole column), booleans, identifiers and numbers, tried in that order by
`_detect_column`; also `_clean`, the strip that makes blank cells null."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema
from pipelines.ingest.profiling.booleans import _BOOLEAN_PAIRS
from pipelines.ingest.profiling.common import PRUNE_MARGIN, TYPE_THRESHOLD
from pipelines.ingest.profiling.names import _is_count_or_amount_name, _is_id_name
from pipelines.ingest.profiling.numbers import (
    _COMMA_DECIMAL_RE,
    _DOT_DECIMAL_RE,
    _number_fields,
    _number_parts,
)
from pipelines.ingest.profiling.patterns import _parse_temporal, seed_pattern_to_strftime


def _clean(expr: pl.Expr) -> pl.Expr:
    """Strip surrounding whitespace; blank cells become null."""
    return expr.cast(pl.String).str.strip_chars().replace("", None)


@dataclass(frozen=True)
class _Candidate:
    kind: str
    seed: str
    date_part: str
    time_part: str
    zone_part: str


def _temporal_candidates() -> list[_Candidate]:
    dates = [
        "yyyy-MM-dd",
        "dd/MM/yyyy",
        "MM/dd/yyyy",
        "dd.MM.yyyy",
        "dd-MM-yyyy",
        "MM-dd-yyyy",
        "yyyy/MM/dd",
        "dd/MM/yy",
        "MM/dd/yy",
        "dd-MMM-yyyy",
        "dd MMM yyyy",
        "MMM dd, yyyy",
        "dd-MMM-yy",
        "dd MMMM yyyy",
        "MMMM dd, yyyy",
        "yyyyMMdd",
    ]
    out = [_Candidate("DATE", d, d, "", "") for d in dates]
    for sep in ("'T'", " "):
        for time in ("HH:mm:ss", "HH:mm"):
            for zone in ("", "XXX", " XXX"):
                seed = f"yyyy-MM-dd{sep}{time}{zone}"
                out.append(_Candidate("TIMESTAMP", seed, "yyyy-MM-dd", time, zone))
    for date in dates[1:14]:
        for time in ("HH:mm:ss", "HH:mm", "hh:mm:ss a", "hh:mm a"):
            out.append(_Candidate("TIMESTAMP", f"{date} {time}", date, time, ""))
    return out


_TEMPORAL_CANDIDATES = _temporal_candidates()
_SWAPS = (("dd/MM", "MM/dd"), ("dd-MM", "MM-dd"))


def _swapped(seed: str) -> str | None:
    for day_first, month_first in _SWAPS:
        if day_first in seed:
            return seed.replace(day_first, month_first)
        if month_first in seed:
            return seed.replace(month_first, day_first)
    return None


def _parse_ok_expr(candidate: _Candidate) -> pl.Expr:
    """True where column ``v`` parses with the candidate's format."""
    fmt = seed_pattern_to_strftime(candidate.seed)
    parsed = _parse_temporal(pl.col("v"), fmt, candidate.kind)
    if candidate.seed == "yyyyMMdd":
        parsed = pl.when(parsed.dt.year().is_between(1900, 2100)).then(parsed)
    return parsed.is_not_null()


_PARSE_OK_SUMS = [
    _parse_ok_expr(candidate).sum().alias(f"c{i}")
    for i, candidate in enumerate(_TEMPORAL_CANDIDATES)
]


def _parse_counts(values: pl.Series, indexes: list[int]) -> list[int]:
    """How many of `values` each candidate (by index) parses, in one parallel select."""
    if not indexes:
        return []
    row = pl.DataFrame({"v": values}).select(_PARSE_OK_SUMS[i] for i in indexes).row(0)
    return [int(count) for count in row]


def _detect_temporal(
    name: str, sample: pl.Series, full: pl.Series | None = None
) -> ColumnSchema | None:
    """DATE/TIMESTAMP format of a sample; `full` (the whole raw column) settles day/month."""
    total = sample.len()
    allowed_failures = int((1 - TYPE_THRESHOLD) * total)
    head = sample.head(allowed_failures + PRUNE_MARGIN)
    # Whole families of candidates fail on too many values for cheap reasons: every format
    # needs digits, only timestamps have a colon, numeric dates have no letters.
    shapes = head.to_frame("v").select(
        digits=pl.col("v").str.contains("[0-9]").sum(),
        colons=pl.col("v").str.contains(":", literal=True).sum(),
        letters=pl.col("v").str.contains("[A-Za-z]").sum(),
    )
    digits, colons, letters = (int(count) for count in shapes.row(0))
    if head.len() - digits > allowed_failures:
        return None
    timestamps_possible = head.len() - colons <= allowed_failures
    dates_possible = colons <= allowed_failures
    numeric_dates_possible = dates_possible and letters <= allowed_failures
    indexes = [
        i
        for i, candidate in enumerate(_TEMPORAL_CANDIDATES)
        if not (candidate.seed == "yyyyMMdd" and _is_id_name(name))
        and (
            timestamps_possible
            if candidate.kind == "TIMESTAMP"
            else numeric_dates_possible or (dates_possible and "MMM" in candidate.seed)
        )
    ]
    head_counts = _parse_counts(head, indexes)
    alive = [
        i for i, ok in zip(indexes, head_counts, strict=True) if head.len() - ok <= allowed_failures
    ]
    if total == head.len():
        counts = dict(zip(indexes, head_counts, strict=True))
    else:
        counts = dict(zip(alive, _parse_counts(sample, alive), strict=True))
    scores: dict[str, int] = {}
    by_seed: dict[str, _Candidate] = {}
    for i in alive:  # candidate order, so that the first maximum wins below
        if counts[i] >= TYPE_THRESHOLD * total:
            scores[_TEMPORAL_CANDIDATES[i].seed] = counts[i]
            by_seed[_TEMPORAL_CANDIDATES[i].seed] = _TEMPORAL_CANDIDATES[i]
    if not scores:
        return None
    best_seed = max(scores, key=lambda seed: scores[seed])  # first maximum: list order wins
    best = by_seed[best_seed]
    # Eight digits without separators could as well be numbers or codes: a compact date
    # column is only a date when every sampled value is one (the FEBRL copies' corrupted
    # birth dates stay text, compared as written, rather than dropping their rows)
    if best.seed == "yyyyMMdd" and scores[best.seed] < total:
        return None
    twin_seed = _swapped(best.seed)
    ambiguous = twin_seed is not None and scores.get(twin_seed) == scores[best.seed]
    if ambiguous and full is not None and full.len() > total:
        # The sample never shows a day above 12: let the whole column decide.
        twin = by_seed[str(twin_seed)]
        pair = [_TEMPORAL_CANDIDATES.index(best), _TEMPORAL_CANDIDATES.index(twin)]
        cleaned = full.to_frame("v").select(_clean(pl.col("v"))).to_series()
        best_ok, twin_ok = _parse_counts(cleaned, pair)
        ambiguous = best_ok == twin_ok
        if twin_ok > best_ok:
            best = twin
    seed = best.seed
    if best.kind == "TIMESTAMP":
        seed = _refine_timestamp_seed(best, sample)
    return ColumnSchema(name, best.kind, format=seed, ambiguous=ambiguous)


def _refine_timestamp_seed(candidate: _Candidate, sample: pl.Series) -> str:
    """Add the fraction width and the offset style that the data actually shows."""
    seed = candidate.seed
    if candidate.time_part.startswith("HH:mm:ss"):
        widths = sample.str.extract(r":[0-9]{2}\.([0-9]+)").drop_nulls().str.len_chars()
        if widths.len() > 0:
            unique = widths.unique().to_list()
            width = unique[0] if len(unique) == 1 and unique[0] in (3, 6, 9) else 3
            seed = seed.replace("HH:mm:ss", "HH:mm:ss." + "S" * width, 1)
    if candidate.zone_part:
        compact = int(sample.str.contains(r"[+-][0-9]{4}$").sum())
        colon = int(sample.str.contains(r"(?:[+-][0-9]{2}:[0-9]{2}|Z)$").sum())
        if compact > colon:
            seed = seed[: -len("XXX")] + "XX"
    return seed


def _detect_boolean(name: str, sample: pl.Series) -> ColumnSchema | None:
    counts = sample.value_counts()
    # A pair covers at most 48 spellings (true/false in any case); the rest is under 2 %.
    if counts.height > 48 + (1 - TYPE_THRESHOLD) * sample.len():
        return None
    raw_counts = dict(zip(counts[:, 0].to_list(), counts[:, 1].to_list(), strict=True))
    lowered: dict[str, int] = {}
    for value, count in raw_counts.items():
        lowered[value.lower()] = lowered.get(value.lower(), 0) + count
    total = sample.len()
    best: tuple[int, tuple[str, str]] | None = None
    for true, false in _BOOLEAN_PAIRS:
        t_count, f_count = lowered.get(true.lower(), 0), lowered.get(false.lower(), 0)
        covered = t_count + f_count
        if covered < TYPE_THRESHOLD * total or covered == 0:
            continue
        if (true, false) == ("1", "0") and (
            covered < total or not t_count or not f_count or _is_count_or_amount_name(name)
        ):
            continue
        if (true, false) == ("T", "F") and not (t_count and f_count):
            continue
        if best is None or covered > best[0]:
            best = (covered, (true, false))
    if best is None:
        return None
    true, false = best[1]

    seen = [value for value in raw_counts if value.lower() in (true.lower(), false.lower())]
    if all(value == value.lower() for value in seen):
        true, false = true.lower(), false.lower()
    elif all(value == value.upper() for value in seen):
        true, false = true.upper(), false.upper()
    return ColumnSchema(name, "BOOLEAN", format=f"{true}/{false}")


_CODE_RE = r"^[A-Za-z0-9+(][A-Za-z0-9\-_/.#:() ]{0,63}$"
_TIGHT_CODE_RE = r"^[A-Za-z0-9][A-Za-z0-9\-_/.#:]{0,63}$"


def _share(mask: pl.Series) -> float:
    return float(mask.sum()) / mask.len() if mask.len() else 0.0


def _detect_id(name: str, sample: pl.Series) -> bool:
    """True when the column holds identifiers that must stay text."""
    digits_only = sample.str.contains(r"^[0-9]+$")
    if _share(digits_only) >= TYPE_THRESHOLD:
        digits = sample.filter(digits_only)
        lengths = digits.str.len_chars()
        if bool(digits.str.contains(r"^0[0-9]+$").any()) or int(lengths.max() or 0) > 15:
            return True
        if _is_id_name(name):
            return True
        fixed_width = lengths.n_unique() == 1 and int(lengths[0]) >= 6
        if fixed_width and digits.n_unique() >= 2 and not _is_count_or_amount_name(name):
            return True
        return False
    if _is_id_name(name):
        code_like = sample.str.contains(_CODE_RE) & sample.str.contains(r"[0-9]")
        return _share(code_like) >= TYPE_THRESHOLD
    return False


def _looks_like_codes(sample: pl.Series) -> bool:
    """Letter+digit tokens without spaces that are (nearly) all distinct, e.g. INV-00123."""
    code_like = (
        sample.str.contains(_TIGHT_CODE_RE)
        & sample.str.contains(r"[0-9]")
        & sample.str.contains(r"[A-Za-z]")
    )
    return _share(code_like) >= TYPE_THRESHOLD and sample.n_unique() >= 0.9 * sample.len()


def _number_exprs() -> tuple[pl.Expr, pl.Expr, dict[str, list[pl.Expr]]]:
    """`_detect_number`'s expressions, built once: the parts of ``v``, the separator evidence
    and, per decimal separator, the fields of each value (building them took ~1 ms a column,
    more than running them on a small sample: it counts in files of thousands of columns)."""
    parts = pl.col("parts")
    num = parts.struct.field("num")
    dot_shape = num.str.contains(_DOT_DECIMAL_RE).fill_null(False)
    comma_shape = num.str.contains(_COMMA_DECIMAL_RE).fill_null(False)
    evidence = pl.struct(
        comma=(comma_shape & ~dot_shape).sum(), dot=(dot_shape & ~comma_shape).sum()
    ).alias("evidence")
    stats: dict[str, list[pl.Expr]] = {}
    for decimal in (".", ","):
        fields = _number_fields(parts, decimal)
        grouping_re = r"[.\s']" if decimal == "," else r"[,\s']"
        stats[decimal] = [
            fields["valid"].alias("valid"),
            fields["currency"].alias("currency"),
            fields["parentheses"].alias("parentheses"),
            fields["fraction"].str.len_chars().fill_null(0).alias("scale"),
            fields["integer_digits"].str.strip_chars_start("0").str.len_chars().alias("int_digits"),
            num.str.extract(grouping_re, 0).str.replace(r"\s", " ").alias("grouping"),
        ]
    return _number_parts(pl.col("v")).alias("parts"), evidence, stats


_NUMBER_PARTS, _NUMBER_EVIDENCE, _NUMBER_STATS = _number_exprs()


def _detect_number(name: str, sample: pl.Series) -> ColumnSchema | None:
    # Quick exit: a number has a digit and no lowercase letter (currency codes are uppercase).
    if int(sample.str.contains(r"^[^a-z]*[0-9][^a-z]*$").sum()) < TYPE_THRESHOLD * sample.len():
        return None
    frame = pl.DataFrame({"v": sample}).with_columns(_NUMBER_PARTS)
    evidence = frame.select(_NUMBER_EVIDENCE).item()
    decimal = "," if evidence["comma"] > evidence["dot"] else "."
    stats = frame.select(_NUMBER_STATS[decimal]).filter(pl.col("valid"))
    if stats.height < TYPE_THRESHOLD * sample.len() or stats.height == 0:
        return None
    scale = int(stats["scale"].max() or 0)
    currencies = stats["currency"].drop_nulls()
    has_parentheses = bool(stats["parentheses"].any())
    groupings = stats["grouping"].drop_nulls()
    grouping = None
    if groupings.len():
        grouping = str(groupings.mode().sort()[0])
    if scale == 0 and currencies.len() == 0 and not has_parentheses:
        if int(stats["int_digits"].max() or 0) > 18:
            return None
        return ColumnSchema(name, "INTEGER", decimal_separator=decimal, grouping_separator=grouping)
    pattern_int = "0" if grouping is None else f"#{grouping}##0"
    money = bool(grouping or currencies.len() or has_parentheses or decimal == ",")
    fmt = pattern_int + (decimal + "0" * scale if scale else "")
    return ColumnSchema(
        name,
        "DECIMAL",
        precision=max(int(stats["int_digits"].max() or 0) + scale, 1),
        scale=scale,
        format=fmt if money else None,
        decimal_separator=decimal,
        grouping_separator=grouping,
        currency_symbol=str(currencies.mode().sort()[0]) if currencies.len() else None,
        negative_parentheses=has_parentheses,
    )


def _detect_column(name: str, sample: pl.Series, full: pl.Series | None = None) -> ColumnSchema:
    """Type and format of one column from its stripped non-blank sample (the counts, sample
    values, nullability and uniqueness are `profile`'s to fill in).

    `full` is the whole raw column, looked at only to settle day-first or month-first
    dates that the sample leaves ambiguous.
    """
    if sample.len() == 0:
        return ColumnSchema(name)
    detected = _detect_boolean(name, sample) or _detect_temporal(name, sample, full)
    if detected:
        return detected
    if _detect_id(name, sample):
        return ColumnSchema(name, id_like=True)
    detected = _detect_number(name, sample)
    if detected:
        return detected
    return ColumnSchema(name, id_like=_looks_like_codes(sample))
