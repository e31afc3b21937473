"""The words search's plan under row-level security: with a filter (type, severity, status:
on the embedding row since migration 0017) the texts are still found through the GIN index of
`content_tsv`, never by reading every embedding of the organization (a join to the exception
table, which has a policy, once turned the lookup into a scan: 82-125 ms at 1M rows as
`recon_app`)."""

from __future__ import annotations

import sqlalchemy as sa
from test_embeddings import _exception, _org, _reconciliation

from pipelines.embed import search
from pipelines.embed.search.sql import _text_matches
from pipelines.embed.store import embed_reconciliation
from resources.database import engine_for, organization_transaction
from resources.embedder import HashingEmbedder

PLANTED = 20_000


def _plan(engine: sa.Engine, org: int, sql: str, params: dict[str, object]) -> str:
    with organization_transaction(engine, org) as conn:
        return "\n".join(row[0] for row in conn.execute(sa.text("EXPLAIN " + sql), params))


def test_a_filtered_words_search_finds_texts_by_the_index(database_url: str) -> None:
    engine = engine_for(database_url)
    org = _org(engine)
    rid = _reconciliation(engine, org)
    wanted = _exception(
        engine, rid, org, "Payment INV-77120 short by a bank fee", type="AMOUNT_MISMATCH"
    )
    _exception(engine, rid, org, "Standing order to the landlord has no match")
    with engine.begin() as conn:  # enough texts that reading them all costs the planner
        conn.execute(
            sa.text(
                "WITH e AS (INSERT INTO reconciliation_exceptions (reconciliation_id, type,"
                " severity, status, description, organization_id) SELECT :r, (ARRAY["
                "'AMOUNT_MISMATCH', 'DATE_MISMATCH', 'MISSING_IN_TARGET'])[1 + i % 3], 'MEDIUM',"
                " 'OPEN', 'payment ' || i || ' from customer ' || (i % 97), :o"
                " FROM generate_series(1, :n) AS i RETURNING id, description)"
                " INSERT INTO document_embeddings (document_id, document_type, content,"
                " organization_id, reconciliation_id, model_name) SELECT e.id, 'EXCEPTION',"
                " e.description, :o, :r, :m FROM e"
            ),
            {"r": rid, "o": org, "n": PLANTED, "m": HashingEmbedder().model_name},
        )
        conn.execute(sa.text("ANALYZE reconciliation_exceptions, document_embeddings"))
    model = HashingEmbedder()
    embed_reconciliation(engine, model, rid)
    for rid_, type_, severity, status in (
        (None, "AMOUNT_MISMATCH", None, None),
        (rid, None, "MEDIUM", "OPEN"),
        (None, None, None, None),
    ):
        chosen = search._filters(rid_, type_, severity, status)
        chosen.params.update({"org": org, "doc": "EXCEPTION", "model": model.model_name})
        statement = (
            "SELECT * FROM " + _text_matches(chosen, "websearch_to_tsquery('english', :t)") + " m"
        )
        params = {**search._sql_params(chosen), "t": "INV-77120", "cap": 2000}
        plan = _plan(engine, org, statement, params)
        assert "idx_embeddings_content_tsv" in plan, plan
        assert "Seq Scan on document_embeddings" not in plan, plan
    hits = search.search_exceptions(
        engine, model, "INV-77120", organization_id=org, type="AMOUNT_MISMATCH"
    )
    assert [h["exception_id"] for h in hits][:1] == [wanted]
