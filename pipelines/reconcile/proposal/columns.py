"""Column profiles: one column's facts from the detected schema and its typed values
(family, format, scale, fill, distinct values, samples), with the value normalisations
the evidence compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.ingest.column_schema import ColumnSchema
from pipelines.reconcile.mapping import ROW
from pipelines.reconcile.proposal.constants import (
    ID_DISTINCT_RATIO,
    LOW_CARDINALITY,
    SAMPLE_SIZE,
    SEED,
)

_FAMILIES = {
    "STRING": "text",
    "INTEGER": "number",
    "DECIMAL": "number",
    "DATE": "date",
    "TIMESTAMP": "date",
    "BOOLEAN": "boolean",
}


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


def _profile(frame: pl.DataFrame, schema: Iterable[ColumnSchema]) -> list[_Column]:
    columns = []
    for item in schema:
        name = item.name
        if name not in frame.columns or name in (ROW, "_valid"):
            continue
        data_type = item.data_type or "STRING"
        series = frame.get_column(name)
        if series.dtype == pl.String:
            series = series.str.strip_chars()
            series = pl.select(pl.when(series != "").then(series)).to_series()
        values = series.drop_nulls()
        sample = values.sample(SAMPLE_SIZE, seed=SEED) if values.len() > SAMPLE_SIZE else values
        columns.append(
            _Column(
                name=name,
                data_type=data_type,
                family=_FAMILIES.get(data_type, "text"),
                fmt=item.format,
                scale=item.scale,
                rows=frame.height,
                filled=values.len(),
                distinct=int(item.distinct_count or values.n_unique()),
                id_like=item.id_like,
                values=values,
                sample=sample,
                _sets={},
            )
        )
    return columns
