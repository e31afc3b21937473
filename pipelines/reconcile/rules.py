"""Rule sets: the YAML a person writes, its validation, and its versions in the database.

A rule set mirrors the documented tables `rule_sets`, `field_mappings` and `matching_rules`:

```yaml
name: bank-vs-ledger
description: Bank export against the general ledger
match_threshold: 0.9          # Splink match probability needed to accept a pair (default 0.8)
field_mappings:               # source column -> target vocabulary
  - {source_field: Reference, target_field: reference, transformation_type: UPPERCASE}
  - {source_field: Value Date, target_field: date, transformation_type: DATE_FORMAT,
     transformation_config: {format: dd/MM/yyyy}}
matching_rules:               # fields named in the target's vocabulary
  - {name: reference, match_type: EXACT, fields: [reference]}
  - {name: amount, match_type: RANGE, fields: [amount], tolerance: 0.01}
  - {name: date, match_type: DATE_RANGE, fields: [date], tolerance: 3}
  - {name: payee, match_type: FUZZY, fields: [counterparty], threshold: 0.85, weight: 0.5}
severity: {...}               # optional, see pipelines.reconcile.rule_shapes.SeverityPolicy
```

Meaning of the numbers (the same everywhere in the engine):
- `weight` (0-1, default 1): the rule's share of a pair's deterministic score (the weighted
  mean of the rules' similarities, stored as `match_score` of EXACT matches and used to rank
  candidates). Weight 0 keeps a rule out of linkage; it is still checked for mismatches.
- `threshold` (FUZZY only, 0-1): Jaro-Winkler similarity at or above which two strings agree.
- `tolerance` (RANGE: absolute numeric difference; DATE_RANGE: days): a difference up to the
  tolerance is agreement; a matched pair beyond it is an AMOUNT_MISMATCH / DATE_MISMATCH.

Storing a version (`pipelines.reconcile.rule_store`) writes the three tables. The same name
with different content becomes version n+1 (older versions stay, inactive); the same content
again is the existing version.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.reconcile.aggregation_rules import AggregationRule, parse_aggregation
from pipelines.reconcile.normalize import TextNormalization
from pipelines.reconcile.rule_shapes import (
    CONFIG_KEYS,
    RuleSetError,
    SeverityPolicy,
    _MappingShape,
    _refuse_unknown,
    _RuleSetShape,
    _RuleShape,
    _SeverityShape,
    _unknown_key,
    normalization_content,
    parse_text_normalization,
)
from resources.safe_yaml import load_yaml

TRANSFORMATIONS = (
    "DIRECT",
    "UPPERCASE",
    "LOWERCASE",
    "TRIM",
    "DATE_FORMAT",
    "CURRENCY_CONVERSION",
)
MATCH_TYPES = ("EXACT", "FUZZY", "RANGE", "DATE_RANGE")
# rule_sets.name and matching_rules.name are VARCHAR(255) (migration 0001)
MAX_NAME = 255
# a DIRECT amount's debit/credit marks (`debit_credit_field`), compared trimmed, upper-case:
# SWIFT and most exports (D/C, DR/CR), German ones (S/H: Soll/Haben), spelt out
DEBIT_VALUES = ("D", "DR", "DEBIT", "DB", "S", "SOLL", "-")
CREDIT_VALUES = ("C", "CR", "CREDIT", "H", "HABEN", "+")


def _check_signing(config: dict[str, Any], where: str) -> None:
    """A DIRECT mapping's signing options: columns named by text, marks listed as text."""
    for key in ("debit_credit_field", "minus_field"):
        if key in config and (not isinstance(config[key], str) or not config[key].strip()):
            raise RuleSetError(f"{where}.transformation_config.{key}: expected a column name")
    for key in ("debit_values", "credit_values"):
        if key not in config:
            continue
        if "debit_credit_field" not in config:
            raise RuleSetError(f"{where}.transformation_config.{key} needs `debit_credit_field`")
        values = config[key]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v.strip() for v in values)
        ):
            raise RuleSetError(
                f"{where}.transformation_config.{key}: expected a list of marks such as [DR, D]"
            )


DEFAULT_MATCH_THRESHOLD = 0.8
# a difference equal to the tolerance is agreement, whatever floating point makes of 100.01-100
TOLERANCE_EPSILON = 1e-9


# transformation_config keys each transformation accepts


@dataclass(frozen=True)
class FieldMapping:
    """One source column brought onto a target field, with its transformation."""

    source_field: str
    target_field: str
    transformation_type: str = "DIRECT"
    transformation_config: dict[str, Any] | None = None


@dataclass(frozen=True)
class MatchingRule:
    """One matching rule over target-vocabulary fields."""

    name: str
    match_type: str
    fields: tuple[str, ...]
    weight: float = 1.0
    threshold: float | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class RuleSet:
    """A whole rule set as written (and as stored, once it has an id)."""

    name: str
    field_mappings: tuple[FieldMapping, ...]
    matching_rules: tuple[MatchingRule, ...]
    description: str | None = None
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    severity: dict[str, Any] = field(default_factory=dict)
    is_ai_generated: bool = False
    text_normalization: TextNormalization = field(default_factory=TextNormalization)
    aggregation: tuple[AggregationRule, ...] = ()

    def content(self) -> dict[str, Any]:
        """The rule set as plain data (what is hashed, stored and printed as YAML)."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "match_threshold": self.match_threshold,
            "field_mappings": [_compact(asdict(m)) for m in self.field_mappings],
            "matching_rules": [
                _compact({**asdict(r), "fields": list(r.fields)}) for r in self.matching_rules
            ],
        }
        if self.severity:
            data["severity"] = self.severity
        if self.text_normalization != TextNormalization():
            data["text_normalization"] = normalization_content(self.text_normalization)
        if self.aggregation:  # absent: the same content (and hash) as before aggregation existed
            data["aggregation"] = [a.content() for a in self.aggregation]
        return data

    def content_sha256(self) -> str:
        """Hash of everything that changes results (not the description)."""
        content = {k: v for k, v in self.content().items() if k != "description"}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.content(), sort_keys=False, allow_unicode=True)

    def target_field_for(self, source_field: str) -> str | None:
        for mapping in self.field_mappings:
            if mapping.source_field == source_field:
                return mapping.target_field
        return None

    def matching_fields(self) -> list[str]:
        """Every target field a matching rule names, in rule order, without repeats."""
        return list(dict.fromkeys(f for r in self.matching_rules for f in r.fields))


@dataclass(frozen=True)
class StoredRuleSet:
    """A rule set version in the database."""

    id: int
    version: int
    created: bool
    rule_set: RuleSet


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _number(value: Any, where: str, *, low: float, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleSetError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RuleSetError(f"{where}: {value!r} is not a finite number")
    if number < low or (high is not None and number > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise RuleSetError(f"{where}: {number:g} is impossible; it must be {span}")
    return number


def parse_rule_set(data: Any, origin: str = "rule set") -> RuleSet:
    """Validate plain data (parsed YAML) into a RuleSet, naming the first problem exactly."""
    if not isinstance(data, dict):
        raise RuleSetError(
            f"{origin}: expected a mapping with name, field_mappings, matching_rules"
        )
    _refuse_unknown(_RuleSetShape, data, origin)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleSetError(f"{origin}: `name` is required")
    if len(name) > MAX_NAME:
        raise RuleSetError(f"{origin}: `name` has {len(name)} characters; at most {MAX_NAME}")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise RuleSetError(f"{origin}: description must be text, got {description!r}")
    normalization = parse_text_normalization(data.get("text_normalization"), origin)
    mappings = []
    for i, raw in enumerate(data.get("field_mappings") or [], start=1):
        where = f"{origin}: field_mappings[{i}]"
        _refuse_unknown(_MappingShape, raw, where)
        if not isinstance(raw, dict) or not raw.get("source_field") or not raw.get("target_field"):
            raise RuleSetError(f"{where}: needs source_field and target_field")
        kind = str(raw.get("transformation_type") or "DIRECT").upper()
        if kind not in TRANSFORMATIONS:
            raise RuleSetError(
                f"{where}: unknown transformation_type {raw.get('transformation_type')!r}; "
                f"use one of {', '.join(TRANSFORMATIONS)}"
            )
        config = raw.get("transformation_config")
        if config is not None and not isinstance(config, dict):
            raise RuleSetError(f"{where}: transformation_config must be a mapping")
        for key in config or {}:
            if key not in CONFIG_KEYS[kind]:
                _unknown_key(str(key), CONFIG_KEYS[kind], f"{where}.transformation_config ({kind})")
        if kind == "DIRECT" and config:
            _check_signing(config, where)
        if kind == "CURRENCY_CONVERSION":
            config = config or {}
            if not (config.get("rates") or config.get("rates_file") or config.get("rate")):
                raise RuleSetError(
                    f"{where}: CURRENCY_CONVERSION needs `rates` ({{EUR: 1.08, ...}}), `rate` "
                    "with `from`, or `rates_file` in transformation_config"
                )
        mappings.append(
            FieldMapping(str(raw["source_field"]), str(raw["target_field"]), kind, config)
        )
    targets = [m.target_field for m in mappings]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise RuleSetError(f"{origin}: target field(s) mapped twice: {', '.join(repeated)}")
    rules = []
    raw_rules = data.get("matching_rules") or []
    if not raw_rules:
        raise RuleSetError(f"{origin}: at least one matching rule is needed")
    for i, raw in enumerate(raw_rules, start=1):
        where = f"{origin}: matching_rules[{i}]"
        if not isinstance(raw, dict):
            raise RuleSetError(f"{where}: expected a mapping")
        _refuse_unknown(_RuleShape, raw, where)
        kind = str(raw.get("match_type") or "").upper()
        if kind not in MATCH_TYPES:
            raise RuleSetError(
                f"{where}: unknown match_type {raw.get('match_type')!r}; "
                f"use one of {', '.join(MATCH_TYPES)}"
            )
        fields = raw.get("fields")
        if isinstance(fields, str):
            fields = [fields]
        if not fields or not all(isinstance(f, str) and f for f in fields):
            raise RuleSetError(f"{where}: `fields` must list at least one field name")
        # rounded as the documented columns store them: DECIMAL(3,2) and DECIMAL(10,4)
        weight = round(_number(raw.get("weight", 1.0), f"{where}: weight", low=0, high=1), 2)
        threshold = raw.get("threshold")
        tolerance = raw.get("tolerance")
        if kind == "FUZZY" and threshold is None:
            threshold = 0.85
        if threshold is not None:
            threshold = round(_number(threshold, f"{where}: threshold", low=0, high=1), 2)
        if kind in ("RANGE", "DATE_RANGE") and tolerance is None:
            raise RuleSetError(f"{where}: {kind} needs a `tolerance`")
        if tolerance is not None:
            tolerance = round(
                _number(tolerance, f"{where}: tolerance", low=0, high=999_999.9999), 4
            )
        rule_name = str(raw.get("name") or f"{kind.lower()}_{'_'.join(fields)}")
        if len(rule_name) > MAX_NAME:
            raise RuleSetError(f"{where}: name has {len(rule_name)} characters; at most {MAX_NAME}")
        rules.append(MatchingRule(rule_name, kind, tuple(fields), weight, threshold, tolerance))
    if not any(r.weight > 0 for r in rules):
        raise RuleSetError(f"{origin}: every matching rule has weight 0; nothing would link")
    threshold = _number(
        data.get("match_threshold", DEFAULT_MATCH_THRESHOLD),
        f"{origin}: match_threshold",
        low=0,
        high=1,
    )
    severity = data.get("severity") or {}
    if not isinstance(severity, dict):
        raise RuleSetError(f"{origin}: severity must be a mapping")
    _refuse_unknown(_SeverityShape, severity, f"{origin}: severity")
    SeverityPolicy.from_config(severity)  # refuse a bad policy before any work
    rank = {"RANGE": 0, "DATE_RANGE": 0, "EXACT": 1, "FUZZY": 2}
    rule_types: dict[str, str] = {}
    for rule in sorted(rules, key=lambda r: rank[r.match_type]):
        for field_name in rule.fields:
            rule_types.setdefault(field_name, rule.match_type)
    aggregation = parse_aggregation(data.get("aggregation"), origin, rule_types)
    return RuleSet(
        name=name.strip(),
        description=description,
        text_normalization=normalization,
        field_mappings=tuple(mappings),
        matching_rules=tuple(rules),
        match_threshold=threshold,
        severity=severity,
        aggregation=aggregation,
    )


def load_rule_set_file(path: Path) -> RuleSet:
    """Read and validate a rule set YAML file."""
    if not path.exists():
        raise RuleSetError(f"rules file {path} does not exist")
    return parse_rule_set(load_yaml(path, RuleSetError), str(path))


def check_against_columns(
    rule_set: RuleSet, source_columns: Iterable[str], target_columns: Iterable[str]
) -> None:
    """Refuse a rule set that names columns the files do not have, or links nothing."""
    source = list(source_columns)
    target = list(target_columns)
    missing_source = [
        m.source_field for m in rule_set.field_mappings if m.source_field not in source
    ]
    if missing_source:
        raise RuleSetError(
            f"rule set {rule_set.name!r}: source column(s) {', '.join(missing_source)} not in the "
            f"source file (it has: {', '.join(source)})"
        )
    mapped = {m.target_field for m in rule_set.field_mappings}
    source_vocabulary = mapped | {c for c in source if rule_set.target_field_for(c) is None}
    for rule in rule_set.matching_rules:
        for name in rule.fields:
            if name not in target:
                raise RuleSetError(
                    f"rule set {rule_set.name!r}: matching rule {rule.name!r} names field "
                    f"{name!r}, which the target file does not have (it has: {', '.join(target)})"
                )
            if name not in source_vocabulary:
                raise RuleSetError(
                    f"rule set {rule_set.name!r}: matching rule {rule.name!r} names field "
                    f"{name!r}, which no source column provides; add a field mapping onto it"
                )
    for mapping in rule_set.field_mappings:
        config = mapping.transformation_config or {}
        currency_field = config.get("currency_field")
        if currency_field and currency_field not in source:
            raise RuleSetError(
                f"rule set {rule_set.name!r}: currency_field {currency_field!r} of the mapping "
                f"onto {mapping.target_field!r} is not a source column"
            )
