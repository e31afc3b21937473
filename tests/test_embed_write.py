"""The document writes of `recon embed` (`store.write_documents`) on the embedded database.

A re-run writes no duplicates and rewrites nothing unchanged; the rows are what a plain
row-by-row upsert (the reference below, one statement per document) writes - same keys, same
content, same vectors; one organization's run neither writes nor removes another's rows; and
the statement that removes the embeddings of vanished exceptions is not a nested loop over the
staged documents. No model: `HashingEmbedder` (deterministic, normalised vectors).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from pipelines.embed.store import (
    Document,
    dbapi,
    embed_reconciliation,
    load_documents,
    write_documents,
)
from resources.database import engine_for, organization_transaction
from resources.embedder import HashingEmbedder

KEY_COLUMNS = "document_type, document_id, content, embedding, organization_id, reconciliation_id"


@pytest.fixture(scope="module")
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


def _model() -> HashingEmbedder:
    """A model name of its own per test: nothing cached or written by another test is seen."""
    return HashingEmbedder(model_name=f"write-test-{uuid.uuid4().hex[:8]}")


def _planted(engine: sa.Engine, count: int) -> tuple[int, int, list[int]]:
    """A new organization, a COMPLETED reconciliation of it and `count` exceptions."""
    tag = uuid.uuid4().hex[:8]
    with engine.begin() as conn:
        org = conn.execute(
            sa.text("INSERT INTO organizations (name) VALUES (:n) RETURNING id"),
            {"n": f"write-{tag}"},
        ).scalar_one()
        rid = conn.execute(
            sa.text(
                "INSERT INTO reconciliations (name, status, organization_id, exception_count) "
                "VALUES (:n, 'COMPLETED', :o, :c) RETURNING id"
            ),
            {"n": f"write {tag}", "o": org, "c": count},
        ).scalar_one()
        ids = [
            conn.execute(
                sa.text(
                    "INSERT INTO reconciliation_exceptions (reconciliation_id, organization_id, "
                    "type, severity, status, description, source_data, diff) VALUES (:r, :o, "
                    "'MISSING_IN_TARGET', 'MEDIUM', 'OPEN', :d, CAST(:s AS jsonb), '[]') "
                    "RETURNING id"
                ),
                {
                    "r": rid,
                    "o": org,
                    "d": f"Source row {i} has no match in the target (payee=P{tag}{i})",
                    "s": json.dumps({"_row_number": i, "payee": f"P{tag}{i}", "amount": i}),
                },
            ).scalar_one()
            for i in range(1, count + 1)
        ]
    return org, rid, ids


def _vectors(model: HashingEmbedder, documents: Sequence[Document]) -> dict[str, np.ndarray]:
    """The documents' vectors by cache key, as `embed_reconciliation` holds them."""
    encoded = model.encode([d.model_text for d in documents])
    return {d.sha256: v for d, v in zip(documents, encoded, strict=True)}


def _rows(engine: sa.Engine, model_name: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The model's documents by (type, id): content, vector, organization, reconciliation."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                f"SELECT {KEY_COLUMNS}, CAST(embedding AS text) AS vector "
                "FROM document_embeddings WHERE model_name = :m"
            ),
            {"m": model_name},
        ).all()
    return {
        (r.document_type, r.document_id): (
            r.content,
            r.vector,
            r.organization_id,
            r.reconciliation_id,
        )
        for r in found
    }


def _reference_write(
    conn: sa.Connection,
    *,
    organization_id: int,
    reconciliation_id: int,
    model_name: str,
    documents: Sequence[Document],
    vectors: dict[str, np.ndarray],
) -> None:
    """The oracle: one plain upsert per document (no temp table, no COPY)."""
    raw = dbapi(conn)
    for doc in documents:
        raw.execute(
            "INSERT INTO document_embeddings (document_id, document_type, content, embedding, "
            "organization_id, model_name, reconciliation_id) SELECT %(i)s, CAST(%(t)s AS text), "
            "%(c)s, %(v)s, %(o)s, %(m)s, %(r)s WHERE CAST(%(t)s AS text) = 'RECONCILIATION' "
            "OR EXISTS (SELECT 1 FROM reconciliation_exceptions e WHERE e.id = %(i)s "
            "AND e.reconciliation_id = %(r)s) "
            "ON CONFLICT (organization_id, document_type, document_id, model_name) DO UPDATE "
            "SET content = EXCLUDED.content, embedding = EXCLUDED.embedding",
            {
                "i": doc.document_id,
                "t": doc.document_type,
                "c": doc.content,
                "v": vectors[doc.sha256],
                "o": organization_id,
                "m": model_name,
                "r": reconciliation_id,
            },
        )


def test_a_rerun_writes_no_duplicates(engine: sa.Engine) -> None:
    org, rid, ids = _planted(engine, 30)
    model = _model()
    first = embed_reconciliation(engine, model, rid, batch_size=7)
    assert first["documents_written"] == len(ids) + 1
    again = embed_reconciliation(engine, model, rid, batch_size=7)
    assert again["documents_written"] == 0 and again["embedded"] == 0
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reconciliation_exceptions SET description = 'changed' WHERE id = :i"),
            {"i": ids[0]},
        )
    changed = embed_reconciliation(engine, model, rid, batch_size=7)
    assert changed["documents_written"] == 1
    rows = _rows(engine, model.model_name)
    assert len(rows) == len(ids) + 1
    assert set(rows) == {("EXCEPTION", i) for i in ids} | {("RECONCILIATION", rid)}
    assert "changed" in rows[("EXCEPTION", ids[0])][0]
    with engine.connect() as conn:
        duplicates = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM document_embeddings WHERE model_name = :m "
                "GROUP BY organization_id, document_type, document_id HAVING count(*) > 1) s"
            ),
            {"m": model.model_name},
        ).scalar()
    assert duplicates == 0


def test_rows_written_equal_the_reference_path(engine: sa.Engine) -> None:
    org, rid, ids = _planted(engine, 40)
    model = _model()
    embed_reconciliation(engine, model, rid, batch_size=16)
    _, documents = load_documents(engine, rid)
    vectors = _vectors(model, documents)
    reference = _model()
    with organization_transaction(engine, org) as conn:
        _reference_write(
            conn,
            organization_id=org,
            reconciliation_id=rid,
            model_name=reference.model_name,
            documents=documents,
            vectors=vectors,
        )
    written, expected = _rows(engine, model.model_name), _rows(engine, reference.model_name)
    assert len(written) == len(ids) + 1
    assert written == expected  # same keys, content, vectors (as text), org and reconciliation


def test_an_organizations_documents_stay_its_own(engine: sa.Engine) -> None:
    org_a, rid_a, ids_a = _planted(engine, 12)
    org_b, rid_b, ids_b = _planted(engine, 9)
    model = _model()
    embed_reconciliation(engine, model, rid_b)
    before_b = _rows(engine, model.model_name)
    embed_reconciliation(engine, model, rid_a)
    rows = _rows(engine, model.model_name)
    assert {k: v for k, v in rows.items() if v[2] == org_b} == before_b
    assert {k for k, v in rows.items() if v[2] == org_a} == {("EXCEPTION", i) for i in ids_a} | {
        ("RECONCILIATION", rid_a)
    }
    # B's exception offered under A's organization and reconciliation is not written
    _, documents = load_documents(engine, rid_b)
    stranger = [d for d in documents if d.document_type == "EXCEPTION"][:1]
    vectors = _vectors(model, stranger)
    with organization_transaction(engine, org_a) as conn:
        written = write_documents(
            conn,
            organization_id=org_a,
            reconciliation_id=rid_a,
            model_name=model.model_name,
            documents=stranger,
            vectors=vectors,
        )
        seen = conn.execute(
            sa.text(
                "SELECT count(*) FROM document_embeddings WHERE model_name = :m "
                "AND organization_id = :b"
            ),
            {"m": model.model_name, "b": org_b},
        ).scalar()
    assert written == 0 and seen == 0  # nothing written; B's rows invisible to A
    # ... and A's write removed only A's vanished exceptions, none of B's
    assert {k: v for k, v in _rows(engine, model.model_name).items() if v[2] == org_b} == before_b


def test_embeddings_of_vanished_exceptions_go_without_a_nested_loop(engine: sa.Engine) -> None:
    org, rid, ids = _planted(engine, 20)
    model = _model()
    embed_reconciliation(engine, model, rid)
    ghost = 10**15 + int(uuid.uuid4().int % 10**6)  # an exception id that does not exist
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO document_embeddings (document_id, document_type, content, "
                "embedding, organization_id, model_name, reconciliation_id) SELECT :g, "
                "document_type, content, embedding, organization_id, model_name, "
                "reconciliation_id FROM document_embeddings WHERE model_name = :m "
                "AND document_type = 'EXCEPTION' AND document_id = :i"
            ),
            {"g": ghost, "m": model.model_name, "i": ids[0]},
        )
    assert ("EXCEPTION", ghost) in _rows(engine, model.model_name)
    _, documents = load_documents(engine, rid)
    vectors = _vectors(model, documents)
    with organization_transaction(engine, org) as conn:
        write_documents(
            conn,
            organization_id=org,
            reconciliation_id=rid,
            model_name=model.model_name,
            documents=documents,
            vectors=vectors,
        )
        # the staged table has statistics (ANALYZE), so the planner knows its size
        staged = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = 'embed_docs_in'")
        ).scalar()
    assert staged == len(ids) + 1
    rows = _rows(engine, model.model_name)
    assert ("EXCEPTION", ghost) not in rows and len(rows) == len(ids) + 1


def test_a_model_switched_to_dense_texts_rewrites_the_vectors(engine: sa.Engine) -> None:
    org, rid, ids = _planted(engine, 10)
    model = _model()
    embed_reconciliation(engine, model, rid)
    before = _rows(engine, model.model_name)
    model.dense_texts = True  # type: ignore[attr-defined]
    switched = embed_reconciliation(engine, model, rid)
    # same content, new vectors: each exception rewritten (the summary's text did not change)
    assert switched["documents_written"] == len(ids)
    after = _rows(engine, model.model_name)
    assert set(after) == set(before)
    _, documents = load_documents(engine, rid, dense=True)
    expected = _vectors(model, documents)
    for doc in documents:
        content, vector, _, _ = after[(doc.document_type, doc.document_id)]
        assert content == before[(doc.document_type, doc.document_id)][0] == doc.content
        stored = np.array(json.loads(vector), np.float32)
        assert np.allclose(stored, expected[doc.sha256], atol=1e-6)
    again = embed_reconciliation(engine, model, rid)
    assert again["documents_written"] == 0
