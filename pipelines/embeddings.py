"""Stage 3, AI: the exceptions of a completed reconciliation embedded, with suggested resolutions.

`exception_embeddings` runs after `reconciliation_record` in the same reconciliation partition,
and `feed/exception_embeddings` after `feed/reconciliation_record` in the
same feed partition: it embeds every exception and the reconciliation's summary with the
`embedder` resource (by default a static table fitted to the packaged all-MiniLM-L6-v2's
vectors of exception texts, searched with MiniLM's vectors of the queries:
`resources.static_embedder.DocumentFitEmbedder`; cached by text hash;
`pipelines.embed.store`), then stores on
each OPEN exception the resolution of its closest resolved precedents
(`pipelines.embed.suggest`), and builds the search's IVF index when that is due
(`pipelines.embed.search.ivf.ensure_ivf`: first at 100,000 embeddings, again when they have
doubled; most runs find nothing to do). The reconciliation is already COMPLETED when this
runs, and this asset never changes that: a failure is logged (and in `pipeline_run_logs` when
a model call failed) and raised, so Dagster shows the asset failed, while the reconciliation
record stays as it was committed.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines.embed.search.ivf import ensure_ivf
from pipelines.embed.store import embed_reconciliation
from pipelines.embed.suggest import suggest_resolutions, suggestions_of
from pipelines.partitions import feed_partitions, reconciliations
from pipelines.reconcile.feeds import reconciliation_for_partition
from pipelines.reconciliation import (
    FEED_PREFIX,
    feed_reconciliation_record,
    reconciliation_record,
)
from resources.database import DatabaseResource
from resources.embedder import EmbedderResource
from resources.errors import ReconError


def _status(engine: sa.Engine, reconciliation_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT status FROM reconciliations WHERE id = :i"), {"i": reconciliation_id}
        ).scalar()


DESCRIPTION = (
    "Exceptions and the reconciliation summary embedded (by default a static table fitted "
    "to all-MiniLM-L6-v2, queries by MiniLM; cached by text hash) into document_embeddings, "
    "and suggested resolutions from resolved precedents."
)


PROGRESS_EVERY = 30.0  # seconds between progress lines in the run's log
PROGRESS_LOGGER = "recon.embed.progress"  # the same lines, for a command that shows them


def progress_logger(log: Any, every: float = PROGRESS_EVERY) -> Callable[[int, int, float], None]:
    """`embed_reconciliation`'s progress as a line in the run's log every `every` seconds (and
    at the end): texts embedded of those to embed, the rate, the time left at that rate."""
    last = [time.monotonic()]

    def report(done: int, total: int, seconds: float) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < every:
            return
        last[0] = now
        rate = done / seconds if seconds else 0.0
        left = f", about {(total - done) / rate / 60:.0f} min left" if rate and done < total else ""
        line = f"embedded {done:,} of {total:,} texts ({rate:.0f}/s{left})"
        log.info(line)
        logging.getLogger(PROGRESS_LOGGER).info(line)

    return report


def _ivf_index(context: AssetExecutionContext, engine: sa.Engine) -> dict[str, Any]:
    """`ensure_ivf`, logged; a failed build is a warning (the embeddings are stored, HNSW
    serves search and the daily upkeep tries again), not a failed asset."""
    try:
        done = ensure_ivf(engine)
    except sa.exc.DBAPIError as error:
        context.log.warning("search's IVF index not built: %s", error.orig)
        return {"built": False, "reason": f"failed: {error.orig}"}
    if done["built"]:
        context.log.info(
            "search's IVF index built on %s embeddings (%s lists) in %s s",
            done["rows"],
            done["lists"],
            done["seconds"],
        )
    return done


def embed_and_suggest(
    context: AssetExecutionContext,
    rid: int,
    database: DatabaseResource,
    embedder: EmbedderResource,
) -> MaterializeResult:
    engine = database.engine()
    started = time.perf_counter()
    try:
        status = _status(engine, rid)
        if status != "COMPLETED":
            raise ReconError(
                f"reconciliation {rid} is {status or 'missing'}; only a COMPLETED "
                "reconciliation's exceptions are embedded"
            )
        model = embedder.embedder()
        counts = embed_reconciliation(
            engine, model, rid, run_id=context.run.run_id, progress=progress_logger(context.log)
        )
        suggest_started = time.perf_counter()
        suggested = suggest_resolutions(engine, model, rid)
        suggest_seconds = round(time.perf_counter() - suggest_started, 3)
        sample = suggestions_of(engine, rid)
        ivf_index = _ivf_index(context, engine)
    except Exception:
        # the reconciliation record is untouched: it stays COMPLETED
        context.log.exception("embedding reconciliation %s failed", rid)
        raise
    elapsed = round(time.perf_counter() - started, 3)
    rate = counts["embedded"] / counts["model_seconds"] if counts["model_seconds"] else None
    context.log.info(
        "reconciliation %s: %s texts, %s from cache, %s model calls, %s suggestions in %.2fs",
        rid,
        counts["texts"],
        counts["cache_hits"],
        counts["model_calls"],
        suggested,
        elapsed,
    )
    return MaterializeResult(
        metadata={
            "reconciliation_id": rid,
            "model_name": counts["model_name"],
            "texts": counts["texts"],
            "unique_texts": counts["unique_texts"],
            "cache_hits": counts["cache_hits"],
            "embedded": counts["embedded"],
            "model_calls": counts["model_calls"],
            "documents_written": counts["documents_written"],
            "model_texts_per_second": round(rate, 1) if rate else 0.0,
            "embedding_seconds": counts["seconds"],
            "suggestions": suggested,
            "suggestion_seconds": suggest_seconds,
            "sample_suggestions": MetadataValue.json(sample),
            "ivf_index": MetadataValue.json(ivf_index),
            "seconds": elapsed,
        }
    )


@asset(
    group_name="ai",
    kinds={"sentence_transformers", "pgvector"},
    partitions_def=reconciliations,
    deps=[reconciliation_record],
    description="One reconciliation (partition = reconciliations.id): " + DESCRIPTION,
)
def exception_embeddings(
    context: AssetExecutionContext,
    database: DatabaseResource,
    embedder: EmbedderResource,
) -> MaterializeResult:
    return embed_and_suggest(context, int(context.partition_key), database, embedder)


@asset(
    name="exception_embeddings",
    key_prefix=[FEED_PREFIX],
    group_name="feed_reconcile",
    partitions_def=feed_partitions,
    kinds={"sentence_transformers", "pgvector"},
    deps=[feed_reconciliation_record],
    description="One feed's business date: " + DESCRIPTION,
)
def feed_exception_embeddings(
    context: AssetExecutionContext,
    database: DatabaseResource,
    embedder: EmbedderResource,
) -> MaterializeResult:
    rid = reconciliation_for_partition(database.engine(), context.partition_key)
    return embed_and_suggest(context, rid, database, embedder)


AI_ASSETS: list[AssetsDefinition] = [exception_embeddings]
FEED_EMBEDDING_KEY = AssetKey([FEED_PREFIX, "exception_embeddings"])
