"""Suggested resolutions: what people did with the most similar exceptions before.

For each OPEN exception of a reconciliation (that has an embedding), the `neighbours` closest
RESOLVED exceptions of the same organization and the same type, with a resolution text, from
any reconciliation, are found by cosine similarity of their embeddings. Per type, when the
organization has at most `EXACT_LIMIT` such precedents (found through the partial index
`idx_exceptions_resolved_precedents`), their vectors are loaded once and compared exactly with
all the open ones in numpy (a matrix product: 100k open x 3k precedents takes seconds); more
precedents than that are searched per open exception through the HNSW index (iterative
scan), which does not load them all. The nearest precedent's resolution is the suggestion,
when it is at least `min_similarity` close. Stored in `reconciliation_exceptions.suggestion`
(migration 0006) as:

    {"resolution": str, "score": float, "precedent_id": int, "similarity": float,
     "support": float, "evidence": [{"exception_id", "reconciliation_id", "similarity",
     "resolution"}, ...], "model_name": str}

`support` is the similarity-weighted share of the evidence that agrees with that resolution,
and `score` = similarity x support: a close precedent that its neighbours contradict scores
lower than one they confirm. Open exceptions with no close precedent get NULL (a stale
suggestion is cleared). Nothing else about the exception changes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import psycopg
import psycopg.rows
import sqlalchemy as sa

from pipelines.embed.search import tune_hnsw
from pipelines.embed.store import EXCEPTION_DOCUMENT, dbapi
from resources.embedder import MODEL_NAME, Embedder

DEFAULT_NEIGHBOURS = 5
DEFAULT_MIN_SIMILARITY = 0.5

EXACT_LIMIT = 50_000
CHUNK_ROWS = 2048

_OPEN = (
    "SELECT o.id, o.type, od.embedding FROM reconciliation_exceptions o "
    "JOIN document_embeddings od ON od.organization_id = o.organization_id "
    " AND od.document_type = %(doc)s AND od.document_id = o.id AND od.model_name = %(model)s "
    "WHERE o.reconciliation_id = %(rid)s AND o.status = 'OPEN' ORDER BY o.id"
)
_PRECEDENT_FILTER = (
    "e.organization_id = %(org)s AND e.type = %(type)s AND e.status = 'RESOLVED' "
    "AND e.resolution IS NOT NULL AND btrim(e.resolution) <> ''"
)
_PRECEDENTS = (
    "SELECT e.id, e.reconciliation_id, e.resolution, d.embedding "
    "FROM reconciliation_exceptions e JOIN document_embeddings d "
    " ON d.organization_id = e.organization_id AND d.document_type = %(doc)s "
    " AND d.document_id = e.id AND d.model_name = %(model)s "
    "WHERE " + _PRECEDENT_FILTER + " ORDER BY e.id"
)
_NEAREST = (
    "SELECT o.id AS open_id, p.id, p.reconciliation_id, p.resolution, p.similarity "
    "FROM reconciliation_exceptions o "
    "JOIN document_embeddings od ON od.organization_id = o.organization_id "
    " AND od.document_type = %(doc)s AND od.document_id = o.id AND od.model_name = %(model)s "
    "CROSS JOIN LATERAL ("
    " SELECT e.id, e.reconciliation_id, e.resolution,"
    "  1 - (d.embedding <=> od.embedding) AS similarity"
    " FROM document_embeddings d JOIN reconciliation_exceptions e ON e.id = d.document_id"
    " WHERE d.organization_id = %(org)s AND d.document_type = %(doc)s"
    "  AND d.model_name = %(model)s AND e.id <> o.id AND " + _PRECEDENT_FILTER + ""
    " ORDER BY d.embedding <=> od.embedding LIMIT %(k)s"
    ") p "
    "WHERE o.reconciliation_id = %(rid)s AND o.status = 'OPEN' AND o.type = %(type)s "
    "ORDER BY o.id, p.similarity DESC, p.id"
)


def _exact(
    open_ids: list[int], open_vectors: np.ndarray, precedents: list[Any], k: int
) -> dict[int, list[dict[str, Any]]]:
    """The k most similar precedents of each open exception, exactly (normalised vectors)."""
    matrix = np.stack([np.asarray(p.embedding.to_numpy(), np.float32) for p in precedents])
    ids = np.array([p.id for p in precedents])
    k = min(k, len(precedents))
    found: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(open_ids), CHUNK_ROWS):
        sims = open_vectors[start : start + CHUNK_ROWS] @ matrix.T
        for row, open_id in enumerate(open_ids[start : start + CHUNK_ROWS]):
            scores = np.where(ids == open_id, -np.inf, sims[row])
            top = np.argpartition(-scores, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
            top = sorted(top, key=lambda i: (-scores[i], ids[i]))
            found[open_id] = [
                {
                    "exception_id": int(ids[i]),
                    "reconciliation_id": precedents[i].reconciliation_id,
                    "similarity": round(float(scores[i]), 4),
                    "resolution": precedents[i].resolution,
                }
                for i in top
                if np.isfinite(scores[i])
            ]
    return found


def nearest_precedents(
    conn: sa.Connection, reconciliation_id: int, model_name: str, neighbours: int
) -> dict[int, list[dict[str, Any]]]:
    """Each OPEN exception's `neighbours` nearest resolved precedents (same org and type)."""
    organization_id = conn.execute(
        sa.text("SELECT organization_id FROM reconciliations WHERE id = :i"),
        {"i": reconciliation_id},
    ).scalar()
    if organization_id is None:
        return {}
    params = {
        "doc": EXCEPTION_DOCUMENT,
        "model": model_name,
        "rid": reconciliation_id,
        "org": organization_id,
        "k": neighbours,
    }
    raw = dbapi(conn)
    with raw.cursor(binary=True) as cursor:
        open_rows = cursor.execute(_OPEN, params).fetchall()
    by_type: dict[str, list[Any]] = {}
    for row in open_rows:
        by_type.setdefault(row[1], []).append(row)
    found: dict[int, list[dict[str, Any]]] = {}
    for kind, rows in by_type.items():
        typed = {**params, "type": kind}
        count = raw.execute(
            "SELECT count(*) FROM (SELECT 1 FROM reconciliation_exceptions e WHERE "
            + _PRECEDENT_FILTER
            + " LIMIT %(cap)s) s",
            {**typed, "cap": EXACT_LIMIT + 1},
        ).fetchone()[0]
        if count == 0:
            continue
        if count <= EXACT_LIMIT:
            with raw.cursor(binary=True, row_factory=psycopg.rows.namedtuple_row) as cursor:
                precedents = cursor.execute(_PRECEDENTS, typed).fetchall()
            if precedents:
                vectors = np.stack([np.asarray(r[2].to_numpy(), np.float32) for r in rows])
                found.update(_exact([r[0] for r in rows], vectors, precedents, neighbours))
            continue
        tune_hnsw(conn, neighbours)
        with raw.cursor(row_factory=psycopg.rows.namedtuple_row) as cursor:
            for row in cursor.execute(_NEAREST, typed).fetchall():
                found.setdefault(row.open_id, []).append(
                    {
                        "exception_id": row.id,
                        "reconciliation_id": row.reconciliation_id,
                        "similarity": round(float(row.similarity), 4),
                        "resolution": row.resolution,
                    }
                )
    return found


def _suggestion(
    evidence: list[dict[str, Any]], model_name: str, min_similarity: float
) -> dict[str, Any] | None:
    if not evidence or evidence[0]["similarity"] < min_similarity:
        return None
    top = evidence[0]
    weights = sum(max(e["similarity"], 0.0) for e in evidence) or 1.0
    agree = sum(
        max(e["similarity"], 0.0)
        for e in evidence
        if e["resolution"].strip().lower() == top["resolution"].strip().lower()
    )
    support = agree / weights
    return {
        "resolution": top["resolution"],
        "score": round(top["similarity"] * support, 4),
        "precedent_id": top["exception_id"],
        "similarity": top["similarity"],
        "support": round(support, 4),
        "evidence": evidence,
        "model_name": model_name,
    }


def suggest_resolutions(
    engine: sa.Engine,
    embedder: Embedder | None,
    reconciliation_id: int,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> int:
    """Store a suggested resolution on each OPEN exception with a close precedent; the count.

    `embedder` only names the model whose stored embeddings are compared (default
    all-MiniLM-L6-v2); run `embed_reconciliation` first. Suggestions are written in one
    transaction.
    """
    model_name = embedder.model_name if embedder is not None else MODEL_NAME
    with engine.begin() as conn:
        evidence = nearest_precedents(conn, reconciliation_id, model_name, neighbours)
        suggestions = {
            open_id: found
            for open_id, items in evidence.items()
            if (found := _suggestion(items, model_name, min_similarity)) is not None
        }
        ids = list(suggestions)
        conn.execute(
            sa.text(
                "UPDATE reconciliation_exceptions SET suggestion = NULL "
                "WHERE reconciliation_id = :rid AND status = 'OPEN' AND suggestion IS NOT NULL "
                "AND NOT (id = ANY(CAST(:ids AS bigint[])))"
            ),
            {"rid": reconciliation_id, "ids": ids},
        )
        if ids:
            conn.execute(
                sa.text(
                    "UPDATE reconciliation_exceptions e SET suggestion = s.suggestion "
                    "FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id, "
                    "unnest(CAST(:js AS jsonb[])) AS suggestion) s "
                    "WHERE e.id = s.id AND e.reconciliation_id = :rid"
                ),
                {
                    "rid": reconciliation_id,
                    "ids": ids,
                    "js": [json.dumps(suggestions[i]) for i in ids],
                },
            )
    return len(ids)


def suggestions_of(engine: sa.Engine, reconciliation_id: int, limit: int = 5) -> list[dict]:
    """Up to `limit` stored suggestions of a reconciliation, best score first (for metadata)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, type, description, suggestion FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :rid AND suggestion IS NOT NULL "
                "ORDER BY (suggestion->>'score')::float DESC, id LIMIT :n"
            ),
            {"rid": reconciliation_id, "n": limit},
        ).all()
    return [
        {
            "exception_id": row.id,
            "type": row.type,
            "description": row.description,
            "resolution": row.suggestion.get("resolution"),
            "score": row.suggestion.get("score"),
            "precedent_id": row.suggestion.get("precedent_id"),
        }
        for row in rows
    ]
