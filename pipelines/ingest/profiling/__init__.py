"""Column profiling for raw data files: type detection, preview rows and typed conversion.

The detected schema is a `FileSchema` of `ColumnSchema` values (see
`pipelines.ingest.column_schema`); their `to_json`/`from_json` are the documented JSON shape,
used only where a schema is stored in PostgreSQL or shown in Dagster.

A raw frame holds ``_row_number`` (Int64) plus one String column per file column, exactly as the
cells were read. `detect_schema` looks at a bounded sample of rows (the first ``SAMPLE_HEAD``
plus ``SAMPLE_RANDOM`` drawn from the rest; sparse columns also their first non-blank values;
the whole column only to settle day/month order the sample leaves open; null and distinct counts
always cover every row) and decides a data type - STRING, INTEGER, DECIMAL, DATE,
TIMESTAMP or BOOLEAN - and the format it is written in (money layouts with currency symbols,
parentheses negatives and European separators; day-first or month-first dates; timestamps with
zone offsets; Y/N style booleans), while identifier-like columns (leading zeros, fixed-width
codes, ``*_id``/``invoice_no``/``iban`` names) stay STRING. A type is chosen when at least
``TYPE_THRESHOLD`` of the sampled values parse, so a few bad cells do not demote the column;
`convert` then applies the chosen types to every row with vectorised polars expressions (cheap
ones for the common layouts, the full parsers only for the cells those leave null) and reports
each non-blank cell that did not convert as a failure row; `profile` does both at once (what
the file stage calls), counting a typed column's blanks from its conversion rather than
scanning it twice. DECIMAL values are converted to
Float64, timestamps to Datetime("us", "UTC") (naive timestamps are taken as UTC), and blank or
whitespace-only cells become null in every type, STRING included. Formats use the seed's
Java-style patterns (``dd/MM/yyyy``, ``yyyy-MM-dd'T'HH:mm:ssXXX``, ``#,##0.00``); the two
pattern functions translate them to and from polars/chrono strftime.
"""

from __future__ import annotations

from pipelines.ingest.column_schema import ColumnSchema, FileSchema
from pipelines.ingest.profiling.common import (
    DATA_TYPES,
    DETECT_THREADS,
    ENGINE,
    PARSE_CACHE_MAX_DISTINCT,
    PRUNE_MARGIN,
    SAMPLE_HEAD,
    SAMPLE_MIN_VALUES,
    SAMPLE_RANDOM,
    SAMPLE_SEED,
    SAMPLE_SIZE,
    SAMPLE_VALUES,
    TYPE_THRESHOLD,
    Conversion,
)
from pipelines.ingest.profiling.conversion import _conversions, convert
from pipelines.ingest.profiling.patterns import seed_pattern_to_strftime, strftime_to_seed_pattern
from pipelines.ingest.profiling.sampling import _sample_rows
from pipelines.ingest.profiling.schema import Profile, detect_schema, preview_rows, profile

__all__ = [
    "DATA_TYPES",
    "DETECT_THREADS",
    "ENGINE",
    "PARSE_CACHE_MAX_DISTINCT",
    "PRUNE_MARGIN",
    "SAMPLE_HEAD",
    "SAMPLE_MIN_VALUES",
    "SAMPLE_RANDOM",
    "SAMPLE_SEED",
    "SAMPLE_SIZE",
    "SAMPLE_VALUES",
    "TYPE_THRESHOLD",
    "ColumnSchema",
    "Conversion",
    "FileSchema",
    "Profile",
    "_conversions",  # tests
    "_sample_rows",  # tests
    "convert",
    "detect_schema",
    "preview_rows",
    "profile",
    "seed_pattern_to_strftime",
    "strftime_to_seed_pattern",
]
