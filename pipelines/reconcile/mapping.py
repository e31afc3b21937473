"""Field mapping: bring the source's columns onto the target's vocabulary, typed for matching.

`conform` applies a rule set's field mappings to the source's canonical frame (the target's
columns keep their own names) and casts every field a matching rule uses to one comparable
type on both sides, so the exact pre-pass and Splink see conformant tables:

- RANGE fields become Float64, DATE_RANGE fields Date;
- EXACT fields become Float64 when both sides are numeric, Date when both are temporal, else
  text; FUZZY fields become text. Text is normalised as `pipelines.reconcile.normalize` says
  (case, accents, punctuation, legal forms; blank is null) unless the rule set switches it
  off: matching compares `ACME LTD` and `Acme Limited` as equal, the stored records keep both.

Transformations (applied to the source column, as their names say):
- DIRECT, UPPERCASE, LOWERCASE, TRIM (config `characters`: what to strip, default whitespace);
- DATE_FORMAT: config `format` is the pattern the source writes dates in, seed style
  (`dd/MM/yyyy`) or strftime (`%d/%m/%Y`). Text is parsed with it; a column the file stage
  already typed with a different detected pattern is re-read with this one (the rule wins when
  the data could not settle day/month order). Optional `output_format` renders text instead.
- CURRENCY_CONVERSION: multiplies the amount by the rate of its currency into `to` (default:
  unchanged for rows already in it). Rates from config `rates: {EUR: 1.08}` (or `from` + `rate`
  for a single-currency file) or a CSV `rates_file` with columns `currency,rate[,date]`. The
  currency of each row comes from `currency_field` (a source column) or `from`. Conversion date
  rule: with dated rates and a `date_field`, each row uses the latest rate dated on or before
  its own date (the rate in force that day); without them, the one rate per currency. A row
  whose currency has no rate is an error naming the currency, row and field.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.ingest.column_schema import FileSchema
from pipelines.ingest.profiling import seed_pattern_to_strftime
from pipelines.ingest.profiling.numbers import lenient_amounts
from pipelines.ingest.readers import ROW_NUMBER
from pipelines.ingest.validation import FAILURE_SCHEMA
from pipelines.reconcile.normalize import is_ascii, normalize_plain, normalize_text
from pipelines.reconcile.rules import (
    CREDIT_VALUES,
    DEBIT_VALUES,
    FieldMapping,
    RuleSet,
    RuleSetError,
)

ROW = ROW_NUMBER
HINTS = "_hints"  # identifier-like words of a record's other text columns (free text)
HINT_TEXT_CHARS = 400  # of each record's free text, at most this much is searched
NUMERIC = (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt64, pl.UInt32)


class MappingError(RuleSetError):
    """A mapping that cannot be applied to the data, naming file, row and field."""


@dataclass(frozen=True)
class Conformed:
    """Both sides in the target vocabulary: `_row_number`, `_valid` and the matching fields."""

    source: pl.DataFrame
    target: pl.DataFrame
    field_types: dict[str, str]
    # each side's rows refused here (an amount no number could be read from), as the file
    # stage's failures (`FAILURE_SCHEMA`): they become VALIDATION_ERRORs beside those
    source_failures: pl.DataFrame | None = None
    target_failures: pl.DataFrame | None = None


def _strftime(pattern: str) -> str:
    return pattern if "%" in pattern else seed_pattern_to_strftime(pattern)


def _detected_format(schema: FileSchema | None, column: str) -> str | None:
    return schema.format_of(column) if schema is not None else None


def _date_format(
    frame: pl.DataFrame, mapping: FieldMapping, schema: FileSchema | None, name: str
) -> pl.Expr:
    config = mapping.transformation_config or {}
    pattern = config.get("format") or config.get("input_format")
    column = pl.col(mapping.source_field)
    dtype = frame.schema[mapping.source_field]
    if dtype == pl.String:
        if not pattern:
            raise MappingError(
                f"{name}: DATE_FORMAT onto {mapping.target_field!r} needs transformation_config "
                "`format` (for example dd/MM/yyyy) because the column is text"
            )
        parsed = column.str.strip_chars().str.to_date(_strftime(pattern), strict=False)
    elif dtype == pl.Date or isinstance(dtype, pl.Datetime):
        parsed = column if dtype == pl.Date else column.dt.date()
        detected = _detected_format(schema, mapping.source_field)
        if pattern and detected and _strftime(detected) != _strftime(pattern):
            # typed by the file stage with another pattern: read the same text with the rule's
            written = parsed.dt.strftime(_strftime(detected))
            parsed = written.str.to_date(_strftime(pattern), strict=False)
    else:
        raise MappingError(
            f"{name}: DATE_FORMAT onto {mapping.target_field!r}: column "
            f"{mapping.source_field!r} holds {dtype}, not dates"
        )
    output = config.get("output_format")
    return parsed.dt.strftime(_strftime(output)) if output else parsed


def _to_date(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Dates from a Date, Datetime or ISO text column (unparseable text becomes null)."""
    if dtype == pl.Date:
        return expr
    if isinstance(dtype, pl.Datetime):
        return expr.dt.date()
    return expr.cast(pl.String).str.strip_chars().str.to_date(strict=False)


def _rates_table(config: dict[str, Any], name: str) -> pl.DataFrame:
    if config.get("rates_file"):
        path = Path(config["rates_file"])
        try:
            table = pl.read_csv(path, try_parse_dates=True)
        except (FileNotFoundError, pl.exceptions.PolarsError) as err:
            raise MappingError(f"{name}: cannot read rates_file {path}: {err}") from None
        missing = {"currency", "rate"} - set(table.columns)
        if missing:
            raise MappingError(f"{name}: rates_file {path} lacks column(s) {sorted(missing)}")
        columns = ["currency", "rate"] + (["date"] if "date" in table.columns else [])
        table = table.select(columns)
    elif config.get("rates"):
        rates = config["rates"]
        table = pl.DataFrame(
            {"currency": [str(k) for k in rates], "rate": [float(v) for v in rates.values()]}
        )
    else:
        table = pl.DataFrame({"currency": [str(config["from"])], "rate": [float(config["rate"])]})
    table = table.with_columns(
        pl.col("currency").cast(pl.String).str.strip_chars().str.to_uppercase(),
        pl.col("rate").cast(pl.Float64),
    )
    if "date" in table.columns:
        table = table.with_columns(_to_date(pl.col("date"), table.schema["date"]))
        if table.get_column("date").null_count():
            raise MappingError(f"{name}: rates_file has dates that are not yyyy-MM-dd")
    return table


def _currency_conversion(frame: pl.DataFrame, mapping: FieldMapping, name: str) -> pl.Series:
    config = mapping.transformation_config or {}
    rates = _rates_table(config, name)
    to = str(config.get("to") or "").upper()
    if config.get("currency_field"):
        currency = (
            frame.get_column(config["currency_field"]).cast(pl.String).str.strip_chars()
        ).str.to_uppercase()
    elif config.get("from"):
        currency = pl.repeat(str(config["from"]).upper(), frame.height, eager=True)
    else:
        raise MappingError(
            f"{name}: CURRENCY_CONVERSION onto {mapping.target_field!r} needs `currency_field` "
            "(the column holding each row's currency) or `from`"
        )
    work = pl.DataFrame(
        {
            ROW: frame.get_column(ROW),
            "amount": _amounts(frame, mapping.source_field),
            "currency": currency,
        }
    )
    if "date" in rates.columns and config.get("date_field"):
        work = work.with_columns(
            frame.select(_to_date(pl.col(config["date_field"]), frame.schema[config["date_field"]]))
            .to_series()
            .alias("date")
        )
        # both sides sorted on the date just above (polars cannot check it with `by`)
        joined = work.sort("date").join_asof(
            rates.sort("date"),
            on="date",
            by="currency",
            strategy="backward",
            check_sortedness=False,
        )
        joined = joined.sort(ROW)
    else:
        latest = rates.sort("date").group_by("currency").last() if "date" in rates else rates
        joined = work.join(latest.select("currency", "rate"), on="currency", how="left")
        joined = joined.sort(ROW)
    joined = joined.with_columns(
        pl.when(pl.col("currency") == to).then(1.0).otherwise(pl.col("rate")).alias("rate")
    )
    missing = joined.filter(
        pl.col("rate").is_null() & pl.col("amount").is_not_null() & pl.col("currency").is_not_null()
    )
    if missing.height:
        first = missing.row(0, named=True)
        raise MappingError(
            f"{name}: row {first[ROW]}, field {mapping.source_field!r}: no rate for currency "
            f"{first['currency']!r} (on {first.get('date') or 'any date'}); "
            f"{missing.height} row(s) affected; add it to the rates"
        )
    return (joined.get_column("amount") * joined.get_column("rate")).alias(mapping.target_field)


def _amounts(frame: pl.DataFrame, column: str) -> pl.Series:
    """A column as amounts: a text one read cell by cell (`lenient_amounts`)."""
    if frame.schema[column] == pl.String:
        return frame.select(lenient_amounts(pl.col(column))[0]).to_series()
    return frame.get_column(column).cast(pl.Float64, strict=False)


def _signed_amount(frame: pl.DataFrame, mapping: FieldMapping, name: str) -> pl.Series:
    """A DIRECT amount with its signing options: `minus_field` (a debit column: the amount is
    the credit column less it, either blank counting as 0), then `debit_credit_field` (a
    column of marks: a debit's amount negative, a credit's positive, whatever sign it was
    written with; `debit_values` / `credit_values` replace the usual marks). A mark that is
    neither refuses the file with its row, as a rate missing for a currency does."""
    config = mapping.transformation_config or {}
    amount = _amounts(frame, mapping.source_field)
    if config.get("minus_field"):
        column = str(config["minus_field"])
        if column not in frame.columns:
            raise MappingError(f"{name}: no column {column!r} (minus_field) to subtract")
        debit = _amounts(frame, column)
        both_blank = amount.is_null() & debit.is_null()
        amount = (amount.fill_null(0).abs() - debit.fill_null(0).abs()).set(both_blank, None)
    field = config.get("debit_credit_field")
    if field:
        if field not in frame.columns:
            raise MappingError(f"{name}: no column {field!r} (debit_credit_field) to sign by")
        marks = frame.get_column(field).cast(pl.String).str.strip_chars().str.to_uppercase()
        debits = {str(v).strip().upper() for v in config.get("debit_values") or DEBIT_VALUES}
        credits = {str(v).strip().upper() for v in config.get("credit_values") or CREDIT_VALUES}
        is_debit, is_credit = marks.is_in(list(debits)), marks.is_in(list(credits))
        odd = frame.filter(~is_debit & ~is_credit & marks.is_not_null() & (marks != ""))
        if odd.height:
            first = odd.row(0, named=True)
            raise MappingError(
                f"{name}: row {first[ROW]}, field {field!r}: {str(first[field])[:40]!r} is "
                f"neither a debit ({', '.join(sorted(debits))}) nor a credit "
                f"({', '.join(sorted(credits))}) mark; {odd.height} row(s); list it in "
                "debit_values or credit_values"
            )
        amount = pl.select(
            pl.when(is_debit)
            .then(-amount.abs())
            .when(is_credit)
            .then(amount.abs())
            .otherwise(amount)
        ).to_series()
    return amount.alias(mapping.target_field)


def unreadable_amounts(frame: pl.DataFrame, column: str, field: str, file: str) -> pl.DataFrame:
    """The rows of a text `column` (matched as the amount `field`) holding something that is
    no number: file, row_number, column, check, value (`FAILURE_SCHEMA`)."""
    if column not in frame.columns or frame.schema[column] != pl.String:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    readable = lenient_amounts(pl.col(column))[1]
    return frame.filter(~readable).select(
        pl.lit(file).alias("file"),
        pl.col(ROW).cast(pl.Int64).alias("row_number"),
        pl.lit(column).alias("column"),
        pl.lit(
            f"amount (matched as {field}): a number such as 1234.56, 1,234.56 or 1.234,56"
        ).alias("check"),
        pl.col(column).cast(pl.String).str.slice(0, 200).alias("value"),
    )


def apply_mappings(
    frame: pl.DataFrame,
    rule_set: RuleSet,
    *,
    schema: FileSchema | None = None,
    name: str = "source",
) -> pl.DataFrame:
    """The source frame in the target vocabulary: mapped fields plus unmapped columns as-is."""
    mapped: list[pl.Expr | pl.Series] = []
    for mapping in rule_set.field_mappings:
        if mapping.source_field not in frame.columns:
            raise MappingError(f"{name}: no column {mapping.source_field!r} to map")
        column = pl.col(mapping.source_field)
        kind = mapping.transformation_type
        config = mapping.transformation_config or {}
        if kind == "DIRECT" and config:
            expr: pl.Expr | pl.Series = _signed_amount(frame, mapping, name)
        elif kind == "DIRECT":
            expr = column
        elif kind in ("UPPERCASE", "LOWERCASE", "TRIM"):
            text = column.cast(pl.String)
            if kind == "UPPERCASE":
                expr = text.str.to_uppercase()
            elif kind == "LOWERCASE":
                expr = text.str.to_lowercase()
            else:
                expr = text.str.strip_chars(config.get("characters"))
        elif kind == "DATE_FORMAT":
            expr = _date_format(frame, mapping, schema, name)
        else:
            expr = _currency_conversion(frame, mapping, name)
        mapped.append(expr.alias(mapping.target_field))
    sources = {m.source_field for m in rule_set.field_mappings}
    targets = {m.target_field for m in rule_set.field_mappings}
    kept = [c for c in frame.columns if c not in sources and c not in targets]
    return frame.select(*[pl.col(c) for c in kept], *mapped)


def _field_types(rule_set: RuleSet) -> dict[str, str]:
    """The comparison kind of each matching field: RANGE/DATE_RANGE win over EXACT/FUZZY."""
    rank = {"RANGE": 0, "DATE_RANGE": 0, "EXACT": 1, "FUZZY": 2}
    types: dict[str, str] = {}
    for rule in sorted(rule_set.matching_rules, key=lambda r: rank[r.match_type]):
        for name in rule.fields:
            types.setdefault(name, rule.match_type)
    return types


def _is_temporal(dtype: pl.DataType) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


def _as_text(expr: pl.Expr, dtype: pl.DataType, written: str | None = None) -> pl.Expr:
    """Text for comparison; a date is written as its file wrote it when that is known."""
    if _is_temporal(dtype):
        if written:
            return expr.dt.strftime(_strftime(written))
        return expr.dt.strftime("%Y-%m-%d") if dtype == pl.Date else expr.cast(pl.String)
    return expr.cast(pl.String).str.strip_chars()


def _source_format(rule_set: RuleSet, schema: FileSchema | None, target_field: str) -> str | None:
    """The pattern the source wrote the column behind `target_field` in, if it held dates."""
    for mapping in rule_set.field_mappings:
        if mapping.target_field == target_field:
            config = mapping.transformation_config or {}
            if mapping.transformation_type == "DATE_FORMAT":
                return config.get("output_format") or config.get("format")
            return _detected_format(schema, mapping.source_field)
    return _detected_format(schema, target_field)


def _hints(frame: pl.DataFrame, free: list[str], out: pl.DataFrame, keys: list[str]) -> pl.Series:
    """For records whose EXACT text is blank: words of their free text that could be one.

    A bank line with a blank reference often quotes it in its description ("SEPA CT
    INV-2024-00123 ACME"). Each such record gets the runs of one to three words of its other
    text columns that hold a digit and four or more characters, normalised as identifiers
    are (`inv202400123`), so the identifier pre-pass can find the reference it quotes.
    """
    blank = out.select(pl.any_horizontal(pl.col(k).is_null() for k in keys)).to_series()
    if not free or not blank.any():
        return pl.Series(HINTS, [None] * frame.height, dtype=pl.List(pl.String))
    # only the records with a blank key need hints; their free text is built once
    text = pl.concat_str([pl.col(c) for c in free], separator=" ", ignore_nulls=True)
    quoting = frame.filter(blank).select(
        pl.col(ROW).cast(pl.Int64), text.str.slice(0, HINT_TEXT_CHARS).alias("_text")
    )
    plain = is_ascii(quoting.get_column("_text"))
    words = normalize_plain(pl.col("_text"), ascii_only=plain).str.split(" ")
    one = pl.element()
    runs = pl.concat_list(
        words,
        words.list.eval(one + one.shift(-1)),
        words.list.eval(one + one.shift(-1) + one.shift(-2)),
    ).list.eval(
        one.filter(one.str.contains(r"\d") & (one.str.len_chars() >= 4)).unique(maintain_order=True)
    )
    hints = quoting.select(ROW, runs.alias(HINTS))
    joined = out.select(ROW).join(hints, on=ROW, how="left", maintain_order="left")
    return joined.get_column(HINTS)


def conform(
    source: pl.DataFrame,
    target: pl.DataFrame,
    rule_set: RuleSet,
    *,
    source_schema: FileSchema | None = None,
    target_schema: FileSchema | None = None,
    source_name: str = "source",
    target_name: str = "target",
) -> Conformed:
    """Both canonical frames reduced to `_row_number`, `_valid` and typed matching fields.

    `source_schema`/`target_schema` are the files' detected schemas: the formats their date
    columns were written in, for re-reading dates and comparing dates with text.
    """
    mapped = apply_mappings(source, rule_set, schema=source_schema, name=source_name)
    types = _field_types(rule_set)
    for field, side, frame in (
        *((f, source_name, mapped) for f in types),
        *((f, target_name, target) for f in types),
    ):
        if field not in frame.columns:
            raise MappingError(f"{side}: matching field {field!r} is not a column after mapping")
    source_exprs, target_exprs = [], []
    text_fields: list[str] = []
    # the file's own column behind each mapped field (its name in a failure)
    origin = {
        m.target_field: [m.source_field]
        + [str(c) for c in [(m.transformation_config or {}).get("minus_field")] if c]
        for m in rule_set.field_mappings
    }
    refused: dict[str, list[pl.DataFrame]] = {"source": [], "target": []}
    for field, kind in types.items():
        s_type, t_type = mapped.schema[field], target.schema[field]
        both_numeric = s_type in NUMERIC and t_type in NUMERIC
        if kind == "RANGE" or (kind == "EXACT" and both_numeric):
            # a text column (one odd cell kept the file stage from typing it) is read cell by
            # cell; a cell that is no number refuses its row rather than match as a null
            s_expr, t_expr = _as_amount(field, s_type), _as_amount(field, t_type)
            if kind == "RANGE":
                for column in origin.get(field, [field]):
                    refused["source"].append(unreadable_amounts(source, column, field, source_name))
                refused["target"].append(unreadable_amounts(target, field, field, target_name))
        elif kind == "DATE_RANGE" or (
            kind == "EXACT" and _is_temporal(s_type) and _is_temporal(t_type)
        ):
            s_expr, t_expr = _to_date(pl.col(field), s_type), _to_date(pl.col(field), t_type)
        else:
            # one side typed as dates, the other kept as text (it had values that are not
            # dates): compare the text each file wrote
            s_written = _source_format(rule_set, source_schema, field)
            t_written = _detected_format(target_schema, field)
            s_expr = _as_text(pl.col(field), s_type, s_written)
            t_expr = _as_text(pl.col(field), t_type, t_written)
            text_fields.append(field)
        source_exprs.append(s_expr.alias(field))
        target_exprs.append(t_expr.alias(field))

    keys = [f for f in text_fields if types[f] == "EXACT"]

    empty = pl.DataFrame(schema=FAILURE_SCHEMA)
    bad = {side: pl.concat([empty, *found]) for side, found in refused.items()}

    def reduce(frame: pl.DataFrame, exprs: list[pl.Expr], side: str) -> pl.DataFrame:
        valid = pl.col("_valid") if "_valid" in frame.columns else pl.lit(True)
        valid = valid & ~pl.col(ROW).cast(pl.Int64).is_in(
            bad[side].get_column("row_number").implode()
        )
        out = frame.select(pl.col(ROW).cast(pl.Int64), valid.alias("_valid"), *exprs)
        policy = rule_set.text_normalization
        out = out.with_columns(
            normalize_text(out.get_column(f), types[f], policy) for f in text_fields
        )
        if keys and policy.enabled:
            free = [c for c, t in frame.schema.items() if t == pl.String and c not in types]
            out = out.with_columns(_hints(frame, free, out, keys).alias(HINTS))
        return out

    # the two sides on two threads: their text normalisation is most of the time, and polars
    # runs most string expressions of one column on one core
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="recon-conform") as pool:
        source_side = pool.submit(reduce, mapped, source_exprs, "source")
        target_side = pool.submit(reduce, target, target_exprs, "target")
        return Conformed(
            source_side.result(), target_side.result(), types, bad["source"], bad["target"]
        )


def _as_amount(field: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return lenient_amounts(pl.col(field))[0]
    return pl.col(field).cast(pl.Float64, strict=False)
