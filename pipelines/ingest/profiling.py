"""Column profiling for raw data files: type detection, preview rows and typed conversion.

A raw frame holds ``_row_number`` (Int64) plus one String column per file column, exactly as the
cells were read. `detect_schema` looks at a bounded sample of every column (the first
``SAMPLE_SIZE`` non-blank values) and decides a data type - STRING, INTEGER, DECIMAL, DATE,
TIMESTAMP or BOOLEAN - and the format it is written in (money layouts with currency symbols,
parentheses negatives and European separators; day-first or month-first dates; timestamps with
zone offsets; Y/N style booleans), while identifier-like columns (leading zeros, fixed-width
codes, ``*_id``/``invoice_no``/``iban`` names) stay STRING. A type is chosen when at least
``TYPE_THRESHOLD`` of the sampled values parse, so a few bad cells do not demote the column;
`convert` then applies the chosen types to every row with vectorised polars expressions and
reports each non-blank cell that did not convert as a failure row. DECIMAL values are converted to
Float64, timestamps to Datetime("us", "UTC") (naive timestamps are taken as UTC), and blank or
whitespace-only cells become null in every type, STRING included. Formats use the seed's
Java-style patterns (``dd/MM/yyyy``, ``yyyy-MM-dd'T'HH:mm:ssXXX``, ``#,##0.00``); the two
pattern functions translate them to and from polars/chrono strftime.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

DATA_TYPES = ("STRING", "INTEGER", "DECIMAL", "DATE", "TIMESTAMP", "BOOLEAN")

ROW_NUMBER = "_row_number"
SAMPLE_SIZE = 10_000
"""Non-blank values per column that detection looks at."""
TYPE_THRESHOLD = 0.98
"""Share of sampled non-blank values that must parse for a column to take a type."""
SAMPLE_VALUES = 5
PRUNE_HEAD = 500
"""Candidate formats are first tried on this many values; hopeless ones are dropped early."""

_FAILURE_SCHEMA = {
    "row_number": pl.Int64,
    "column": pl.String,
    "check": pl.String,
    "value": pl.String,
}


@dataclass(frozen=True)
class Conversion:
    """Typed frame plus one row per non-blank input cell that failed to convert."""

    frame: pl.DataFrame
    failures: pl.DataFrame


# --------------------------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_ID_TOKENS = frozenset(
    "id ids no nr number ref reference iban account acct invoice code key uuid guid bic swift "
    "sku ean upc isbn serial seq sequence voucher receipt phone tel telephone mobile fax zip "
    "postcode postal".split()
)
_ID_SUFFIXES = ("id", "no", "nr", "num", "number", "ref", "code", "key")
_ID_PREFIXES = frozenset(
    "ref inv invoice doc acct acc account txn trans transaction tx cust customer client order po "
    "cheque chk serial seq batch voucher receipt vendor supplier item part line journal je entry "
    "bank card policy claim ticket case reg contract loan member employee emp user branch store "
    "sort routing payment pay check statement stmt".split()
)
_MONEY_TOKENS = frozenset(
    "amount amounts amt price balance bal debit credit dr cr total fee fees cost payment paid "
    "charge charges tax net gross sum value withdrawal withdrawals deposit deposits money "
    "subtotal".split()
)
_COUNT_TOKENS = frozenset(
    "count counts cnt qty quantity items units of age size score level rank days hours".split()
)
_DATE_TOKENS = frozenset(
    "date dt dte day time timestamp ts datetime posted posting booked booking valuta created "
    "updated modified settled settlement period when at on".split()
)


def _name_tokens(name: str) -> set[str]:
    return {token.lower() for token in _TOKEN_RE.findall(name)}


def _has_id_token(tokens: set[str]) -> bool:
    if tokens & _ID_TOKENS:
        return True
    for token in tokens:
        for suffix in _ID_SUFFIXES:
            if token.endswith(suffix) and token[: -len(suffix)] in _ID_PREFIXES:
                return True
    return False


def _is_id_name(name: str) -> bool:
    tokens = _name_tokens(name)
    blocked = _MONEY_TOKENS | _COUNT_TOKENS | _DATE_TOKENS
    return _has_id_token(tokens) and not tokens & blocked


def _is_date_name(name: str) -> bool:
    return bool(_name_tokens(name) & _DATE_TOKENS)


def _is_count_or_amount_name(name: str) -> bool:
    tokens = _name_tokens(name)
    return bool(tokens & (_MONEY_TOKENS | _COUNT_TOKENS | {"num", "number", "n", "nb"}))


# --------------------------------------------------------------------------------------------
# Pattern translation (seed / Java DateTimeFormatter style <-> chrono strftime)
# --------------------------------------------------------------------------------------------

_SEED_TO_STRFTIME = {
    "yyyy": "%Y",
    "uuuu": "%Y",
    "yy": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%-m",
    "dd": "%d",
    "d": "%-d",
    "HH": "%H",
    "H": "%-H",
    "hh": "%I",
    "h": "%-I",
    "mm": "%M",
    "ss": "%S",
    "a": "%p",
    "EEEE": "%A",
    "EEE": "%a",
    "XXX": "%:z",
    "xxx": "%:z",
    "ZZZZZ": "%:z",
    "XX": "%z",
    "xx": "%z",
    "Z": "%z",
}
_FRACTION_TO_STRFTIME = {3: "%.3f", 6: "%.6f", 9: "%.9f"}
_STRFTIME_TO_SEED = {
    "%Y": "yyyy",
    "%y": "yy",
    "%B": "MMMM",
    "%b": "MMM",
    "%h": "MMM",
    "%m": "MM",
    "%-m": "M",
    "%d": "dd",
    "%-d": "d",
    "%e": "d",
    "%H": "HH",
    "%-H": "H",
    "%I": "hh",
    "%-I": "h",
    "%M": "mm",
    "%S": "ss",
    "%p": "a",
    "%P": "a",
    "%A": "EEEE",
    "%a": "EEE",
    "%:z": "XXX",
    "%#z": "XXX",
    "%z": "XX",
    "%.3f": ".SSS",
    "%.6f": ".SSSSSS",
    "%.9f": ".SSSSSSSSS",
    "%.f": ".SSS",
    "%F": "yyyy-MM-dd",
    "%T": "HH:mm:ss",
    "%R": "HH:mm",
    "%D": "MM/dd/yy",
    "%%": "%",
}
_SEED_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|\.S+|([A-Za-z])\1*|.", re.DOTALL)
_STRFTIME_TOKEN_RE = re.compile(r"%[-_0^#]?(?:\.[0-9]?|:)?[A-Za-z%+]|.", re.DOTALL)


def seed_pattern_to_strftime(pattern: str) -> str:
    """Translate a seed (Java DateTimeFormatter style) pattern to a chrono strftime format.

    Supported letters: ``yyyy yy MMMM MMM MM M dd d HH H hh h mm ss a EEEE EEE`` plus
    ``.SSS``/``.SSSSSS``/``.SSSSSSSSS`` fractions (other widths map to ``%.f``) and the zone
    offsets ``XXX``/``xxx``/``ZZZZZ`` (``+02:00``) and ``XX``/``xx``/``Z`` (``+0200``). Quoted
    text (``'T'``, ``''`` for a quote) is literal. Unsupported letters raise ValueError.
    """
    out: list[str] = []
    for match in _SEED_TOKEN_RE.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            literal = "'" if token == "''" else token[1:-1].replace("''", "'")
            out.append(literal.replace("%", "%%"))
        elif token.startswith(".") and len(token) > 1:
            out.append(_FRACTION_TO_STRFTIME.get(len(token) - 1, "%.f"))
        elif token[0].isalpha():
            if token not in _SEED_TO_STRFTIME:
                raise ValueError(f"unsupported pattern letters {token!r} in {pattern!r}")
            out.append(_SEED_TO_STRFTIME[token])
        else:
            out.append("%%" if token == "%" else token)
    return "".join(out)


def strftime_to_seed_pattern(fmt: str) -> str:
    """Translate a chrono strftime format back to the seed's pattern style.

    Inverse of `seed_pattern_to_strftime` for the directives it produces; literal letters are
    quoted (``T`` -> ``'T'``). Unsupported directives raise ValueError.
    """
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal)
            if any(ch.isalpha() for ch in text):
                out.append("'" + text.replace("'", "''") + "'")
            else:
                out.append(text.replace("'", "''"))
            literal.clear()

    for match in _STRFTIME_TOKEN_RE.finditer(fmt):
        token = match.group(0)
        if token.startswith("%") and len(token) > 1:
            if token not in _STRFTIME_TO_SEED:
                raise ValueError(f"unsupported strftime directive {token!r} in {fmt!r}")
            if token == "%%":
                literal.append("%")
                continue
            flush()
            out.append(_STRFTIME_TO_SEED[token])
        else:
            literal.append(token)
    flush()
    return "".join(out)


_FRACTION_DIRECTIVE_RE = re.compile(r"%\.[0-9]?f")
_SECONDS_RE = re.compile(r"%S(?!%\.[0-9]?f)")
_ZONE_RE = re.compile(r"%[:#]?z")


def _lenient_strftime(fmt: str) -> str:
    """Parse format that also accepts optional fractions of any width and ``Z`` as an offset."""
    fmt = _FRACTION_DIRECTIVE_RE.sub("%.f", fmt)
    fmt = _SECONDS_RE.sub("%S%.f", fmt)
    return _ZONE_RE.sub("%#z", fmt)


def _parse_temporal(expr: pl.Expr, fmt: str, kind: str) -> pl.Expr:
    """Vectorised parse of stripped text with a strftime format; failures become null."""
    lenient = _lenient_strftime(fmt)
    if kind == "DATE":
        out = expr.str.to_date(lenient, strict=False, exact=True)
    else:
        out = expr.str.to_datetime(lenient, time_unit="us", strict=False, exact=True)
        if "%#z" in lenient:
            out = out.dt.convert_time_zone("UTC")
        else:
            out = out.dt.replace_time_zone("UTC")
    if "%Y" in lenient:  # chrono reads "24" as the year 24 with %Y; such cells are failures
        out = pl.when(out.dt.year() >= 1000).then(out)
    return out


# --------------------------------------------------------------------------------------------
# Numbers and money
# --------------------------------------------------------------------------------------------

_ISO_CURRENCIES = (
    "USD EUR GBP JPY CHF CAD AUD NZD CNY HKD SGD SEK NOK DKK ISK PLN CZK HUF RON BGN RSD RUB UAH "
    "TRY INR IDR MYR THB PHP KRW TWD VND PKR BDT LKR ZAR NGN KES EGP MAD BRL MXN ARS CLP COP PEN "
    "ILS AED SAR QAR KWD BHD OMR KZT"
).split()
_CUR = r"(?:[A-Z]{3}|[A-Z]{1,2}\$|[$€£¥₹₽₩₪₺฿₫₴₦₱])"  # 3 letters: checked against the list
_NUMBER_RE = (
    rf"^(?P<s1>[-+−])?\s*(?P<c1>{_CUR})?\s*(?P<s2>[-+−])?\s*(?P<o>\()?\s*(?P<s3>[-+−])?\s*"
    rf"(?P<c2>{_CUR})?\s*(?P<num>[0-9](?:[0-9.,'\s]*[0-9])?|[.,][0-9]+)\s*(?P<c3>{_CUR})?\s*"
    rf"(?P<cl>\))?\s*(?P<c4>{_CUR})?\s*(?P<s4>[-−])?$"
)
_GROUP_SPACE = r"[\s']"
_DOT_DECIMAL_RE = (
    rf"^(?:[0-9]{{1,3}}(?:,[0-9]{{3}})+|[0-9]{{1,3}}(?:{_GROUP_SPACE}[0-9]{{3}})+|[0-9]+)"
    r"(?:\.[0-9]+)?$|^\.[0-9]+$"
)
_COMMA_DECIMAL_RE = (
    rf"^(?:[0-9]{{1,3}}(?:\.[0-9]{{3}})+|[0-9]{{1,3}}(?:{_GROUP_SPACE}[0-9]{{3}})+|[0-9]+)"
    r"(?:,[0-9]+)?$|^,[0-9]+$"
)


def _number_parts(expr: pl.Expr) -> pl.Expr:
    return expr.str.extract_groups(_NUMBER_RE)


def _number_fields(parts: pl.Expr, decimal: str) -> dict[str, pl.Expr]:
    """Expressions over a `_number_parts` struct for one decimal separator."""
    field = parts.struct.field
    num = field("num")
    signs = [field(name) for name in ("s1", "s2", "s3", "s4")]
    currencies = [field(name) for name in ("c1", "c2", "c3", "c4")]
    n_signs = pl.sum_horizontal([s.is_not_null().cast(pl.Int32) for s in signs]) + field(
        "o"
    ).is_not_null().cast(pl.Int32)
    n_currencies = pl.sum_horizontal([c.is_not_null().cast(pl.Int32) for c in currencies])
    shape = _DOT_DECIMAL_RE if decimal == "." else _COMMA_DECIMAL_RE
    currency = pl.coalesce(currencies)
    known_currency = (
        currency.is_null()
        | currency.is_in(_ISO_CURRENCIES)
        | (currency.str.len_chars() != 3)
        | currency.str.ends_with("$")
    )
    valid = (
        num.str.contains(shape)
        & (field("o").is_null() == field("cl").is_null())
        & (n_signs <= 1)
        & (n_currencies <= 1)
        & known_currency
    ).fill_null(False)
    negative = pl.any_horizontal(
        [field("o").is_not_null(), *[s.is_in(["-", "−"]) for s in signs]]
    ).fill_null(False)
    escaped = re.escape(decimal)
    fraction = num.str.extract(rf"{escaped}([0-9]+)$")
    integer_digits = num.str.replace(rf"{escaped}[0-9]*$", "").str.replace_all(r"[^0-9]", "")
    magnitude = pl.concat_str([integer_digits, pl.lit("."), fraction.fill_null("0")]).cast(
        pl.Float64, strict=False
    )
    return {
        "num": num,
        "valid": valid,
        "negative": negative,
        "fraction": fraction,
        "integer_digits": integer_digits,
        "decimal": pl.when(valid).then(pl.when(negative).then(-magnitude).otherwise(magnitude)),
        "currency": currency,
        "parentheses": field("o").is_not_null(),
    }


def _integer_expr(fields: dict[str, pl.Expr]) -> pl.Expr:
    whole = fields["fraction"].is_null() | fields["fraction"].str.contains(r"^0+$")
    magnitude = fields["integer_digits"].cast(pl.Int64, strict=False)
    signed = pl.when(fields["negative"]).then(-magnitude).otherwise(magnitude)
    return pl.when(fields["valid"] & whole.fill_null(False)).then(signed)


def _decimal_separator(column: dict[str, Any]) -> str:
    """Decimal separator of a DECIMAL/INTEGER column from its schema entry."""
    explicit = column.get("decimalSeparator")
    if explicit in (".", ","):
        return str(explicit)
    fmt = str(column.get("format") or "").split(";")[0]
    last_dot, last_comma = fmt.rfind("."), fmt.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        return "." if last_dot > last_comma else ","
    for sep, other in ((".", ","), (",", ".")):
        position = fmt.rfind(sep)
        if position >= 0:
            grouping = fmt[position + 1 :] == "##0" and fmt[:position].endswith("#")
            return other if grouping else sep
    return "."


# --------------------------------------------------------------------------------------------
# Booleans
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _clean(expr: pl.Expr) -> pl.Expr:
    """Strip surrounding whitespace; blank cells become null."""
    stripped = expr.cast(pl.String).str.strip_chars()
    return pl.when(stripped.str.len_bytes() > 0).then(stripped)


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


def _parse_ok(sample: pl.Series, candidate: _Candidate) -> pl.Series:
    fmt = seed_pattern_to_strftime(candidate.seed)
    parsed = _parse_temporal(pl.col("v"), fmt, candidate.kind)
    if candidate.seed == "yyyyMMdd":
        parsed = pl.when(parsed.dt.year().is_between(1900, 2100)).then(parsed)
    return pl.DataFrame({"v": sample}).select(parsed.is_not_null()).to_series()


def _detect_temporal(name: str, sample: pl.Series) -> dict[str, Any] | None:
    total = sample.len()
    allowed_failures = int((1 - TYPE_THRESHOLD) * total)
    head = sample.head(PRUNE_HEAD)
    scores: dict[str, int] = {}
    by_seed: dict[str, _Candidate] = {}
    for candidate in _TEMPORAL_CANDIDATES:
        if candidate.seed == "yyyyMMdd" and _is_id_name(name):
            continue
        head_ok = int(_parse_ok(head, candidate).sum())
        if head.len() - head_ok > allowed_failures:
            continue
        ok = head_ok if total == head.len() else int(_parse_ok(sample, candidate).sum())
        if ok >= TYPE_THRESHOLD * total:
            scores[candidate.seed] = ok
            by_seed[candidate.seed] = candidate
    if not scores:
        return None
    best_seed = max(scores, key=lambda seed: scores[seed])  # first maximum: list order wins
    best = by_seed[best_seed]
    if best.seed == "yyyyMMdd" and not _is_date_name(name) and scores[best.seed] < total:
        return None
    twin = _swapped(best.seed)
    ambiguous = twin is not None and scores.get(twin) == scores[best.seed]
    seed = best.seed
    if best.kind == "TIMESTAMP":
        seed = _refine_timestamp_seed(best, sample)
    return {"dataType": best.kind, "format": seed, "ambiguous": ambiguous}


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


def _detect_boolean(name: str, sample: pl.Series) -> dict[str, Any] | None:
    counts = sample.value_counts()
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
    return {"dataType": "BOOLEAN", "format": f"{true}/{false}"}


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


def _detect_number(name: str, sample: pl.Series) -> dict[str, Any] | None:
    frame = pl.DataFrame({"v": sample}).with_columns(parts=_number_parts(pl.col("v")))
    parts = pl.col("parts")
    num = parts.struct.field("num")
    dot_shape = num.str.contains(_DOT_DECIMAL_RE).fill_null(False)
    comma_shape = num.str.contains(_COMMA_DECIMAL_RE).fill_null(False)
    evidence = frame.select(
        comma=(comma_shape & ~dot_shape).sum(), dot=(dot_shape & ~comma_shape).sum()
    ).row(0, named=True)
    decimal = "," if evidence["comma"] > evidence["dot"] else "."
    fields = _number_fields(parts, decimal)
    grouping_re = r"[.\s']" if decimal == "," else r"[,\s']"
    stats = frame.select(
        valid=fields["valid"],
        currency=fields["currency"],
        parentheses=fields["parentheses"],
        scale=fields["fraction"].str.len_chars().fill_null(0),
        int_digits=fields["integer_digits"].str.strip_chars_start("0").str.len_chars(),
        grouping=num.str.extract(grouping_re, 0).str.replace(r"\s", " "),
    ).filter(pl.col("valid"))
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
        return {"dataType": "INTEGER", "decimalSeparator": decimal, "groupingSeparator": grouping}
    pattern_int = "0" if grouping is None else f"#{grouping}##0"
    money = bool(grouping or currencies.len() or has_parentheses or decimal == ",")
    fmt = pattern_int + (decimal + "0" * scale if scale else "")
    out: dict[str, Any] = {
        "dataType": "DECIMAL",
        "precision": max(int(stats["int_digits"].max() or 0) + scale, 1),
        "scale": scale,
        "format": fmt if money else None,
        "decimalSeparator": decimal,
        "groupingSeparator": grouping,
    }
    if currencies.len():
        out["currencySymbol"] = str(currencies.mode().sort()[0])
    if has_parentheses:
        out["negativeParentheses"] = True
    return out


def _column_stats(frame: pl.DataFrame, columns: list[str]) -> dict[str, tuple[int, int]]:
    exprs: list[pl.Expr] = []
    for i, name in enumerate(columns):
        value = _clean(pl.col(name))
        exprs.append(value.null_count().alias(f"n{i}"))
        exprs.append(value.drop_nulls().n_unique().alias(f"d{i}"))
    if not exprs:
        return {}
    row = frame.select(exprs).row(0, named=True)
    return {name: (int(row[f"n{i}"]), int(row[f"d{i}"])) for i, name in enumerate(columns)}


def _data_columns(frame: pl.DataFrame) -> list[str]:
    return [name for name in frame.columns if name != ROW_NUMBER]


def _detect_column(name: str, sample: pl.Series) -> dict[str, Any]:
    """Type and format of one column from its stripped non-blank sample."""
    if sample.len() == 0:
        return {"dataType": "STRING"}
    detected = _detect_boolean(name, sample) or _detect_temporal(name, sample)
    if detected:
        return detected
    if _detect_id(name, sample):
        return {"dataType": "STRING", "idLike": True}
    detected = _detect_number(name, sample)
    if detected:
        return detected
    return {"dataType": "STRING", "idLike": _looks_like_codes(sample)}


def detect_schema(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Detect type, format, nullability and uniqueness of every data column.

    Returns one dict per column other than ``_row_number``, in frame order, with the keys
    ``name dataType nullable unique precision scale format sampleValues`` followed by extras:
    ``nullCount`` and ``distinctCount`` (blank cells count as null), ``idLike``, and where they
    apply ``ambiguous`` (DATE/TIMESTAMP whose day/month order the data never settles),
    ``decimalSeparator``/``groupingSeparator`` (INTEGER/DECIMAL), ``currencySymbol`` and
    ``negativeParentheses`` (DECIMAL).
    """
    columns = _data_columns(frame)
    stats = _column_stats(frame, columns)
    schema: list[dict[str, Any]] = []
    for name in columns:
        head = (
            frame.lazy()
            .select(raw=pl.col(name).cast(pl.String), v=_clean(pl.col(name)))
            .filter(pl.col("v").is_not_null())
            .head(SAMPLE_SIZE)
            .collect()
        )
        sample = head.get_column("v")
        detected = _detect_column(name, sample)
        nulls, distinct = stats[name]
        non_null = frame.height - nulls
        entry: dict[str, Any] = {
            "name": name,
            "dataType": detected.pop("dataType"),
            "nullable": nulls > 0,
            "unique": distinct == non_null,
            "precision": detected.pop("precision", None),
            "scale": detected.pop("scale", None),
            "format": detected.pop("format", None),
            "sampleValues": head.get_column("raw")
            .unique(maintain_order=True)
            .head(SAMPLE_VALUES)
            .to_list(),
            "nullCount": nulls,
            "distinctCount": distinct,
            "idLike": bool(detected.pop("idLike", False)),
        }
        entry.update({key: value for key, value in detected.items()})
        schema.append(entry)
    return schema


def preview_rows(frame: pl.DataFrame, limit: int = 100) -> list[list[str | None]]:
    """First `limit` rows as lists of raw cell strings, data columns only, in column order."""
    columns = _data_columns(frame)
    if not columns:
        return [[] for _ in range(min(limit, frame.height))]
    head = frame.head(max(limit, 0)).select(pl.col(name).cast(pl.String) for name in columns)
    return [list(row) for row in head.iter_rows()]


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _check_label(column: dict[str, Any]) -> str:
    fmt = column.get("format")
    data_type = column.get("dataType", "STRING")
    return f"dataType {data_type} {fmt}" if fmt else f"dataType {data_type}"


def _convert_expr(column: dict[str, Any], clean: pl.Expr, parts: pl.Expr | None) -> pl.Expr:
    data_type = column.get("dataType", "STRING")
    fmt = column.get("format")
    if data_type == "STRING":
        return clean
    if data_type == "BOOLEAN":
        return _boolean_expr(clean, fmt)
    if data_type in ("DATE", "TIMESTAMP"):
        if not fmt:
            raise ValueError(f"column {column.get('name')!r}: {data_type} needs a format")
        strftime = fmt if "%" in fmt else seed_pattern_to_strftime(fmt)
        return _parse_temporal(clean, strftime, data_type)
    assert parts is not None
    fields = _number_fields(parts, _decimal_separator(column))
    if data_type == "INTEGER":
        return _integer_expr(fields)
    return fields["decimal"]


def convert(frame: pl.DataFrame, schema: Iterable[dict[str, Any]]) -> Conversion:
    """Convert every data column to its schema type and collect the cells that failed.

    Columns missing from `schema` stay STRING. Output dtypes: INTEGER Int64, DECIMAL Float64,
    DATE Date, TIMESTAMP Datetime("us", "UTC"), BOOLEAN Boolean, STRING String (stripped).
    Blank cells are null and never failures.
    """
    if ROW_NUMBER not in frame.columns:
        raise ValueError(f"frame has no {ROW_NUMBER!r} column")
    by_name = {column["name"]: column for column in schema}
    columns = _data_columns(frame)
    specs: list[dict[str, Any]] = []
    for name in columns:
        spec = by_name.get(name, {"name": name, "dataType": "STRING"})
        if spec.get("dataType", "STRING") not in DATA_TYPES:
            raise ValueError(f"column {name!r}: unknown dataType {spec.get('dataType')!r}")
        specs.append(spec)

    cleaned = [_clean(pl.col(name)).alias(f"__s{i}") for i, name in enumerate(columns)]
    parts = [
        _number_parts(pl.col(f"__s{i}")).alias(f"__p{i}")
        for i, spec in enumerate(specs)
        if spec.get("dataType") in ("INTEGER", "DECIMAL")
    ]
    converted = [
        _convert_expr(
            spec,
            pl.col(f"__s{i}"),
            pl.col(f"__p{i}") if spec.get("dataType") in ("INTEGER", "DECIMAL") else None,
        ).alias(f"__c{i}")
        for i, spec in enumerate(specs)
    ]
    failed = [
        (pl.col(f"__s{i}").is_not_null() & pl.col(f"__c{i}").is_null()).alias(f"__f{i}")
        for i in range(len(columns))
    ]
    wide = (
        frame.lazy()
        .with_columns(cleaned)
        .with_columns(parts)
        .with_columns(converted)
        .select(
            pl.col(ROW_NUMBER).cast(pl.Int64),
            *[pl.col(name) for name in columns],
            *[pl.col(f"__c{i}") for i in range(len(columns))],
            *failed,
        )
        .collect()
    )
    typed = wide.select(
        ROW_NUMBER, *[pl.col(f"__c{i}").alias(name) for i, name in enumerate(columns)]
    )
    failure_frames = [
        wide.filter(pl.col(f"__f{i}")).select(
            pl.col(ROW_NUMBER).alias("row_number"),
            pl.lit(name, dtype=pl.String).alias("column"),
            pl.lit(_check_label(spec), dtype=pl.String).alias("check"),
            pl.col(name).cast(pl.String).alias("value"),
        )
        for i, (name, spec) in enumerate(zip(columns, specs, strict=True))
        if spec.get("dataType", "STRING") != "STRING"
    ]
    failure_frames = [f for f in failure_frames if f.height]
    if failure_frames:
        failures = pl.concat(failure_frames).sort("row_number", maintain_order=True)
    else:
        failures = pl.DataFrame(schema=_FAILURE_SCHEMA)
    return Conversion(frame=typed, failures=failures)
