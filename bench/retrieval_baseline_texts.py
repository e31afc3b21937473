"""Today's exception text, frozen: the baseline `bench/retrieval_bench.py` compares against.

A copy of `pipelines.embed.texts.exception_text` as it was before issue 21 (commit 71915ce):
type label, severity, the engine's description, the differences when the description does not
say them, every field of the source record and the target record's values that the source
does not repeat, `field value; field value`, cut at 1,500 characters. The product's current
text is `pipelines.embed.texts.exception_text`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TYPE_LABELS = {
    "AMOUNT_MISMATCH": "Amount mismatch",
    "DATE_MISMATCH": "Date mismatch",
    "MISSING_IN_TARGET": "Missing in target",
    "MISSING_IN_SOURCE": "Missing in source",
    "DUPLICATE_FOUND": "Duplicate record",
    "VALIDATION_ERROR": "Validation error",
}
MAX_FIELDS = 12
MAX_VALUE_CHARS = 80
MAX_TEXT_CHARS = 1500


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value - round(value, 2)) < 1e-9 else f"{value:g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _fields(record: Any) -> list[tuple[str, str]]:
    record = _loads(record)
    if not isinstance(record, Mapping):
        return []
    return [
        (str(name), _value(value))
        for name, value in record.items()
        if not str(name).startswith("_") and value is not None and str(value).strip() != ""
    ]


def record_text(record: Any, *, skip_values: set[str] | frozenset[str] = frozenset()) -> str:
    """`field value; field value` for a record's fields (`_row_number`, empty ones and values in
    `skip_values`, compared case-insensitively, left out)."""
    parts = [f"{n} {v}" for n, v in _fields(record) if v.lower() not in skip_values]
    return "; ".join(parts[:MAX_FIELDS])


def _diff_text(diff: Any) -> str:
    diff = _loads(diff)
    if not isinstance(diff, list):
        return ""
    parts = []
    for item in diff[:MAX_FIELDS]:
        if not isinstance(item, Mapping):
            continue
        if "duplicate_of" in item:
            parts.append(f"repeats row {item['duplicate_of']}")
            continue
        words = [str(item.get("field", "field"))]
        if item.get("check") is not None:
            words.append(f"failed {item['check']}")
        for key, label in (
            ("source_value", "source"),
            ("target_value", "target"),
            ("delta", "difference"),
            ("tolerance", "tolerance"),
        ):
            if item.get(key) is not None:
                words.append(f"{label} {_value(item[key])}")
        parts.append(" ".join(words))
    return "; ".join(parts)


def exception_text(exception: Mapping[str, Any]) -> str:
    """The text embedded for one `reconciliation_exceptions` row (a mapping of its columns).

    The differences are spelled out only when the description does not already say them
    (validation errors: the offending values), and the target record keeps only the values
    the source record does not repeat (a matched pair shares most), which keeps texts short:
    the model's time grows with their length.
    """
    kind = str(exception.get("type") or "")
    lines = [f"{TYPE_LABELS.get(kind, kind.replace('_', ' ').capitalize())}."]
    if exception.get("severity"):
        lines.append(f"Severity {exception['severity']}.")
    description = " ".join(str(exception.get("description") or "").split())
    if description:
        lines.append(f"{description}.")
    if not description or kind == "VALIDATION_ERROR":
        diff = _diff_text(exception.get("diff"))
        if diff:
            lines.append(f"Differences: {diff}.")
    source_fields = _fields(exception.get("source_data"))
    source = record_text(exception.get("source_data"))
    if source:
        lines.append(f"Source record: {source}.")
    target = record_text(
        exception.get("target_data"), skip_values={v.lower() for _, v in source_fields}
    )
    if target:
        lines.append(f"Target record: {target}.")
    return " ".join(lines)[:MAX_TEXT_CHARS]
