"""The inverted-file index (pgvector IVFFlat) search uses once the embeddings are many: what it
is, when it is (re)built (`ensure_ivf`), and how many of its lists a query scans (`probes`).

Why a second index beside HNSW: exception texts are templated, so a query a person types sits
at nearly the same distance from thousands of exceptions of its kind (at 1M rows the 1st and
the 100th nearest differ by ~0.02 in cosine, the 10th and 11th by ~0.0002; an ad-hoc numpy
probe, see README). The HNSW graph walks such a plateau poorly: recall@10 0.54 at 1M rows,
0.58 at ef_search 1000 (`bench/search_bench.py --docfit`). Clustering gathers those
exceptions into few lists: scanning the 22 nearest of 1,120 lists finds 0.93 of the exact top
10 at 1.25M rows (0.96 counting near-ties), 11 of them 0.83, 44 0.98; each list scanned costs
~0.55 ms (distances computed for ~1,100 tuples), so the statement takes ~15 ms: recall bought
with time.

IVFFlat places its lists by k-means over the rows present when it is built (on an empty table
it clusters nothing), so it is no migration: `ensure_ivf` builds it once the table holds
`IVF_MIN_ROWS` embeddings and again when they have doubled since (its lists were placed on
half the data), CONCURRENTLY under a new name swapped in afterwards, so searches go on and a
killed build leaves only an invalid `_new` index the next call drops. The daily upkeep, `recon
embed` / `recon run` (after embedding) and `recon db index` call it. The index holds the
half-precision embeddings by inner product (`halfvec_ip_ops`: the vectors are normalised, so
1 + inner distance is the cosine distance); that operator is its own, so a statement ordering
by `INNER` uses this index and one ordering by `vectors.DISTANCE` the HNSW one.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import sqlalchemy as sa

IVF_INDEX = "idx_embeddings_ivf"
IVF_MIN_ROWS = 100_000
# ordering by it uses IVF_INDEX (negative inner product of the half-precision vectors)
INNER = "CAST(d.embedding AS halfvec(384)) <#> CAST(:q AS halfvec(384))"
DEFINITION = (
    "CREATE INDEX CONCURRENTLY {name} ON document_embeddings USING ivfflat"
    " ((CAST(embedding AS halfvec(384))) halfvec_ip_ops) WITH (lists = {lists})"
)
# a query scans this share of the lists (22 of 1,120: recall@10 0.93 at 1.25M), at least MIN_PROBES
PROBE_SHARE = 0.02
MIN_PROBES = 10
# a filter dropping most rows scans more lists, up to this many times `probes` (iterative scan)
MAX_PROBE_FACTOR = 8
# the advisory lock a build holds (hashtext of this key, as the project's other locks)
BUILD_LOCK = "search:ivf-build"
_LISTS: dict[str, tuple[float, int | None]] = {}
LISTS_SECONDS = 60.0


def lists_for(rows: int) -> int:
    """pgvector's advice: rows / 1000 lists up to 1M rows (at least 100), sqrt(rows) beyond."""
    return int(math.sqrt(rows)) if rows > 1_000_000 else max(100, rows // 1000)


def probes(lists: int) -> int:
    """Lists a query scans first (`PROBE_SHARE` of them, at least `MIN_PROBES`)."""
    return min(lists, max(MIN_PROBES, round(lists * PROBE_SHARE)))


def _built(conn: sa.Connection) -> tuple[int | None, int]:
    """(the index's lists, the rows it was built on) from its options and comment."""
    row = conn.execute(
        sa.text(
            "SELECT c.reloptions, obj_description(c.oid, 'pg_class') AS note FROM pg_class c"
            " JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = :n AND i.indisvalid"
        ),
        {"n": IVF_INDEX},
    ).first()
    if row is None:
        return None, 0
    lists = next((int(o.split("=")[1]) for o in row.reloptions or [] if o.startswith("lists=")), 0)
    found = re.search(r"rows=(\d+)", row.note or "")
    return lists or None, int(found.group(1)) if found else 0


def ivf_lists(conn: sa.Connection) -> int | None:
    """The valid IVF index's lists, or None when there is none (kept `LISTS_SECONDS` per
    database: a build swaps the index in at most that long before searches use it)."""
    key = str(conn.engine.url)
    cached = _LISTS.get(key)
    if cached is None or time.monotonic() - cached[0] > LISTS_SECONDS:
        cached = (time.monotonic(), _built(conn)[0])
        _LISTS[key] = cached
    return cached[1]


def _rows(conn: sa.Connection) -> int:
    """The table's rows: the planner's count when ANALYZE made one, else counted."""
    estimate = conn.execute(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = 'document_embeddings'::regclass")
    ).scalar()
    if estimate is not None and estimate >= 0:
        return int(estimate)
    return int(conn.execute(sa.text("SELECT count(*) FROM document_embeddings")).scalar_one())


def prewarm(engine: sa.Engine) -> str:
    """The IVF index read into shared buffers (`pg_prewarm`), so a query's first scan of its
    lists reads no block from outside them: 'prewarmed', or why not (no index, no extension,
    not allowed to create it: a server of your own may lack it, search works the same)."""
    try:
        with engine.begin() as conn:
            if not conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": IVF_INDEX}).scalar():
                return "no IVF index"
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
            conn.execute(sa.text("SELECT pg_prewarm(:n)"), {"n": IVF_INDEX})
    except sa.exc.DBAPIError as error:
        return f"not prewarmed: {str(error.orig).strip().splitlines()[0]}"
    return "prewarmed"


def ensure_ivf(engine: sa.Engine, *, force: bool = False, min_rows: int = IVF_MIN_ROWS) -> dict:
    """Build (or rebuild) the IVF index when the embeddings reached `min_rows` and have at
    least doubled since the last build (or `force`, when there are any); else nothing. Either
    way an existing index is read into shared buffers (`prewarm`: a restarted server's are
    empty).

    Returns what was found and done: rows, lists, built (bool), seconds, reason, prewarm.
    """
    found = _ensure(engine, force, min_rows)
    return found | {"prewarm": prewarm(engine)}


def _ensure(engine: sa.Engine, force: bool, min_rows: int) -> dict:
    with engine.connect() as conn:
        rows = _rows(conn)
        lists, built_rows = _built(conn)
    found: dict[str, Any] = {"rows": rows, "lists": lists, "built": False, "seconds": 0.0}
    if rows < (1 if force else min_rows):
        return found | {"reason": f"{rows} embeddings, fewer than {min_rows}: HNSW serves"}
    if not force and lists is not None and rows < 2 * built_rows:
        return found | {"reason": f"built on {built_rows} rows; rebuilt at {2 * built_rows}"}
    lists = lists_for(rows)
    started = time.perf_counter()
    new = f"{IVF_INDEX}_new"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # one build at a time (upkeep and an embedding run may both find it due): the other
        # call leaves it, rather than dropping the index being built as a killed build's
        lock = {"k": BUILD_LOCK}
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), lock).scalar():
            return found | {"reason": "another process is building it"}
        try:
            conn.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {new}"))  # a killed build's
            conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
            conn.execute(sa.text("SET max_parallel_maintenance_workers = 2"))
            conn.execute(sa.text(DEFINITION.format(name=new, lists=lists)))
            conn.execute(sa.text(f"COMMENT ON INDEX {new} IS 'rows={rows}'"))
            with engine.begin() as swap:  # one transaction: searches see one index or the other
                swap.execute(sa.text(f"DROP INDEX IF EXISTS {IVF_INDEX}"))
                swap.execute(sa.text(f"ALTER INDEX {new} RENAME TO {IVF_INDEX}"))
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), lock)
    _LISTS.pop(str(engine.url), None)
    seconds = round(time.perf_counter() - started, 1)
    return found | {"lists": lists, "built": True, "seconds": seconds, "reason": "built"}
