"""The IVF index (`pipelines/embed/search/ivf.py`): built only when due (enough embeddings,
doubled since the last build, or forced), swapped in whole over a killed build's leftover,
used by search once it exists (the planner takes it for the statement ordering by inner
product), with the exact search's nearest neighbours, one organization's rows only and the
filters kept. On a database of its own: the index would change every other test's search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from helpers import create_database, drop_database, run_recon
from test_embeddings import _org, _reconciliation

from pipelines.embed.search import ivf, search_exceptions
from pipelines.embed.search import vectors as vectors_module
from pipelines.embed.search.sql import _filters, _sql_params
from pipelines.embed.store import EXCEPTION_DOCUMENT, embed_reconciliation
from resources import migrations
from resources.database import engine_for, organization_transaction
from resources.embedder import Embedder, default_embedder, encode_queries

PAYEES = "ACME GMBH|Globex Corporation|INITECH LTD|Umbrella plc|Stark Industries|Wayne Ent."
TYPES = "AMOUNT_MISMATCH|DATE_MISMATCH|MISSING_IN_TARGET|MISSING_IN_SOURCE|DUPLICATE_FOUND"
PLANT = """
INSERT INTO reconciliation_exceptions (reconciliation_id, type, severity, status, description,
    source_data, target_data, diff, organization_id)
SELECT :r, t.kind, (ARRAY['LOW','MEDIUM','HIGH','CRITICAL'])[1 + i % 4],
    CASE WHEN i % 7 = 0 THEN 'RESOLVED' ELSE 'OPEN' END,
    CASE t.kind
        WHEN 'AMOUNT_MISMATCH' THEN format('value differs by %s (source %s, target %s)',
            (i % 23) + 0.5, 100 + i, 100.5 + i + (i % 23))
        WHEN 'DATE_MISMATCH' THEN format('posting_date differs by %s day(s)', 4 + i % 9)
        WHEN 'MISSING_IN_TARGET' THEN format('Source row %s has no match in the target', i)
        WHEN 'MISSING_IN_SOURCE' THEN format('Target row %s has no match in the source', i)
        ELSE format('Source row %s repeats row %s of the same file', i, i - 1) END,
    jsonb_build_object('Counterparty', p.payee || ' ' || (i % 40), 'Amount', 100 + i,
        'Transaction ID', 'txn' || i, 'Booking Date', DATE '2026-01-01' + (i % 300)),
    jsonb_build_object('payee', p.payee || ' ' || (i % 40), 'value', 100.5 + i + (i % 23),
        'entry_ref', 'TXN' || i, 'posting_date', DATE '2026-01-01' + (i % 300) + (i % 9)),
    '[]'::jsonb, :o
FROM generate_series(1, :n) AS i,
    LATERAL (SELECT (string_to_array(:types, '|'))[1 + i % 5] AS kind) t,
    LATERAL (SELECT (string_to_array(:payees, '|'))[1 + (i / 5) % 6] AS payee) p
"""
HNSW_STATEMENT = vectors_module.vector_statement  # before a test replaces it
QUERIES = [
    "payment short by a bank fee for Globex",
    "duplicate posting from ACME in March",
    "ledger entry without a bank transaction for Initech",
    "Umbrella booked several days late",
    "refund from Stark Industries not found in the ledger",
    "amount differs between bank and ledger for Wayne",
]


@pytest.fixture(scope="module")
def planted(database_url: str) -> Iterator[tuple[sa.Engine, Embedder, int, int]]:
    """A database of its own: 2,400 embedded exceptions of one organization, 600 of another."""
    name, url = create_database(database_url)
    migrations.migrate(url)
    engine = engine_for(url)
    model = default_embedder()
    orgs = []
    for count in (2400, 600):
        org = _org(engine)
        rid = _reconciliation(engine, org)
        with engine.begin() as conn:
            conn.execute(
                sa.text(PLANT), {"r": rid, "o": org, "n": count, "types": TYPES, "payees": PAYEES}
            )
        embed_reconciliation(engine, model, rid)
        orgs.append(org)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE document_embeddings, reconciliation_exceptions"))
    yield engine, model, orgs[0], orgs[1]
    engine.dispose()
    ivf._LISTS.clear()
    drop_database(database_url, name)


def _valid(engine: sa.Engine, name: str) -> bool | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = :n"
            ),
            {"n": name},
        ).scalar()


def test_built_only_when_due_and_swapped_whole(planted: tuple) -> None:
    engine = planted[0]
    waiting = ivf.ensure_ivf(engine, min_rows=10_000)
    assert not waiting["built"] and "fewer than 10000" in waiting["reason"]
    assert waiting["prewarm"] == "no IVF index"
    assert _valid(engine, ivf.IVF_INDEX) is None
    # a killed build's leftover under the new name is dropped before building
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE INDEX {ivf.IVF_INDEX}_new ON document_embeddings (id)"))
    built = ivf.ensure_ivf(engine, min_rows=1000)
    assert built["built"] and built["lists"] == 100 and built["rows"] >= 3000
    assert built["prewarm"] == "prewarmed"  # read into shared buffers (pg_prewarm)
    assert _valid(engine, ivf.IVF_INDEX) is True and _valid(engine, f"{ivf.IVF_INDEX}_new") is None
    again = ivf.ensure_ivf(engine, min_rows=1000)
    assert not again["built"] and f"rebuilt at {2 * built['rows']}" in again["reason"]
    # another process building it: this call leaves it
    with engine.connect() as conn:
        lock = {"k": ivf.BUILD_LOCK}
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), lock)
        busy = ivf.ensure_ivf(engine, force=True)
        conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), lock)
    assert not busy["built"] and busy["reason"] == "another process is building it"
    assert ivf.ensure_ivf(engine, force=True)["built"]
    with engine.connect() as conn:
        assert ivf.ivf_lists(conn) == 100


def _exact(engine: sa.Engine, org: int, model: str, vector: str, **given: str) -> list[int]:
    filters = _filters(None, given.get("type"), None, given.get("status"))
    filters.params.update({"org": org, "doc": EXCEPTION_DOCUMENT, "model": model})
    with organization_transaction(engine, org) as conn:
        conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
        rows = conn.execute(
            sa.text(HNSW_STATEMENT(filters)),
            {**_sql_params(filters), "q": vector, "k": 10},
        )
        return [row.document_id for row in rows]


def test_search_takes_the_index_and_finds_the_nearest(
    planted: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, model, org, other = planted
    ivf.ensure_ivf(engine, min_rows=1000)
    chosen: list[bool] = []
    statement: Callable[..., str] = vectors_module.vector_statement

    def recorded(filters: object, *, ivf: bool = False) -> str:
        chosen.append(ivf)
        return statement(filters, ivf=ivf)

    monkeypatch.setattr(vectors_module, "vector_statement", recorded)
    with engine.connect() as conn:
        theirs = set(
            conn.execute(
                sa.text("SELECT id FROM reconciliation_exceptions WHERE organization_id = :o"),
                {"o": other},
            ).scalars()
        )
    found = []
    for query in QUERIES:
        hits = search_exceptions(engine, model, query, organization_id=org, limit=10)
        assert hits and not {h["exception_id"] for h in hits} & theirs
        vector = vectors_module.vector_literal(encode_queries(model, [query])[0])
        exact = _exact(engine, org, model.model_name, vector)
        vector_hits = {h["exception_id"] for h in hits if h["similarity"] is not None}
        found.append(len(vector_hits & set(exact)) / len(exact))
    assert chosen == [True] * len(QUERIES)
    assert sum(found) / len(found) >= 0.8, found
    # the planner walks the IVF index for the statement ordering by inner product
    filters = _filters(None, None, None, None)
    filters.params.update({"org": org, "doc": EXCEPTION_DOCUMENT, "model": model.model_name})
    with organization_transaction(engine, org) as conn:
        vectors_module.tune_hnsw(conn, 20, serial=True, lists=100)
        plan = conn.execute(
            sa.text("EXPLAIN " + statement(filters, ivf=True)),
            {**_sql_params(filters), "q": vector, "k": 20},
        ).scalars()
        assert ivf.IVF_INDEX in "\n".join(plan)


def test_filters_take_the_right_path_and_are_kept(
    planted: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, model, org, _ = planted
    ivf.ensure_ivf(engine, min_rows=1000)
    monkeypatch.setattr(vectors_module, "EXACT_ROWS", 0)  # not the exact search: an index
    with engine.connect() as conn:
        rid = conn.execute(
            sa.text(
                "SELECT max(reconciliation_id) FROM reconciliation_exceptions"
                " WHERE organization_id = :o"
            ),
            {"o": org},
        ).scalar_one()
    paths = []
    choose = vectors_module.choose_path

    def recorded(conn: sa.Connection, filters: object) -> tuple[str, int | None]:
        paths.append(choose(conn, filters)[0])
        return choose(conn, filters)

    monkeypatch.setattr(vectors_module, "choose_path", recorded)
    # a type filter ranks the IVF index's nearest, then keeps those of the type
    hits = search_exceptions(
        engine, model, QUERIES[0], organization_id=org, limit=10, type="DATE_MISMATCH"
    )
    assert len(hits) == 10 and {h["type"] for h in hits} == {"DATE_MISMATCH"}
    vector = vectors_module.vector_literal(encode_queries(model, [QUERIES[0]])[0])
    exact = _exact(engine, org, model.model_name, vector, type="DATE_MISMATCH")
    assert exact[0] in {h["exception_id"] for h in hits if h["similarity"] is not None}
    # too few of the type among that pool: HNSW's iterative scan looks further, the list full
    statements: list[bool] = []
    statement = vectors_module.vector_statement

    def hnsw(filters: object, *, ivf: bool = False) -> str:
        statements.append(ivf)
        return statement(filters, ivf=ivf)

    monkeypatch.setattr(vectors_module, "vector_statement", hnsw)
    monkeypatch.setattr(vectors_module, "IVF_POOLS", (3, 5))
    hits = search_exceptions(
        engine, model, QUERIES[0], organization_id=org, limit=10, severity="HIGH"
    )
    assert len(hits) == 10 and {h["severity"] for h in hits} == {"HIGH"}
    assert statements == [False]
    monkeypatch.setattr(vectors_module, "vector_statement", statement)
    # a reconciliation's filter is on the embedding: the IVF index, filled by iterative scans
    hits = search_exceptions(
        engine, model, QUERIES[1], organization_id=org, limit=10, reconciliation_id=rid
    )
    assert len(hits) == 10 and {h["reconciliation_id"] for h in hits} == {rid}
    assert paths == ["pool", "pool", "ivf"]


def test_recon_db_index(planted: tuple) -> None:
    engine = planted[0]
    url = engine.url.render_as_string(hide_password=False)
    code, out, err = run_recon("db", "index", env={"RECON_DATABASE_URL": url})
    assert code == 0, err
    assert "not built" in out and "100000" in out
    code, out, err = run_recon("db", "index", "--force", env={"RECON_DATABASE_URL": url})
    assert code == 0 and "100 lists): built in" in out, (out, err)
    assert _valid(engine, ivf.IVF_INDEX) is True
