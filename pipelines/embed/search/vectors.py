"""The vector search: the half-precision HNSW cosine index of migration 0007, its
transaction-local settings (`tune_hnsw`) and its statement (`vector_statement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from pipelines.embed.search.sql import EXCEPTION_COLUMNS, Filters, _candidates_from, _sql_params

MIN_EF_SEARCH = 200
MAX_EF_SEARCH = 1000
# the expression of idx_embeddings_halfvec (migration 0007): ordering by it uses that index
DISTANCE = "CAST(d.embedding AS halfvec(384)) <=> CAST(:q AS halfvec(384))"
_VECTOR_VERSIONS: dict[str, tuple[int, ...]] = {}


def vector_literal(vector: np.ndarray) -> str:
    """A pgvector text literal (`[0.1,0.2,...]`) for a query vector."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def _pgvector_version(conn: sa.Connection) -> tuple[int, ...]:
    key = str(conn.engine.url)
    if key not in _VECTOR_VERSIONS:
        version = conn.execute(
            sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
        _VECTOR_VERSIONS[key] = tuple(int(p) for p in str(version or "0").split(".") if p.isdigit())
    return _VECTOR_VERSIONS[key]


def tune_hnsw(conn: sa.Connection, candidates: int, *, serial: bool = False) -> None:
    """Transaction-local HNSW settings: ef_search for `candidates`, iterative scans if possible
    (one statement). `serial`: no parallel workers either - the search's statements read a few
    dozen rows, and starting workers (which the planner picks when it overestimates a rare
    word's matches) costs 5-10 ms."""
    ef_search = min(MAX_EF_SEARCH, max(MIN_EF_SEARCH, 4 * candidates))
    iterative = _pgvector_version(conn) >= (0, 8)
    conn.execute(
        sa.text(
            "SELECT set_config('hnsw.ef_search', :v, true)"
            + (", set_config('hnsw.iterative_scan', 'relaxed_order', true)" if iterative else "")
            + (", set_config('max_parallel_workers_per_gather', '0', true)" if serial else "")
        ),
        {"v": str(ef_search)},
    )


def vector_statement(filters: Filters) -> str:
    """The vector search: the `:k` nearest exceptions by the HNSW index, nearest first, with
    their rows (organization and filters checked on them)."""
    return (
        f"WITH nearest AS MATERIALIZED (SELECT d.document_id, {DISTANCE} AS distance"
        f"{_candidates_from(filters)} ORDER BY {DISTANCE} LIMIT :k)"
        f" SELECT n.document_id, n.distance, {EXCEPTION_COLUMNS} FROM nearest n"
        " JOIN reconciliation_exceptions e ON e.id = n.document_id"
        f" AND e.organization_id = :org{filters.on_exception}"
        " ORDER BY n.distance, n.document_id"
    )


def _vector_candidates(
    conn: sa.Connection, query: np.ndarray, filters: Filters, k: int
) -> list[Any]:
    """`vector_statement`'s rows (the transaction's settings made first: `tune_hnsw`)."""
    tune_hnsw(conn, k, serial=True)
    return conn.execute(
        sa.text(vector_statement(filters)),
        {**_sql_params(filters), "q": vector_literal(query), "k": k},
    ).all()
