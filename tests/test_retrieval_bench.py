"""The retrieval benchmark's own parts: a deterministic corpus, labelled queries, the metrics.

No model is loaded: the corpus and labels come from the generator's truth, and the metric
functions are checked on rankings written out by hand.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the bench/ package

from bench.retrieval_bench import ndcg_at, recall_at, top_k  # noqa: E402
from bench.retrieval_corpus import generate  # noqa: E402
from bench.retrieval_queries import CLASSES, labelled_queries  # noqa: E402
from bench.retrieval_world import COUNTERPARTIES  # noqa: E402
from pipelines.embed.texts import embedding_text, exception_text  # noqa: E402


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    return generate(4200, seed=21)


def test_the_same_seed_gives_the_same_corpus_and_queries(corpus) -> None:  # type: ignore[no-untyped-def]
    again = generate(4200, seed=21)
    assert again.exceptions == corpus.exceptions
    assert [(q.text, q.relevant) for q in labelled_queries(again)] == [
        (q.text, q.relevant) for q in labelled_queries(corpus)
    ]
    assert generate(200, seed=22).exceptions != generate(200, seed=21).exceptions


def test_the_corpus_holds_every_kind_of_break_as_the_engine_stores_it(corpus) -> None:  # type: ignore[no-untyped-def]
    assert len(corpus.exceptions) >= 4000
    kinds = Counter(f["kind"] for f in corpus.facts.values())
    assert set(kinds) == {
        "fee_short",
        "amount_other",
        "date_lag",
        "duplicate",
        "missing_bank_line",
        "missing_ledger_entry",
        "validation",
    }
    assert min(kinds.values()) > 200
    assert len({f["cp"] for f in corpus.facts.values()}) >= 36 <= len(COUNTERPARTIES)
    assert len({f["month"] for f in corpus.facts.values()}) == 6
    for row in corpus.exceptions[:300]:
        assert row["type"] in {
            "AMOUNT_MISMATCH",
            "DATE_MISMATCH",
            "MISSING_IN_TARGET",
            "MISSING_IN_SOURCE",
            "DUPLICATE_FOUND",
            "VALIDATION_ERROR",
        }
        records = [json.loads(r) for r in (row["source_data"], row["target_data"]) if r]
        assert records and all("_row_number" in r for r in records)
        assert exception_text(row) and embedding_text(row)
    fee = next(i for i, f in corpus.facts.items() if f["kind"] == "fee_short")
    assert corpus.facts[fee]["delta"] == -corpus.facts[fee]["fee"]


def test_every_query_has_relevant_exceptions_from_the_truth(corpus) -> None:  # type: ignore[no-untyped-def]
    queries = labelled_queries(corpus)
    assert len(queries) >= 100
    per_class = Counter(q.cls for q in queries)
    assert set(per_class) == set(CLASSES) and min(per_class.values()) >= 10
    ids = {row["id"] for row in corpus.exceptions}
    for q in queries:
        assert q.relevant and set(q.relevant) <= ids
        assert set(q.relevant.values()) <= {1, 2} and 2 in q.relevant.values()
    reference = next(q for q in queries if q.cls == "reference")
    found = [
        i
        for i, f in corpus.facts.items()
        if any(r in reference.text.upper() for r in f["references"])
    ]
    assert set(found) >= {i for i, g in reference.relevant.items() if g == 2}


def test_metrics_on_a_ranking_written_by_hand() -> None:
    relevant = {1: 2, 2: 1, 3: 2}
    assert ndcg_at([1, 3, 2], relevant) == pytest.approx(1.0)
    assert ndcg_at([9, 8, 7], relevant) == 0.0
    ideal = 3 + 3 / np.log2(3) + 1 / 2
    assert ndcg_at([2, 9, 1], relevant) == pytest.approx((1 + 3 / 2) / ideal)
    assert recall_at([1, 9, 2], relevant) == pytest.approx(2 / 3)
    many = {i: 1 for i in range(100)}
    assert recall_at(list(range(10)), many) == 1.0  # a full top 10 is all it can hold
    assert recall_at([5], {}) == 0.0


def test_top_k_is_exact_cosine_with_ties_by_id() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    assert top_k(query, corpus, [40, 30, 20, 10], k=3) == [[20, 40, 10]]
