"""The feeds file a data engineer writes: its YAML, validated into `FeedSpec`s.

Read with the limits of `resources.safe_yaml` (size, expansion, depth), then held to pydantic
shapes as strict as the rules file's (`rule_shapes`): an unknown key, text that is not text, a
number that is not a finite number (NaN, .inf, true), an organization or data
source that cannot be exactly one landing-zone folder is one `FeedError` line naming the file
and the key path (`feeds.yaml: feeds[2].checks.history (feed 'x'): expected a whole number,
got nan`). Every key and value is checked before anything is written, and each feed's rules
file is loaded (and so validated) too. The layout of the file is in `pipelines.reconcile.feeds`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.ingest import landing
from pipelines.reconcile.rules import RuleSetError, load_rule_set_file
from resources.errors import ReconError
from resources.safe_yaml import load_yaml

# business-date patterns run on `regex` (its matcher does not backtrack exponentially on
# nested repeats such as `(\d+)+Z`, which took `re` 1.4 s on 24 digits and 4x more for each
# two more), and with this limit on one file name besides
PATTERN_SECONDS = 0.5
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
DEFAULT_DATE_PATTERN = r"(?P<date>\d{4}-?\d{2}-?\d{2})"
DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")
DEFAULT_CHECKS = {"history": 7, "match_rate_drop": 10.0, "exception_growth": 2.0}
DEFAULT_CARRY_FORWARD_DAYS = 10


class FeedError(ReconError):
    """A feeds file or feed partition problem a person can act on (one line)."""


@dataclass(frozen=True)
class BusinessDateRule:
    """How a feed's files map to a business date."""

    source: str = "filename"  # "filename" or "column"
    pattern: str = DEFAULT_DATE_PATTERN
    formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    source_column: str | None = None
    target_column: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.source == "column":
            return {
                "from": "column",
                "source_column": self.source_column,
                "target_column": self.target_column,
            }
        return {"from": "filename", "pattern": self.pattern, "formats": list(self.formats)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BusinessDateRule:
        if data.get("from") == "column":
            return cls(
                "column", source_column=data["source_column"], target_column=data["target_column"]
            )
        return cls(
            "filename",
            data.get("pattern", DEFAULT_DATE_PATTERN),
            tuple(data.get("formats") or DEFAULT_DATE_FORMATS),
        )

    def from_filename(self, filename: str) -> date | None:
        """The date the file name carries, or None when it carries none."""
        try:  # a pattern that backtracks (`(\d+)+Z`) must not hang the sensor or a backfill
            match = regex.search(self.pattern, filename, timeout=PATTERN_SECONDS)
        except TimeoutError:
            raise FeedError(
                f"business_date.pattern {self.pattern[:80]!r} took over {PATTERN_SECONDS} s on "
                f"the file name {filename[:120]!r}; simplify it (no nested repeats)"
            ) from None
        if match is None:
            return None
        if "date" in match.groupdict():
            text = match.group("date")
        else:
            text = match.group(1) if match.re.groups else match.group(0)
        for fmt in self.formats:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        return None


@dataclass(frozen=True)
class FeedSpec:
    """One feed as declared in the feeds file (validated)."""

    name: str
    organization: str
    source: str
    target: str
    rules: Path
    business_date: BusinessDateRule
    checks: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CHECKS))
    description: str | None = None
    # a record left unmatched stays open this many days for later dates to match (0: never)
    carry_forward_days: int = DEFAULT_CARRY_FORWARD_DAYS

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "organization": self.organization,
            "source": self.source,
            "target": self.target,
            "rules": str(self.rules),
            "business_date": self.business_date.as_json(),
            "checks": self.checks,
            "description": self.description,
            "carry_forward_days": self.carry_forward_days,
        }


# ------------------------------------------------------------------ the shape of a feeds file
# As strict as a rules file (`rule_shapes`): no unknown key anywhere, text is text (never a
# number or a list turned into one), numbers are finite numbers (true is not 1, NaN is not a
# number), and every problem is one line naming the file and the key path.


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _DateShape(_Shape):
    from_: Literal["filename", "column"] = Field("filename", alias="from")
    pattern: str | None = None
    format: list[str] | None = None
    formats: list[str] | None = None
    column: str | None = None
    source_column: str | None = None
    target_column: str | None = None

    @field_validator("format", "formats", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class _ChecksShape(_Shape):
    history: int = Field(int(DEFAULT_CHECKS["history"]), gt=0, le=3660)
    match_rate_drop: float = Field(DEFAULT_CHECKS["match_rate_drop"], gt=0)
    exception_growth: float = Field(DEFAULT_CHECKS["exception_growth"], gt=0)


class _FeedShape(_Shape):
    name: str
    organization: str
    source: str
    target: str
    rules: str
    business_date: _DateShape | None = None
    checks: _ChecksShape | None = None
    description: str | None = None
    carry_forward_days: int = Field(DEFAULT_CARRY_FORWARD_DAYS, ge=0, le=366)


class _FeedsFileShape(_Shape):
    feeds: list[_FeedShape]


_PROBLEMS = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "greater_than": "must be a positive number",
    "greater_than_equal": "must not be negative",
    "less_than_equal": "is too large",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _key_path(loc: tuple[Any, ...]) -> str:
    """`('feeds', 0, 'checks', 'history')` as `feeds[1].checks.history` (1-based, as rules)."""
    text = ""
    for part in loc:
        text += f"[{part + 1}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shape_error(origin: str, data: Any, err: ValidationError) -> FeedError:
    """The first problem pydantic found, as one line naming the file and the key path."""
    problem = err.errors()[0]
    loc = tuple(problem["loc"])
    where = f"{origin}: {_key_path(loc)}"
    if loc[:1] == ("feeds",) and len(loc) > 1 and isinstance(loc[1], int):
        raw = data["feeds"][loc[1]]
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and FEED_NAME.match(name) and len(loc) > 2:
            where += f" (feed {name!r})"
    kind = problem["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        shape = {"business_date": _DateShape, "checks": _ChecksShape}.get(
            str(loc[-2]) if len(loc) > 2 else "",
            _FeedShape if len(loc) > 2 else _FeedsFileShape,
        )
        accepted = [field.alias or name for name, field in shape.model_fields.items()]
        guess = difflib.get_close_matches(key, accepted, n=1, cutoff=0.5)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        parent = _key_path(loc[:-1]) or "the top level"
        return FeedError(
            f"{origin}: {parent}: unknown key {_shown(loc[-1])}; accepted: "
            f"{', '.join(accepted)}{hint}"
        )
    if kind == "missing":
        return FeedError(f"{where}: is required")
    if kind == "literal_error":
        return FeedError(
            f"{where}: must be {problem['ctx']['expected']}, not {_shown(problem['input'])}"
        )
    message = _PROBLEMS.get(kind, problem["msg"].lower())
    return FeedError(f"{where}: {message}, got {_shown(problem['input'])}")


def _date_rule(raw: _DateShape | None, at: Callable[[str], str]) -> BusinessDateRule:
    """The business-date rule of a feed; `at(key)` says where a key is, for messages."""
    if raw is None:
        return BusinessDateRule()
    if raw.from_ == "filename":
        extra = [k for k in ("column", "source_column", "target_column") if getattr(raw, k)]
        if extra:
            raise FeedError(f"{at('business_date')}: {extra[0]} needs `from: column`")
        pattern = raw.pattern if raw.pattern is not None else DEFAULT_DATE_PATTERN
        try:
            regex.compile(pattern)
        except regex.error as err:
            raise FeedError(
                f"{at('business_date.pattern')}: not a regular expression: {err}"
            ) from None
        if raw.format is not None and raw.formats is not None:
            raise FeedError(f"{at('business_date')}: give `format` or `formats`, not both")
        formats = raw.format if raw.format is not None else raw.formats
        if formats is not None and (not formats or not all("%" in f for f in formats)):
            raise FeedError(
                f"{at('business_date.format')}: expected strptime formats such as '%Y-%m-%d', "
                f"got {_shown(formats)}"
            )
        return BusinessDateRule("filename", pattern, tuple(formats or DEFAULT_DATE_FORMATS))
    extra = [k for k in ("pattern", "format", "formats") if getattr(raw, k) is not None]
    if extra:
        raise FeedError(f"{at('business_date')}: {extra[0]} needs `from: filename`")
    source = raw.source_column or raw.column
    target = raw.target_column or raw.column
    if not source or not target:
        raise FeedError(
            f"{at('business_date')}: from column needs `column` (both sides) or "
            "`source_column` and `target_column`"
        )
    return BusinessDateRule("column", source_column=source, target_column=target)


def parse_feeds(data: Any, origin: str, base: Path) -> list[FeedSpec]:
    """Validate a feeds document; every problem is one `FeedError` naming the key path."""
    if not isinstance(data, dict) or not isinstance(data.get("feeds"), list):
        raise FeedError(f"{origin}: expected a mapping with a `feeds:` list")
    try:
        shape = _FeedsFileShape.model_validate(data)
    except ValidationError as err:
        raise _shape_error(origin, data, err) from None
    specs: list[FeedSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(shape.feeds, start=1):
        if not FEED_NAME.match(raw.name):
            raise FeedError(
                f"{origin}: feeds[{index}].name: {_shown(raw.name)} must be lowercase letters, "
                "digits, '-', '_' or '.' (it is a Dagster partition key)"
            )

        def at(key: str = "", index: int = index, name: str = raw.name) -> str:
            return f"{origin}: feeds[{index}]{'.' if key else ''}{key} (feed {name!r})"

        if raw.name in seen:
            raise FeedError(f"{at()}: declared twice")
        seen.add(raw.name)
        names = {}
        for key in ("organization", "source", "target"):
            value = getattr(raw, key)
            what = "organization" if key == "organization" else "data source"
            try:
                names[key] = landing.folder_name(value, what)
            except ReconError as err:
                # the name shortened: a 5,000-character name is not one line a person reads
                reason = str(err).replace(repr(value), _shown(value))
                raise FeedError(f"{at(key)}: {reason}") from None
        if names["source"] == names["target"]:
            raise FeedError(f"{at()}: source and target must be different data sources")
        if not raw.rules.strip():
            raise FeedError(f"{at('rules')}: is required")
        rules = Path(raw.rules)
        rules = rules if rules.is_absolute() else base / rules
        if not rules.is_file():
            raise FeedError(f"{at('rules')}: rules file {rules} does not exist")
        checks = (raw.checks or _ChecksShape()).model_dump()
        specs.append(
            FeedSpec(
                name=raw.name,
                organization=names["organization"],
                source=names["source"],
                target=names["target"],
                rules=rules.resolve(),
                business_date=_date_rule(raw.business_date, at),
                checks={**checks, "history": int(checks["history"])},
                description=raw.description,
                carry_forward_days=raw.carry_forward_days,
            )
        )
    return specs


def load_feeds_file(path: Path) -> list[FeedSpec]:
    """Read and validate a feeds YAML file (and each feed's rules file)."""
    if not path.is_file():
        raise FeedError(f"{path}: no such feeds file")
    specs = parse_feeds(load_yaml(path, FeedError), str(path), path.parent)
    for spec in specs:
        try:
            load_rule_set_file(spec.rules)
        except RuleSetError as err:
            raise FeedError(f"{path}: feed {spec.name!r}: {err}") from None
    return specs
