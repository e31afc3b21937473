"""The retrieval benchmark's queries through the product's own search (`search_exceptions`).

    from bench.retrieval_product import ProductBench
    with ProductBench(exceptions) as bench:             # a scratch database, the corpus in it
        result = bench.score(embedder, queries, dense=False, vectors=corpus_vectors)

`bench/retrieval_bench.py` scores each embedder twice: by exact cosine over the corpus vectors
(numpy, no database), and here, as a person would get them: the corpus is planted as one
COMPLETED reconciliation of a new organization in a scratch database (`embed_bench_<hex>`,
migrated, on the configured server as `bench/embed_bench.py` makes it; dropped on exit),
embedded by `store.embed_reconciliation` with the model under test (its own dense texts or
the product's texts, as `dense` says), and every labelled query goes through
`search_exceptions` (hybrid: the half-precision HNSW index, the full-text search when
`needs_words` says so, reciprocal rank fusion; top 10, no filters). The corpus vectors the
cosine scoring computed may be handed in (`vectors`): they are put into `embedding_cache`
under the store's keys first, so the model is not run over the corpus twice (same model,
same texts; the store's batches are sorted by length, the cosine ones may not be: float
noise only). Before each embedder the embeddings and the cache are truncated, so one
model's rows never answer for another's (MiniLM and its dense-text option share a name).
"""

from __future__ import annotations

import statistics
import time
from types import TracebackType
from typing import Any

import numpy as np
import sqlalchemy as sa

from bench.retrieval_bench import as_stored, ndcg_at, recall_at
from bench.retrieval_queries import CLASSES, Query
from pipelines.embed.store import embed_reconciliation, store_cache, text_sha256
from pipelines.embed.texts import embedding_text, exception_text
from resources.embedder import Embedder

COLUMNS = [
    "reconciliation_id",
    "organization_id",
    "type",
    "severity",
    "status",
    "description",
    "source_data",
    "target_data",
    "diff",
]


def class_table(per_query: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean nDCG@10 and recall@10 per query class and overall."""
    classes = {}
    for cls in [*CLASSES, "overall"]:
        rows = [p for p in per_query if cls in ("overall", p["cls"])]
        if not rows:
            continue
        classes[cls] = {
            "queries": len(rows),
            "ndcg@10": round(statistics.mean(p["ndcg"] for p in rows), 4),
            "recall@10": round(statistics.mean(p["recall"] for p in rows), 4),
        }
    return classes


class ProductBench:
    """A scratch database holding the corpus as one reconciliation; `score` per embedder."""

    def __init__(self, exceptions: list[dict[str, Any]]) -> None:
        self.exceptions = exceptions
        self.base = ""
        self.name = ""
        self.engine: sa.Engine | None = None
        self.organization_id = 0
        self.reconciliation_id = 0
        self.corpus_ids: dict[int, int] = {}  # database id -> corpus id

    def __enter__(self) -> ProductBench:
        from bench.embed_bench import create_reconciliation, scratch_database
        from resources.database import copy_rows, engine_for, resolve_database_url

        self.base = resolve_database_url()
        url, self.name = scratch_database(self.base)
        self.engine = engine_for(url)
        self.organization_id, self.reconciliation_id = create_reconciliation(
            self.engine, "Retrieval Bench"
        )
        rid, org = self.reconciliation_id, self.organization_id
        rows = (
            (rid, org, e["type"], e["severity"], "OPEN", e["description"], e["source_data"],
             e["target_data"], e["diff"])
            for e in self.exceptions
        )  # fmt: skip
        with self.engine.begin() as conn:
            copy_rows(conn, "reconciliation_exceptions", COLUMNS, rows)
            stored = conn.execute(
                sa.text(
                    "SELECT id, description FROM reconciliation_exceptions "
                    "WHERE reconciliation_id = :r ORDER BY id"
                ),
                {"r": rid},
            ).all()
            conn.execute(sa.text("ANALYZE reconciliation_exceptions"))
        # one COPY into an empty table: ids follow the rows' order (checked)
        if [r.description for r in stored] != [e["description"] for e in self.exceptions]:
            raise RuntimeError("planted exceptions came back in another order")
        self.corpus_ids = {r.id: e["id"] for r, e in zip(stored, self.exceptions, strict=True)}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        from bench.embed_bench import drop_database

        if self.engine is not None:
            self.engine.dispose()
        if self.name:
            drop_database(self.base, self.name)

    def _seed_cache(self, model_name: str, dense: bool, vectors: np.ndarray) -> None:
        """The corpus vectors into `embedding_cache` under the store's keys for these texts."""
        assert self.engine is not None
        text = embedding_text if dense else exception_text
        keys = [text_sha256(text(as_stored(e))) for e in self.exceptions]
        unique = dict(zip(keys, np.asarray(vectors, np.float32), strict=True))
        with self.engine.begin() as conn:
            store_cache(conn, model_name, list(unique), np.stack(list(unique.values())))

    def score(
        self,
        embedder: Embedder,
        queries: list[Query],
        *,
        dense: bool,
        vectors: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Embed the corpus with `embedder` (`dense`: its dense texts) through the store, run
        every query through `search_exceptions`; quality per class, search latency, counts."""
        from pipelines.embed.search import search_exceptions

        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE document_embeddings, embedding_cache"))
        previous = getattr(embedder, "dense_texts", None)
        embedder.dense_texts = dense  # type: ignore[attr-defined]
        try:
            if vectors is not None:
                self._seed_cache(embedder.model_name, dense, vectors)
            started = time.perf_counter()
            counts = embed_reconciliation(self.engine, embedder, self.reconciliation_id)
            embed_seconds = time.perf_counter() - started
            with self.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE document_embeddings"))
            per_query, latencies, methods = [], [], []
            for q in queries:
                started = time.perf_counter()
                hits = search_exceptions(
                    self.engine,
                    embedder,
                    q.text,
                    organization_id=self.organization_id,
                    limit=10,
                )
                latencies.append(1000 * (time.perf_counter() - started))
                ranked = [self.corpus_ids[h["exception_id"]] for h in hits]
                methods.extend(h["method"] for h in hits)
                per_query.append(
                    {
                        "qid": q.qid,
                        "cls": q.cls,
                        "ndcg": ndcg_at(ranked, q.relevant),
                        "recall": recall_at(ranked, q.relevant),
                    }
                )
        finally:
            if previous is None:
                del embedder.dense_texts  # type: ignore[attr-defined]
            else:
                embedder.dense_texts = previous  # type: ignore[attr-defined]
        return {
            "classes": class_table(per_query),
            "per_query": per_query,
            "search_ms_median": round(statistics.median(latencies), 1),
            "search_ms_p95": round(float(np.percentile(latencies, 95)), 1),
            "hit_methods": {m: methods.count(m) for m in sorted(set(methods))},
            "embed_seconds": round(embed_seconds, 2),
            "cache_hits": counts["cache_hits"],
            "embedded": counts["embedded"],
            "documents_written": counts["documents_written"],
        }
