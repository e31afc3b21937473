"""Search one organization's exceptions by meaning and by words, fused into one ranking.

`search_exceptions` embeds the query with the same model as the stored exceptions and runs
two candidate searches, both restricted in SQL to ONE organization (on the embedding and on
the exception row) and to the optional filters (reconciliation, type, severity, status):
- vector: the HNSW cosine index (`<=>`), with `hnsw.ef_search` sized to the candidates wanted
  and, on pgvector >= 0.8, `hnsw.iterative_scan = relaxed_order` so filters that drop most
  neighbours still fill the list (re-sorted exactly afterwards);
- text: `content_tsv` (GIN) matched first with `websearch_to_tsquery` (every word; quotes and
  `-word` work, ranked by `ts_rank_cd`); when that finds too few, the texts holding the
  query's informative words (held by at most a tenth of the organization's texts; rare
  words are counted, common ones take ANALYZE's statistics: `lexeme_shares`), rarest
  first, ranked by the summed inverse document frequency of the query words they hold: a
  reference or a name in a sentence of common words comes first, and common words alone do
  not fill the list with near-random texts. At most `TEXT_MATCH_CAP` texts are ranked.
The two lists are fused by reciprocal rank fusion (score = sum of 1 / (60 + rank)); each hit
says which search found it (`vector`, `text` or `vector+text`). The text search is also the
fallback for what the vector search misses: references, names, exact words.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import sqlalchemy as sa

from pipelines.embed.store import EXCEPTION_DOCUMENT
from resources.embedder import Embedder, SentenceTransformerEmbedder
from resources.errors import ReconError

RRF_K = 60
WEAK_SIMILARITY = 0.5
IDENTIFIER = re.compile(r"\w*\d\w*")
TEXT_MATCH_CAP = 2000
MAX_QUERY_TERMS = 16
COUNT_CAP = 50_000
INFORMATIVE_SHARE = 0.1
MIN_CANDIDATES = 40
MIN_EF_SEARCH = 200
MAX_EF_SEARCH = 1000
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


def tune_hnsw(conn: sa.Connection, candidates: int) -> None:
    """Transaction-local HNSW settings: ef_search for `candidates`, iterative scans if possible."""
    ef_search = min(MAX_EF_SEARCH, max(MIN_EF_SEARCH, 4 * candidates))
    conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :v, true)"), {"v": str(ef_search)})
    if _pgvector_version(conn) >= (0, 8):
        conn.execute(sa.text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))


def _filters(
    reconciliation_id: int | None, type: str | None, severity: str | None, status: str | None
) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if reconciliation_id is not None:
        clauses.append("AND d.reconciliation_id = :rid AND e.reconciliation_id = :rid")
        params["rid"] = reconciliation_id
    for column, value in (("type", type), ("severity", severity), ("status", status)):
        if value is not None:
            clauses.append(f"AND e.{column} = :{column}")
            params[column] = value.upper()
    return " ".join(clauses), params


def _vector_candidates(
    conn: sa.Connection, query: np.ndarray, where: str, params: dict[str, Any], k: int
) -> list[tuple[int, float]]:
    rows = conn.execute(
        sa.text(
            "WITH nearest AS MATERIALIZED ("
            " SELECT d.document_id, d.embedding <=> CAST(:q AS vector) AS distance"
            " FROM document_embeddings d JOIN reconciliation_exceptions e ON e.id = d.document_id"
            " WHERE d.organization_id = :org AND e.organization_id = :org"
            " AND d.document_type = :doc AND d.model_name = :model " + where + " ORDER BY"
            " d.embedding <=> CAST(:q AS vector) LIMIT :k"
            ") SELECT document_id, distance FROM nearest ORDER BY distance, document_id"
        ),
        {**params, "q": vector_literal(query), "k": k},
    ).all()
    return [(row.document_id, float(row.distance)) for row in rows]


def _own_texts(params: dict[str, Any]) -> str:
    return (
        "FROM document_embeddings d WHERE d.organization_id = :org AND d.document_type = :doc"
        " AND d.model_name = :model"
    )


def _organization_texts(conn: sa.Connection, params: dict[str, Any], cap: int) -> int:
    """How many texts the organization has, counted up to `cap` (an index-only count)."""
    return conn.execute(
        sa.text(f"SELECT count(*) FROM (SELECT 1 {_own_texts(params)} LIMIT :cap) s"),
        {**params, "cap": cap},
    ).scalar_one()


def _table_shares(conn: sa.Connection) -> tuple[float, dict[str, float], float]:
    """ANALYZE's view of `content_tsv`: (rows, share per listed lexeme, share of an unlisted
    one at most); no rows when the table was never analyzed."""
    stats = conn.execute(
        sa.text(
            "SELECT CAST(CAST(s.most_common_elems AS text) AS text[]) AS elems, "
            "s.most_common_elem_freqs AS freqs, c.reltuples FROM pg_stats s "
            "JOIN pg_class c ON c.oid = to_regclass('document_embeddings') "
            "WHERE s.schemaname = current_schema() AND s.tablename = 'document_embeddings' "
            "AND s.attname = 'content_tsv'"
        )
    ).first()
    if stats is None or not stats.elems or not stats.freqs or stats.reltuples <= 0:
        return 0.0, {}, 1.0
    listed = dict(zip(stats.elems, (float(f) for f in stats.freqs), strict=False))
    # the frequencies end with their minimum, maximum and the share of nulls
    rarest = stats.freqs[len(stats.elems)] if len(stats.freqs) > len(stats.elems) else 0.0
    return float(stats.reltuples), listed, float(rarest or min(listed.values()))


def lexeme_shares(
    conn: sa.Connection, lexemes: list[str], params: dict[str, Any]
) -> tuple[float, dict[str, float]]:
    """(the organization's texts, share of them holding each lexeme), for inverse document
    frequencies and to tell informative words from common ones.

    Words that are rare in the whole table (by ANALYZE's statistics of `content_tsv`: not
    among its most common lexemes, or on fewer than `TEXT_MATCH_CAP` rows) are counted in the
    organization - cheap, their index entries are few - and the common ones take their
    table-wide share, so no query scans a common word's postings. Counts stop at
    `TEXT_MATCH_CAP` per word and `COUNT_CAP` texts; a table never analyzed is counted.
    """
    rows, listed, unlisted = _table_shares(conn)
    common = {w: listed[w] for w in lexemes if w in listed and listed[w] * rows > TEXT_MATCH_CAP}
    if not listed:
        common = {}
    elif unlisted * rows > TEXT_MATCH_CAP:  # a huge table: even unlisted words may be common
        common.update({w: unlisted for w in lexemes if w not in listed})
    texts = max(_organization_texts(conn, params, COUNT_CAP), 1)
    counted = [w for w in lexemes if w not in common]
    shares = dict(common)
    if counted:
        found = conn.execute(
            sa.text(
                f"SELECT l.lexeme, (SELECT count(*) FROM (SELECT 1 {_own_texts(params)}"
                " AND d.content_tsv @@ CAST(quote_literal(l.lexeme) AS tsquery) LIMIT :cap) s)"
                " AS df FROM unnest(CAST(:lexemes AS text[])) AS l(lexeme)"
            ),
            {**params, "lexemes": counted, "cap": TEXT_MATCH_CAP},
        ).all()
        shares.update({row.lexeme: row.df / texts for row in found})
    return float(texts), shares


def _text_candidates(
    conn: sa.Connection, text: str, where: str, params: dict[str, Any], k: int
) -> list[int]:
    """Exception ids by words: every word first (websearch syntax), then informative words."""
    base = (
        " FROM document_embeddings d JOIN reconciliation_exceptions e ON e.id = d.document_id"
        " WHERE d.organization_id = :org AND e.organization_id = :org"
        " AND d.document_type = :doc AND d.model_name = :model " + where
    )
    found = [
        row.document_id
        for row in conn.execute(
            sa.text(
                "WITH q AS (SELECT websearch_to_tsquery('english', :t) AS tsq), matched AS ("
                " SELECT d.document_id, d.content_tsv" + base + " AND d.content_tsv @@ "
                " (SELECT tsq FROM q) LIMIT :cap"
                ") SELECT m.document_id FROM matched m, q"
                " ORDER BY ts_rank_cd(m.content_tsv, q.tsq) DESC, m.document_id LIMIT :k"
            ),
            {**params, "t": text, "k": k, "cap": TEXT_MATCH_CAP},
        )
    ]
    if len(found) >= k:
        return found
    lexemes = conn.execute(
        sa.text(
            "SELECT array_agg(DISTINCT l ORDER BY l) "
            "FROM unnest(tsvector_to_array(to_tsvector('english', :t))) AS l"
        ),
        {"t": text},
    ).scalar()
    lexemes = list(lexemes or [])[:MAX_QUERY_TERMS]
    if not lexemes:
        return found
    texts, shares = lexeme_shares(conn, lexemes, params)
    # Only texts holding an informative word (in at most a tenth of the texts) are ranked,
    # rarest words first as far as TEXT_MATCH_CAP texts reach: common words alone would fill
    # the list with near-random texts. A small organization (all its matches fit under the
    # cap) with no informative word in the query ranks every text holding any of its words.
    informative = sorted(
        (w for w in lexemes if 0 < shares.get(w, 0) <= INFORMATIVE_SHARE), key=shares.get
    )
    terms: list[str] = []
    reach = 0.0
    for word in informative:
        reach += shares[word] * texts
        if terms and reach > TEXT_MATCH_CAP:
            break
        terms.append(word)
    if not terms:
        if _organization_texts(conn, params, TEXT_MATCH_CAP + 1) > TEXT_MATCH_CAP:
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
            "WITH terms AS (SELECT unnest(CAST(:lexemes AS text[])) AS lexeme,"
            " unnest(CAST(:weights AS float8[])) AS weight), matched AS ("
            " SELECT d.document_id, d.content_tsv" + base + " AND d.content_tsv @@ "
            " CAST(:any AS tsquery) LIMIT :cap"
            ") SELECT m.document_id, sum(t.weight) AS weight FROM matched m JOIN terms t"
            " ON m.content_tsv @@ CAST(quote_literal(t.lexeme) AS tsquery)"
            " GROUP BY m.document_id ORDER BY weight DESC, m.document_id LIMIT :k"
        ),
        {
            **params,
            "lexemes": lexemes,
            "weights": weights,
            "any": " | ".join("'" + w.replace("'", "''") + "'" for w in terms),
            "cap": TEXT_MATCH_CAP,
            "k": k,
        },
    ).all()
    seen = set(found)
    found.extend(row.document_id for row in rows if row.document_id not in seen)
    return found[:k]


def needs_words(text: str, vector_hits: list[tuple[int, float]], limit: int) -> bool:
    """Whether the full-text search must run beside the vectors (it costs more than they do).

    It runs when the query holds something vectors are poor at matching exactly (a token with
    a digit: a reference, an id, an amount, or a quoted phrase), and as the fallback when the
    vector search came back short or with nothing close (best cosine similarity below
    WEAK_SIMILARITY). A plain-words question is answered by the vectors alone.
    """
    if IDENTIFIER.search(text) or '"' in text:
        return True
    if len(vector_hits) < limit or not vector_hits:
        return True
    return 1.0 - vector_hits[0][1] < WEAK_SIMILARITY


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
    where, params = _filters(reconciliation_id, type, severity, status)
    params.update({"org": organization_id, "doc": EXCEPTION_DOCUMENT, "model": embedder.model_name})
    query = np.asarray(embedder.encode([text]), dtype=np.float32)[0]
    with engine.begin() as conn:
        tune_hnsw(conn, k)
        vector_hits = _vector_candidates(conn, query, where, params, k)
        text_hits = (
            _text_candidates(conn, text, where, params, k)
            if needs_words(text, vector_hits, limit)
            else []
        )
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
        details = {
            row.id: row
            for row in conn.execute(
                sa.text(
                    "SELECT id, reconciliation_id, type, severity, status, description, "
                    "suggestion FROM reconciliation_exceptions "
                    "WHERE id = ANY(:ids) AND organization_id = :org"
                ),
                {"ids": [doc for doc, _ in best], "org": organization_id},
            ).all()
        }
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


def organization_id_by_name(engine: sa.Engine, name: str) -> int:
    """The id of the organization called `name` (ReconError when there is none)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = :n"), {"n": name}
        ).scalar()
    if found is None:
        raise ReconError(f"no organization named {name!r}")
    return int(found)


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
        embedder or SentenceTransformerEmbedder(),
        text,
        organization_id=organization_id_by_name(engine, organization),
        limit=limit,
        **filters,
    )
