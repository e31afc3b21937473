"""Tests for pipelines.ingest.profiling: detection, preview, conversion and pattern translation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from pipelines.ingest.profiling import (
    DATA_TYPES,
    ColumnSchema,
    Conversion,
    FileSchema,
    _conversions,
    _sample_rows,
    convert,
    detect_schema,
    preview_rows,
    seed_pattern_to_strftime,
    strftime_to_seed_pattern,
)
from pipelines.ingest.profiling import profile as profile_frame
from pipelines.ingest.profiling.sample import typical_frame


def raw_frame(**columns: list[str | None]) -> pl.DataFrame:
    height = len(next(iter(columns.values())))
    data: dict[str, Any] = {"_row_number": pl.Series(range(1, height + 1), dtype=pl.Int64)}
    for name, values in columns.items():
        data[name] = pl.Series(values, dtype=pl.String)
    return pl.DataFrame(data)


def profile(values: list[str | None], name: str = "col") -> ColumnSchema:
    return detect_schema(raw_frame(**{name: values}))[0]


def converted(values: list[str | None], name: str = "col") -> tuple[ColumnSchema, Conversion]:
    frame = raw_frame(**{name: values})
    schema = detect_schema(frame)
    return schema[0], convert(frame, schema)


# ----------------------------------------------------------------------------- schema shape


def test_schema_shape_and_keys() -> None:
    frame = raw_frame(a=["x", "y"], b=["1", "2"])
    schema = detect_schema(frame)
    assert [c.name for c in schema] == ["a", "b"]
    for column in schema:
        assert list(column.to_json())[:8] == [
            "name",
            "dataType",
            "nullable",
            "unique",
            "precision",
            "scale",
            "format",
            "sampleValues",
        ]
        assert column.data_type in DATA_TYPES
        assert isinstance(column.id_like, bool)


def test_all_null_column_is_string() -> None:
    column = profile([None, "  ", None])
    assert column.data_type == "STRING"
    assert column.nullable is True
    assert column.sample_values == ()


# ----------------------------------------------------------------------------- money


def test_us_money_formats() -> None:
    values = ["$1,234.56", "(1,234.56)", "-1,234.56", "USD 1,234.56", "1234.5", " $0.99 "]
    column, result = converted(values, "Amount")
    assert column.data_type == "DECIMAL"
    assert column.format == "#,##0.00"
    assert column.currency_symbol == "$"
    assert column.negative_parentheses is True
    assert (column.precision, column.scale) == (6, 2)
    assert column.decimal_separator == "."
    assert result.frame["Amount"].dtype == pl.Float64
    assert result.frame["Amount"].to_list() == [1234.56, -1234.56, -1234.56, 1234.56, 1234.5, 0.99]
    assert result.failures.height == 0


def test_european_money_formats() -> None:
    values = ["1.234,56 €", "€1.234,56", "1 234,56", "12,5", "(3,00)", "-7,10", "1.000.000,00"]
    column, result = converted(values, "Betrag")
    assert column.data_type == "DECIMAL"
    assert column.decimal_separator == ","
    assert column.format == "#.##0,00"
    assert column.currency_symbol == "€"
    assert result.frame["Betrag"].to_list() == [1234.56, 1234.56, 1234.56, 12.5, -3.0, -7.1, 1e6]


def test_space_and_trailing_code_money() -> None:
    column, result = converted(["1 234.50 EUR", "99.00 EUR", "2 000.00 EUR"], "amount")
    assert column.data_type == "DECIMAL"
    assert column.currency_symbol == "EUR"
    assert column.decimal_separator == "."
    assert result.frame["amount"].to_list() == [1234.5, 99.0, 2000.0]


def test_trailing_minus_and_unicode_minus() -> None:
    _, result = converted(["1,234.56-", "\u2212 12.00", "+3.50"], "amount")
    assert result.frame["amount"].to_list() == [-1234.56, -12.0, 3.5]


def test_words_with_numbers_are_not_money() -> None:
    assert profile(["INV 123", "ABC 456", "Box 7"], "description").data_type == "STRING"
    assert profile(["+44 20 7946 0958", "+1 555 0100"], "phone").id_like is True


def test_ambiguous_thousands_prefers_us_grouping() -> None:
    column, result = converted(["1,234", "2,500", "10"], "total")
    assert column.data_type == "INTEGER"
    assert result.frame["total"].to_list() == [1234, 2500, 10]


def test_comma_decimal_evidence_flips_separator() -> None:
    column, result = converted(["1,234", "12,5", "3,75"], "total")
    assert column.data_type == "DECIMAL"
    assert column.decimal_separator == ","
    assert result.frame["total"].to_list() == [1.234, 12.5, 3.75]


def test_plain_decimal_has_no_money_format() -> None:
    column, result = converted(["1234.5", "0.25", "-3.125"], "rate")
    assert column.data_type == "DECIMAL"
    assert column.format is None
    assert (column.precision, column.scale) == (7, 3)
    assert result.frame["rate"].to_list() == [1234.5, 0.25, -3.125]


# ----------------------------------------------------------------------------- integers and ids


def test_integers() -> None:
    column, result = converted(["42", "-7", "1,000", "+5"], "quantity")
    assert column.data_type == "INTEGER"
    assert column.precision is None and column.format is None
    assert result.frame["quantity"].dtype == pl.Int64
    assert result.frame["quantity"].to_list() == [42, -7, 1000, 5]


def test_whole_number_amount_is_not_id() -> None:
    column = profile(["100", "250", "1000", "75"], "amount")
    assert column.data_type == "INTEGER"
    assert column.id_like is False


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("anything", ["00123", "00456", "10789"]),  # leading zeros
        ("customer_id", ["1001", "1002", "1003"]),  # id name, numeric values
        ("Invoice No.", ["INV-001", "INV-002", "INV-003"]),
        ("Reference", ["884512", "884513", "990001"]),
        ("batch", ["123456", "234567", "345678"]),  # fixed-width digits
        ("card", ["4111111111111111", "5500000000000004"]),  # too long for a number
        ("IBAN", ["GB29 NWBK 6016 1331 9268 19", "DE89 3704 0044 0532 0130 00"]),
        ("accountNumber", ["12-3456-7", "98-7654-3"]),
    ],
)
def test_id_like_columns_stay_string(name: str, values: list[str]) -> None:
    column, result = converted(values, name)
    assert column.data_type == "STRING"
    assert column.id_like is True
    assert result.frame[name].to_list() == values
    assert result.failures.height == 0


def test_codes_without_id_name_are_flagged_id_like() -> None:
    assert profile(["TX0001", "TX0002", "TX0003"], "whatever").id_like is True
    assert profile(["USD", "EUR", "USD"], "currency").id_like is False


# ----------------------------------------------------------------------------- dates


def test_iso_dates() -> None:
    column, result = converted(["2024-01-15", "2023-12-31", "2024-02-29"], "date")
    assert (column.data_type, column.format, column.ambiguous) == (
        "DATE",
        "yyyy-MM-dd",
        False,
    )
    assert result.frame["date"].dtype == pl.Date
    assert result.frame["date"].to_list() == [
        date(2024, 1, 15),
        date(2023, 12, 31),
        date(2024, 2, 29),
    ]


def test_day_first_told_apart_by_data() -> None:
    column, result = converted(["01/02/2024", "15/01/2024", "03/04/2024"], "posted")
    assert (column.data_type, column.format, column.ambiguous) == (
        "DATE",
        "dd/MM/yyyy",
        False,
    )
    assert result.frame["posted"].to_list() == [
        date(2024, 2, 1),
        date(2024, 1, 15),
        date(2024, 4, 3),
    ]


def test_month_first_told_apart_by_data() -> None:
    column, result = converted(["01/02/2024", "01/15/2024", "12/31/2023"], "posted")
    assert (column.format, column.ambiguous) == ("MM/dd/yyyy", False)
    assert result.frame["posted"].to_list() == [
        date(2024, 1, 2),
        date(2024, 1, 15),
        date(2023, 12, 31),
    ]


def test_ambiguous_day_month_prefers_day_first() -> None:
    column, result = converted(["01/02/2024", "03/04/2024", "05/06/2024"], "when")
    assert (column.data_type, column.format, column.ambiguous) == (
        "DATE",
        "dd/MM/yyyy",
        True,
    )
    assert result.frame["when"][0] == date(2024, 2, 1)


@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        (["15.01.2024", "1.2.2024"], "dd.MM.yyyy", [date(2024, 1, 15), date(2024, 2, 1)]),
        (["15-Jan-2024", "01-FEB-2024"], "dd-MMM-yyyy", [date(2024, 1, 15), date(2024, 2, 1)]),
        (["Jan 15, 2024", "Feb 1, 2024"], "MMM dd, yyyy", [date(2024, 1, 15), date(2024, 2, 1)]),
        (["2024/01/15", "2024/02/01"], "yyyy/MM/dd", [date(2024, 1, 15), date(2024, 2, 1)]),
        (["15/01/24", "01/02/24"], "dd/MM/yy", [date(2024, 1, 15), date(2024, 2, 1)]),
    ],
)
def test_other_date_layouts(values: list[str], fmt: str, expected: list[date]) -> None:
    column, result = converted(values, "value_date")
    assert (column.data_type, column.format) == ("DATE", fmt)
    assert result.frame["value_date"].to_list() == expected


def test_compact_dates_need_date_name_or_all_valid() -> None:
    column, result = converted(["20240115", "20231231"], "booking_date")
    assert (column.data_type, column.format) == ("DATE", "yyyyMMdd")
    assert result.frame["booking_date"].to_list() == [date(2024, 1, 15), date(2023, 12, 31)]
    assert profile(["20240115", "20231231"], "x").data_type == "DATE"


def test_plain_numbers_are_not_dates() -> None:
    assert profile(["12345678", "20240115", "87654321"], "total").data_type == "INTEGER"
    assert profile(["20240115", "20231231"], "invoice_no").data_type == "STRING"
    assert profile(["22000101", "20240115"], "x").data_type != "DATE"  # 2200: implausible
    assert profile(["2024", "2023"], "x").data_type == "INTEGER"


# ----------------------------------------------------------------------------- timestamps


def test_iso_timestamps_with_zones_convert_to_utc() -> None:
    values = [
        "2024-01-15T10:30:00Z",
        "2024-01-15T10:30:00+02:00",
        "2024-01-15T10:30:00-05:00",
        "2024-01-15T23:30:00+0000",
    ]
    column, result = converted(values, "created_at")
    assert (column.data_type, column.format) == ("TIMESTAMP", "yyyy-MM-dd'T'HH:mm:ssXXX")
    assert result.frame["created_at"].dtype == pl.Datetime("us", "UTC")
    assert result.frame["created_at"].to_list() == [
        datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        datetime(2024, 1, 15, 8, 30, tzinfo=UTC),
        datetime(2024, 1, 15, 15, 30, tzinfo=UTC),
        datetime(2024, 1, 15, 23, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("values", "fmt", "first"),
    [
        (
            ["2024-01-15 10:30:00+02:00", "2024-06-01 00:00:00+02:00"],
            "yyyy-MM-dd HH:mm:ssXXX",
            datetime(2024, 1, 15, 8, 30, tzinfo=UTC),
        ),
        (
            ["2024-01-15T10:30:00.123", "2024-01-15T10:31:00.456"],
            "yyyy-MM-dd'T'HH:mm:ss.SSS",
            datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC),
        ),
        (
            ["15/01/2024 10:30", "16/01/2024 08:05"],
            "dd/MM/yyyy HH:mm",
            datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        ),
        (
            ["01/15/2024 10:30 PM", "01/16/2024 8:05 AM"],
            "MM/dd/yyyy hh:mm a",
            datetime(2024, 1, 15, 22, 30, tzinfo=UTC),
        ),
        (
            ["2024-01-15T10:30:00+0200", "2024-01-15T10:30:00+0100"],
            "yyyy-MM-dd'T'HH:mm:ssXX",
            datetime(2024, 1, 15, 8, 30, tzinfo=UTC),
        ),
    ],
)
def test_timestamp_layouts(values: list[str], fmt: str, first: datetime) -> None:
    column, result = converted(values, "ts")
    assert (column.data_type, column.format) == ("TIMESTAMP", fmt)
    assert result.frame["ts"][0] == first
    assert result.failures.height == 0


def test_mixed_fraction_widths_still_parse() -> None:
    values = ["2024-01-15T10:30:00Z", "2024-01-15T10:30:00.5Z", "2024-01-15T10:30:00.123456Z"]
    column, result = converted(values, "ts")
    assert column.format == "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
    assert result.frame["ts"][2] == datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=UTC)


# ----------------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        (["Y", "N", "y", "Y"], "Y/N", [True, False, True, True]),
        (["Yes", "No", "yes", "NO"], "Yes/No", [True, False, True, False]),
        (["true", "false", "false"], "true/false", [True, False, False]),
        (["TRUE", "FALSE", "TRUE"], "TRUE/FALSE", [True, False, True]),
        (["T", "F", "t"], "T/F", [True, False, True]),
        (["1", "0", "0", "1"], "1/0", [True, False, False, True]),
    ],
)
def test_boolean_spellings(values: list[str], fmt: str, expected: list[bool]) -> None:
    column, result = converted(values, "is_reversed")
    assert (column.data_type, column.format) == ("BOOLEAN", fmt)
    assert result.frame["is_reversed"].dtype == pl.Boolean
    assert result.frame["is_reversed"].to_list() == expected


def test_zero_one_counts_stay_integer() -> None:
    assert profile(["1", "0", "1"], "item_count").data_type == "INTEGER"
    assert profile(["1", "0", "2"], "flag").data_type == "INTEGER"
    assert profile(["1", "1", "1"], "flag").data_type == "INTEGER"


# ----------------------------------------------------------------------------- 98 % rule


def test_one_bad_cell_becomes_a_failure() -> None:
    values: list[str | None] = [f"{day % 28 + 1:02d}/{day % 12 + 1:02d}/2024" for day in range(99)]
    values[3] = "25/12/2024"  # makes the column day-first
    values[40] = "not a date"
    column, result = converted(values, "posted")
    assert (column.data_type, column.format) == ("DATE", "dd/MM/yyyy")
    failures = result.failures
    assert failures.schema == pl.Schema(
        {"row_number": pl.Int64, "column": pl.String, "check": pl.String, "value": pl.String}
    )
    assert failures.rows() == [(41, "posted", "dataType DATE dd/MM/yyyy", "not a date")]
    assert result.frame["posted"].null_count() == 1
    assert result.frame["posted"][3] == date(2024, 12, 25)


def test_one_bad_amount_among_many() -> None:
    values = [f"${n},{n % 1000:03d}.50" for n in range(1, 100)] + [" n/a "]
    column, result = converted(values, "amount")
    assert column.data_type == "DECIMAL"
    assert result.failures.rows() == [(100, "amount", "dataType DECIMAL #,##0.00", " n/a ")]


def test_too_many_bad_cells_demote_to_string() -> None:
    values = [str(n) for n in range(95)] + ["x"] * 5
    column, result = converted(values, "quantity")
    assert column.data_type == "STRING"
    assert result.failures.height == 0


# ----------------------------------------------------------------------------- sampling

LARGE = 30_000


def unsampled_positions(n: int = LARGE) -> list[int]:
    """Row positions (0-based) that detection's sample does not look at."""
    sampled = set(_sample_rows(n).to_list())
    return [i for i in range(n) if i not in sampled]


def test_sample_is_head_plus_random_rows() -> None:
    rows = _sample_rows(LARGE).to_list()
    assert rows[:2000] == list(range(2000))
    assert len(rows) == 5000 and rows == sorted(set(rows))
    assert max(rows) > LARGE // 2
    assert _sample_rows(LARGE).to_list() == rows  # reproducible
    assert _sample_rows(10).to_list() == list(range(10))


def test_day_month_settled_by_a_row_outside_the_sample() -> None:
    values = [f"{i % 12 + 1:02d}/{i % 12 + 1:02d}/2024" for i in range(LARGE)]
    late = unsampled_positions()[-1]
    values[late] = "12/25/2024"  # the only value that tells the order: month first
    column, result = converted(values, "posted")
    assert (column.data_type, column.format, column.ambiguous) == (
        "DATE",
        "MM/dd/yyyy",
        False,
    )
    assert result.failures.height == 0
    assert result.frame["posted"][late] == date(2024, 12, 25)


def test_day_month_still_ambiguous_when_no_row_settles_it() -> None:
    values = [f"{i % 12 + 1:02d}/{(i // 12) % 12 + 1:02d}/2024" for i in range(LARGE)]
    column = profile(values, "posted")
    assert (column.format, column.ambiguous) == ("dd/MM/yyyy", True)


def test_bad_value_outside_the_sample_is_a_row_failure() -> None:
    values = [f"${i % 900 + 100},{i % 1000:03d}.{i % 100:02d}" for i in range(LARGE)]
    late = unsampled_positions()[-3]
    values[late] = " n/a "
    values[late + 1] = "(1,234.50)"
    column, result = converted(values, "amount")
    assert (column.data_type, column.format) == ("DECIMAL", "#,##0.00")
    assert result.failures.rows() == [(late + 1, "amount", "dataType DECIMAL #,##0.00", " n/a ")]
    assert result.frame["amount"][late] is None
    assert result.frame["amount"][late + 1] == -1234.5
    assert result.frame["amount"].null_count() == 1


def test_nullable_and_unique_cover_rows_outside_the_sample() -> None:
    late = unsampled_positions()
    ids = [f"TX{i:07d}" for i in range(LARGE)]
    ids[late[-1]] = f" {ids[late[0]]} "  # a repeat once stripped, far from the first
    codes = [f"C{i:07d}" for i in range(LARGE)]
    blanks = [f"B{i:07d}" for i in range(LARGE)]
    blanks[late[-2]] = "   "
    schema = {c.name: c for c in detect_schema(raw_frame(ids=ids, codes=codes, b=blanks))}
    assert (schema["ids"].unique, schema["ids"].distinct_count) == (False, LARGE - 1)
    assert (schema["codes"].unique, schema["codes"].nullable) == (True, False)
    assert (schema["b"].nullable, schema["b"].null_count, schema["b"].unique) == (
        True,
        1,
        True,
    )


def test_profile_counts_a_typed_column_s_blanks_from_its_conversion() -> None:
    # Typed columns whose sample repeats a value are not scanned for counts: their nulls are
    # the converted column's nulls less its failures. Blank, whitespace-only, missing and bad
    # cells all sit outside the sample, so only a count over every row can see them.
    late = unsampled_positions()
    amounts = [f"${i % 50},{i % 1000:03d}.50" for i in range(LARGE)]
    dates = [f"{i % 28 + 1:02d}/{i % 12 + 1:02d}/2024" for i in range(LARGE)]
    amounts[late[0]], amounts[late[1]], amounts[late[2]] = "   ", None, "n/a"
    dates[late[3]], dates[late[4]], dates[late[5]] = "", " 31/02/2024 ", "\u3000"
    frame = raw_frame(amount=amounts, posted=dates)
    profiled = profile_frame(frame)
    schema = {c.name: c for c in profiled.schema}
    assert (schema["amount"].data_type, schema["posted"].data_type) == ("DECIMAL", "DATE")
    assert [
        (c.null_count, c.nullable, c.distinct_count, c.unique)
        for c in (schema["amount"], schema["posted"])
    ] == [(2, True, None, False), (2, True, None, False)]
    assert profiled.conversion.failures.select("row_number", "column", "value").rows() == [
        (late[2] + 1, "amount", "n/a"),
        (late[4] + 1, "posted", " 31/02/2024 "),
    ]
    # the same schema and frame as detecting and converting one after the other
    assert detect_schema(frame) == profiled.schema
    again = convert(frame, profiled.schema)
    assert again.frame.equals(profiled.conversion.frame)
    assert again.failures.equals(profiled.conversion.failures)


def test_profile_numbers_the_rows_of_a_frame_without_row_numbers() -> None:
    profiled = profile_frame(pl.DataFrame({"n": ["1", " ", "x", "4"]}))
    assert profiled.schema[0].null_count == 1
    assert profiled.conversion.frame["_row_number"].to_list() == [1, 2, 3, 4]


def test_counts_see_through_unicode_whitespace() -> None:
    frame = raw_frame(
        a=["x", "x\u00a0", "y"],  # equal once stripped
        b=["\u3000", "p", "q"],  # ideographic space only: blank
        c=["caf\u00e9", "cafe", "x\t"],  # non-ASCII last letter: nothing to strip
        d=["ab", "cd", "ef"],
        e=["", "a", "b"],
    )
    schema = {c.name: c for c in detect_schema(frame)}
    assert (schema["a"].unique, schema["a"].distinct_count) == (False, 2)
    assert (schema["b"].nullable, schema["b"].null_count, schema["b"].unique) == (
        True,
        1,
        True,
    )
    assert (schema["c"].unique, schema["c"].distinct_count) == (True, 3)
    assert (schema["d"].nullable, schema["d"].unique) == (False, True)
    assert (schema["e"].null_count, schema["e"].distinct_count) == (1, 2)


def test_sparse_column_is_still_sampled() -> None:
    values: list[str | None] = [None] * LARGE
    for i in range(0, LARGE, 100):  # 300 values, about 50 of them in the sampled rows
        values[i] = f"{i // 100}.50"
    column, result = converted(values, "fee")
    assert column.data_type == "DECIMAL"
    assert column.sample_values[:2] == ("0.50", "1.50")
    assert result.failures.height == 0


@pytest.mark.parametrize(
    ("column", "values"),
    [
        (
            ColumnSchema("col", "DECIMAL", format="#,##0.00"),
            [
                "$1,234.56",
                "(1,234.56)",
                "-$5",
                "$-5",
                "5$",
                "+3.50",
                "1,234.56-",
                "−2.00",
                "1e5",
                "inf",
                "1,23,4.5",
                ",5",
                ".5",
                "((5))",
                "$$5",
                "USD 5",
                "XYZ 5",
                "5 €",
                " 7 ",
                "1 234.5",
                "00012.50",
                "(5",
                "5)",
                "-(5)",
                "12,345,678.901",
            ],
        ),
        (
            ColumnSchema("col", "DECIMAL", format="#.##0,00"),
            ["1.234,56 €", "€1.234,56", "1,234.56", "12,5", "(3,00)", "1.2.3", "1.234", "5,-"],
        ),
        (
            ColumnSchema("col", "INTEGER"),
            [
                "42",
                "+5",
                "-7",
                "007",
                "1,000",
                "1,00",
                "5.00",
                "5.5",
                "-9223372036854775808",
                "9223372036854775807",
                "9223372036854775808",
                "1e3",
                " 12 ",
                "(4)",
                "$4",
                "٣",
            ],
        ),
        (
            ColumnSchema("col", "TIMESTAMP", format="yyyy-MM-dd'T'HH:mm:ssXXX"),
            [
                "2024-01-15T10:30:00Z",
                "2024-01-15T10:30:00z",
                "2024-01-15T10:30:00+02:00",
                "2024-01-15T10:30:00.5Z",
                "0024-01-15T10:30:00Z",
                "2024-01-15T10:30:00",
                " 2024-01-15T10:30:00Z",
            ],
        ),
        (
            ColumnSchema("col", "TIMESTAMP", format="yyyy-MM-dd HH:mm:ss"),
            [
                "2024-01-15 10:30:00",
                "2024-01-15 10:30:00.25",
                "2024-01-15 10:30",
                "999-01-01 00:00:00",
            ],
        ),
        (
            ColumnSchema("col", "BOOLEAN", format="Yes/No"),
            ["Yes", "yes", "YES", "yEs", "no", "No", "nO", "Y", " yes "],
        ),
    ],
)
def test_fast_paths_agree_with_the_full_parsers(column: ColumnSchema, values: list[str]) -> None:
    frame = raw_frame(col=values)
    result = convert(frame, [column])
    text = pl.col("col").str.strip_chars()
    reference = frame.select(_conversions(column, text)[-1].alias("col")).to_series()
    assert result.frame["col"].to_list() == reference.to_list()
    failed = [i + 1 for i, value in enumerate(reference.to_list()) if value is None]
    assert result.failures["row_number"].to_list() == failed
    assert result.failures["value"].to_list() == [values[i - 1] for i in failed]


# ----------------------------------------------------------------------------- nulls, uniqueness


def test_nullable_and_unique() -> None:
    frame = raw_frame(
        a=["x", "  ", "y", "z"],
        b=["x", "y", "x", None],
        c=["1", "2", "3", "4"],
        d=[" x", "x ", None, "y"],
    )
    schema = {c.name: c for c in detect_schema(frame)}
    assert (schema["a"].nullable, schema["a"].unique) == (True, True)
    assert (schema["b"].nullable, schema["b"].unique) == (True, False)
    assert (schema["c"].nullable, schema["c"].unique) == (False, True)
    assert schema["d"].unique is False  # equal once stripped
    assert (schema["a"].null_count, schema["b"].distinct_count) == (1, 2)


def test_sample_values_are_distinct_raw_strings() -> None:
    column = profile([" a ", "b", " a ", None, "c", "d", "e", "f"])
    assert column.sample_values == (" a ", "b", "c", "d", "e")


def test_strings_are_stripped_and_blank_is_null() -> None:
    _, result = converted(["  hello ", "   ", None, "world"], "description")
    assert result.frame["description"].to_list() == ["hello", None, None, "world"]


# ----------------------------------------------------------------------------- preview


def test_preview_shape() -> None:
    frame = raw_frame(a=[" 1", None, "3"], b=["x", "y", "z"])
    assert preview_rows(frame) == [[" 1", "x"], [None, "y"], ["3", "z"]]
    assert preview_rows(frame, limit=2) == [[" 1", "x"], [None, "y"]]
    assert preview_rows(frame, limit=0) == []


# ----------------------------------------------------------------------------- convert()


def test_convert_uses_given_schema_and_defaults_to_string() -> None:
    frame = raw_frame(d=["15/01/2024", "2024-01-15"], extra=[" a", "b "])
    schema = [ColumnSchema("d", "DATE", format="dd/MM/yyyy")]
    result = convert(frame, schema)
    assert result.frame.columns == ["_row_number", "d", "extra"]
    assert result.frame["d"].to_list() == [date(2024, 1, 15), None]
    assert result.frame["extra"].to_list() == ["a", "b"]
    assert result.failures.rows() == [(2, "d", "dataType DATE dd/MM/yyyy", "2024-01-15")]


def test_convert_decimal_from_format_only() -> None:
    frame = raw_frame(x=["1.234,5", "7"])
    schema = [ColumnSchema("x", "DECIMAL", format="#.##0,00")]
    assert convert(frame, schema).frame["x"].to_list() == [1234.5, 7.0]


def test_convert_rejects_unknown_type() -> None:
    with pytest.raises(ValueError):
        convert(raw_frame(x=["1"]), [ColumnSchema("x", "MONEY")])


def test_convert_without_failures_has_typed_empty_frame() -> None:
    _, result = converted(["1", "2"], "quantity")
    assert result.failures.height == 0
    assert result.failures.columns == ["row_number", "column", "check", "value"]
    assert result.failures.schema["row_number"] == pl.Int64


# ----------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("seed", "strftime"),
    [
        ("yyyy-MM-dd", "%Y-%m-%d"),
        ("dd/MM/yyyy", "%d/%m/%Y"),
        ("MM/dd/yyyy", "%m/%d/%Y"),
        ("dd.MM.yyyy", "%d.%m.%Y"),
        ("dd-MMM-yyyy", "%d-%b-%Y"),
        ("MMM dd, yyyy", "%b %d, %Y"),
        ("dd MMMM yyyy", "%d %B %Y"),
        ("yyyyMMdd", "%Y%m%d"),
        ("dd/MM/yy", "%d/%m/%y"),
        ("yyyy-MM-dd'T'HH:mm:ssXXX", "%Y-%m-%dT%H:%M:%S%:z"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "%Y-%m-%dT%H:%M:%S%.3f%:z"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSSSS", "%Y-%m-%dT%H:%M:%S%.6f"),
        ("yyyy-MM-dd HH:mm:ssXX", "%Y-%m-%d %H:%M:%S%z"),
        ("dd/MM/yyyy HH:mm", "%d/%m/%Y %H:%M"),
        ("MM/dd/yyyy hh:mm a", "%m/%d/%Y %I:%M %p"),
        ("EEE, dd MMM yyyy", "%a, %d %b %Y"),
        ("d/M/yyyy H:mm", "%-d/%-m/%Y %-H:%M"),
        ("yyyy%MM", "%Y%%%m"),
        ("yyyy-MM-dd'T'HH:mm", "%Y-%m-%dT%H:%M"),
    ],
)
def test_pattern_round_trip(seed: str, strftime: str) -> None:
    assert seed_pattern_to_strftime(seed) == strftime
    assert strftime_to_seed_pattern(strftime) == seed


def test_pattern_quotes() -> None:
    assert seed_pattern_to_strftime("hh 'o''clock'") == "%I o'clock"
    assert seed_pattern_to_strftime("yyyy'%'MM") == "%Y%%%m"
    assert seed_pattern_to_strftime(strftime_to_seed_pattern("%I o'clock")) == "%I o'clock"


def test_pattern_errors() -> None:
    with pytest.raises(ValueError):
        seed_pattern_to_strftime("yyyy-MM-dd VV")
    with pytest.raises(ValueError):
        strftime_to_seed_pattern("%Y %j")


def test_detected_formats_are_parseable() -> None:
    frame = raw_frame(
        a=["2024-01-15T10:30:00Z"], b=["15-Jan-2024"], c=["2024-01-15 10:30:00.123456+01:00"]
    )
    for column in detect_schema(frame):
        fmt = seed_pattern_to_strftime(column.format)
        assert strftime_to_seed_pattern(fmt) == column.format


# ------------------------------------- many rows (their speed: bench/profiling_bench.py)


def test_many_rows_detect_and_convert() -> None:
    frame = typical_frame(20_000)
    schema = detect_schema(frame)
    result = convert(frame, schema)
    types = {c.name: (c.data_type, c.format) for c in schema}
    assert types == {
        "transaction_id": ("STRING", None),
        "posted": ("DATE", "dd/MM/yyyy"),
        "amount": ("DECIMAL", "#,##0.00"),
        "description": ("STRING", None),
        "currency": ("STRING", None),
        "cleared": ("BOOLEAN", "Y/N"),
        "quantity": ("INTEGER", None),
        "created_at": ("TIMESTAMP", "yyyy-MM-dd'T'HH:mm:ssXXX"),
    }
    assert result.failures.height == 0
    assert result.frame.height == 20_000
    assert result.frame["amount"].null_count() == 0


def test_validation_in_parts_finds_what_one_pandera_schema_finds() -> None:
    import pandera.polars as pa

    from pipelines.ingest import validation

    width = validation.COLUMNS_PER_SCHEMA * 2 + 5  # three parts, the last one short
    values = [1, 5, 10, None, 50, 5]
    typed = pl.DataFrame(
        {"_row_number": list(range(1, 7)), **{f"c{i}": values for i in range(width)}},
        schema_overrides={f"c{i}": pl.Int64 for i in range(width)},
    )
    detected = FileSchema(ColumnSchema(f"c{i}", "INTEGER") for i in range(width))
    config = {
        "columns": [
            {"name": f"c{i}", "min": 2, "max": 20, "nullable": i % 2 == 0, "unique": i % 3 == 0}
            for i in [*range(0, width, 7), width - 1]
        ]
    }
    declared = validation.declared_columns(config)
    found = validation.validate("f.csv", typed, detected, declared)
    try:
        validation.build_schema(detected, declared).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.filter(pl.col("index").is_not_null())
    expected = cases.select(
        pl.lit("f.csv").alias("file"),
        (pl.col("index") + 1).cast(pl.Int64).alias("row_number"),
        "column",
        "check",
        pl.col("failure_case").cast(pl.String).alias("value"),
    )
    key = ["column", "row_number", "check", "value"]
    assert found.height > 0 and set(found.get_column("column")) >= {"c0", f"c{width - 1}"}
    assert found.sort(key, nulls_last=True).equals(expected.sort(key, nulls_last=True))
