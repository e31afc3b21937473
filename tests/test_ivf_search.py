"""The IVF index (`pipelines/embed/search/ivf.py`): built only when due (enough embeddings,
doubled since the last build, or forced), swapped in whole over a killed build's leftover,
used by search once it exists (the planner takes it for the statement ordering by inner
product), with the exact search's nearest neighbours, one organization's rows only and the
filters kept. On a database of its own: the index would change every other test's search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
    # no type's index before the whole one (HNSW serves every search until then)
    assert not any(t["built"] for t in waiting["types"].values()), waiting["types"]
    assert _valid(engine, ivf.IVF_INDEX) is None
    # a killed build's leftover under the new name is dropped before building
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE INDEX {ivf.IVF_INDEX}_new ON document_embeddings (id)"))
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", record)
    built = ivf.ensure_ivf(engine, min_rows=1000)
    assert built["built"] and built["lists"] == 100 and built["rows"] >= 3000
    # after a build the table is asked of the OS cache too (the build pushed it out of
    # shared buffers); not when nothing was built
    prefetch = "pg_prewarm('document_embeddings', 'prefetch')"
    assert sum(prefetch in s for s in statements) == 1
    assert built["prewarm"] == "prewarmed"  # read into shared buffers (pg_prewarm)
    assert _valid(engine, ivf.IVF_INDEX) is True and _valid(engine, f"{ivf.IVF_INDEX}_new") is None
    # each type with a fifth of min_rows has its own index (partial: the rows of that type)
    types = built["types"]
    assert types["DATE_MISMATCH"]["built"] and types["DATE_MISMATCH"]["rows"] >= 500
    assert not types["VALIDATION_ERROR"]["built"], types  # none of that type
    assert _valid(engine, ivf.type_index("DATE_MISMATCH")) is True
    # and its RESOLVED exceptions, once a twentieth of min_rows (1 in 7 here)
    resolved = types["DATE_MISMATCH RESOLVED"]
    assert resolved["built"] and 50 <= resolved["rows"] < types["DATE_MISMATCH"]["rows"] / 4
    assert _valid(engine, ivf.type_index("DATE_MISMATCH", "RESOLVED")) is True
    assert not types["VALIDATION_ERROR RESOLVED"]["built"]
    again = ivf.ensure_ivf(engine, min_rows=1000)
    assert not again["built"] and f"rebuilt at {2 * built['rows']}" in again["reason"]
    assert sum(prefetch in s for s in statements) == 1 and again["prewarm"] == "prewarmed"
    sa.event.remove(engine, "before_cursor_execute", record)
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
    # not the exact search: an index
    monkeypatch.setattr(vectors_module, "EXACT_ROWS", dict.fromkeys(vectors_module.EXACT_ROWS, 0))
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
        paths.append(choose(conn, filters))
        return paths[-1]

    monkeypatch.setattr(vectors_module, "choose_path", recorded)
    # a type filter: that type's own IVF index, with its nearest
    hits = search_exceptions(
        engine, model, QUERIES[0], organization_id=org, limit=10, type="DATE_MISMATCH"
    )
    assert len(hits) == 10 and {h["type"] for h in hits} == {"DATE_MISMATCH"}
    vector = vectors_module.vector_literal(encode_queries(model, [QUERIES[0]])[0])
    exact = _exact(engine, org, model.model_name, vector, type="DATE_MISMATCH")
    found = {h["exception_id"] for h in hits if h["similarity"] is not None}
    assert len(found & set(exact)) >= 8, (found, exact)
    filters = _filters(None, "DATE_MISMATCH", None, None)
    filters.params.update({"org": org, "doc": EXCEPTION_DOCUMENT, "model": model.model_name})
    with organization_transaction(engine, org) as conn:
        vectors_module.tune_hnsw(conn, 20, serial=True, lists=100)
        plan = conn.execute(
            sa.text("EXPLAIN " + vectors_module.vector_statement(filters, ivf=True)),
            {**_sql_params(filters), "q": vector, "k": 20},
        ).scalars()
        assert ivf.type_index("DATE_MISMATCH") in "\n".join(plan)
    # a type and RESOLVED: the index of the type's resolved exceptions, no heap row rejected
    # for the status; a hostile status stays a parameter
    hits = search_exceptions(
        engine, model, QUERIES[0], organization_id=org, type="date_mismatch", status="resolved"
    )
    assert len(hits) == 10 and {(h["type"], h["status"]) for h in hits} == {
        ("DATE_MISMATCH", "RESOLVED")
    }
    exact = _exact(engine, org, model.model_name, vector, type="DATE_MISMATCH", status="RESOLVED")
    found = {h["exception_id"] for h in hits if h["similarity"] is not None}
    assert len(found & set(exact)) >= 8, (found, exact)
    for status, index in (
        ("RESOLVED", ivf.type_index("DATE_MISMATCH", "RESOLVED")),
        ("OPEN", ivf.type_index("DATE_MISMATCH")),
        ("RESOLVED' OR 'x' = 'x", ivf.type_index("DATE_MISMATCH")),
    ):
        filters = _filters(None, "DATE_MISMATCH", None, status)
        filters.params.update({"org": org, "doc": EXCEPTION_DOCUMENT, "model": model.model_name})
        with organization_transaction(engine, org) as conn:
            vectors_module.tune_hnsw(conn, 20, serial=True, lists=100)
            # ~70 rows: sorting them off the filters' B-tree is cheaper (choose_path would
            # search them exactly); which IVF index serves is the question here
            conn.execute(sa.text("SET LOCAL enable_sort = off"))
            plan = "\n".join(
                conn.execute(
                    sa.text("EXPLAIN " + vectors_module.vector_statement(filters, ivf=True)),
                    {**_sql_params(filters), "q": vector, "k": 20},
                ).scalars()
            )
        assert f"using {index} on" in plan, [x for x in plan.splitlines() if "Scan" in x]
    # a severity: the whole index, its iterative scan filling the list
    hits = search_exceptions(
        engine, model, QUERIES[0], organization_id=org, limit=10, severity="HIGH"
    )
    assert len(hits) == 10 and {h["severity"] for h in hits} == {"HIGH"}
    # a reconciliation's filter: the whole index too
    hits = search_exceptions(
        engine, model, QUERIES[1], organization_id=org, limit=10, reconciliation_id=rid
    )
    assert len(hits) == 10 and {h["reconciliation_id"] for h in hits} == {rid}
    assert [path for path, _ in paths] == ["ivf"] * 4
    with engine.connect() as conn:
        own = ivf.ivf_lists(conn, ivf.type_index("DATE_MISMATCH"))
        resolved = ivf.ivf_lists(conn, ivf.type_index("DATE_MISMATCH", "RESOLVED"))
    assert paths[2][1] == paths[3][1] == 100 and paths[0][1] == own and paths[1][1] == resolved


def test_filters_follow_the_exception(planted: tuple) -> None:
    """The filters on the embedding row (migration 0017) are the exception's: set when it is
    embedded, changed when a person resolves it; search's status filter sees the change."""
    engine, model, org, _ = planted
    columns = (
        "SELECT e.id, e.status, d.exception_type = e.type AND d.exception_severity = e.severity"
        " AND d.exception_status = e.status AS same FROM reconciliation_exceptions e"
        " JOIN document_embeddings d ON d.document_id = e.id AND d.document_type = 'EXCEPTION'"
        " WHERE e.organization_id = :o"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(columns), {"o": org}).all()
    assert rows and all(row.same for row in rows)
    # the vectors stay in their rows (migration 0017), not in the TOAST table
    with engine.connect() as conn:
        outside = conn.execute(
            sa.text(
                "SELECT count(*) FROM document_embeddings"
                " WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL"
            )
        ).scalar_one()
    assert outside == 0
    chosen = next(row.id for row in rows if row.status == "OPEN")
    with organization_transaction(engine, org) as conn:  # as the application: recon_app
        conn.execute(
            sa.text("UPDATE reconciliation_exceptions SET status = 'IGNORED' WHERE id = :i"),
            {"i": chosen},
        )
        description = conn.execute(
            sa.text("SELECT description FROM reconciliation_exceptions WHERE id = :i"),
            {"i": chosen},
        ).scalar_one()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(columns), {"o": org}).all()
    assert all(row.same for row in rows)
    hits = search_exceptions(
        engine, model, description, organization_id=org, limit=5, status="IGNORED"
    )
    assert [h["exception_id"] for h in hits] == [chosen]


def test_recon_db_index(planted: tuple) -> None:
    engine = planted[0]
    url = engine.url.render_as_string(hide_password=False)
    code, out, err = run_recon("db", "index", env={"RECON_DATABASE_URL": url})
    assert code == 0, err
    assert "not built" in out and "100000" in out
    code, out, err = run_recon("db", "index", "--force", env={"RECON_DATABASE_URL": url})
    assert code == 0 and "100 lists): built in" in out, (out, err)
    assert _valid(engine, ivf.IVF_INDEX) is True
