"""The feeds file a data engineer writes: its YAML, validated into `FeedSpec`s.

Read with the limits of `resources.safe_yaml` (size, expansion, depth); every key and value is
checked before anything is written, and each feed's rules file is loaded (and so validated)
too. The layout of the file is in `pipelines.reconcile.feeds`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipelines.ingest import landing
from pipelines.reconcile.rules import RuleSetError, load_rule_set_file
from resources.errors import ReconError
from resources.safe_yaml import load_yaml

FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
DEFAULT_DATE_PATTERN = r"(?P<date>\d{4}-?\d{2}-?\d{2})"
DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")
DEFAULT_CHECKS = {"history": 7, "match_rate_drop": 10.0, "exception_growth": 2.0}


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
        match = re.search(self.pattern, filename)
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
        }


def _date_rule(raw: Any, where: str) -> BusinessDateRule:
    if raw is None:
        return BusinessDateRule()
    if not isinstance(raw, dict):
        raise FeedError(f"{where}: business_date must be a mapping (from: filename | column)")
    kind = raw.get("from", "filename")
    if kind == "filename":
        pattern = str(raw.get("pattern", DEFAULT_DATE_PATTERN))
        try:
            re.compile(pattern)
        except re.error as err:
            raise FeedError(
                f"{where}: business_date.pattern is not a regular expression: {err}"
            ) from None
        formats = raw.get("format", raw.get("formats", DEFAULT_DATE_FORMATS))
        formats = (formats,) if isinstance(formats, str) else tuple(str(f) for f in formats)
        return BusinessDateRule("filename", pattern, formats)
    if kind == "column":
        both = raw.get("column")
        source, target = raw.get("source_column", both), raw.get("target_column", both)
        if not source or not target:
            raise FeedError(
                f"{where}: business_date from column needs `column` (both sides) or "
                "`source_column` and `target_column`"
            )
        return BusinessDateRule("column", source_column=str(source), target_column=str(target))
    raise FeedError(f"{where}: business_date.from must be filename or column, not {kind!r}")


def _checks(raw: Any, where: str) -> dict[str, float]:
    checks = dict(DEFAULT_CHECKS)
    if raw is None:
        return checks
    if not isinstance(raw, dict) or set(raw) - set(DEFAULT_CHECKS):
        raise FeedError(f"{where}: checks may set only {', '.join(DEFAULT_CHECKS)}")
    for key, value in raw.items():
        if not isinstance(value, int | float) or value <= 0:
            raise FeedError(f"{where}: checks.{key} must be a positive number, not {value!r}")
        checks[key] = float(value)
    checks["history"] = int(checks["history"])
    return checks


def parse_feeds(data: Any, origin: str, base: Path) -> list[FeedSpec]:
    """Validate a feeds document; every problem is one `FeedError` naming the feed and field."""
    if not isinstance(data, dict) or not isinstance(data.get("feeds"), list):
        raise FeedError(f"{origin}: expected a mapping with a `feeds:` list")
    specs: list[FeedSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["feeds"], start=1):
        where = f"{origin}: feed #{index}"
        if not isinstance(raw, dict):
            raise FeedError(f"{where}: expected a mapping")
        name = str(raw.get("name", ""))
        if not FEED_NAME.match(name):
            raise FeedError(
                f"{where}: name {name!r} must be lowercase letters, digits, '-', '_' or '.' "
                "(it is a Dagster partition key)"
            )
        where = f"{origin}: feed {name!r}"
        if name in seen:
            raise FeedError(f"{where}: declared twice")
        seen.add(name)
        unknown = set(raw) - {
            "name",
            "organization",
            "source",
            "target",
            "rules",
            "business_date",
            "checks",
            "description",
        }
        if unknown:
            raise FeedError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("organization", "source", "target", "rules"):
            if not raw.get(key):
                raise FeedError(f"{where}: `{key}` is required")
        if raw["source"] == raw["target"]:
            raise FeedError(f"{where}: source and target must be different data sources")
        rules = Path(str(raw["rules"]))
        rules = rules if rules.is_absolute() else base / rules
        if not rules.is_file():
            raise FeedError(f"{where}: rules file {rules} does not exist")
        specs.append(
            FeedSpec(
                name=name,
                organization=str(raw["organization"]),
                source=landing.safe_display_name(str(raw["source"])),
                target=landing.safe_display_name(str(raw["target"])),
                rules=rules.resolve(),
                business_date=_date_rule(raw.get("business_date"), where),
                checks=_checks(raw.get("checks"), where),
                description=raw.get("description"),
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
