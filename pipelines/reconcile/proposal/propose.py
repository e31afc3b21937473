"""The proposal itself: a rule set for two typed frames (`propose_from_frames`) or two files
(`propose_rule_set`), with the evidence for every mapping and rule in its description.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.ingest.column_schema import ColumnSchema, FileSchema
from pipelines.reconcile.proposal.aggregate import propose_aggregation
from pipelines.reconcile.proposal.columns import _profile
from pipelines.reconcile.proposal.constants import MATCH_THRESHOLD, MIN_SCORE, NAME_WEIGHT
from pipelines.reconcile.proposal.evidence import _value_evidence
from pipelines.reconcile.proposal.mappings import _assign, _Mapping, _plan_mapping
from pipelines.reconcile.proposal.matching import _Rule, _rule_for
from pipelines.reconcile.proposal.names import _name_scores
from pipelines.reconcile.rules import RuleSet, RuleSetError, parse_rule_set
from resources.embedder import Embedder


def _fmt_names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


def propose_from_frames(
    source: pl.DataFrame,
    target: pl.DataFrame,
    source_schema: Iterable[ColumnSchema],
    target_schema: Iterable[ColumnSchema],
    *,
    embedder: Embedder,
    name: str = "ai:source-vs-target",
) -> RuleSet:
    """Propose field mappings and matching rules for two typed frames and their schemas.

    `source` and `target` are typed frames as `pipelines.ingest.profiling.convert` makes them
    (`_row_number` and `_valid` are ignored); the schemas are `detect_schema`'s output for the
    same frames. `embedder` embeds the column names (`EmbedderResource().embedder()`). Raises
    `RuleSetError` when no matching rule can be derived. The result reads back unchanged
    through `parse_rule_set(rule_set.content())`.
    """
    s_cols, t_cols = _profile(source, source_schema), _profile(target, target_schema)
    if not s_cols or not t_cols:
        raise RuleSetError(f"{name}: a file without data columns cannot be reconciled")
    names = _name_scores(s_cols, t_cols, embedder)
    evidence = [[_value_evidence(s, t) for t in t_cols] for s in s_cols]
    profiles = np.array([[e.score for e in row] for row in evidence])
    scores = NAME_WEIGHT * names + (1 - NAME_WEIGHT) * profiles
    mappings = [
        _Mapping(s_cols[i], t_cols[j], float(scores[i, j]), float(names[i, j]), evidence[i][j])
        for i, j in _assign(scores)
    ]
    rules: list[_Rule] = []
    for m in mappings:
        _plan_mapping(m)
        rule = _rule_for(m)
        if rule is not None:
            rules.append(rule)
    rules.sort(key=lambda r: r.order)
    # may add the amounts' RANGE rule when sums of several records explain them
    aggregation, aggregation_lines = propose_aggregation(source, target, mappings, rules)
    mapped_s = {m.source.name for m in mappings}
    mapped_t = {m.target.name for m in mappings}
    lines = [
        f"Proposed from the data, no rules file: score = {NAME_WEIGHT} x name similarity "
        f"(MiniLM embedding + rapidfuzz) + {1 - NAME_WEIGHT:.2f} x value profile; one-to-one "
        f"assignment, pairs below {MIN_SCORE} left out.",
        "Mappings:",
    ]
    for m in mappings:
        extra = f"; {m.note}" if m.note else ""
        lines.append(
            f"- {m.source.name!r} -> {m.target.name!r} {m.transformation}: score {m.score:.2f} "
            f"(name {m.name_score:.2f}, values {m.evidence.score:.2f}: {m.evidence.facts}{extra})"
        )
    for i, s in enumerate(s_cols):
        if s.name not in mapped_s:
            j = int(np.argmax(scores[i])) if len(t_cols) else 0
            lines.append(f"- {s.name!r} not mapped (best {t_cols[j].name!r} at {scores[i, j]:.2f})")
    unmapped_t = [t.name for t in t_cols if t.name not in mapped_t]
    lines.append(f"Target columns without a source: {_fmt_names(unmapped_t)}.")
    lines.append("Rules:")
    lines += [f"- {r.mapping.target.name!r} {r.match_type}: {r.why}" for r in rules]
    ruled = {r.mapping.target.name for r in rules}
    without = [m.target.name for m in mappings if m.target.name not in ruled]
    lines.append(f"Mapped but not matched on: {_fmt_names(without)}.")
    lines += aggregation_lines
    if not any(r.weight > 0 for r in rules):
        raise RuleSetError(
            f"{name}: no matching rule could be proposed (no column pair with enough value "
            "overlap); write a rules file and pass --rules\n" + "\n".join(lines)
        )
    data: dict[str, Any] = {
        "name": name,
        "description": "\n".join(lines),
        "match_threshold": MATCH_THRESHOLD,
        "field_mappings": [
            {
                "source_field": m.source.name,
                "target_field": m.target.name,
                "transformation_type": m.transformation,
                **({"transformation_config": m.config} if m.config else {}),
            }
            for m in mappings
        ],
        "matching_rules": [r.as_data() for r in rules],
        **({"aggregation": [aggregation]} if aggregation else {}),
    }
    return replace(parse_rule_set(data, name), is_ai_generated=True)


def _read_typed(path: Path) -> tuple[pl.DataFrame, FileSchema]:
    from pipelines.ingest.profiling import profile
    from pipelines.ingest.readers import FileFormatError, read_table

    if not path.is_file():
        raise RuleSetError(f"{path}: no such file")
    try:
        frame = read_table(path, path.name).frame
    except FileFormatError as err:
        raise RuleSetError(str(err)) from None
    profiled = profile(frame)
    return profiled.conversion.frame, profiled.schema


def propose_rule_set(source_path: Path, target_path: Path, *, embedder: Embedder) -> RuleSet:
    """Propose a rule set for two files (read, profiled and typed as the file stage does).

    Named ``ai:<source stem>-vs-<target stem>``; see `propose_from_frames`.
    """
    source_path, target_path = Path(source_path), Path(target_path)
    source, source_schema = _read_typed(source_path)
    target, target_schema = _read_typed(target_path)
    return propose_from_frames(
        source,
        target,
        source_schema,
        target_schema,
        name=f"ai:{source_path.stem}-vs-{target_path.stem}",
        embedder=embedder,
    )
