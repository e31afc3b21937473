"""Search on first-time queries: `search_exceptions` p50/p95/p99 and vector recall@10.

    .venv/bin/python bench/search_bench.py --count 100000 --runs 2 [--keep]
    .venv/bin/python bench/search_bench.py --database NAME --runs 2 --seed 8  # a kept one
    .venv/bin/python bench/search_bench.py --database NAME --ef-search 400 --seed 9  # a knob

Plants ``--count`` embedded exceptions for one organization and a quarter of that for another
(``embed_bench.plant_search_data``; indexes rebuilt), plus a small reconciliation of the first
(``--count`` / 200 rows, inserted into the built indexes), in a scratch database dropped at
the end unless ``--keep``; ``--database NAME`` reuses a kept one and adds nothing.
``--queries`` DISTINCT texts in six classes of equal size: words; words + one filter (type,
severity or status); reference/amount; reference/amount + one filter; words + a narrow filter
(type, severity and RESOLVED: ~1/120 of the rows); words in the small reconciliation. Each
query is encoded beforehand, alone, that encode timed; a run searches every query once in a
random order, the vector given (``search``); ``end to end`` = that + the query's own encode
(measured apart, added). Five other queries open connections first. ``--runs 2`` searches
the SAME queries again in a new order (run 2 meets run 1's pages in the caches). Per run:
load average and the search index's/table's blocks read from outside shared buffers.
Recall@10 (not timed): the product's 20 vector candidates' top 10 (`vectors.choose_path`'s
path: exact, IVF (a type's own) or HNSW) against exact search (the HNSW statement, index scans
off), per class; also HNSW at ``--ef-sweep`` ef_search values and with iterative scans off,
IVF at ``--probe-sweep`` probes (the queries the product sends to it), and exact float
against exact half precision. ``--ivf build`` (re)builds the IVF index first (timed),
``--ivf drop`` drops it. ``--plant-only`` plants and keeps a database (``--no-hnsw``: without
the HNSW builds) and stops. ``--ef-search`` and
``--iterative`` force those settings for the timed runs (bench only). ``--docfit`` plants
real vectors instead of blends: each exception's dense text by the default embedder (the
fitted table; ~10k texts/s), queries by MiniLM as the product encodes them. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import embed_bench as eb  # noqa: E402
from pipelines.embed import search as search_module  # noqa: E402
from pipelines.embed.search import ivf  # noqa: E402
from pipelines.embed.search import vectors as vectors_module  # noqa: E402
from pipelines.embed.search.sql import _filters, _sql_params  # noqa: E402
from pipelines.embed.search.vectors import vector_literal  # noqa: E402
from resources import database, migrations  # noqa: E402
from resources.embedder import MODEL_NAME, SentenceTransformerEmbedder  # noqa: E402
from resources.static_embedder import DocumentFitEmbedder  # noqa: E402

SMALL_NAME = "search_bench small"
CLASSES = ["words", "words+filter", "ref", "ref+filter", "words+narrow", "words+small recon"]
WORDS = (  # no digit: plain words (a digit sends the words search beside the vectors)
    "amount differs between bank and ledger for {payee} in {month}|payment to {payee} missing"
    " in the ledger in {month}|ledger entry without a bank transaction for {payee}, {month}|"
    "{payee} posted several days later than the bank booking in {month}|duplicate transaction"
    " from {payee} repeated in the {month} bank export|{payee} amount is not a number, failed"
    " validation in {month}|bank fee charged by {payee} in {month}|payment short by a bank fee"
    " for {payee} in {month}|{month} invoice of {payee} booked twice|value date later than"
    " posting date for {payee} in {month}|{payee} refund not found in the source file for"
    " {month}|why is the {payee} {month} settlement not matched"
).split("|")
REFS = "{ref}|{ref_lower} missing|invoice {ref} amount differs|refund from {payee} of {amount}"
REFS += "|{payee} payment of {amount}|entry {ref} value {amount}"
REFS_LIST = REFS.split("|")
COLUMNS = ("type", "severity", "status")
FLOAT_DISTANCE = "d.embedding <=> CAST(:q AS vector)"
NEW_RECONCILIATION = "INSERT INTO reconciliations (name, status, organization_id) VALUES (:n, "
NEW_RECONCILIATION += "'COMPLETED', :o) RETURNING id"
POOL = "SELECT CAST(embedding AS text) FROM document_embeddings WHERE organization_id = :o"
POOL += " ORDER BY document_id LIMIT 1000"
SMALL = "SELECT max(id) FROM reconciliations WHERE organization_id = :o AND name = :n"
SAMPLE = "SELECT target_data->>'entry_ref', target_data->>'value', target_data->>'payee' FROM"
SAMPLE += " reconciliation_exceptions WHERE reconciliation_id = :r AND target_data IS NOT NULL"
SAMPLE += " ORDER BY random() LIMIT :n"
FORCE = "SELECT set_config('hnsw.ef_search', coalesce(:ef, current_setting('hnsw.ef_search')),"
FORCE += " true), set_config('hnsw.iterative_scan', coalesce(:it, current_setting("
FORCE += "'hnsw.iterative_scan')), true)"
BUFFERS = "SELECT sum(i.idx_blks_read) AS index_read, sum(i.idx_blks_hit) AS index_hit, max("
BUFFERS += "t.heap_blks_read) AS table_read FROM pg_statio_user_indexes i, pg_statio_user_tables"
BUFFERS += " t WHERE (i.indexrelname = 'idx_embeddings_halfvec' OR i.indexrelname LIKE"
BUFFERS += " 'idx_embeddings_ivf%') AND"
BUFFERS += " t.relname = 'document_embeddings'"
FACTS = "SELECT current_setting('shared_buffers') AS shared_buffers, current_setting("
FACTS += "'server_version') AS postgres, (SELECT extversion FROM pg_extension WHERE extname ="
FACTS += " 'vector') AS pgvector, pg_size_pretty(pg_relation_size(to_regclass("
FACTS += "'idx_embeddings_halfvec'))) AS halfvec_index, pg_size_pretty(pg_relation_size("
FACTS += "to_regclass('idx_embeddings_ivf')))"
FACTS += " AS ivf_index, pg_size_pretty(pg_table_size('document_embeddings')) AS table_size,"
FACTS += " (SELECT count(*) FROM document_embeddings) AS rows"
MONTHS = "January February March April May June July August September October November December"


def scratch_database(base_url: str) -> tuple[str, str]:
    """A new migrated database `search_bench_<hex>` on the server of `base_url`: (url, name)."""
    name = f"search_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(eb._on(base_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = eb._on(base_url, name)
    migrations.migrate(url)
    return url, name


def plant_small(engine: sa.Engine, embedder: Any, org: int, count: int, encoder: Any = None) -> int:
    """A small reconciliation of `org` (`count` embedded exceptions), into the built indexes."""
    with engine.begin() as conn:
        small = conn.execute(sa.text(NEW_RECONCILIATION), {"n": SMALL_NAME, "o": org}).scalar_one()
        texts = conn.execute(sa.text(POOL), {"o": org}).scalars()
        pool = np.array([json.loads(t) for t in texts], dtype=np.float32)
    eb.plant_exceptions(engine, org, small, count, seed=23)
    started = time.perf_counter()
    eb.plant_embeddings(engine, embedder, org, small, pool, seed=4, encoder=encoder)
    print(f"  small reconciliation: {count} rows inserted in {time.perf_counter() - started:.1f} s")
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE document_embeddings, reconciliation_exceptions"))
    return small


def make_plan(engine: sa.Engine, data: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` queries with distinct texts, classes in turn (each query: text, cls, filters)."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        rows = conn.execute(sa.text(SAMPLE), {"r": data["rid"], "n": 4 * n}).all()
    classes = [c for c in CLASSES if data.get("small") or c != "words+small recon"]
    plan: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(plan) < n:
        cls = classes[len(plan) % len(classes)]
        ref, amount, payee = rows[rng.randrange(len(rows))]
        text = (WORDS if cls.startswith("words") else REFS_LIST)[
            rng.randrange(6 if "ref" in cls else 12)
        ]
        text = text.format(
            payee=payee if "ref" in cls else rng.choice(eb.PAYEES),
            month=rng.choice(MONTHS.split()),
            ref=ref,
            ref_lower=str(ref).lower(),
            amount=amount,
        )
        if text in seen:
            continue
        seen.add(text)
        filters: dict[str, Any] = {}
        if cls.endswith("+filter"):
            name, values = rng.choice(
                [("type", eb.TYPES), ("severity", eb.SEVERITIES), ("status", ["RESOLVED"])]
            )
            filters[name] = rng.choice(values)
        elif cls == "words+narrow":
            filters = {"type": rng.choice(eb.TYPES), "severity": rng.choice(eb.SEVERITIES)}
            filters["status"] = "RESOLVED"
        elif cls == "words+small recon":
            filters["reconciliation_id"] = data["small"]
        plan.append({"text": text, "cls": cls, "filters": filters})
    return plan


class Given:
    """Query vectors encoded beforehand, one query at a time, each encode timed."""

    def __init__(
        self, embedder: SentenceTransformerEmbedder, texts: list[str], model_name: str
    ) -> None:
        self.model_name = model_name  # of the stored vectors the queries meet
        self.dimensions = embedder.dimensions
        self.vectors: dict[str, np.ndarray] = {}
        self.encode_ms: dict[str, float] = {}
        for text in texts:
            started = time.perf_counter()
            self.vectors[text] = embedder.encode([text])[0]
            self.encode_ms[text] = 1000 * (time.perf_counter() - started)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def override_hnsw(ef_search: int, iterative: str) -> None:
    """Bench-only: force hnsw.ef_search / hnsw.iterative_scan after the product's `tune_hnsw`."""
    original = vectors_module.tune_hnsw

    def tuned(conn: sa.Connection, candidates: int, *, serial: bool = False) -> None:
        original(conn, candidates, serial=serial)
        conn.execute(sa.text(FORCE), {"ef": str(ef_search or "") or None, "it": iterative or None})

    vectors_module.tune_hnsw = tuned  # type: ignore[assignment]


def buffer_reads(engine: sa.Engine) -> dict[str, int]:
    """Blocks of the search's index and table read from outside / found in shared buffers."""
    time.sleep(1.1)  # statistics are flushed at most once a second
    with engine.connect() as conn:
        row = conn.execute(sa.text(BUFFERS)).one()
    return {k: int(v or 0) for k, v in row._mapping.items()}


def timed_run(engine: sa.Engine, given: Given, plan: list, org: int, other: set, seed: int) -> dict:
    """Every query of `plan` searched once, in a random order: timings per class and path."""
    order = list(plan)
    random.Random(seed).shuffle(order)
    before, load_before = buffer_reads(engine), os.getloadavg()
    search_ms, e2e_ms, leaks, empty = [], [], 0, 0
    by: dict[str, list[float]] = {}
    for p in order:
        started = time.perf_counter()
        hits = search(engine, given, p, org)
        search_ms.append(1000 * (time.perf_counter() - started))
        e2e_ms.append(search_ms[-1] + given.encode_ms[p["text"]])
        # the words search runs beside the vectors every time; whether it placed a hit
        words = any("text" in h["method"] for h in hits)
        path = "hits: words among them" if words else "hits: vectors alone"
        for name in (p["cls"], path):
            by.setdefault(name, []).append(search_ms[-1])
        leaks += sum(1 for h in hits if h["exception_id"] in other)
        empty += not hits
    load_after, after = os.getloadavg(), buffer_reads(engine)
    return {
        "search": eb._percentiles(search_ms),
        "end_to_end": eb._percentiles(e2e_ms),
        "by_class": {k: eb._percentiles(v) for k, v in sorted(by.items())},
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "buffers": {k: after[k] - before[k] for k in after},
        "leaks": leaks,
        "queries_without_hits": empty,
    }


def search(engine: sa.Engine, given: Given, p: dict[str, Any], org: int) -> list:
    """The product's search, the query vector given."""
    return search_module.search_exceptions(
        engine, given, p["text"], organization_id=org, **p["filters"]
    )


def _ids(conn: sa.Connection, statement: str, params: dict[str, Any], settings: str) -> list:
    if settings:
        conn.execute(sa.text(settings))
    return [(r.document_id, float(r.distance)) for r in conn.execute(sa.text(statement), params)]


def recall(
    engine: sa.Engine,
    given: Given,
    plan: list[dict[str, Any]],
    org: int,
    sweep: list[int],
    probes: Sequence[int] = (),
) -> dict[str, dict[str, list[float]]]:
    """Recall@10 of the vector candidates against exact search, per setting and group of
    queries: [by id, counting hits as near as the exact 10th + 0.001 (near-ties)]. `probes`:
    the IVF index at those ivfflat.probes, for the queries the product sends to it."""
    found: dict[str, dict[str, list[tuple[float, float]]]] = {}
    k = max(search_module.MIN_VECTOR_CANDIDATES, 2 * 10)
    settings = {f"ef_search {ef}": f"SET LOCAL hnsw.ef_search = {ef}" for ef in sweep}
    if sweep:
        settings["iterative scan off"] = "SET LOCAL hnsw.iterative_scan = off"
    for p in plan:
        filters = _filters(*(p["filters"].get(c) for c in ("reconciliation_id", *COLUMNS)))
        filters.params.update({"org": org, "doc": "EXCEPTION", "model": given.model_name})
        statement = vectors_module.vector_statement(filters)
        params = _sql_params(filters) | {"q": vector_literal(given.vectors[p["text"]])}
        got: dict[str, list] = {}
        with database.organization_transaction(engine, org) as conn:
            # a sequential scan (its ring of buffers): a bitmap heap scan of the organization's
            # 1M rows would fill shared buffers with the table, evicting the IVF indexes
            off = "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off"
            exact = _ids(conn, statement, {**params, "k": 10}, off)
            float_statement = statement.replace(vectors_module.DISTANCE, FLOAT_DISTANCE)
            got["float exact vs half"] = _ids(conn, float_statement, {**params, "k": 10}, "")
            conn.execute(sa.text("SET LOCAL enable_indexscan = on"))
            # the product's own path (`choose_path`: exact, IVF or HNSW)
            vector = given.vectors[p["text"]]
            rows = vectors_module._vector_candidates(conn, vector, filters, k)
            got["product"] = [(r.document_id, float(r.distance)) for r in rows][:10]
            path, lists = vectors_module.choose_path(conn, filters)
            for n in probes if path == "ivf" else ():
                vectors_module.tune_hnsw(conn, k, serial=True, lists=lists)
                ivf_statement = vectors_module.vector_statement(filters, ivf=True)
                setting = f"SET LOCAL ivfflat.probes = {n}"
                got[f"ivf probes {n}"] = _ids(conn, ivf_statement, {**params, "k": k}, setting)[:10]
            for name, setting in settings.items():
                vectors_module.tune_hnsw(conn, k, serial=True)
                got[name] = _ids(conn, statement, {**params, "k": k}, setting)[:10]
        truth = {d for d, _ in exact}
        tenth = exact[-1][1] if exact else 0.0
        groups = ("all", "filtered" if p["filters"] else "unfiltered", p["cls"])
        for name, hits in got.items():
            share = len(truth & {d for d, _ in hits}) / max(1, len(truth))
            ties = min(1.0, sum(1 for _, d in hits if d <= tenth + 1e-3) / max(1, len(truth)))
            for group in groups:
                found.setdefault(name, {}).setdefault(group, []).append((share, ties))
    return {
        name: {
            group: [round(statistics.mean(v[i] for v in values), 3) for i in (0, 1)]
            for group, values in by_group.items()
        }
        for name, by_group in found.items()
    }


def server_facts(engine: sa.Engine) -> dict[str, Any]:
    """shared_buffers, versions and the sizes of what the search reads."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(FACTS)).one()._mapping)


def _print(name: str, f: dict[str, float]) -> None:
    cells = "  ".join(f"{q} {f[q + '_ms']:6.1f}" for q in ("p50", "p95", "p99"))
    print(f"    {name:26s} n {f['n']:4d}  {cells} ms")


def main() -> None:
    """Plant or reuse, run the timed sets, measure recall, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7, help="which queries and orders")
    parser.add_argument("--workers", type=int, default=1, help="parallel HNSW build workers")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--database", help="a kept database: nothing planted or dropped")
    parser.add_argument("--ef-search", type=int, default=0, help="force for timed runs")
    parser.add_argument("--iterative", default="", help="force hnsw.iterative_scan (timed)")
    parser.add_argument(
        "--ef-sweep",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default="100,400,1000",
        help="HNSW ef_search values for recall (empty: only the product's path)",
    )
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument(
        "--probe-sweep",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default="",
        help="ivfflat.probes values for recall (the queries the product sends to IVF)",
    )
    parser.add_argument("--torch-threads", type=int, default=0, help="for the query encodes")
    parser.add_argument(
        "--docfit",
        action="store_true",
        help="real vectors: each planted exception's dense text by the default embedder "
        "(docfit), queries by MiniLM (with --database: a database planted so)",
    )
    parser.add_argument(
        "--plant-only", action="store_true", help="plant (and keep) the database, then stop"
    )
    parser.add_argument(
        "--no-hnsw", action="store_true", help="plant without building the HNSW indexes"
    )
    parser.add_argument(
        "--ivf",
        choices=["keep", "build", "drop"],
        default="keep",
        help="the IVF indexes search uses when present: as found, read into shared buffers as"
        " the upkeep leaves them (keep), (re)built now (timed), or dropped (HNSW serves)",
    )
    args = parser.parse_args()
    args.keep = args.keep or args.plant_only

    base_url = database.resolve_database_url()
    if args.database:
        url, name = eb._on(base_url, args.database), args.database
        args.keep = True
    else:
        url, name = scratch_database(base_url)
    print(f"database {name}")
    engine = database.engine_for(url)
    embedder = SentenceTransformerEmbedder()
    if args.torch_threads:  # 2 threads on 2 shared cores: single-query encodes stall
        __import__("torch").set_num_threads(args.torch_threads)
    embedder.encode(["warm up the model"] * 8)
    encoder = DocumentFitEmbedder(queries=embedder) if args.docfit else None
    model_name = encoder.model_name if encoder is not None else MODEL_NAME
    summary: dict[str, Any] = {"database": name, "seed": args.seed, "threads": args.torch_threads}
    summary["model_name"] = model_name
    try:
        if args.database:
            data = eb.find_search_data(engine)
            with engine.connect() as conn:
                small = conn.execute(sa.text(SMALL), {"o": data["org"], "n": SMALL_NAME})
                data["small"] = small.scalar()
        else:
            other = args.count // 4
            data = eb.plant_search_data(
                engine,
                embedder,
                args.count,
                other,
                1000,
                args.workers,
                encoder=encoder,
                build_hnsw=not args.no_hnsw,
            )
            small_count = max(50, args.count // 200)
            data["small"] = plant_small(engine, embedder, data["org"], small_count, encoder)
        summary["data"] = data
        if args.plant_only:
            return
        if args.ivf == "build":
            summary["ivf_build"] = built = ivf.ensure_ivf(engine, force=True)
            print(f"IVF index: {built}")
        elif args.ivf == "keep":  # as the embedding step and the daily upkeep leave them
            print(f"IVF indexes prewarmed: {ivf.prewarm(engine)}")
        elif args.ivf == "drop":
            with engine.begin() as conn:
                for name, _, _ in ivf._specs():
                    conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
        summary["server"] = facts = server_facts(engine)
        print("server: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
        plan = make_plan(engine, data, args.queries + 5, args.seed)
        warmup, plan = plan[:5], plan[5:]
        assert len({p["text"] for p in plan + warmup}) == len(plan) + len(warmup)
        # docfit: queries by MiniLM meet the fitted table's vectors
        given = Given(embedder, [p["text"] for p in warmup + plan], model_name)
        encode = eb._percentiles([given.encode_ms[p["text"]] for p in plan])
        print(f"encoded {len(plan)} distinct queries one at a time ({embedder.model_name})")
        _print("encode (model alone)", encode)
        with engine.connect() as conn:
            other = sa.text("SELECT id FROM reconciliation_exceptions WHERE organization_id = :o")
            other_ids = set(conn.execute(other, {"o": data["other_org"]}).scalars())
        if args.ef_search or args.iterative:
            override_hnsw(args.ef_search, args.iterative)
            print(f"FORCED: ef_search {args.ef_search}, iterative_scan {args.iterative}")
        for p in warmup:
            search(engine, given, p, data["org"])
        runs = []
        for run in range(args.runs):
            result = timed_run(engine, given, plan, data["org"], other_ids, args.seed * 100 + run)
            runs.append(result)
            print(
                f"run {run + 1}: {len(plan)} queries, each once, random order "
                f"({'same queries as run 1, new order' if run else 'first time'}); load average"
                f" {result['load_average'][0]} before, {result['load_average'][1]} after"
            )
            _print("search, vector given", result["search"])
            _print("end to end (+ own encode)", result["end_to_end"])
            for cls, figures in result["by_class"].items():
                _print("  " + cls, figures)
            print(
                f"    buffers: {result['buffers']}; leaks {result['leaks']}, "
                f"no hit {result['queries_without_hits']}"
            )
        summary |= {"encode": encode, "runs": runs}
        found = recall(
            engine, given, plan[: args.recall_queries], data["org"], args.ef_sweep, args.probe_sweep
        )
        summary["recall_at_10"] = found
        groups = ["all", "unfiltered", "filtered", *CLASSES]
        print(f"recall@10 vs exact search, <= {args.recall_queries} queries: by id / near-ties")
        print(" " * 27 + "".join(f"{g[:11]:>12s}" for g in groups))
        for key, by_group in found.items():
            cells = [by_group.get(g) for g in groups]
            print(
                f"    {key:23s}"
                + "".join(f"  {c[0]:.2f}/{c[1]:.2f}" if c else " " * 12 for c in cells)
            )
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept database {name}: {url}")
        else:
            eb.drop_database(base_url, name)
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
