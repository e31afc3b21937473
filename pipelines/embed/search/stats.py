"""What the words search knows of the table: ANALYZE's statistics of `document_embeddings`
(kept for a minute per organization) and the organization's texts counted.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pipelines.embed.search.sql import EMBEDDINGS

STATISTICS_SECONDS = 60.0
# ANALYZE's view of the table, per (database, organization, document type, model): it changes
# only when the table is analyzed, and reading it costs a round trip of ~1.3 ms at 1M rows
_STATISTICS: dict[tuple[str, Any, Any, Any], tuple[float, Any]] = {}
_STATISTICS_LOCK = threading.Lock()


def _statistics(
    conn: sa.Connection, params: dict[str, Any]
) -> tuple[float, dict[str, float], float, float]:
    """ANALYZE's view of `document_embeddings`, in one statement: (rows, share of each listed
    lexeme of `content_tsv`, share of an unlisted one at most, estimated rows of the
    organization's texts of the model); no rows when the table was never analyzed.

    Kept for `STATISTICS_SECONDS` per database, organization, document type and model (the
    statistics change only when the table is analyzed); a table without statistics is asked
    again every time."""
    key = (str(conn.engine.url), params["org"], params["doc"], params["model"])
    now = time.monotonic()
    with _STATISTICS_LOCK:
        kept = _STATISTICS.get(key)
    if kept is not None and now - kept[0] < STATISTICS_SECONDS:
        return kept[1]
    # as the owner: pg_stats hides a table under row-level security from recon_app (its
    # values are every organization's); only table-wide shares leave this function
    with conn.engine.connect() as owner:
        found = _read_statistics(owner, params)
    if found[0] > 0:
        with _STATISTICS_LOCK:
            _STATISTICS[key] = (now, found)
    return found


def _read_statistics(
    conn: sa.Connection, params: dict[str, Any]
) -> tuple[float, dict[str, float], float, float]:
    stats = conn.execute(
        sa.text(
            "WITH s AS (SELECT attname, CAST(most_common_elems AS text) AS elems,"
            " most_common_elem_freqs AS elem_freqs, CAST(most_common_vals AS text) AS vals,"
            " most_common_freqs AS freqs FROM pg_stats WHERE schemaname = current_schema()"
            " AND tablename = 'document_embeddings'"
            " AND attname IN ('content_tsv', 'organization_id', 'document_type', 'model_name'))"
            " SELECT c.reltuples,"
            " (SELECT CAST(elems AS text[]) FROM s WHERE attname = 'content_tsv') AS elems,"
            " (SELECT elem_freqs FROM s WHERE attname = 'content_tsv') AS elem_freqs,"
            " (SELECT f FROM s, unnest(CAST(vals AS text[]), freqs) AS m(v, f)"
            "  WHERE attname = 'organization_id' AND v = CAST(:org AS text)) AS org_share,"
            " (SELECT f FROM s, unnest(CAST(vals AS text[]), freqs) AS m(v, f)"
            "  WHERE attname = 'document_type' AND v = :doc) AS doc_share,"
            " (SELECT f FROM s, unnest(CAST(vals AS text[]), freqs) AS m(v, f)"
            "  WHERE attname = 'model_name' AND v = :model) AS model_share"
            " FROM pg_class c WHERE c.oid = to_regclass('document_embeddings')"
        ),
        {"org": str(params["org"]), "doc": params["doc"], "model": params["model"]},
    ).first()
    if stats is None or stats.reltuples <= 0:
        return 0.0, {}, 1.0, 0.0
    rows = float(stats.reltuples)
    shares = (stats.org_share, stats.doc_share, stats.model_share)
    estimate = rows * math.prod(float(s) for s in shares) if None not in shares else 0.0
    if not stats.elems or not stats.elem_freqs:
        return rows, {}, 1.0, estimate
    listed = dict(zip(stats.elems, (float(f) for f in stats.elem_freqs), strict=False))
    # the frequencies end with their minimum, maximum and the share of nulls
    freqs = stats.elem_freqs
    rarest = freqs[len(stats.elems)] if len(freqs) > len(stats.elems) else 0.0
    return rows, listed, float(rarest or min(listed.values())), estimate


def _own_texts() -> str:
    return (
        f"FROM {EMBEDDINGS} d WHERE d.organization_id = :org AND d.document_type = :doc"
        " AND d.model_name = :model"
    )


def _organization_texts(conn: sa.Connection, params: dict[str, Any], cap: int) -> int:
    """How many texts the organization has, counted up to `cap` (an index-only count)."""
    return conn.execute(
        sa.text(f"SELECT count(*) FROM (SELECT 1 {_own_texts()} LIMIT :cap) s"),
        {"org": params["org"], "doc": params["doc"], "model": params["model"], "cap": cap},
    ).scalar_one()


@dataclass
class LexemeStats:
    """What `lexeme_shares` found: the organization's texts (up to COUNT_CAP), the share of
    them holding each lexeme, and the rows of the whole table holding each (estimated)."""

    texts: float
    shares: dict[str, float]
    postings: dict[str, float]
