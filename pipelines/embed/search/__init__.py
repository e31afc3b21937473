"""Search one organization's exceptions by meaning and by words, fused into one ranking.

`search_exceptions` embeds the query with the same model as the stored exceptions and runs
two candidate searches, both restricted in SQL to ONE organization and to the optional filters
(reconciliation, type, severity, status); the hits' exception rows are read with the
organization and every filter checked again, and every statement runs as `recon_app` with the
organization set (row-level security), so no other organization's row can come back:
- vector: the half-precision HNSW cosine index of migration 0007 (`DISTANCE`, ordering by
  CAST(embedding AS halfvec(384)) <=> query: a graph ~60% of the float one's size, the same
  recall within noise): the 2 x limit (at least 20) nearest, as the shorter list costs filtered
  searches less (`MIN_VECTOR_CANDIDATES`), with `hnsw.ef_search` sized to them and, on
  pgvector >= 0.8, `hnsw.iterative_scan = relaxed_order` so filters that drop most
  neighbours still fill the list (re-sorted exactly afterwards); no parallel workers (they
  cost more to start than these statements take); past 100,000 embeddings the IVF indexes
  (`ivf.py`; a type's own for a type filter, of its RESOLVED exceptions for a filter on
  those too), and exact search for a filter that leaves few rows (`vectors.choose_path`).
  Every filter is on the embedding row (type, severity and status copied there, migration
  0017), so no index scan reads another table; the exception rows come back in the same
  statement;
- text: `content_tsv` (GIN) matched first with `websearch_to_tsquery` (every word; quotes and
  `-word` work, ranked by `ts_rank_cd`; one statement, which also returns the query's
  lexemes); when that finds too few and the query has more than that one word, the texts
  holding the query's informative words (held by at most a tenth of the organization's
  texts; rare words are counted, common ones take ANALYZE's statistics: `lexeme_shares`),
  rarest first, ranked by the summed inverse document frequency of the query words they hold:
  a reference or a name in a sentence of common words comes first, and common words alone do
  not fill the list with near-random texts. The words are matched on the embeddings alone,
  filters included (`sql._text_matches`: the policy of the exception table, joined beside
  `@@`, turned the GIN lookup into a scan of every text). At most `TEXT_MATCH_CAP` texts are
  ranked, and a
  word on more than `MAX_POSTINGS` rows of the whole table is not used to find them (its
  index entries alone would cost more than the rest of the search).
The two lists are fused by reciprocal rank fusion (score = sum of 1 / (60 + rank)); each hit
says which search found it (`vector`, `text` or `vector+text`). The text search is also the
fallback for what the vector search misses: references, names, exact words; it runs beside
the vector search, on a second connection, and its list is fused when `needs_words` says so:
the query holds a reference or a quoted phrase (`wants_words`), or the vectors found too
little.
ANALYZE's statistics the words search needs are kept for a minute per organization.
Statements are the same text for every query of a kind, so psycopg prepares them after a few
uses (no planning per query; the words search excepted, see `_text_candidates`).
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import sqlalchemy as sa

from pipelines.embed.search.routing import IDENTIFIER as IDENTIFIER
from pipelines.embed.search.routing import WEAK_SIMILARITY as WEAK_SIMILARITY
from pipelines.embed.search.routing import needs_words
from pipelines.embed.search.sql import (
    EXCEPTION_COLUMNS,
    Filters,
    _filters,
    _sql_params,
    _text_matches,
)
from pipelines.embed.search.stats import _STATISTICS as _STATISTICS
from pipelines.embed.search.stats import STATISTICS_SECONDS as STATISTICS_SECONDS
from pipelines.embed.search.stats import LexemeStats, _organization_texts, _own_texts, _statistics
from pipelines.embed.search.vectors import DISTANCE as DISTANCE
from pipelines.embed.search.vectors import MAX_EF_SEARCH as MAX_EF_SEARCH
from pipelines.embed.search.vectors import MIN_EF_SEARCH as MIN_EF_SEARCH
from pipelines.embed.search.vectors import _vector_candidates
from pipelines.embed.search.vectors import tune_hnsw as tune_hnsw
from pipelines.embed.search.vectors import vector_literal as vector_literal
from pipelines.embed.search.vectors import vector_statement as vector_statement
from pipelines.embed.store import EXCEPTION_DOCUMENT
from pipelines.work.users import organization_id as organization_id_by_name
from resources.database import organization_transaction
from resources.embedder import Embedder, default_embedder, encode_queries
from resources.errors import ReconError

# tests and bench/embed_bench.py replace TEXT_MATCH_CAP, _text_candidates and
# _vector_candidates on this module: the code reading them is kept here
RRF_K = 60
TEXT_MATCH_CAP = 2000
MAX_QUERY_TERMS = 16
COUNT_CAP = 50_000
MAX_POSTINGS = 5_000
INFORMATIVE_SHARE = 0.1
MIN_CANDIDATES = 40
# the vector list is shorter: with a filter on the exception row, every further neighbour
# costs the HNSW scan ~0.02 ms at 1M rows (a filter keeping a sixth of them needs ~6x the
# list), and ranks past 2 x limit barely move a fused top `limit`
MIN_VECTOR_CANDIDATES = 20
# the words search of a query holding a reference runs here, beside the vector search
_WORDS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="recon-search-words")


def _lexeme_stats(conn: sa.Connection, lexemes: list[str], params: dict[str, Any]) -> LexemeStats:
    rows, listed, unlisted, estimate = _statistics(conn, params)
    common = {w: listed[w] for w in lexemes if w in listed and listed[w] * rows > TEXT_MATCH_CAP}
    if not listed:
        common = {}
    elif unlisted * rows > TEXT_MATCH_CAP:  # a huge table: even unlisted words may be common
        common.update({w: unlisted for w in lexemes if w not in listed})
    # a count that would stop at the cap anyway is not made (it reads COUNT_CAP index entries)
    if estimate >= 2 * COUNT_CAP:
        texts = COUNT_CAP
    else:
        texts = max(_organization_texts(conn, params, COUNT_CAP), 1)
    counted = [w for w in lexemes if w not in common]
    shares = dict(common)
    postings = {w: share * rows for w, share in common.items()}
    if counted:
        found = conn.execute(
            sa.text(
                f"SELECT l.lexeme, (SELECT count(*) FROM (SELECT 1 {_own_texts()}"
                " AND d.content_tsv @@ CAST(quote_literal(l.lexeme) AS tsquery) LIMIT :cap) s)"
                " AS df FROM unnest(CAST(:lexemes AS text[])) AS l(lexeme)"
            ),
            {
                "org": params["org"],
                "doc": params["doc"],
                "model": params["model"],
                "lexemes": counted,
                "cap": TEXT_MATCH_CAP,
            },
        ).all()
        shares.update({row.lexeme: row.df / texts for row in found})
    return LexemeStats(float(texts), shares, postings)


def lexeme_shares(
    conn: sa.Connection, lexemes: list[str], params: dict[str, Any]
) -> tuple[float, dict[str, float]]:
    """(the organization's texts, share of them holding each lexeme), for inverse document
    frequencies and to tell informative words from common ones.

    Words that are rare in the whole table (by ANALYZE's statistics of `content_tsv`: not
    among its most common lexemes, or on fewer than `TEXT_MATCH_CAP` rows) are counted in the
    organization - cheap, their index entries are few - and the common ones take their
    table-wide share, so no query scans a common word's postings. Counts stop at
    `TEXT_MATCH_CAP` per word and `COUNT_CAP` texts (not counted when the statistics put the
    organization far past that); a table never analyzed is counted.
    """
    found = _lexeme_stats(conn, lexemes, params)
    return found.texts, found.shares


def _tsquery_word(lexeme: str) -> str:
    """A tsquery matching exactly `lexeme` (quoted, so nothing in it is an operator)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _text_candidates(conn: sa.Connection, text: str, filters: Filters, k: int) -> list[int]:
    """Exception ids by words: every word first (websearch syntax), then informative words."""
    params = _sql_params(filters)
    # planned for these words every time: a prepared statement's generic plan (psycopg prepares
    # after 5 uses) cannot know how rare the words are and picked plans 10x slower at 1M rows;
    # no parallel workers (as in `tune_hnsw`)
    conn.execute(
        sa.text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
            " set_config('max_parallel_workers_per_gather', '0', true)"
        )
    )
    first = conn.execute(
        sa.text(
            "WITH q AS (SELECT websearch_to_tsquery('english', :t) AS tsq) SELECT"
            " CAST(q.tsq AS text) AS tsq, ARRAY(SELECT DISTINCT l FROM"
            " unnest(tsvector_to_array(to_tsvector('english', :t))) AS l ORDER BY l) AS lexemes,"
            " ARRAY(SELECT m.document_id FROM " + _text_matches(filters, "q.tsq") + " m"
            " ORDER BY ts_rank_cd(m.content_tsv, q.tsq) DESC, m.document_id LIMIT :k) AS found"
            " FROM q"
        ),
        {**params, "t": text, "k": k, "cap": TEXT_MATCH_CAP},
    ).one()
    found = list(first.found)
    lexemes = list(first.lexemes or [])[:MAX_QUERY_TERMS]
    if len(found) >= k or not lexemes:
        return found
    if len(lexemes) == 1 and first.tsq == "'" + lexemes[0] + "'":
        return found  # one word: the texts holding it are what the first search found
    stats = _lexeme_stats(conn, lexemes, params)
    texts, shares = stats.texts, stats.shares
    # Only texts holding an informative word (in at most a tenth of the texts) are ranked,
    # rarest words first as far as TEXT_MATCH_CAP texts reach: common words alone would fill
    # the list with near-random texts. A small organization (all its matches fit under the
    # cap) with no informative word in the query ranks every text holding any of its words.
    # A word on more than MAX_POSTINGS rows of the table is never looked up by its postings.
    informative = sorted(
        (
            w
            for w in lexemes
            if 0 < shares.get(w, 0) <= INFORMATIVE_SHARE
            and stats.postings.get(w, 0) <= MAX_POSTINGS
        ),
        key=shares.get,
    )
    terms: list[str] = []
    reach = 0.0
    for word in informative:
        reach += shares[word] * texts
        if terms and reach > TEXT_MATCH_CAP:
            break
        terms.append(word)
    if not terms:
        if texts > TEXT_MATCH_CAP:
            return found
        terms = [w for w in lexemes if shares.get(w, 0) > 0]
        if not terms:
            return found
    smooth = 0.5 / texts
    weights = [
        math.log(1 + (1 - shares.get(w, 0) + smooth) / (shares.get(w, 0) + smooth)) for w in lexemes
    ]
    rows = conn.execute(
        sa.text(
            "WITH matched AS "
            + _text_matches(filters, "CAST(:any AS tsquery)")
            + " SELECT m.document_id, (SELECT sum(t.weight) FROM unnest(CAST(:queries AS"
            " tsquery[]), CAST(:weights AS float8[])) AS t(query, weight)"
            " WHERE m.content_tsv @@ t.query) AS weight"
            " FROM matched m ORDER BY weight DESC, m.document_id LIMIT :k"
        ),
        {
            **params,
            "queries": [_tsquery_word(w) for w in lexemes],
            "weights": weights,
            "any": " | ".join(_tsquery_word(w) for w in terms),
            "cap": TEXT_MATCH_CAP,
            "k": k,
        },
    ).all()
    seen = set(found)
    found.extend(row.document_id for row in rows if row.document_id not in seen)
    return found[:k]


def _words_beside(engine: sa.Engine, text: str, filters: Filters, k: int) -> list[int]:
    """`_text_candidates` in a transaction of its own, the organization's (run on `_WORDS`)."""
    with organization_transaction(engine, filters.params["org"]) as conn:
        return _text_candidates(conn, text, filters, k)


def search_exceptions(
    engine: sa.Engine,
    embedder: Embedder,
    text: str,
    *,
    organization_id: int,
    limit: int = 10,
    reconciliation_id: int | None = None,
    type: str | None = None,
    severity: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The organization's exceptions best matching `text`, best first (hybrid ranking;
    the full-text search joins the vectors when `needs_words` says so).

    Each hit: exception_id, reconciliation_id, type, severity, status, description, score
    (reciprocal rank fusion), method (`vector`, `text` or `vector+text`), similarity (cosine,
    when the vector search found it), text_rank (its place in the text search's list, when
    that found it), suggestion.
    """
    text = " ".join(str(text).split())
    if not text:
        raise ReconError("search text is empty")
    if limit < 1:
        return []
    k = max(MIN_CANDIDATES, 4 * limit)
    vector_k = max(MIN_VECTOR_CANDIDATES, 2 * limit)
    filters = _filters(reconciliation_id, type, severity, status)
    filters.params.update(
        {"org": organization_id, "doc": EXCEPTION_DOCUMENT, "model": embedder.model_name}
    )
    query = encode_queries(embedder, [text])[0]
    # the words search runs beside the vector search (two server processes: the latency of
    # the slower one, not the sum); its list is used when `needs_words` says so, which the
    # vector hits decide (it was needed by ~3 in 4 queries at 1M rows, run after them)
    beside: Future[list[int]] = _WORDS.submit(_words_beside, engine, text, filters, k)
    with organization_transaction(engine, organization_id) as conn:
        try:
            nearest = _vector_candidates(conn, query, filters, vector_k)
            vector_hits = [(row.document_id, float(row.distance)) for row in nearest]
            wanted = needs_words(text, vector_hits, limit)
            if not wanted:  # not run at all when still queued behind other searches' words
                beside.cancel()
        finally:  # never left running on the engine, after an error either
            wait([beside])
        text_hits = beside.result() if wanted else []
        fused: dict[int, dict[str, Any]] = {}
        for rank, (doc, distance) in enumerate(vector_hits, start=1):
            hit = fused.setdefault(doc, {"score": 0.0, "methods": []})
            hit["score"] += 1.0 / (RRF_K + rank)
            hit["methods"].append("vector")
            hit["similarity"] = round(1.0 - distance, 4)
        for rank, doc in enumerate(text_hits, start=1):
            hit = fused.setdefault(doc, {"score": 0.0, "methods": []})
            hit["score"] += 1.0 / (RRF_K + rank)
            hit["methods"].append("text")
            hit["text_rank"] = rank
        # ties (one list's first against the other's): the word match first, it is exact
        best = sorted(
            fused.items(),
            key=lambda item: (-item[1]["score"], "text" not in item[1]["methods"], item[0]),
        )[:limit]
        # the vector search brought its rows (organization and filters checked); the rows of
        # what only the words found are read the same way
        details = {row.id: row for row in nearest}
        missing = [doc for doc, _ in best if doc not in details]
        if missing:
            details.update(
                (row.id, row)
                for row in conn.execute(
                    sa.text(
                        "SELECT " + EXCEPTION_COLUMNS + " FROM reconciliation_exceptions e"
                        " WHERE e.id = ANY(:ids) AND e.organization_id = :org"
                        + filters.on_exception
                    ),
                    {**_sql_params(filters), "ids": missing},
                )
            )
    hits = []
    for doc, hit in best:
        row = details.get(doc)
        if row is None:  # deleted meanwhile
            continue
        hits.append(
            {
                "exception_id": row.id,
                "reconciliation_id": row.reconciliation_id,
                "type": row.type,
                "severity": row.severity,
                "status": row.status,
                "description": row.description,
                "score": round(hit["score"], 6),
                "method": "+".join(hit["methods"]),
                "similarity": hit.get("similarity"),
                "text_rank": hit.get("text_rank"),
                "suggestion": row.suggestion,
            }
        )
    return hits


def search_organization(
    url: str,
    text: str,
    *,
    organization: str = "Default Organization",
    limit: int = 10,
    embedder: Embedder | None = None,
    **filters: Any,
) -> list[dict[str, Any]]:
    """`recon search`: search the named organization's exceptions on the database at `url`.

    `filters` are search_exceptions' reconciliation_id, type, severity and status.
    """
    from resources.database import engine_for

    engine = engine_for(url)
    return search_exceptions(
        engine,
        embedder or default_embedder(),
        text,
        organization_id=organization_id_by_name(engine, organization),
        limit=limit,
        **filters,
    )
