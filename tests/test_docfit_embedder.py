"""The fitted document encoder (`resources.static_embedder.DocumentFitEmbedder`): exception
texts by a static table fitted to MiniLM (`resources/fit_static.py`), queries by MiniLM, both
in MiniLM's space; and a search through it on the real database finding what a person asks.

The exceptions here are written for these tests (not the fit's bankgen corpus, not the
retrieval benchmark's), with a bank export's field names the fit never saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from test_embedding_text import FEE_SHORT, LEDGER_ENTRY, _late
from test_embeddings import _exception, _org, _reconciliation, _scalar

from pipelines.embed.search import search_exceptions
from pipelines.embed.store import embed_reconciliation
from pipelines.embed.texts import embedding_text
from resources.database import engine_for
from resources.embedder import (
    MODEL_NAME,
    EmbedderResource,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    encode_queries,
)
from resources.static_embedder import (
    DOCFIT_MODEL_FILE,
    DOCFIT_MODEL_NAME,
    DocumentFitEmbedder,
    StaticEmbedder,
)

MESSY_LINE = {
    "Txn Date": "03/01/2024",
    "Amount": "($1,234.56)",
    "Payee": "WAYNE CATERING LTD",
    "Ref#": "",
    "Description": "ACH DEBIT WAYNE CATERING LTD",
    "Bank Txn Id": "T000123",
    "_row_number": 9,
}
ROWS: list[dict[str, Any]] = [
    {**FEE_SHORT, **{c: json.loads(FEE_SHORT[c]) for c in ("source_data", "target_data", "diff")}},
    _late("2024-04-20", "2024-04-15"),
    {"type": "MISSING_IN_TARGET", "description": "source row 9 has no match in the target",
     "source_data": MESSY_LINE, "target_data": None, "diff": []},
    {"type": "DUPLICATE_FOUND", "description": "2 source records equal on every matching field",
     "source_data": {**MESSY_LINE, "Amount": "$45.99", "Payee": "NETFLIX.COM"}, "diff": []},
    {"type": "VALIDATION_ERROR", "description": "Amount: 'N/A' is not a number",
     "source_data": {**MESSY_LINE, "Amount": "N/A"}, "target_data": None, "diff": []},
    {"type": "MISSING_IN_SOURCE", "description": "target row 5 has no match in the source",
     "target_data": {**LEDGER_ENTRY, "counterparty": "Initech Payroll Services"}, "diff": []},
]  # fmt: skip
TEXTS = [embedding_text(row) for row in ROWS]


class Recording:
    """A query encoder that says which texts it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.model_name, self.dimensions = "recording", 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        return HashingEmbedder().encode(texts)


def test_documents_by_the_table_queries_by_the_query_model() -> None:
    queries = Recording()
    embedder = DocumentFitEmbedder(queries=queries)
    stored = embedder.encode(TEXTS)
    assert queries.asked == []
    assert np.array_equal(stored, StaticEmbedder(DOCFIT_MODEL_FILE).encode(TEXTS))
    assert np.array_equal(
        encode_queries(embedder, ["bank fee"]), HashingEmbedder().encode(["bank fee"])
    )
    assert queries.asked == ["bank fee"]
    # an embedder without a query encoder of its own encodes queries as it encodes texts
    plain = HashingEmbedder()
    assert np.array_equal(encode_queries(plain, ["a b"]), plain.encode(["a b"]))
    assert embedder.model_name == DOCFIT_MODEL_NAME != MODEL_NAME and embedder.dense_texts
    assert isinstance(EmbedderResource(implementation="docfit").embedder(), DocumentFitEmbedder)
    assert DOCFIT_MODEL_FILE.stat().st_size < 20_000_000


def test_the_fitted_vectors_are_near_minilms_own() -> None:
    model = SentenceTransformerEmbedder()
    truth = model.encode(TEXTS)
    fitted = DocumentFitEmbedder(queries=model).encode(TEXTS)
    distilled = StaticEmbedder().encode(TEXTS)
    fitted_cosine = (fitted * truth).sum(axis=1)
    # bankgen's texts held out of the fit: 0.98; these, other field names and words: 0.73-0.93
    assert fitted_cosine.min() > 0.65 and fitted_cosine.mean() > 0.8, fitted_cosine
    assert fitted_cosine.mean() > (distilled * truth).sum(axis=1).mean() + 0.3
    # a person's words meet the text MiniLM's own vectors of the texts rank first
    asked = model.encode(
        [
            "payment short by a bank fee",
            "the same payment booked twice",
            "bank line missing from the ledger",
        ]
    )
    assert list(np.argmax(asked @ fitted.T, axis=1)) == list(np.argmax(asked @ truth.T, axis=1))
    assert list(np.argmax(asked @ fitted.T, axis=1))[:2] == [0, 3]


@pytest.fixture(scope="module")
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


def test_a_search_finds_the_break_a_person_describes(engine: sa.Engine) -> None:
    org = _org(engine)
    rid = _reconciliation(engine, org)  # a new organization: its rows alone are searched
    # no random tag in the texts: its word pieces would move the vectors from run to run
    fee = _exception(
        engine,
        rid,
        org,
        "Amount differs by 15.00: source 985.00, target 1000.00",
        type="AMOUNT_MISMATCH",
        source={"payee": "GLOBEX", "amount": 985.0, "date": "2025-03-04"},
        target={"payee": "Globex Corp", "amount": 1000.0, "date": "2025-03-04"},
        diff=[{"field": "amount", "source_value": 985.0, "target_value": 1000.0, "delta": -15.0}],
    )
    twice = _exception(
        engine,
        rid,
        org,
        "Duplicate: the source has 2 records equal on payee, amount and date",
        type="DUPLICATE_FOUND",
        source={"payee": "Initech", "amount": 45.99, "date": "2025-05-02"},
    )
    late = _exception(
        engine,
        rid,
        org,
        "Posting date differs by 6 days",
        type="DATE_MISMATCH",
        source={"payee": "Northwind", "amount": 300.0, "date": "2025-06-10"},
        target={"payee": "Northwind", "amount": 300.0, "date": "2025-06-04"},
        diff=[{"field": "date", "source_value": "2025-06-10", "target_value": "2025-06-04"}],
    )
    embedder = DocumentFitEmbedder()
    assert embed_reconciliation(engine, embedder, rid)["embedded"] >= 3
    names = _scalar(
        engine,
        "SELECT array_agg(DISTINCT model_name) FROM document_embeddings"
        " WHERE reconciliation_id = :r",
        r=rid,
    )
    assert names == [DOCFIT_MODEL_NAME]
    for query, expected in (
        ("payment short by a bank fee", fee),
        ("the same payment recorded twice", twice),
        ("booked several days late", late),
    ):
        hits = search_exceptions(engine, embedder, query, organization_id=org, limit=3)
        assert hits and hits[0]["exception_id"] == expected, (query, hits)
        assert "vector" in hits[0]["method"]
