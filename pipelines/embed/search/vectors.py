"""The vector search: the half-precision HNSW cosine index of migration 0007, its
transaction-local settings (`tune_hnsw`) and its statement (`vector_statement`); the IVF
indexes once there are some (`ivf.py`: the same statement ordering by `ivf.INNER`, a type's
own index for a filter on that type); and the exact search (`exact_statement`) for a filter
the planner expects to leave few rows (`leaves_few`): walking an index through a filter that
drops most neighbours reads far more rows than the filter keeps, and finds fewer of the true
nearest. Every filter is on the embedding row (migration 0017): the index scan reads no other
table, and the exception rows of the `:k` found are joined once, the filters checked again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import sqlalchemy as sa

from pipelines.embed.search.ivf import (
    INNER,
    MAX_PROBE_FACTOR,
    ivf_lists,
    planned_rows,
    probes,
    type_index,
)
from pipelines.embed.search.sql import (
    EXCEPTION_COLUMNS,
    Filters,
    _candidates_from,
    _sql_params,
)

MIN_EF_SEARCH = 200
MAX_EF_SEARCH = 1000
# a filter the planner expects to leave at most this many rows is searched exactly, by the
# index that would serve otherwise: exact costs ~3 us a row (heap fetch and distance); an IVF
# scan ~0.45 ms a list (14 of the whole index's at 1.25M rows, 12 of a type's) plus a heap
# fetch for each row it ranks until :k pass the filter (~2.5 us each, :k x the index's rows /
# the filter's rows). HNSW's iterative scan through a narrow filter is the slowest of all.
EXACT_ROWS = {"hnsw": 20_000, "ivf": 6_000, "ivf of the type": 3_000}
# the expression of idx_embeddings_halfvec (migration 0007): ordering by it uses that index
DISTANCE = "CAST(d.embedding AS halfvec(384)) <=> CAST(:q AS halfvec(384))"
# the exact search's: the stored vectors as they are (converting each to half precision cost
# ~1 us a row, 8 ms of a filter's 8,400)
EXACT_DISTANCE = "d.embedding <=> CAST(:q AS vector)"
_VECTOR_VERSIONS: dict[str, tuple[int, ...]] = {}
# the planner's estimates of `leaves_few`, by database, statement and parameters
_ESTIMATES: dict[tuple[str, str, tuple], tuple[float, float]] = {}
ESTIMATE_SECONDS = 60.0
MAX_ESTIMATES = 1000


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


def tune_hnsw(
    conn: sa.Connection, candidates: int, *, serial: bool = False, lists: int | None = None
) -> None:
    """Transaction-local HNSW settings: ef_search for `candidates`, iterative scans if possible
    (one statement). `serial`: no parallel workers either - the search's statements read a few
    dozen rows, and starting workers (which the planner picks when it overestimates a rare
    word's matches) costs 5-10 ms. `lists`: the IVF index's, whose probes are set too."""
    ef_search = min(MAX_EF_SEARCH, max(MIN_EF_SEARCH, 4 * candidates))
    iterative = _pgvector_version(conn) >= (0, 8)
    ivf = ", set_config('ivfflat.probes', :p, true)" if lists else ""
    if lists and iterative:
        ivf += ", set_config('ivfflat.iterative_scan', 'relaxed_order', true)"
        ivf += ", set_config('ivfflat.max_probes', :mp, true)"
    first = probes(lists or 1)
    most = min(lists or 1, MAX_PROBE_FACTOR * first)
    conn.execute(
        sa.text(
            "SELECT set_config('hnsw.ef_search', :v, true)"
            + (", set_config('hnsw.iterative_scan', 'relaxed_order', true)" if iterative else "")
            + (", set_config('max_parallel_workers_per_gather', '0', true)" if serial else "")
            + ivf
        ),
        {"v": str(ef_search), "p": str(first), "mp": str(most)},
    )


def vector_statement(filters: Filters, *, ivf: bool = False) -> str:
    """The vector search: the `:k` nearest exceptions by the HNSW index (`ivf`: the IVF
    index), nearest first, with their rows (organization and filters checked on them)."""
    order = INNER if ivf else DISTANCE
    distance = f"1 + ({INNER})" if ivf else DISTANCE
    return (
        f"WITH nearest AS MATERIALIZED (SELECT d.document_id, {distance} AS distance"
        f"{_candidates_from(filters)} ORDER BY {order} LIMIT :k)"
        f" SELECT n.document_id, n.distance, {EXCEPTION_COLUMNS} FROM nearest n"
        " JOIN reconciliation_exceptions e ON e.id = n.document_id"
        f" AND e.organization_id = :org{filters.on_exception}"
        " ORDER BY n.distance, n.document_id"
    )


def exact_statement(filters: Filters) -> str:
    """The `:k` nearest by distance over every row the filters keep (no index on the distance:
    the MATERIALIZED candidates have no ORDER BY for an index to serve), with the rows of
    `vector_statement`. For filters that leave few rows (`leaves_few`)."""
    return (
        f"WITH kept AS MATERIALIZED (SELECT d.document_id, {EXACT_DISTANCE} AS distance"
        f"{_candidates_from(filters)}), nearest AS (SELECT * FROM kept"
        " ORDER BY distance, document_id LIMIT :k)"
        f" SELECT n.document_id, n.distance, {EXCEPTION_COLUMNS} FROM nearest n"
        " JOIN reconciliation_exceptions e ON e.id = n.document_id"
        f" AND e.organization_id = :org{filters.on_exception}"
        " ORDER BY n.distance, n.document_id"
    )


def leaves_few(conn: sa.Connection, filters: Filters, rows: int) -> bool:
    """Whether the filters (a reconciliation, a type, severity or status) leave at most `rows`
    embeddings by the planner's estimate (EXPLAIN: a plan, no rows read; kept
    `ESTIMATE_SECONDS` per database, organization and filters: planning it cost ~1.5 ms a
    query, and the same few filters come back query after query)."""
    if not filters.on_embedding:
        return False
    statement = "SELECT 1" + _candidates_from(filters)
    params = _sql_params(filters)
    key = (str(conn.engine.url), statement, tuple(sorted(params.items())))
    cached = _ESTIMATES.get(key)
    if cached is None or time.monotonic() - cached[0] > ESTIMATE_SECONDS:
        cached = _ESTIMATES[key] = (time.monotonic(), planned_rows(conn, statement, params))
        if len(_ESTIMATES) > MAX_ESTIMATES:
            _ESTIMATES.pop(next(iter(_ESTIMATES)))
    return cached[1] <= rows


def choose_path(conn: sa.Connection, filters: Filters) -> tuple[str, int | None]:
    """How the `k` nearest are found, and the lists of the IVF index that serves: `ivf` when
    there is an IVF index (a type filter's own index when it has one, of the type's RESOLVED
    exceptions for a filter on those too: `ivf.type_index`), else `hnsw`; `exact` instead
    when the filters leave at most `EXACT_ROWS` of that index's rows (`leaves_few`)."""
    whole = ivf_lists(conn)
    kind, status = filters.params.get("type"), filters.params.get("status")
    own = None
    if whole and kind:  # the type's resolved exceptions' index, else the type's
        own = ivf_lists(conn, type_index(kind, status)) or ivf_lists(conn, type_index(kind))
    serving = "ivf of the type" if own else "ivf" if whole else "hnsw"
    if leaves_few(conn, filters, EXACT_ROWS[serving]):
        return "exact", None
    return ("ivf", own or whole) if whole else ("hnsw", None)


def path_statement(path: str, filters: Filters) -> str:
    """The statement of a `choose_path` path."""
    if path == "exact":
        return exact_statement(filters)
    return vector_statement(filters, ivf=path == "ivf")


def _vector_candidates(
    conn: sa.Connection, query: np.ndarray, filters: Filters, k: int
) -> list[Any]:
    """The `k` nearest by `choose_path`'s statement (the transaction's settings made first:
    `tune_hnsw`)."""
    path, lists = choose_path(conn, filters)
    tune_hnsw(conn, k, serial=True, lists=lists)
    params = {**_sql_params(filters), "q": vector_literal(query), "k": k}
    return conn.execute(sa.text(path_statement(path, filters)), params).all()
