"""A filter that leaves few rows is searched exactly (`vectors.leaves_few`, `exact_statement`):
the nearest exceptions of that type, severity and status by distance, the same as a brute-force
ranking, with the organization's rows only; a broad or absent filter walks the index
(HNSW here: too few rows for IVF).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from test_embeddings import _exception, _org, _reconciliation, _tag

from pipelines.embed.search import search_exceptions
from pipelines.embed.search import vectors as vectors_module
from pipelines.embed.search.sql import _filters
from pipelines.embed.store import embed_reconciliation
from resources.database import engine_for, organization_transaction
from resources.embedder import HashingEmbedder


@pytest.fixture(scope="module")
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


def _planted(engine: sa.Engine) -> tuple[int, dict[int, dict[str, Any]], HashingEmbedder]:
    org, tag = _org(engine), _tag()
    rid = _reconciliation(engine, org)
    rows: dict[int, dict[str, Any]] = {}
    words = ["fee", "refund", "wire", "card", "cheque", "standing order", "interest", "payroll"]
    for i, word in enumerate(words * 3):
        kind = ("AMOUNT_MISMATCH", "DUPLICATE_FOUND", "MISSING_IN_TARGET")[i % 3]
        status = "RESOLVED" if i % 2 else "OPEN"
        description = f"{word} {tag} payment number {i} for {word} services"
        exception = _exception(engine, rid, org, description, type=kind, status=status)
        rows[exception] = {"type": kind, "status": status, "description": description}
    theirs = _org(engine)
    other = _exception(engine, _reconciliation(engine, theirs), theirs, f"fee {tag} payment")
    rows[other] = {"type": "MISSING_IN_TARGET", "status": "OPEN", "org": theirs}
    model = HashingEmbedder(model_name=f"exact-test-{tag}")
    embed_reconciliation(engine, model, rid)
    return org, rows, model


def test_a_narrow_filter_is_searched_exactly(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, rows, model = _planted(engine)
    query = "fee payment for fee services"
    filters = {"type": "AMOUNT_MISMATCH", "status": "RESOLVED"}
    chosen: list[bool] = []
    leaves_few = vectors_module.leaves_few

    def recorded(conn: sa.Connection, found: Any, rows: int) -> bool:
        chosen.append(leaves_few(conn, found, rows))
        return chosen[-1]

    monkeypatch.setattr(vectors_module, "leaves_few", recorded)
    hits = search_exceptions(engine, model, query, organization_id=org, limit=5, **filters)
    assert chosen == [True]
    kept = {
        i: r
        for i, r in rows.items()
        if "org" not in r and all(r[k] == v for k, v in filters.items())
    }
    assert {h["exception_id"] for h in hits} <= set(kept) and len(hits) == min(5, len(kept))
    # the vector list is the brute-force ranking of every kept row by cosine
    stored = model.encode(_stored_texts(engine, list(kept)))
    asked = model.encode([query])[0]
    similarity = dict(zip(kept, stored @ asked, strict=True))
    vector_hits = [h for h in hits if h["similarity"] is not None]
    for hit in vector_hits:
        assert hit["similarity"] == pytest.approx(similarity[hit["exception_id"]], abs=2e-3)
    best = max(similarity, key=lambda i: (similarity[i], -i))
    assert best in {h["exception_id"] for h in vector_hits}

    # no filter, or one the planner expects to leave many rows: the HNSW index
    chosen.clear()
    search_exceptions(engine, model, query, organization_id=org, limit=5)
    assert chosen == [False]
    monkeypatch.setattr(vectors_module, "EXACT_ROWS", dict.fromkeys(vectors_module.EXACT_ROWS, 0))
    chosen.clear()
    again = search_exceptions(engine, model, query, organization_id=org, limit=5, **filters)
    assert chosen == [False]
    assert {h["exception_id"] for h in again} <= set(kept)


def test_the_estimate_reads_the_filters(engine: sa.Engine) -> None:
    org, _, _ = _planted(engine)
    with organization_transaction(engine, org) as conn:
        given = {"org": org, "doc": "EXCEPTION", "model": "any"}
        found = _filters(None, "AMOUNT_MISMATCH", None, "RESOLVED")
        found.params.update(given)
        assert vectors_module.leaves_few(conn, found, 20_000)
        assert not vectors_module.leaves_few(conn, found, 0)
        bare = _filters(None, None, None, None)
        bare.params.update(given)
        assert not vectors_module.leaves_few(conn, bare, 20_000)


def _stored_texts(engine: sa.Engine, ids: list[int]) -> list[str]:
    with engine.connect() as conn:
        found = dict(
            conn.execute(
                sa.text(
                    "SELECT document_id, content FROM document_embeddings"
                    " WHERE document_type = 'EXCEPTION' AND document_id = ANY(:i)"
                ),
                {"i": ids},
            ).all()
        )
    return [found[i] for i in ids]
