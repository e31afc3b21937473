"""Rule-set versions in the database: store one (or find the identical one), load one back.

`store_rule_set` writes the documented tables `rule_sets`, `field_mappings` and
`matching_rules` for one organization: the same name with different content becomes version
n+1 (older versions stay, inactive), the same content again is the existing version; the
stored one becomes the active version. `load_stored_rule_set` rebuilds the `RuleSet` of a
version. The YAML, its shapes and validation are `pipelines.reconcile.rules`.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from pipelines.reconcile.aggregation_rules import AggregationRule
from pipelines.reconcile.rule_shapes import (
    RuleSetError,
    normalization_content,
    parse_text_normalization,
)
from pipelines.reconcile.rules import (
    DEFAULT_MATCH_THRESHOLD,
    FieldMapping,
    MatchingRule,
    RuleSet,
    StoredRuleSet,
)
from pipelines.work import audit


def store_rule_set(
    engine: sa.Engine, organization_id: int, rule_set: RuleSet, *, is_ai_generated: bool = False
) -> StoredRuleSet:
    """Write a rule set version (or find the identical one) and make it the active version."""
    digest = rule_set.content_sha256()
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
            {"k": f"rule_set:{organization_id}:{rule_set.name}"},
        )
        existing = conn.execute(
            sa.text(
                "SELECT id, version FROM rule_sets WHERE organization_id = :o AND name = :n "
                "AND content_sha256 = :h ORDER BY version DESC LIMIT 1"
            ),
            {"o": organization_id, "n": rule_set.name, "h": digest},
        ).first()
        if existing is not None:
            _activate(conn, organization_id, rule_set.name, existing.id)
            return StoredRuleSet(existing.id, existing.version, False, rule_set)
        version = conn.execute(
            sa.text(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM rule_sets "
                "WHERE organization_id = :o AND name = :n"
            ),
            {"o": organization_id, "n": rule_set.name},
        ).scalar_one()
        rule_set_id = conn.execute(
            sa.text(
                "INSERT INTO rule_sets (name, description, version, is_ai_generated, active, "
                "metadata, organization_id, content_sha256) VALUES (:n, :d, :v, :ai, TRUE, "
                "CAST(:m AS jsonb), :o, :h) RETURNING id"
            ),
            {
                "n": rule_set.name,
                "d": rule_set.description,
                "v": version,
                "ai": is_ai_generated,
                "m": json.dumps(
                    {
                        "match_threshold": rule_set.match_threshold,
                        "severity": rule_set.severity,
                        "text_normalization": normalization_content(rule_set.text_normalization),
                        # only when declared: metadata as before for a rule set without it
                        **(
                            {"aggregation": [a.content() for a in rule_set.aggregation]}
                            if rule_set.aggregation
                            else {}
                        ),
                    }
                ),
                "o": organization_id,
                "h": digest,
            },
        ).scalar_one()
        for index, mapping in enumerate(rule_set.field_mappings):
            conn.execute(
                sa.text(
                    "INSERT INTO field_mappings (source_field, target_field, transformation_type, "
                    "transformation_config, order_index, rule_set_id) VALUES (:s, :t, :k, "
                    "CAST(:c AS jsonb), :i, :r)"
                ),
                {
                    "s": mapping.source_field,
                    "t": mapping.target_field,
                    "k": mapping.transformation_type,
                    "c": json.dumps(mapping.transformation_config)
                    if mapping.transformation_config is not None
                    else None,
                    "i": index,
                    "r": rule_set_id,
                },
            )
        for index, rule in enumerate(rule_set.matching_rules):
            conn.execute(
                sa.text(
                    "INSERT INTO matching_rules (name, match_type, fields, weight, threshold, "
                    "tolerance, order_index, rule_set_id) VALUES (:n, :k, CAST(:f AS jsonb), :w, "
                    ":th, :to, :i, :r)"
                ),
                {
                    "n": rule.name,
                    "k": rule.match_type,
                    "f": json.dumps(list(rule.fields)),
                    "w": rule.weight,
                    "th": rule.threshold,
                    "to": rule.tolerance,
                    "i": index,
                    "r": rule_set_id,
                },
            )
        _activate(conn, organization_id, rule_set.name, rule_set_id)
        audit.system_event(
            conn,
            organization_id=organization_id,
            entity="rule_set",
            entity_id=rule_set_id,
            entity_key=f"rule_set:{rule_set.name}",
            action="NEW_VERSION",
            after={"name": rule_set.name, "version": version, "ai_generated": is_ai_generated},
        )
    return StoredRuleSet(rule_set_id, version, True, rule_set)


def _activate(conn: sa.Connection, organization_id: int, name: str, rule_set_id: int) -> None:
    conn.execute(
        sa.text(
            "UPDATE rule_sets SET active = (id = :r) WHERE organization_id = :o AND name = :n "
            "AND active IS DISTINCT FROM (id = :r)"
        ),
        {"r": rule_set_id, "o": organization_id, "n": name},
    )


def load_stored_rule_set(engine: sa.Engine, rule_set_id: int) -> RuleSet:
    """Rebuild a RuleSet from its rows (any version, active or not)."""
    with engine.connect() as conn:
        head = conn.execute(
            sa.text(
                "SELECT name, description, is_ai_generated, metadata FROM rule_sets WHERE id = :r"
            ),
            {"r": rule_set_id},
        ).first()
        if head is None:
            raise RuleSetError(f"rule set {rule_set_id} does not exist")
        mappings = conn.execute(
            sa.text(
                "SELECT source_field, target_field, transformation_type, transformation_config "
                "FROM field_mappings WHERE rule_set_id = :r ORDER BY order_index, id"
            ),
            {"r": rule_set_id},
        ).all()
        rules = conn.execute(
            sa.text(
                "SELECT name, match_type, fields, weight, threshold, tolerance FROM matching_rules "
                "WHERE rule_set_id = :r ORDER BY order_index, id"
            ),
            {"r": rule_set_id},
        ).all()
    metadata = head.metadata or {}
    return RuleSet(
        name=head.name,
        description=head.description,
        field_mappings=tuple(FieldMapping(*m) for m in mappings),
        matching_rules=tuple(
            MatchingRule(
                r.name,
                r.match_type,
                tuple(r.fields),
                float(r.weight),
                None if r.threshold is None else float(r.threshold),
                None if r.tolerance is None else float(r.tolerance),
            )
            for r in rules
        ),
        match_threshold=float(metadata.get("match_threshold", DEFAULT_MATCH_THRESHOLD)),
        severity=metadata.get("severity") or {},
        is_ai_generated=bool(head.is_ai_generated),
        text_normalization=parse_text_normalization(
            metadata.get("text_normalization"), f"rule set {rule_set_id}"
        ),
        aggregation=tuple(
            AggregationRule(**{**a, "group_by": tuple(a["group_by"])})
            for a in metadata.get("aggregation") or []
        ),
    )
