"""The Splink model kept per rule-set version (`linkage_models`), with its training facts.

The facts carry the profile of the records it was trained on, so linkage reuses it only where
it fits (`pipelines.reconcile.linkage.model.model_misfit`); a retrained model replaces it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa


def load_model(
    engine: sa.Engine, rule_set_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The Splink model kept for this rule-set version and its training facts, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT model, training FROM linkage_models WHERE rule_set_id = :r"),
            {"r": rule_set_id},
        ).first()
    return (row.model, row.training) if row is not None else (None, None)


def save_model(
    engine: sa.Engine,
    rule_set_id: int,
    organization_id: int,
    model: dict[str, Any],
    training: dict[str, Any],
) -> None:
    """Keep a trained model with its rule-set version (a retrained one replaces it)."""
    import splink

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO linkage_models (rule_set_id, organization_id, engine_version, model, "
                "training) VALUES (:r, :o, :v, CAST(:m AS jsonb), CAST(:t AS jsonb)) "
                "ON CONFLICT (rule_set_id) DO UPDATE SET engine_version = EXCLUDED.engine_version, "
                "model = EXCLUDED.model, training = EXCLUDED.training, trained_at = NOW()"
            ),
            {
                "r": rule_set_id,
                "o": organization_id,
                "v": splink.__version__,
                "m": json.dumps(model),
                "t": json.dumps(training, default=str),
            },
        )
