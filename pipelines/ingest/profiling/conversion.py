"""Typed conversion: `convert` applies a schema to every row, cheap expressions for the common
layouts first and the full parsers only for the cells they leave null, and reports each
non-blank cell that did not convert as a failure row."""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema
from pipelines.ingest.profiling.booleans import _boolean_expr, _boolean_tokens
from pipelines.ingest.profiling.common import (
    _FAILURE_SCHEMA,
    DATA_TYPES,
    ENGINE,
    PARSE_CACHE_MAX_DISTINCT,
    SAMPLE_SIZE,
    Conversion,
)
from pipelines.ingest.profiling.detection import _clean
from pipelines.ingest.profiling.numbers import (
    _decimal_separator,
    _integer_expr,
    _number_fields,
    _number_parts,
)
from pipelines.ingest.profiling.patterns import (
    _FRACTION_DIRECTIVE_RE,
    _ZONE_RE,
    _lenient_strftime,
    _parse_temporal,
    seed_pattern_to_strftime,
)
from pipelines.ingest.profiling.sampling import _data_columns, _may_change_when_cleaned
from pipelines.ingest.readers import ROW_NUMBER


def _check_label(column: ColumnSchema) -> str:
    fmt, data_type = column.format, column.data_type
    return f"dataType {data_type} {fmt}" if fmt else f"dataType {data_type}"


_INT64_MIN = -(2**63)
_FAST_CURRENCY = "$€£¥"
"""Currency symbols the fast number path strips (always known currencies, one character)."""


def _fast_number(clean: pl.Expr, data_type: str, decimal: str) -> pl.Expr:
    """The common number layouts, parsed with cheap string operations; null for anything else.

    Accepts only text the full parser (`_number_fields`) accepts, with the same value: an
    optional sign or enclosing parentheses, for DECIMAL one of the ``$€£¥`` symbols before or
    after the number, digits grouped by threes with the separator that is not `decimal`, and for
    DECIMAL a fraction. Whatever it leaves null goes through the full parser.
    """
    group = "," if decimal == "." else "."
    grouped = rf"[0-9]{{1,3}}(?:{re.escape(group)}[0-9]{{3}})"
    negative = clean.str.starts_with("-") | clean.str.starts_with("(")
    if data_type == "INTEGER":
        shape = rf"^[-+]?(?:{grouped}{{1,5}}|[0-9]{{1,18}})$"  # at most 18 digits: fits Int64
        text = clean.str.strip_chars_start("+-")
        magnitude_type: type[pl.DataType] = pl.Int64
        magnitude = text.str.replace_all(group, "", literal=True).cast(pl.Int64, strict=False)
    else:
        number = rf"(?:{grouped}+|[0-9]+)(?:{re.escape(decimal)}[0-9]+)?"
        symbol = f"[{_FAST_CURRENCY}]"
        body = rf"(?:{symbol} ?{number}|{number} ?{symbol}|{number})"
        shape = rf"^(?:[-+]?{body}|\({body}\))$"
        text = clean.str.strip_chars(f"()+- {_FAST_CURRENCY}")
        text = text.str.replace_all(group, "", literal=True)
        if decimal == ",":
            text = text.str.replace(",", ".", literal=True)
        magnitude_type = pl.Float64
        magnitude = text.cast(pl.Float64, strict=False)
    # the sign as a factor: a multiplication is cheaper than another when/then on 1M rows
    sign = (1 - 2 * negative.cast(pl.Int8)).cast(magnitude_type)
    return pl.when(clean.str.contains(shape)).then(magnitude * sign)


def _fast_boolean(clean: pl.Expr, fmt: str | None) -> pl.Expr:
    """Exact match of the usual spellings (y, Y, yes, Yes, YES...) of the tokens.

    Comparisons with a few literals (polars compares a short string's inline prefix) take a
    third of the time of a `replace_strict` lookup table on 1M rows (4 vs 13 ms).
    """

    def spelled(tokens: list[str]) -> pl.Expr:
        spellings = {spelling for t in tokens for spelling in (t, t.upper(), t.capitalize())}
        return pl.any_horizontal([clean == spelling for spelling in sorted(spellings)])

    trues, falses = _boolean_tokens(fmt)
    return pl.when(spelled(trues)).then(True).when(spelled(falses)).then(False)


def _fast_temporal(clean: pl.Expr, strftime: str, kind: str, cache: bool) -> pl.Expr | None:
    """Exact-format parse without optional fractions, ``Z`` as the only zone; None if no gain.

    The lenient formats of `_parse_temporal` (optional fraction of any width, ``Z`` or an
    offset) take the slow chrono path in polars; values written exactly in the format, with
    whole seconds and ``Z``, parse several times faster like this, to the same instant.
    """
    if "%%" in strftime or _FRACTION_DIRECTIVE_RE.search(strftime):
        return None
    exact = _ZONE_RE.sub("Z", strftime)
    if exact == _lenient_strftime(strftime):
        return None
    if kind == "DATE":
        out = clean.str.to_date(exact, strict=False, exact=True, cache=cache)
    else:
        out = clean.str.to_datetime(exact, time_unit="us", strict=False, exact=True, cache=cache)
    if "%Y" in exact:  # as in `_parse_temporal`
        floor = pl.date(1000, 1, 1) if kind == "DATE" else pl.datetime(1000, 1, 1)
        out = pl.when(out >= floor).then(out)
    return out if kind == "DATE" else out.dt.replace_time_zone("UTC")


def _conversions(column: ColumnSchema, text: pl.Expr, cache: bool = True) -> list[pl.Expr]:
    """Conversions of a column's text to its type, cheapest first; the last is the reference.

    Each one after the first runs only on the cells that the ones before left null, and
    together they give exactly what the last one alone gives: the earlier ones accept a subset
    of what it accepts, with the same value, at a fraction of the cost. `text` must be stripped
    and blank-free for the last one; the others are also exact on unstripped text. `cache`
    goes to the date parsers (see `_parse_temporal`).
    """
    data_type, fmt = column.data_type, column.format
    if data_type == "STRING":
        return [text]
    if data_type == "BOOLEAN":
        return [_fast_boolean(text, fmt), _boolean_expr(text, fmt)]
    if data_type in ("DATE", "TIMESTAMP"):
        if not fmt:
            raise ValueError(f"column {column.name!r}: {data_type} needs a format")
        strftime = fmt if "%" in fmt else seed_pattern_to_strftime(fmt)
        fast = _fast_temporal(text, strftime, data_type, cache)
        if fast is None:
            return [_parse_temporal(text, strftime, data_type, cache)]
        return [fast, _parse_temporal(text, strftime, data_type)]
    decimal = _decimal_separator(column)
    fields = _number_fields(_number_parts(text), decimal)
    if data_type == "DECIMAL":
        return [_fast_number(text, data_type, decimal), fields["decimal"]]
    # polars casts exactly [+-]?[0-9]+ to Int64; the full parser negates a magnitude, which
    # cannot be 2**63, so it rejects the one value the cast takes beyond it
    plain = text.cast(pl.Int64, strict=False)
    plain = pl.when(plain != _INT64_MIN).then(plain)
    return [plain, _fast_number(text, data_type, decimal), _integer_expr(fields)]


def _few_distinct(distinct: int | None) -> bool:
    """Whether to parse each distinct text of a date column once: only with few distinct values.

    Measured on a million rows, the polars cache of parsed dates halves the time with a few
    hundred distinct values and nearly doubles it with thousands. `profile` passes the exact
    count where it has one, else the sample's (a sample with more than the limit means a
    column with more; one with fewer, at worst a cached parse of a few thousand values).
    """
    return distinct is None or distinct <= PARSE_CACHE_MAX_DISTINCT


def convert(frame: pl.DataFrame, schema: Iterable[ColumnSchema]) -> Conversion:
    """Convert every data column to its schema type and collect the cells that failed.

    Columns missing from `schema` stay STRING. Output dtypes: INTEGER Int64, DECIMAL Float64,
    DATE Date, TIMESTAMP Datetime("us", "UTC"), BOOLEAN Boolean, STRING String (stripped).
    Blank cells are null and never failures; a failure row holds the cell's original text.

    All columns convert in one parallel select, the typed ones with cheap expressions for the
    common layouts straight on the raw text (see `_conversions`). Only the cells those leave
    null are stripped and go through the full parsers (money regex, lenient date formats), and
    the non-blank cells still null after that are the failures.
    """
    if ROW_NUMBER not in frame.columns:
        raise ValueError(f"frame has no {ROW_NUMBER!r} column")
    by_name = {column.name: column for column in schema}
    specs: list[ColumnSchema] = []
    for name in _data_columns(frame):
        spec = by_name.get(name, ColumnSchema(name))
        if spec.data_type not in DATA_TYPES:
            raise ValueError(f"column {name!r}: unknown dataType {spec.data_type!r}")
        specs.append(spec)
    text_columns = [spec.name for spec in specs if spec.data_type == "STRING"]
    # Text columns are stripped only when some cell would change: checking is cheaper than
    # stripping a column, and an untouched column is not copied.
    unchanged: set[str] = set()
    if text_columns:
        changes = frame.select(_may_change_when_cleaned(name) for name in text_columns).row(0)
        unchanged = {name for name, change in zip(text_columns, changes, strict=True) if not change}
    cache = {}
    for spec in specs:
        distinct = spec.distinct_count
        if distinct is None and spec.data_type in ("DATE", "TIMESTAMP"):
            distinct = frame.get_column(spec.name).head(SAMPLE_SIZE).n_unique()
        cache[spec.name] = _few_distinct(distinct)
    return _convert(frame, specs, cache, unchanged)


def _convert(
    frame: pl.DataFrame, specs: list[ColumnSchema], cache: dict[str, bool], unchanged: set[str]
) -> Conversion:
    """`convert` with one spec per data column (in frame order) and what it would work out:
    whether to cache each date column's parse (`_few_distinct`) and the STRING columns that
    need no stripping."""
    columns = [spec.name for spec in specs]
    text = pl.col("text")
    typed_columns = [i for i, spec in enumerate(specs) if spec.data_type != "STRING"]
    first = [
        _conversions(spec, pl.col(name).cast(pl.String), cache.get(name, True))[0]
        if i in typed_columns
        else pl.col(name).cast(pl.String)
        if name in unchanged
        else _clean(pl.col(name))
        for i, (name, spec) in enumerate(zip(columns, specs, strict=True))
    ]
    # Lazy, so that polars computes a subexpression used twice (a parsed value that is then
    # range-checked, say) once; eager selects do not eliminate common subexpressions.
    wide = (
        frame.lazy()
        .select(
            pl.col(ROW_NUMBER).cast(pl.Int64),
            *[expr.alias(f"__c{i}") for i, expr in enumerate(first)],
            *[pl.col(columns[i]).is_not_null().alias(f"__r{i}") for i in typed_columns],
        )
        .select(
            ROW_NUMBER,
            *[pl.col(f"__c{i}").alias(name) for i, name in enumerate(columns)],
            *[
                (pl.col(f"__r{i}") & pl.col(f"__c{i}").is_null()).alias(f"__u{i}")
                for i in typed_columns
            ],
        )
        .collect(engine=ENGINE)
    )
    typed = wide.select(ROW_NUMBER, *columns)
    failure_frames: list[pl.DataFrame] = []
    for i in typed_columns:
        unresolved = wide.get_column(f"__u{i}")
        if not unresolved.any():
            continue
        name = columns[i]
        positions = unresolved.arg_true()
        cells = frame.select(
            pl.col(ROW_NUMBER).cast(pl.Int64).gather(positions).alias("row_number"),
            pl.col(name).cast(pl.String).gather(positions).alias("value"),
        ).with_columns(_clean(pl.col("value")).alias("text"))
        values = cells.select(pl.coalesce(_conversions(specs[i], text)).alias(name)).to_series()
        converted = values.is_not_null()
        if converted.any():
            column = typed.get_column(name).clone()
            column.scatter(positions.filter(converted), values.filter(converted))
            typed = typed.with_columns(column)
        failed = cells.filter(pl.col("text").is_not_null() & values.is_null())
        if failed.height:
            failure_frames.append(
                failed.select(
                    "row_number",
                    pl.lit(name, dtype=pl.String).alias("column"),
                    pl.lit(_check_label(specs[i]), dtype=pl.String).alias("check"),
                    "value",
                )
            )
    if failure_frames:
        failures = pl.concat(failure_frames).sort("row_number", maintain_order=True)
    else:
        failures = pl.DataFrame(schema=_FAILURE_SCHEMA)
    return Conversion(frame=typed, failures=failures)
