"""The inverted-file index (pgvector IVFFlat) search uses once the embeddings are many: what it
is, when it is (re)built (`ensure_ivf`), and how many of its lists a query scans (`probes`).

Why a second index beside HNSW: exception texts are templated, so a query a person types sits
at nearly the same distance from thousands of exceptions of its kind (at 1M rows the 1st and
the 100th nearest differ by ~0.02 in cosine, the 10th and 11th by ~0.0002; an ad-hoc numpy
probe, see README). The HNSW graph walks such a plateau poorly: recall@10 0.54 at 1M rows,
0.58 at ef_search 1000 (`bench/search_bench.py --docfit`). Clustering gathers those
exceptions into few lists: scanning the 14 nearest of 1,120 lists finds ~0.93 of the exact
top 10 at 1.25M rows (`PROBE_SHARE`); each list scanned costs ~0.45 ms (~1,100 tuples ranked:
pgvector sorts every tuple of the lists it scans; the distance itself is a small part, and
float vectors were slower than half precision), so the statement takes ~8 ms.

IVFFlat places its lists by k-means over the rows present when it is built (on an empty table
it clusters nothing), so it is no migration: `ensure_ivf` builds it once the table holds
`IVF_MIN_ROWS` embeddings and again when they have doubled since (its lists were placed on
half the data), CONCURRENTLY under a new name swapped in afterwards, so searches go on and a
killed build leaves only an invalid `_new` index the next call drops. The daily upkeep, `recon
embed` / `recon run` (after embedding) and `recon db index` call it. The index holds the
half-precision embeddings by inner product (`halfvec_ip_ops`: the vectors are normalised, so
1 + inner distance is the cosine distance); that operator is its own, so a statement ordering
by `INNER` uses this index and one ordering by `vectors.DISTANCE` the HNSW one.

Beside it, one IVF index per exception type with at least a twentieth of `IVF_MIN_ROWS` rows
(`type_index`, partial: `WHERE exception_type = ...`, migration 0017), and one of each type's
RESOLVED exceptions once they are as many. The vectors cluster by type, so the whole index's
lists nearest to a query hold few of a type far from its words: a search of that type scanned
list after list for them (`max_probes`) and still missed nearer ones; the type's own lists
are placed among its own rows. A filter on a type (and RESOLVED) uses its index (the planner
matches the partial index's predicate, written as constants: `sql._filters`) and its lists'
probes.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import sqlalchemy as sa

from pipelines.work.exceptions_work import TYPES

IVF_INDEX = "idx_embeddings_ivf"
TYPE_INDEX = IVF_INDEX + "_t_"
# a type's resolved exceptions have an index of their own as well: the precedents a person
# looks for ("how was this kind settled before"); through the type's index a filter on a type
# and RESOLVED read each candidate's table row and dropped ~4 in 5 (at 1M rows: ~500 rows read
# for 20 kept when a severity was asked too, the slowest searches of all)
RESOLVED = "RESOLVED"
IVF_MIN_ROWS = 100_000
# a type's own index from this share of the whole index's rows (5,000 by default: fewer, and
# `vectors.leaves_few` searches them exactly; more, without one, and the whole index's
# iterative scan looks through list after list for a type far from the words)
TYPE_MIN_SHARE = 0.05
# ordering by it uses IVF_INDEX (negative inner product of the half-precision vectors)
INNER = "CAST(d.embedding AS halfvec(384)) <#> CAST(:q AS halfvec(384))"
DEFINITION = (
    "CREATE INDEX CONCURRENTLY {name} ON document_embeddings USING ivfflat"
    " ((CAST(embedding AS halfvec(384))) halfvec_ip_ops) WITH (lists = {lists}){where}"
)
# a query scans this share of the lists, at least MIN_PROBES: 14 of the whole index's 1,120
# lists at 1.25M rows, 12 of a type's ~210 (search_bench --probe-sweep, 120 queries routed
# to IVF: recall@10 0.91 at 11 probes, 0.96 at 17, 0.97 at 22; each list ~0.45 ms)
PROBE_SHARE = 0.0125
MIN_PROBES = 12
# a filter dropping most rows scans more lists, up to this many times `probes` (iterative scan)
MAX_PROBE_FACTOR = 8
# the advisory lock a build holds (hashtext of this key, as the project's other locks)
BUILD_LOCK = "search:ivf-build"
_LISTS: dict[str, tuple[float, dict[str, int]]] = {}
LISTS_SECONDS = 60.0


def type_index(exception_type: str, status: str | None = None) -> str:
    """The name of the IVF index of one exception type (`status` RESOLVED: of its resolved
    exceptions)."""
    name = TYPE_INDEX + exception_type.lower()
    return name + "_resolved" if status == RESOLVED else name


def _specs() -> list[tuple[str, str, str]]:
    """(index, its partial predicate, what it holds) of every IVF index search may use."""
    kinds = [(type_index(t), f"exception_type = '{t}'", t) for t in TYPES]
    resolved = [
        (type_index(t, RESOLVED), f"{where} AND exception_status = '{RESOLVED}'", f"{t} {RESOLVED}")
        for _, where, t in kinds
    ]
    return [(IVF_INDEX, "", "all"), *kinds, *resolved]


def lists_for(rows: int) -> int:
    """pgvector's advice: rows / 1000 lists up to 1M rows (at least 100), sqrt(rows) beyond."""
    return int(math.sqrt(rows)) if rows > 1_000_000 else max(100, rows // 1000)


def probes(lists: int) -> int:
    """Lists a query scans first (`PROBE_SHARE` of them, at least `MIN_PROBES`)."""
    return min(lists, max(MIN_PROBES, round(lists * PROBE_SHARE)))


def _built(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    """Every valid IVF index: name -> (its lists, the rows it was built on), from its options
    and comment."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.reloptions, obj_description(c.oid, 'pg_class') AS note"
            " FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE c.relname = ANY(:n) AND i.indisvalid"
        ),
        {"n": [name for name, _, _ in _specs()]},
    ).all()
    found = {}
    for row in rows:
        lists = next(
            (int(o.split("=")[1]) for o in row.reloptions or [] if o.startswith("lists=")), 0
        )
        on = re.search(r"rows=(\d+)", row.note or "")
        if lists:
            found[row.relname] = (lists, int(on.group(1)) if on else 0)
    return found


def ivf_lists(conn: sa.Connection, index: str = IVF_INDEX) -> int | None:
    """The lists of the valid IVF index `index`, or None when there is none (kept
    `LISTS_SECONDS` per database: a build swaps an index in at most that long before searches
    use it)."""
    key = str(conn.engine.url)
    cached = _LISTS.get(key)
    if cached is None or time.monotonic() - cached[0] > LISTS_SECONDS:
        cached = (time.monotonic(), {k: v[0] for k, v in _built(conn).items()})
        _LISTS[key] = cached
    return cached[1].get(index)


def _rows(conn: sa.Connection, where: str = "") -> int:
    """The table's rows (of the predicate `where`): the planner's estimate when ANALYZE made
    statistics, else counted."""
    analyzed = conn.execute(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = 'document_embeddings'::regclass")
    ).scalar()
    if analyzed is None or analyzed < 0:
        count = "SELECT count(*) FROM document_embeddings" + (f" WHERE {where}" if where else "")
        return int(conn.execute(sa.text(count)).scalar_one())
    if not where:
        return int(analyzed)
    return int(planned_rows(conn, f"SELECT 1 FROM document_embeddings WHERE {where}"))


def planned_rows(conn: sa.Connection, select: str, params: dict[str, Any] | None = None) -> float:
    """The rows the planner expects `select` to return (EXPLAIN: a plan, no rows read)."""
    plan = conn.execute(sa.text("EXPLAIN (FORMAT JSON) " + select), params or {}).scalar_one()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return float(plan[0]["Plan"]["Plan Rows"])


def prewarm(engine: sa.Engine, *, table: bool = False) -> str:
    """The IVF indexes read into shared buffers (`pg_prewarm`), so a query's first scan of
    their lists reads no block from outside them: 'prewarmed', or why not (no index, no
    extension, not allowed to create it: a server of your own may lack it, search works the
    same). `table` (after a build): the embeddings' table asked of the operating system's
    cache too (`prefetch`: in the background, no shared buffer taken), as each row an index
    scan ranks is read from it; a build writes its new index through shared buffers and
    pushes the table out of them (at 1.25M rows, the first 300 searches after a rebuild of
    every index read 16,833 table blocks from outside shared buffers, p95 37 ms)."""
    try:
        with engine.begin() as conn:
            names = list(_built(conn))
            if IVF_INDEX not in names:
                return "no IVF index"
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
            conn.execute(
                sa.text("SELECT pg_prewarm(n) FROM unnest(CAST(:n AS text[])) n"), {"n": names}
            )
            if table:
                conn.execute(sa.text("SELECT pg_prewarm('document_embeddings', 'prefetch')"))
    except sa.exc.DBAPIError as error:
        return f"not prewarmed: {str(error.orig).strip().splitlines()[0]}"
    return "prewarmed"


def ensure_ivf(engine: sa.Engine, *, force: bool = False, min_rows: int = IVF_MIN_ROWS) -> dict:
    """Build (or rebuild) the IVF index when the embeddings reached `min_rows` and have at
    least doubled since the last build (or `force`, when there are any); the same for each
    type's index (`type_index`) at `TYPE_MIN_SHARE` of `min_rows` of that type; else nothing.
    Either way the existing indexes are read into shared buffers (`prewarm`: a restarted
    server's are empty).

    Returns what was found and done for the whole index: rows, lists, built (bool), seconds,
    reason, prewarm; and `types`: each type's rows, lists, built, seconds, reason.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        built = _built(conn)
        # one build at a time (upkeep and an embedding run may both find it due): the other
        # call leaves it, rather than dropping the index being built as a killed build's
        lock = {"k": BUILD_LOCK}
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), lock).scalar():
            found = {"rows": _rows(conn), "lists": built.get(IVF_INDEX, (None,))[0]}
            busy = {"built": False, "seconds": 0.0, "reason": "another process is building it"}
            return found | busy | {"types": {}, "prewarm": "not now"}
        try:
            whole = _ensure_one(engine, conn, IVF_INDEX, "", built.get(IVF_INDEX), force, min_rows)
            # a type's index only beside the whole one: until that exists HNSW serves them all
            least = round(min_rows * TYPE_MIN_SHARE)
            types = {
                held: _ensure_one(engine, conn, name, where, built.get(name), force, least)
                if whole["lists"]
                else {"rows": None, "lists": None, "built": False, "seconds": 0.0}
                | {"reason": "no IVF index of all the embeddings yet"}
                for name, where, held in _specs()[1:]
            }
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), lock)
    _LISTS.pop(str(engine.url), None)
    built_any = whole["built"] or any(t["built"] for t in types.values())
    return whole | {"types": types, "prewarm": prewarm(engine, table=built_any)}


def _ensure_one(
    engine: sa.Engine,
    conn: sa.Connection,
    name: str,
    where: str,
    built: tuple[int, int] | None,
    force: bool,
    min_rows: int,
) -> dict[str, Any]:
    """One IVF index (`name`, over the rows of `where`) built when due: `ensure_ivf`."""
    rows = _rows(conn, where)
    lists = built[0] if built else None
    found: dict[str, Any] = {"rows": rows, "lists": lists, "built": False, "seconds": 0.0}
    if rows < (1 if force else min_rows):
        serves = "HNSW serves" if name == IVF_INDEX else "the whole index serves"
        return found | {"reason": f"{rows} embeddings, fewer than {min_rows}: {serves}"}
    if not force and built is not None and rows < 2 * built[1]:
        return found | {"reason": f"built on {built[1]} rows; rebuilt at {2 * built[1]}"}
    lists = lists_for(rows)
    started = time.perf_counter()
    new = f"{name}_new"
    conn.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {new}"))  # a killed build's
    conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
    conn.execute(sa.text("SET max_parallel_maintenance_workers = 2"))
    predicate = f" WHERE {where}" if where else ""
    conn.execute(sa.text(DEFINITION.format(name=new, lists=lists, where=predicate)))
    conn.execute(sa.text(f"COMMENT ON INDEX {new} IS 'rows={rows}'"))
    with engine.begin() as swap:  # one transaction: searches see one index or the other
        swap.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
        swap.execute(sa.text(f"ALTER INDEX {new} RENAME TO {name}"))
    seconds = round(time.perf_counter() - started, 1)
    return found | {"lists": lists, "built": True, "seconds": seconds, "reason": "built"}
