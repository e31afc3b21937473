"""Tests for pipelines.ingest.column_schema: the typed detected schema and its JSON shape."""

from __future__ import annotations

import json

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema, FileSchema
from pipelines.ingest.profiling import convert, detect_schema


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "amount": ["$1,234.56", "(2.00)", None],
            "posted": ["01/02/2024", "03/04/2024", "03/04/2024"],
            "qty": ["1,000", "7", "7"],
            "ref": ["INV-1", "INV-2", "INV-3"],
        }
    )


# the documented shape as stored in uploaded_files.detected_schema, keys in this order
EXPECTED = [
    '{"name": "amount", "dataType": "DECIMAL", "nullable": true, "unique": true, '
    '"precision": 6, "scale": 2, "format": "#,##0.00", "sampleValues": ["$1,234.56", "(2.00)"], '
    '"nullCount": 1, "distinctCount": 2, "idLike": false, "decimalSeparator": ".", '
    '"groupingSeparator": ",", "currencySymbol": "$", "negativeParentheses": true}',
    '{"name": "posted", "dataType": "DATE", "nullable": false, "unique": false, '
    '"precision": null, "scale": null, "format": "dd/MM/yyyy", '
    '"sampleValues": ["01/02/2024", "03/04/2024"], "nullCount": 0, "distinctCount": 2, '
    '"idLike": false, "ambiguous": true}',
    '{"name": "qty", "dataType": "INTEGER", "nullable": false, "unique": false, '
    '"precision": null, "scale": null, "format": null, "sampleValues": ["1,000", "7"], '
    '"nullCount": 0, "distinctCount": 2, "idLike": false, "decimalSeparator": ".", '
    '"groupingSeparator": ","}',
    '{"name": "ref", "dataType": "STRING", "nullable": false, "unique": true, '
    '"precision": null, "scale": null, "format": null, '
    '"sampleValues": ["INV-1", "INV-2", "INV-3"], "nullCount": 0, "distinctCount": 3, '
    '"idLike": true}',
]


def test_to_json_is_the_documented_shape_byte_for_byte() -> None:
    schema = detect_schema(_frame())
    assert isinstance(schema, FileSchema) and all(isinstance(c, ColumnSchema) for c in schema)
    assert [json.dumps(column) for column in schema.to_json()] == EXPECTED


def test_from_json_reads_back_what_to_json_wrote() -> None:
    schema = detect_schema(_frame())
    stored = json.loads(json.dumps(schema.to_json()))  # as it comes back from jsonb
    again = FileSchema.from_json(stored)
    assert again == schema
    assert [json.dumps(column) for column in again.to_json()] == EXPECTED
    frame = _frame().with_row_index("_row_number", offset=1).cast({"_row_number": pl.Int64})
    assert convert(frame, again).frame.equals(convert(frame, schema).frame)


def test_from_json_of_a_partial_or_missing_schema() -> None:
    assert FileSchema.from_json(None) == FileSchema()
    column = ColumnSchema.from_json({"name": "dob", "format": "yyyyMMdd", "other": 1})
    assert column == ColumnSchema("dob", "STRING", format="yyyyMMdd")
    assert (column.nullable, column.unique, column.sample_values, column.ambiguous) == (
        True,
        False,
        (),
        None,
    )


def test_lookups_by_name() -> None:
    schema = FileSchema(
        [ColumnSchema("a", "DATE", format="dd/MM/yyyy"), ColumnSchema("b"), ColumnSchema("a")]
    )
    assert schema.format_of("a") == "dd/MM/yyyy"
    assert schema.format_of("b") is None and schema.format_of("zz") is None
    assert schema.by_name()["a"] == ColumnSchema("a")  # the last of a repeated name, as before
