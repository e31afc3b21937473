"""The `aggregation:` section of a rules file: one record settled by several of the other side.

```yaml
aggregation:
  - {name: one receipt settles several invoices, many_side: target, group_by: [customer_name],
     amount_field: amount, date_field: invoice_date, date_window_days: 10, max_group_size: 5,
     tolerance: 0.01, reference_field: remittance, reference_target_field: invoice_number}
```

- `many_side` (`source` | `target`): the side whose records are grouped; the other side's
  record ("one side") is what a group settles.
- `group_by`: target-vocabulary fields of the rule set's FUZZY / EXACT rules; members agree
  on them (normalised text, equal) and with the one-side record (by that rule: FUZZY at its
  threshold, EXACT equal).
- `amount_field` (a RANGE rule's field), `tolerance` (>= 0, absolute): the members' amounts sum
  to the one-side amount within it; `date_field` (a DATE_RANGE rule's field),
  `date_window_days`: every member within that many days of the one-side record.
- `max_group_size` (2..10, default 5): members of one group at most.
- `reference_field` / `reference_target_field` (both or neither): a one-side column whose free
  text may quote the many side's identifiers, and that identifier on the many side.

The shape is a pydantic model (`extra="forbid"`, strict types, finite numbers); a problem is
one line naming the entry, the key and what to write, as for the rest of the rules file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from pipelines.reconcile.rule_shapes import RuleSetError, _unknown_key

MAX_AGGREGATIONS = 10


@dataclass(frozen=True)
class AggregationRule:
    """One declared aggregation, validated."""

    name: str
    many_side: str
    group_by: tuple[str, ...]
    amount_field: str
    date_field: str
    date_window_days: float = 10.0
    max_group_size: int = 5
    tolerance: float = 0.01
    reference_field: str | None = None
    reference_target_field: str | None = None

    @property
    def one_side(self) -> str:
        return "source" if self.many_side == "target" else "target"

    def content(self) -> dict[str, Any]:
        """As written in YAML and stored with the rule-set version (no None values)."""
        data = {**asdict(self), "group_by": list(self.group_by)}
        return {k: v for k, v in data.items() if v is not None}


class _AggregationShape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: StrictStr = Field(min_length=1, max_length=200)
    many_side: Literal["source", "target"]
    group_by: list[StrictStr] = Field(min_length=1, max_length=5)
    amount_field: StrictStr = Field(min_length=1)
    date_field: StrictStr = Field(min_length=1)
    date_window_days: float = Field(default=10.0, ge=0, le=366, allow_inf_nan=False)
    max_group_size: StrictInt = Field(default=5, ge=2, le=10)
    tolerance: float = Field(default=0.01, ge=0, le=999_999.9999, allow_inf_nan=False)
    reference_field: StrictStr | None = Field(default=None, min_length=1)
    reference_target_field: StrictStr | None = Field(default=None, min_length=1)


def _one_line(err: ValidationError, where: str) -> RuleSetError:
    problem = err.errors()[0]
    key = ".".join(str(p) for p in problem["loc"])
    value = problem.get("input")
    return RuleSetError(f"{where}.{key}: {problem['msg'].lower()} (got {value!r})")


def parse_aggregation(
    data: Any, origin: str, rule_types: dict[str, str]
) -> tuple[AggregationRule, ...]:
    """The `aggregation:` list, checked against the matching rules' fields (`rule_types`:
    field -> match type, RANGE / DATE_RANGE winning as in mapping)."""
    if data is None:
        return ()
    where = f"{origin}: aggregation"
    if not isinstance(data, list) or not data:
        raise RuleSetError(f"{where}: expected a list of aggregations (name, many_side, ...)")
    if len(data) > MAX_AGGREGATIONS:
        raise RuleSetError(f"{where}: at most {MAX_AGGREGATIONS} aggregations")
    rules: list[AggregationRule] = []
    for i, raw in enumerate(data, start=1):
        here = f"{where}[{i}]"
        if not isinstance(raw, dict):
            raise RuleSetError(f"{here}: expected a mapping with name, many_side, group_by, ...")
        unknown = [k for k in raw if k not in _AggregationShape.model_fields]
        if unknown:
            _unknown_key(str(unknown[0]), tuple(_AggregationShape.model_fields), here)
        try:
            shape = _AggregationShape.model_validate(raw)
        except ValidationError as err:
            raise _one_line(err, here) from None
        if (shape.reference_field is None) != (shape.reference_target_field is None):
            raise RuleSetError(
                f"{here}: give reference_field and reference_target_field together (the one "
                "side's free text and the many side's identifier it quotes)"
            )
        for name in shape.group_by:
            if rule_types.get(name) not in ("FUZZY", "EXACT"):
                raise RuleSetError(
                    f"{here}.group_by: {name!r} is no field of a FUZZY or EXACT matching rule "
                    "(group_by fields are target-vocabulary text compared by those rules)"
                )
        if len(set(shape.group_by)) != len(shape.group_by):
            raise RuleSetError(f"{here}.group_by: a field is named twice")
        if rule_types.get(shape.amount_field) != "RANGE":
            raise RuleSetError(
                f"{here}.amount_field: {shape.amount_field!r} is no field of a RANGE matching rule"
            )
        if rule_types.get(shape.date_field) != "DATE_RANGE":
            raise RuleSetError(
                f"{here}.date_field: {shape.date_field!r} is no field of a DATE_RANGE matching rule"
            )
        if any(r.name == shape.name.strip() for r in rules):
            raise RuleSetError(f"{here}.name: {shape.name!r} is used twice")
        rules.append(
            AggregationRule(
                name=shape.name.strip(),
                many_side=shape.many_side,
                group_by=tuple(shape.group_by),
                amount_field=shape.amount_field,
                date_field=shape.date_field,
                date_window_days=float(shape.date_window_days),
                max_group_size=shape.max_group_size,
                tolerance=round(float(shape.tolerance), 4),
                reference_field=shape.reference_field,
                reference_target_field=shape.reference_target_field,
            )
        )
    return tuple(rules)
