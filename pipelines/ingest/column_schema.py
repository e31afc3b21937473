"""The detected schema as typed values: `ColumnSchema` per column, `FileSchema` per file.

Profiling builds these, and validation, landing, mapping and the proposal read them by
attribute. JSON appears only where a schema leaves or enters the process: `to_json` gives the
documented shape stored in ``uploaded_files.detected_schema`` and shown in Dagster metadata
(camelCase keys, in this order: ``name dataType nullable unique precision scale format
sampleValues nullCount distinctCount idLike``, then ``ambiguous`` for DATE/TIMESTAMP,
``decimalSeparator``/``groupingSeparator`` for INTEGER/DECIMAL, ``currencySymbol`` and
``negativeParentheses`` where they apply), and `from_json` reads it back, as stored or as
a partial dict (only ``name`` is required; a missing ``dataType`` is STRING).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class ColumnSchema:
    """What profiling detected about one column (see `detect_schema` for each field's meaning).

    `ambiguous` is None unless the column is DATE/TIMESTAMP; `decimal_separator` and
    `grouping_separator` are set for INTEGER/DECIMAL columns (the latter None without
    grouping); `currency_symbol` and `negative_parentheses` only for money.
    """

    name: str
    data_type: str = "STRING"
    nullable: bool = True
    unique: bool = False
    precision: int | None = None
    scale: int | None = None
    format: str | None = None
    sample_values: tuple[str | None, ...] = ()
    null_count: int | None = None
    distinct_count: int | None = None
    id_like: bool = False
    ambiguous: bool | None = None
    decimal_separator: str | None = None
    grouping_separator: str | None = None
    currency_symbol: str | None = None
    negative_parentheses: bool = False

    def to_json(self) -> dict[str, Any]:
        """The documented JSON object of this column (keys in the order of the module doc)."""
        out: dict[str, Any] = {
            "name": self.name,
            "dataType": self.data_type,
            "nullable": self.nullable,
            "unique": self.unique,
            "precision": self.precision,
            "scale": self.scale,
            "format": self.format,
            "sampleValues": list(self.sample_values),
            "nullCount": self.null_count,
            "distinctCount": self.distinct_count,
            "idLike": self.id_like,
        }
        if self.ambiguous is not None:
            out["ambiguous"] = self.ambiguous
        if self.decimal_separator is not None:
            out["decimalSeparator"] = self.decimal_separator
            out["groupingSeparator"] = self.grouping_separator
        if self.currency_symbol is not None:
            out["currencySymbol"] = self.currency_symbol
        if self.negative_parentheses:
            out["negativeParentheses"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnSchema:
        """A column from its JSON object; keys it does not know are ignored."""
        ambiguous = data.get("ambiguous")
        return cls(
            name=str(data["name"]),
            data_type=str(data.get("dataType") or "STRING"),
            nullable=bool(data.get("nullable", True)),
            unique=bool(data.get("unique", False)),
            precision=_int_or_none(data.get("precision")),
            scale=_int_or_none(data.get("scale")),
            format=_str_or_none(data.get("format")),
            sample_values=tuple(data.get("sampleValues") or ()),
            null_count=_int_or_none(data.get("nullCount")),
            distinct_count=_int_or_none(data.get("distinctCount")),
            id_like=bool(data.get("idLike", False)),
            ambiguous=None if ambiguous is None else bool(ambiguous),
            decimal_separator=_str_or_none(data.get("decimalSeparator")),
            grouping_separator=_str_or_none(data.get("groupingSeparator")),
            currency_symbol=_str_or_none(data.get("currencySymbol")),
            negative_parentheses=bool(data.get("negativeParentheses", False)),
        )


class FileSchema(tuple[ColumnSchema, ...]):
    """A file's detected columns in file order (an immutable tuple of `ColumnSchema`)."""

    __slots__ = ()

    def by_name(self) -> dict[str, ColumnSchema]:
        """The columns keyed by name (the last one wins should a name repeat)."""
        return {column.name: column for column in self}

    def format_of(self, name: str) -> str | None:
        """The detected format of the first column called `name` that has one."""
        for column in self:
            if column.name == name and column.format:
                return column.format
        return None

    def to_json(self) -> list[dict[str, Any]]:
        """The documented JSON array stored in ``uploaded_files.detected_schema``."""
        return [column.to_json() for column in self]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]] | None) -> FileSchema:
        """A schema from its JSON array (None, as a NULL column reads, is an empty schema)."""
        return cls(ColumnSchema.from_json(item) for item in data or ())
