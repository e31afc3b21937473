"""The texts that get embedded: one per exception and one summary per reconciliation.

The text is what both the model and full-text search see, so it reads like a note a person
would write: the kind of exception in words, its severity, the engine's description (which
states the differences), the fields of the source record and those of the target record that
differ from it (counterparties, amounts, dates, references). It holds nothing that changes
without the data changing (no ids, status, timestamps), so the same exception reconciled
again gives the same text and is served from `embedding_cache` instead of the model. Long
records are cut (fields and characters) so the text stays within what the model reads (256
word pieces).

`embedding_text` is the model's text for an embedder that asks for dense texts (MiniLM with
`dense_texts`, the static model, `resources.static_embedder`): the model's time grows with the
word pieces and a mean of word-piece vectors is diluted by every piece that says nothing, so
it keeps only what a person searches by - the kind of break, the difference in words (short or
over and by how much, how many days late), the month, and the records' values once each,
without field names, identifiers (`... id` columns), row numbers, dates, currency codes,
severity, confidences and tolerances. The stored `content` (full-text search, what a person
reads) stays `exception_text`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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


DENSE_LABELS = {
    "AMOUNT_MISMATCH": "amount mismatch",
    "DATE_MISMATCH": "date mismatch",
    "MISSING_IN_TARGET": "missing in target, no match",
    "MISSING_IN_SOURCE": "missing in source, no match",
    "DUPLICATE_FOUND": "duplicate, repeated twice",
    "VALIDATION_ERROR": "validation error",
}
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DATE_VALUE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})$")
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
_IDENTIFIER_FIELD = re.compile(r"(^|[\s_])id$", re.IGNORECASE)
_NUMBERS = re.compile(r"\d[\d,]*(?:\.\d+)?")
MONTH_NAMES = (
    "January February March April May June July August September October November December"
).split()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).replace(",", "").replace("$", "").strip("() "))
    except ValueError:
        return None


def _money(value: float) -> str:
    return f"{value:.2f}"


def _days_between(source: Any, target: Any) -> int | None:
    try:
        a, b = dt.date.fromisoformat(str(source)), dt.date.fromisoformat(str(target))
    except ValueError:
        return None
    return (a - b).days


def _date_field(record: Any) -> str:
    """The name of a record's first date-valued field in words (`Value Date`: `value date`)."""
    for name, value in _fields(record):
        if _DATE_VALUE.match(value):
            return name.replace("_", " ").lower()
    return ""


def _dense_difference(item: Mapping[str, Any], exception: Mapping[str, Any]) -> str:
    """One diff item in words: `15.00 short, 985.00 against 1000.00`; `posting date differs by
    5 day(s), source value date 5 days late, after target posting date`."""
    if "duplicate_of" in item:
        return ""
    name = str(item.get("field", "field")).replace("_", " ").lower()
    source, target = item.get("source_value"), item.get("target_value")
    if item.get("check") is not None:
        bad = source if source is not None else target
        check = str(item["check"]).replace("_", " ")
        return f"{name} failed {check}" + (f" {_value(bad)}" if bad is not None else "")
    a, b = _number(source), _number(target)
    if a is not None and b is not None and a != b:
        return (
            f"{_money(abs(a - b))} {'short' if abs(a) < abs(b) else 'over'}, "
            f"{_money(a)} against {_money(b)}"
        )
    days = _days_between(source, target)
    if days:
        source_field = _date_field(exception.get("source_data")) or "date"
        target_field = _date_field(exception.get("target_data")) or "date"
        return (
            f"{name} differs by {days} day(s), source {source_field} {abs(days)} days "
            f"{'late, after' if days > 0 else 'early, before'} target {target_field}"
        )
    return f"{name} {_value(source)} against {_value(target)}"


def _month(exception: Mapping[str, Any]) -> str:
    """The month (its name) of the first ISO date in the description or the records."""
    texts = [str(exception.get("description") or "")]
    for record in (exception.get("source_data"), exception.get("target_data")):
        texts.extend(value for _, value in _fields(record))
    for text in texts:
        for _, month, _ in _ISO_DATE.findall(text):
            if 1 <= int(month) <= 12:
                return MONTH_NAMES[int(month) - 1]
    return ""


def _dense_values(*records: Any, said: str = "") -> list[str]:
    """The records' values once each, without identifiers (`... id` fields), dates (the month
    is said), currency codes, values said already (`said`, or an amount equal to a number in
    it), values inside a longer one (a name or reference quoted in a bank line's details) and
    values equal up to case or, for amounts, up to formatting (`$1,250.00`, `1250.0`)."""
    values: list[str] = []
    for record in records:
        for name, value in _fields(record):
            if _IDENTIFIER_FIELD.search(name) or _CURRENCY_CODE.match(value):
                continue
            if not _DATE_VALUE.match(value):
                values.append(value)
    said = said.lower()
    amounts = {round(abs(n), 2) for n in map(_number, _NUMBERS.findall(said)) if n is not None}
    lowered = [v.lower() for v in values]
    kept: list[str] = []
    for i, value in enumerate(values):
        low = lowered[i]
        if low in lowered[:i] or low in said:
            continue
        if any(low != other and low in other for other in lowered):
            continue
        number = _number(value)
        if number is not None:
            if round(abs(number), 2) in amounts:
                continue
            amounts.add(round(abs(number), 2))
        kept.append(value)
    return kept[:MAX_FIELDS]


def embedding_text(exception: Mapping[str, Any]) -> str:
    """The short text the model embeds for one exception when its embedder asks for dense
    texts (`dense_texts`: MiniLM so configured, the static model); the stored content stays
    `exception_text`.

    About a quarter of `exception_text`'s word pieces (MiniLM's time grows with them), in the
    order a person searches by: the kind of break; the difference in words
    (`15.00 short, 985.00 against 1000.00`; `posting date differs by 5 day(s), source value
    date 5 days late, after target posting date`; a failed check and its value); the month of the
    dates; then the records' values once each - the counterparty, the bank line's details
    (which quote the reference), the reference, an amount not said yet - without field names,
    identifiers (`... id` fields), row numbers, dates, currency codes, confidences and
    tolerances. The severity is left out too: a filter of the search, not words a person
    types (it cost 0.03 nDCG@10 on `bench/retrieval_bench.py`: every text of one severity drew
    closer together). A kind the engine may add later keeps its description.
    """
    kind = str(exception.get("type") or "")
    head = DENSE_LABELS.get(kind, kind.replace("_", " ").lower())
    diff = _loads(exception.get("diff"))
    items = diff[:MAX_FIELDS] if isinstance(diff, list) else []
    differences = [
        d for d in (_dense_difference(i, exception) for i in items if isinstance(i, Mapping)) if d
    ]
    if not differences and kind not in DENSE_LABELS:
        description = " ".join(str(exception.get("description") or "").split())
        differences = [description] if description else []
    parts = [head, *differences]
    month = _month(exception)
    if month:
        parts.append(month)
    parts.extend(
        _dense_values(
            exception.get("source_data"),
            exception.get("target_data"),
            said=" ".join(differences),
        )
    )
    return ". ".join(parts)[:MAX_TEXT_CHARS]


def reconciliation_text(
    reconciliation: Mapping[str, Any],
    by_type: Mapping[str, int],
    by_severity: Mapping[str, int],
) -> str:
    """The summary text of a reconciliation: its name, status, counts and exceptions."""
    lines = [f"Reconciliation summary: {reconciliation.get('name') or 'unnamed'}."]
    if reconciliation.get("description"):
        lines.append(f"{' '.join(str(reconciliation['description']).split())}.")
    lines.append(f"Status {reconciliation.get('status')}.")
    rate = reconciliation.get("match_rate")
    lines.append(
        f"Source records {reconciliation.get('total_source_records') or 0}, target records "
        f"{reconciliation.get('total_target_records') or 0}, matched "
        f"{reconciliation.get('matched_records') or 0} (match rate "
        f"{float(rate or 0):.2f}%)."
    )
    total = sum(by_type.values())
    if total:
        kinds = ", ".join(f"{TYPE_LABELS.get(k, k)} {n}" for k, n in by_type.items())
        severities = ", ".join(f"{s} {n}" for s, n in by_severity.items())
        lines.append(f"{total} exceptions: {kinds}. By severity: {severities}.")
    else:
        lines.append("No exceptions.")
    return " ".join(lines)[:MAX_TEXT_CHARS]
