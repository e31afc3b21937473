"""Embed a reconciliation's exceptions (and its summary) into `document_embeddings`, cached.

`embed_reconciliation` builds one text per exception plus one summary text (`texts`), hashes
each (SHA-256 of the UTF-8 text) and looks the hashes up in `embedding_cache` for the model:
a text already embedded is never sent to the model again (its `hit_count` and `last_used_at`
move instead). An embedder with `dense_texts` (the static model; MiniLM when configured so)
embeds each exception's `embedding_text` instead of its content, and that text's hash is the
cache key; the stored content is the same either way. Only the misses are encoded,
shortest texts first (`length_batches`: a batch is padded to its longest text, so similar
lengths together waste least), `batch_size` texts per model call; every call
writes one `pipeline_run_logs` row (stage `embedding`: model, texts, latency, status, cache
hits) and, in the same transaction, its vectors into the cache, so a failure later keeps what
was paid for. A run that needs no model call logs one SKIPPED row. Finally the documents are
upserted on their unique key (organization, type, id, model) from a binary COPY, unchanged
ones left alone, and the embeddings of exceptions that no longer exist removed, so a re-run
replaces rather than duplicates. The documents are written as `recon_app` with the
reconciliation's organization set (row-level security, migration 0010); the cache, shared by
every organization, and the model-call log are the owner's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from pipelines.embed.texts import embedding_text, exception_text, reconciliation_text
from resources.database import organization_transaction
from resources.embedder import Embedder
from resources.errors import ReconError

STAGE = "embedding"
EXCEPTION_DOCUMENT = "EXCEPTION"
RECONCILIATION_DOCUMENT = "RECONCILIATION"
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class Document:
    """One document: what it describes (type and id), its stored `content` (full-text search
    reads it), the text the model embeds (`model_text`: the content itself, or the dense text
    an embedder with `dense_texts` asks for) and that text's SHA-256, the cache key."""

    document_type: str
    document_id: int
    content: str
    sha256: str
    embedded: str | None = None

    @property
    def model_text(self) -> str:
        """The text the model embeds."""
        return self.content if self.embedded is None else self.embedded


def text_sha256(text: str) -> str:
    """The cache key of a text: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dbapi(conn: sa.Connection) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy one, with pgvector's types registered."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    if raw.adapters.types.get("vector") is None:
        from pgvector.psycopg import register_vector

        register_vector(raw)
    return raw


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Positions of `texts` in batches of `batch_size`, shortest texts first: a batch's texts
    are padded to its longest, so similar lengths together waste least of the model's time."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_batches(
    embedder: Embedder, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[tuple[list[int], np.ndarray]]:
    """(positions, float32 vectors) per model call, batched as `embed_reconciliation` does."""
    for positions in length_batches(texts, batch_size):
        yield positions, np.asarray(embedder.encode([texts[i] for i in positions]), np.float32)


def load_documents(
    engine: sa.Engine, reconciliation_id: int, *, dense: bool = False
) -> tuple[int, list[Document]]:
    """The reconciliation's organization and its texts: every exception, then the summary.

    `dense`: exceptions are embedded by their `embedding_text` (the content stays
    `exception_text`) and the cache key is that text's hash.
    """
    with engine.connect() as conn:
        rec = (
            conn.execute(
                sa.text(
                    "SELECT id, name, description, status, organization_id, "
                    "total_source_records, total_target_records, matched_records, match_rate "
                    "FROM reconciliations WHERE id = :i"
                ),
                {"i": reconciliation_id},
            )
            .mappings()
            .first()
        )
        if rec is None:
            raise ReconError(f"reconciliation {reconciliation_id} does not exist")
        rows = (
            conn.execute(
                sa.text(
                    "SELECT id, type, severity, description, source_data, target_data, diff "
                    "FROM reconciliation_exceptions WHERE reconciliation_id = :i ORDER BY id"
                ),
                {"i": reconciliation_id},
            )
            .mappings()
            .all()
        )
    documents = []
    by_type: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    for row in rows:
        text = exception_text(row)
        if dense:
            embedded = embedding_text(row)
            documents.append(
                Document(EXCEPTION_DOCUMENT, row["id"], text, text_sha256(embedded), embedded)
            )
        else:
            documents.append(Document(EXCEPTION_DOCUMENT, row["id"], text, text_sha256(text)))
        by_type[row["type"]] += 1
        by_severity[row["severity"]] += 1
    summary = reconciliation_text(rec, dict(sorted(by_type.items())), dict(by_severity))
    documents.append(
        Document(RECONCILIATION_DOCUMENT, reconciliation_id, summary, text_sha256(summary))
    )
    return rec["organization_id"], documents


def cached_embeddings(
    conn: sa.Connection, model_name: str, hashes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The unexpired cache entries among `hashes`, counting each as a hit (hit_count, last use)."""
    if not hashes:
        return {}
    raw = dbapi(conn)
    with raw.cursor(binary=True) as cursor:
        cursor.execute(
            "UPDATE embedding_cache SET hit_count = hit_count + 1, last_used_at = NOW() "
            "WHERE model_name = %s AND text_sha256 = ANY(%s) "
            "AND (expires_at IS NULL OR expires_at > NOW()) RETURNING text_sha256, embedding",
            (model_name, list(hashes)),
        )
        return {sha: vector.to_numpy() for sha, vector in cursor.fetchall()}


def store_cache(
    conn: sa.Connection, model_name: str, hashes: Sequence[str], vectors: np.ndarray
) -> None:
    """Add freshly computed embeddings to the cache (a concurrent or expired entry is replaced)."""
    raw = dbapi(conn)
    raw.execute(
        "CREATE TEMP TABLE IF NOT EXISTS embed_cache_in (text_sha256 text, embedding vector) "
        "ON COMMIT DELETE ROWS"
    )
    with raw.cursor() as cursor:
        with cursor.copy("COPY embed_cache_in (text_sha256, embedding) FROM STDIN BINARY") as copy:
            copy.set_types(["text", "vector"])
            for sha, vector in zip(hashes, vectors, strict=True):
                copy.write_row((sha, vector))
        cursor.execute(
            "INSERT INTO embedding_cache (text_sha256, model_name, embedding) "
            "SELECT text_sha256, %s, embedding FROM embed_cache_in "
            "ON CONFLICT (text_sha256, model_name) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "expires_at = NULL, last_used_at = NOW()",
            (model_name,),
        )


def log_model_call(
    conn: sa.Connection,
    *,
    organization_id: int,
    reconciliation_id: int,
    run_id: str | None,
    model_name: str,
    records: int,
    latency_ms: float | None,
    status: str,
    metadata: dict[str, Any],
    error: BaseException | None = None,
) -> None:
    """One `pipeline_run_logs` row for the embedding stage (a model call, or the skip)."""
    conn.execute(
        sa.text(
            "INSERT INTO pipeline_run_logs (organization_id, stage, dagster_run_id, "
            "reconciliation_id, model_name, records_processed, latency_ms, status, error_code, "
            "error_message, metadata, started_at, completed_at) VALUES (:o, :stage, :run, :r, "
            ":m, :n, :lat, :status, :code, :msg, CAST(:meta AS jsonb), "
            "clock_timestamp() - make_interval(secs => COALESCE(:lat, 0) / 1000.0), "
            "clock_timestamp())"
        ),
        {
            "o": organization_id,
            "stage": STAGE,
            "run": run_id,
            "r": reconciliation_id,
            "m": model_name,
            "n": records,
            "lat": latency_ms,
            "status": status,
            "code": type(error).__name__ if error is not None else None,
            "msg": str(error)[:4000] if error is not None else None,
            "meta": json.dumps(metadata, default=str),
        },
    )


def write_documents(
    conn: sa.Connection,
    *,
    organization_id: int,
    reconciliation_id: int,
    model_name: str,
    documents: Sequence[Document],
    vectors: dict[str, np.ndarray],
    run_id: str | None = None,
) -> int:
    """Upsert the documents (COPY into a temp table, then one INSERT .. ON CONFLICT); count.

    Holds the reconciliation row FOR SHARE, so a re-run committing new exceptions waits, and
    writes only embeddings of exceptions that still exist; embeddings of this reconciliation's
    exceptions that are gone are deleted. Unchanged documents (same content, vector and
    reconciliation; a model switched to its dense texts changes only the vector) are not
    rewritten. Most of the time is the two HNSW indexes' upkeep (migrations 0001 and 0007:
    ~1 ms a row each on two cores); the staged rows are analyzed so no statement loops.
    """
    conn.execute(
        sa.text("SELECT 1 FROM reconciliations WHERE id = :i FOR SHARE"), {"i": reconciliation_id}
    )
    raw = dbapi(conn)
    raw.execute(
        "CREATE TEMP TABLE IF NOT EXISTS embed_docs_in (document_type text, document_id bigint, "
        "content text, embedding vector) ON COMMIT DROP"
    )
    with raw.cursor() as cursor:
        statement = (
            "COPY embed_docs_in (document_type, document_id, content, embedding) FROM STDIN BINARY"
        )
        with cursor.copy(statement) as copy:
            copy.set_types(["text", "int8", "text", "vector"])
            for doc in documents:
                copy.write_row(
                    (doc.document_type, doc.document_id, doc.content, vectors[doc.sha256])
                )
        # statistics, or the planner takes the temp table for tiny: the DELETE's anti join
        # became a nested loop (4,200 x 2,100 comparisons, 1.7 s; quadratic in the exceptions)
        cursor.execute("ANALYZE embed_docs_in")
        params = {"o": organization_id, "m": model_name, "r": reconciliation_id, "run": run_id}
        # lineage: the run that embedded, and the reconciliation's partition (feed runs)
        cursor.execute(
            "INSERT INTO document_embeddings (document_id, document_type, content, embedding, "
            "organization_id, model_name, reconciliation_id, dagster_run_id, partition_key) "
            "SELECT t.document_id, t.document_type, t.content, t.embedding, %(o)s, %(m)s, %(r)s, "
            "%(run)s, (SELECT partition_key FROM reconciliations WHERE id = %(r)s) "
            "FROM embed_docs_in t WHERE t.document_type = 'RECONCILIATION' OR EXISTS ("
            "  SELECT 1 FROM reconciliation_exceptions e WHERE e.id = t.document_id"
            "  AND e.reconciliation_id = %(r)s) "
            "ON CONFLICT (organization_id, document_type, document_id, model_name) DO UPDATE SET "
            "content = EXCLUDED.content, embedding = EXCLUDED.embedding, "
            "reconciliation_id = EXCLUDED.reconciliation_id, created_at = NOW(), "
            "dagster_run_id = EXCLUDED.dagster_run_id, partition_key = EXCLUDED.partition_key "
            "WHERE document_embeddings.content IS DISTINCT FROM EXCLUDED.content "
            "OR document_embeddings.embedding IS DISTINCT FROM EXCLUDED.embedding "
            "OR document_embeddings.reconciliation_id IS DISTINCT FROM EXCLUDED.reconciliation_id",
            params,
        )
        written = cursor.rowcount
        cursor.execute(
            "DELETE FROM document_embeddings d WHERE d.reconciliation_id = %(r)s "
            "AND d.model_name = %(m)s AND d.document_type = 'EXCEPTION' AND NOT EXISTS ("
            "  SELECT 1 FROM embed_docs_in t WHERE t.document_type = 'EXCEPTION'"
            "  AND t.document_id = d.document_id)",
            params,
        )
    return max(written, 0)


def embed_reconciliation(
    engine: sa.Engine,
    embedder: Embedder,
    reconciliation_id: int,
    *,
    run_id: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Embed every exception of a reconciliation and its summary; returns the counts.

    `progress(done, total, seconds)` after each model call: texts embedded so far of those the
    cache did not have, and the seconds the model has taken.

    Keys: texts (documents), unique_texts, cache_hits (unique texts served by the cache),
    embedded (unique texts sent to the model), model_calls (batches), documents_written
    (new or changed rows), model_seconds, seconds (end to end), model_name.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    model = embedder.model_name
    dense = bool(getattr(embedder, "dense_texts", False))
    organization_id, documents = load_documents(engine, reconciliation_id, dense=dense)
    unique = {doc.sha256: doc.model_text for doc in documents}
    with engine.begin() as conn:
        vectors = cached_embeddings(conn, model, list(unique))
    hits = len(vectors)
    misses = [sha for sha in unique if sha not in vectors]
    batches = [
        [misses[i] for i in positions]
        for positions in length_batches([unique[sha] for sha in misses], batch_size)
    ]
    base = {
        "texts": len(documents),
        "unique_texts": len(unique),
        "cache_hits": hits,
        "cache_misses": len(misses),
        "batches": len(batches),
    }
    log = {
        "organization_id": organization_id,
        "reconciliation_id": reconciliation_id,
        "run_id": run_id,
        "model_name": model,
    }
    model_seconds = 0.0
    done = 0
    for number, batch in enumerate(batches, start=1):
        call_started = time.perf_counter()
        try:
            encoded = np.asarray(embedder.encode([unique[sha] for sha in batch]), np.float32)
        except Exception as err:
            latency = 1000 * (time.perf_counter() - call_started)
            with engine.begin() as conn:
                log_model_call(
                    conn,
                    **log,
                    records=len(batch),
                    latency_ms=latency,
                    status="FAILED",
                    metadata={**base, "batch": number},
                    error=err,
                )
            raise
        elapsed = time.perf_counter() - call_started
        model_seconds += elapsed
        with engine.begin() as conn:
            store_cache(conn, model, batch, encoded)
            log_model_call(
                conn,
                **log,
                records=len(batch),
                latency_ms=round(1000 * elapsed, 3),
                status="SUCCESS",
                metadata={
                    **base,
                    "batch": number,
                    "texts_per_second": round(len(batch) / elapsed, 1) if elapsed else None,
                },
            )
        vectors.update(zip(batch, encoded, strict=True))
        done += len(batch)
        if progress is not None:
            progress(done, len(misses), model_seconds)
    if not batches:
        with engine.begin() as conn:
            log_model_call(conn, **log, records=0, latency_ms=0.0, status="SKIPPED", metadata=base)
    with organization_transaction(engine, organization_id) as conn:
        written = write_documents(
            conn,
            organization_id=organization_id,
            reconciliation_id=reconciliation_id,
            model_name=model,
            documents=documents,
            vectors=vectors,
            run_id=run_id,
        )
    return {
        "reconciliation_id": reconciliation_id,
        "organization_id": organization_id,
        "model_name": model,
        **base,
        "embedded": len(misses),
        "model_calls": len(batches),
        "documents_written": written,
        "model_seconds": round(model_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
