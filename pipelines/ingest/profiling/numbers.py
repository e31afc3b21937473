"""Numbers and money: the regex that splits a cell into signs, currency and digits, the checked
fields and values built on it for one decimal separator, and a column's decimal separator."""

from __future__ import annotations

import re

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema

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


def _decimal_separator(column: ColumnSchema) -> str:
    """Decimal separator of a DECIMAL/INTEGER column from its schema entry."""
    explicit = column.decimal_separator
    if explicit in (".", ","):
        return str(explicit)
    fmt = (column.format or "").split(";")[0]
    last_dot, last_comma = fmt.rfind("."), fmt.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        return "." if last_dot > last_comma else ","
    for sep, other in ((".", ","), (",", ".")):
        position = fmt.rfind(sep)
        if position >= 0:
            grouping = fmt[position + 1 :] == "##0" and fmt[:position].endswith("#")
            return other if grouping else sep
    return "."


def lenient_amounts(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(amount, readable) of a text column the file stage left as text (one odd cell kept it
    from typing the whole column): each cell read as a number with either decimal separator
    (`1,234.56` and `1.234,56` in one column, signs, parentheses, currencies: the checked
    shapes of `_number_fields`), a cell both could read (`1,234`) by the separator more of the
    column's cells are read with. `readable` is False for a cell with something in it that is
    no number in either form (`2,0O0.00`, `1.405.31`): the caller refuses that row, as a null
    amount must never pass for one that matched."""
    cleaned = text.cast(pl.String).str.strip_chars()
    parts = _number_parts(cleaned)
    dot, comma = _number_fields(parts, "."), _number_fields(parts, ",")
    prefer_dot = dot["valid"].sum() >= comma["valid"].sum()
    amount = (
        pl.when(dot["valid"] & comma["valid"])
        .then(pl.when(prefer_dot).then(dot["decimal"]).otherwise(comma["decimal"]))
        .when(dot["valid"])
        .then(dot["decimal"])
        .when(comma["valid"])
        .then(comma["decimal"])
    )
    blank = cleaned.is_null() | (cleaned == "")
    return amount, blank | dot["valid"] | comma["valid"]
