"""The shape of a rules file: which keys are accepted where, and `text_normalization`.

pydantic models accept any value but no unknown key (`extra="forbid"`); `pipelines.reconcile.
rules` checks the values. An unknown key anywhere (top level, a field mapping, its
`transformation_config` for that transformation, a matching rule, `severity`,
`text_normalization`) is refused with one line naming the key, where it is, the accepted keys
and the closest one. `SeverityPolicy` reads and checks the `severity:` section.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pipelines.reconcile.normalize import TextNormalization
from resources.errors import ReconError

CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    # an amount signed by a debit/credit column, or a credit column less a debit one
    "DIRECT": ("debit_credit_field", "debit_values", "credit_values", "minus_field"),
    "UPPERCASE": (),
    "LOWERCASE": (),
    "TRIM": ("characters",),
    "DATE_FORMAT": ("format", "input_format", "output_format"),
    "CURRENCY_CONVERSION": (
        "rates",
        "rate",
        "from",
        "to",
        "rates_file",
        "currency_field",
        "date_field",
    ),
}
MAX_EQUIVALENTS = 500


class RuleSetError(ReconError):
    """A rule set that cannot be used, with what to change."""


# ---------------------------------------------------------------- the shape of a rules file
# pydantic models that accept any value but no unknown key (values are checked below, with
# messages that say what to write); `extra="forbid"` names every key that is not accepted.


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _MappingShape(_Shape):
    source_field: Any = None
    target_field: Any = None
    transformation_type: Any = None
    transformation_config: Any = None


class _RuleShape(_Shape):
    name: Any = None
    match_type: Any = None
    fields: Any = None
    weight: Any = None
    threshold: Any = None
    tolerance: Any = None


class _SeverityShape(_Shape):
    amount_absolute: Any = None
    amount_relative: Any = None
    date_days: Any = None
    missing_default: Any = None
    duplicate: Any = None
    validation: Any = None


class _NormalizationShape(_Shape):
    enabled: Any = None
    legal_forms: Any = None
    equivalents: Any = None


class _RuleSetShape(_Shape):
    name: Any = None
    description: Any = None
    match_threshold: Any = None
    text_normalization: Any = None
    field_mappings: Any = None
    matching_rules: Any = None
    severity: Any = None
    aggregation: Any = None  # checked by pipelines.reconcile.aggregation_rules


def _refuse_unknown(shape: type[BaseModel], value: Any, where: str) -> None:
    """One line naming the first key `shape` does not accept, the accepted keys and a guess."""
    if not isinstance(value, dict):
        return  # not a mapping: the value checks say what is expected
    try:
        shape.model_validate(value)
    except ValidationError as err:
        for problem in err.errors():
            if problem["type"] == "extra_forbidden":
                _unknown_key(str(problem["loc"][-1]), tuple(shape.model_fields), where)


def _unknown_key(key: str, accepted: tuple[str, ...], where: str) -> None:
    guess = difflib.get_close_matches(key, accepted, n=1, cutoff=0.5)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    allowed = ", ".join(accepted) if accepted else "none (leave it out)"
    raise RuleSetError(f"{where}: unknown key {key!r}; accepted: {allowed}{hint}")


def normalization_content(policy: TextNormalization) -> dict[str, Any]:
    """`text_normalization` as written in YAML and stored in `rule_sets.metadata`."""
    return {
        "enabled": policy.enabled,
        "legal_forms": policy.legal_forms,
        "equivalents": {k: list(v) for k, v in policy.equivalents.items()},
    }


def parse_text_normalization(data: Any, origin: str) -> TextNormalization:
    """The `text_normalization` section (absent: everything on, the built-in table)."""
    if data is None:
        return TextNormalization()
    where = f"{origin}: text_normalization"
    if not isinstance(data, dict):
        raise RuleSetError(f"{where}: expected a mapping with enabled, legal_forms, equivalents")
    _refuse_unknown(_NormalizationShape, data, where)
    flags = {}
    for key in ("enabled", "legal_forms"):
        value = data.get(key, True)
        if not isinstance(value, bool):
            raise RuleSetError(f"{where}.{key}: expected true or false, got {value!r}")
        flags[key] = value
    raw = data.get("equivalents") or {}
    if not isinstance(raw, dict):
        raise RuleSetError(f"{where}.equivalents: expected a mapping (canonical: [variants])")
    equivalents: dict[str, tuple[str, ...]] = {}
    count = 0
    for canonical, variants in raw.items():
        if isinstance(variants, str):
            variants = [variants]
        if (
            not isinstance(canonical, str)
            or not canonical.strip()
            or not isinstance(variants, list)
            or not all(isinstance(v, str) and v.strip() for v in variants)
        ):
            raise RuleSetError(
                f"{where}.equivalents: {canonical!r} must map a word to a list of words, "
                f"got {variants!r}"
            )
        count += len(variants) + 1
        if count > MAX_EQUIVALENTS:
            raise RuleSetError(f"{where}.equivalents: more than {MAX_EQUIVALENTS} words")
        equivalents[canonical.strip()] = tuple(v.strip() for v in variants)
    return TextNormalization(flags["enabled"], flags["legal_forms"], equivalents)


SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass(frozen=True)
class SeverityPolicy:
    """Thresholds for MEDIUM, HIGH and CRITICAL; anything below the first is LOW."""

    amount_absolute: tuple[float, float, float] = (10.0, 100.0, 1000.0)
    amount_relative: tuple[float, float, float] = (0.01, 0.05, 0.25)
    date_days: tuple[float, float, float] = (3.0, 10.0, 30.0)
    missing_default: str = "MEDIUM"
    duplicate: str = "MEDIUM"
    validation: str = "HIGH"

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> SeverityPolicy:
        """The default policy with a rule set's `severity:` overrides, checked."""
        config = config or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise RuleSetError(f"severity: unknown key(s) {unknown}; allowed: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in config.items():
            if key in ("missing_default", "duplicate", "validation"):
                if str(value).upper() not in SEVERITIES:
                    raise RuleSetError(f"severity.{key}: {value!r} is not one of {SEVERITIES}")
                values[key] = str(value).upper()
            else:
                try:
                    bands = tuple(float(v) for v in value)
                except (TypeError, ValueError):
                    bands = ()
                if len(bands) != 3 or list(bands) != sorted(bands) or bands[0] < 0:
                    raise RuleSetError(
                        f"severity.{key}: give three increasing thresholds (MEDIUM, HIGH, "
                        f"CRITICAL), got {value!r}"
                    )
                values[key] = bands
        return cls(**values)
