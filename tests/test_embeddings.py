"""Exception embeddings with the real all-MiniLM-L6-v2 on the embedded database.

Organizations, reconciliations and exceptions are planted with SQL (unique words per test,
so the session-wide embedding cache never serves one test's texts to another), except for the
Dagster asset test, which runs a real `run_reconciliation` first. The model is loaded once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from pipelines.embed.search import needs_words, search_exceptions, search_organization
from pipelines.embed.store import embed_reconciliation, text_sha256
from pipelines.embed.suggest import suggest_resolutions
from pipelines.embed.texts import exception_text
from resources.database import engine_for
from resources.embedder import (
    MODEL_NAME,
    EmbedderResource,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
    encode_queries,
    load_model,
)
from resources.static_embedder import DOCFIT_MODEL_NAME


class CountingEmbedder:
    """The real embedder, counting calls and texts."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimensions = inner.dimensions
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder()
    embedder.encode(["warm up"])
    return embedder


@pytest.fixture()
def counting(model: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(model)


@pytest.fixture(scope="module")
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _org(engine: sa.Engine, name: str | None = None) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text("INSERT INTO organizations (name) VALUES (:n) RETURNING id"),
            {"n": name or f"emb-{_tag()}"},
        ).scalar_one()


def _reconciliation(engine: sa.Engine, org: int, name: str = "planted") -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO reconciliations (name, status, organization_id, exception_count) "
                "VALUES (:n, 'COMPLETED', :o, 0) RETURNING id"
            ),
            {"n": f"{name} {_tag()}", "o": org},
        ).scalar_one()


def _exception(
    engine: sa.Engine,
    rid: int,
    org: int,
    description: str,
    *,
    type: str = "MISSING_IN_TARGET",
    severity: str = "MEDIUM",
    status: str = "OPEN",
    resolution: str | None = None,
    source: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    diff: list[dict[str, Any]] | None = None,
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO reconciliation_exceptions (reconciliation_id, type, severity, "
                "status, description, source_data, target_data, diff, resolution, "
                "organization_id) VALUES (:r, :t, :s, :st, :d, CAST(:sd AS jsonb), "
                "CAST(:td AS jsonb), CAST(:df AS jsonb), :res, :o) RETURNING id"
            ),
            {
                "r": rid,
                "t": type,
                "s": severity,
                "st": status,
                "d": description,
                "sd": json.dumps(source) if source is not None else None,
                "td": json.dumps(target) if target is not None else None,
                "df": json.dumps(diff if diff is not None else []),
                "res": resolution,
                "o": org,
            },
        ).scalar_one()


def _scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def _planted(engine: sa.Engine, count: int = 5) -> tuple[int, int, list[int], str]:
    org = _org(engine)
    rid = _reconciliation(engine, org)
    tag = _tag()
    ids = [
        _exception(
            engine,
            rid,
            org,
            f"Source row {i} has no match in the target (payee=VENDOR{tag}{i})",
            source={"_row_number": i, "payee": f"VENDOR{tag}{i}", "amount": 100.0 + i},
        )
        for i in range(1, count + 1)
    ]
    return org, rid, ids, tag


# ---------------------------------------------------------------- texts


def test_exception_text_reads_like_a_note() -> None:
    text = exception_text(
        {
            "type": "AMOUNT_MISMATCH",
            "severity": "HIGH",
            "description": "value differs by -25.00 (source 1234.56, target 1259.56)",
            "source_data": {"_row_number": 40, "Counterparty": "ACME LTD", "Amount": 1234.56},
            "target_data": json.dumps({"payee": "acme ltd", "value": 1259.56, "memo": None}),
            "diff": [{"field": "value", "source_value": 1234.56, "target_value": 1259.56}],
        }
    )
    assert text == (
        "Amount mismatch. Severity HIGH. value differs by -25.00 (source 1234.56, target "
        "1259.56). Source record: Counterparty ACME LTD; Amount 1234.56. Target record: value "
        "1259.56."
    )
    invalid = exception_text(
        {
            "type": "VALIDATION_ERROR",
            "severity": "LOW",
            "description": "Source row 5 failed validation: Amount (is_number)",
            "source_data": {"Amount": "12,3O", "Counterparty": "INITECH"},
            "diff": [{"field": "Amount", "check": "is_number", "source_value": "12,3O"}],
        }
    )
    assert "Differences: Amount failed is_number source 12,3O." in invalid


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    fake = HashingEmbedder()
    a, b, c = fake.encode(["bank fee charged", "bank fee charged", "interest earned"])
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == (384,)
    assert np.linalg.norm(a) == pytest.approx(1.0) and float(a @ c) < 0.99


# ---------------------------------------------------------------- the model


def test_the_packaged_model_embeds_offline(model: SentenceTransformerEmbedder) -> None:
    vectors = model.encode(["bank fee charged monthly", "monthly bank service charge", "hello"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    assert model.model_name == MODEL_NAME
    # one model per process, however many embedders (the default's query encoder too)
    minilm = EmbedderResource(implementation="sentence-transformers").embedder()
    assert minilm.model is model.model
    assert encode_queries(default_embedder(), ["x"]).shape == (1, 384)
    assert load_model() is model.model


# ---------------------------------------------------------------- cache and run logs


def test_a_rerun_is_served_from_the_cache(engine: sa.Engine, counting: CountingEmbedder) -> None:
    org, rid, ids, tag = _planted(engine)
    first = embed_reconciliation(engine, counting, rid, run_id="run-1")
    assert (first["texts"], first["cache_hits"], first["embedded"]) == (6, 0, 6)
    assert first["model_calls"] == len(counting.calls) == 1
    assert first["documents_written"] == 6
    documents = "SELECT count(*) FROM document_embeddings WHERE reconciliation_id = :r"
    assert _scalar(engine, documents, r=rid) == 6

    counting.calls.clear()
    second = embed_reconciliation(engine, counting, rid, run_id="run-2")
    assert counting.calls == [] and second["model_calls"] == 0
    assert (second["cache_hits"], second["embedded"], second["documents_written"]) == (6, 0, 0)
    assert _scalar(engine, documents, r=rid) == 6  # replaced, never duplicated
    text = _scalar(
        engine,
        "SELECT content FROM document_embeddings WHERE document_type = 'EXCEPTION' "
        "AND document_id = :i",
        i=ids[0],
    )
    assert f"VENDOR{tag}1" in text
    hits, used = (
        engine.connect()
        .execute(
            sa.text(
                "SELECT hit_count, last_used_at > created_at FROM embedding_cache "
                "WHERE text_sha256 = :h AND model_name = :m"
            ),
            {"h": text_sha256(text), "m": MODEL_NAME},
        )
        .one()
    )
    assert (hits, used) == (1, True)

    # one exception changes: only its text goes to the model
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reconciliation_exceptions SET description = :d WHERE id = :i"),
            {"d": f"changed {tag}", "i": ids[0]},
        )
    counting.calls.clear()
    third = embed_reconciliation(engine, counting, rid)
    assert counting.calls == [1] and (third["cache_hits"], third["embedded"]) == (5, 1)
    assert third["documents_written"] == 1

    # an exception that goes (a re-run replaces them) takes its embedding with it
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM reconciliation_exceptions WHERE id = :i"), {"i": ids[1]})
    assert _scalar(engine, documents, r=rid) == 5


def test_one_run_log_row_per_model_call(engine: sa.Engine, counting: CountingEmbedder) -> None:
    org, rid, _, _ = _planted(engine, count=5)
    result = embed_reconciliation(engine, counting, rid, run_id="run-logs", batch_size=2)
    assert counting.calls == [2, 2, 2] and result["model_calls"] == 3
    embed_reconciliation(engine, counting, rid, run_id="run-logs-2", batch_size=2)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT stage, model_name, records_processed, latency_ms, status, metadata, "
                "organization_id, dagster_run_id, started_at <= completed_at AS ordered "
                "FROM pipeline_run_logs WHERE reconciliation_id = :r ORDER BY id"
            ),
            {"r": rid},
        ).all()
    assert [(r.status, r.records_processed, r.dagster_run_id) for r in rows] == [
        ("SUCCESS", 2, "run-logs"),
        ("SUCCESS", 2, "run-logs"),
        ("SUCCESS", 2, "run-logs"),
        ("SKIPPED", 0, "run-logs-2"),
    ]
    assert all(r.stage == "embedding" and r.model_name == MODEL_NAME for r in rows)
    assert all(r.organization_id == org and r.ordered for r in rows)
    assert all(r.latency_ms > 0 for r in rows[:3])
    assert [r.metadata["batch"] for r in rows[:3]] == [1, 2, 3]
    assert rows[0].metadata["cache_hits"] == 0 and rows[3].metadata["cache_hits"] == 6


def test_a_failing_model_call_is_logged_and_raised(engine: sa.Engine) -> None:
    class Broken(HashingEmbedder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("device lost")

    _, rid, _, _ = _planted(engine, count=1)
    with pytest.raises(RuntimeError, match="device lost"):
        embed_reconciliation(engine, Broken(model_name="broken"), rid)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT status, error_code, error_message FROM pipeline_run_logs "
                "WHERE reconciliation_id = :r"
            ),
            {"r": rid},
        ).one()
    assert tuple(row) == ("FAILED", "RuntimeError", "device lost")
    assert (
        _scalar(
            engine, "SELECT count(*) FROM document_embeddings WHERE reconciliation_id = :r", r=rid
        )
        == 0
    )


# ---------------------------------------------------------------- search


def test_search_never_returns_another_organizations_exception(
    engine: sa.Engine, model: SentenceTransformerEmbedder
) -> None:
    tag = _tag()
    mine, theirs = _org(engine), _org(engine)
    my_rid, their_rid = _reconciliation(engine, mine), _reconciliation(engine, theirs)
    twin = f"Wire transfer to Wayne Enterprises {tag} for 9,800.00 has no match in the ledger"
    secret = _exception(engine, their_rid, theirs, twin, source={"payee": f"Wayne {tag}"})
    near = _exception(engine, my_rid, mine, twin.replace("9,800.00", "9,700.00"))
    other = _exception(engine, my_rid, mine, f"Card payment {tag} to a coffee shop, 4.20")
    for rid in (my_rid, their_rid):
        embed_reconciliation(engine, model, rid)

    hits = search_exceptions(engine, model, twin, organization_id=mine, limit=10)
    assert {h["exception_id"] for h in hits} == {near, other}
    assert hits[0]["exception_id"] == near and hits[0]["method"] == "vector+text"
    assert hits[0]["similarity"] > 0.7
    theirs_hits = search_exceptions(engine, model, twin, organization_id=theirs)
    assert [h["exception_id"] for h in theirs_hits] == [secret]
    # a keyword only they have finds nothing for me
    assert search_exceptions(engine, model, f"Wayne {tag}", organization_id=mine, limit=5) != []
    assert secret not in {
        h["exception_id"]
        for h in search_exceptions(engine, model, f"Wayne {tag}", organization_id=mine)
    }


def test_full_text_finds_a_reference_the_vectors_miss(
    engine: sa.Engine, model: SentenceTransformerEmbedder
) -> None:
    org = _org(engine)
    rid = _reconciliation(engine, org)
    tag = _tag()
    for i in range(50):
        _exception(
            engine,
            rid,
            org,
            f"Ledger posting {tag}-{i} differs by {i + 1} day(s) from the bank booking date",
            type="DATE_MISMATCH",
            source={"reference": f"REF{tag}{i:03}", "payee": "GLOBEX CORP"},
        )
        _exception(
            engine,
            rid,
            org,
            f"Invoice {tag}-{i} amount differs by {i + 10}.00 from the bank amount",
            type="AMOUNT_MISMATCH",
            source={"reference": f"AMT{tag}{i:03}", "payee": "INITECH"},
        )
    wanted = _exception(
        engine,
        rid,
        org,
        f"Ledger posting {tag}-x differs by 9 day(s) from the bank booking date",
        type="DATE_MISMATCH",
        source={"reference": "zq7731kv", "payee": "GLOBEX CORP"},
    )
    embed_reconciliation(engine, model, rid)

    hits = search_exceptions(engine, model, "zq7731kv", organization_id=org, limit=5)
    assert hits[0]["exception_id"] == wanted and "text" in hits[0]["method"]
    # a sentence about amounts with the reference in it: the 40 nearest vectors are all
    # amount mismatches, the reference's word match still comes first
    query = "invoice amount differs from the bank amount zq7731kv"
    unfiltered = search_exceptions(engine, model, query, organization_id=org, limit=10)
    assert (unfiltered[0]["exception_id"], unfiltered[0]["method"]) == (wanted, "text")
    assert [h["type"] for h in unfiltered[1:]] == ["AMOUNT_MISMATCH"] * 9
    assert all(h["method"] == "vector" for h in unfiltered[1:])  # common words alone: no
    # those neighbours filtered away in SQL: the vector scan still fills the list
    hits = search_exceptions(
        engine, model, query, organization_id=org, type="DATE_MISMATCH", limit=10
    )
    assert len(hits) == 10 and {h["type"] for h in hits} == {"DATE_MISMATCH"}
    assert (hits[0]["exception_id"], hits[0]["method"]) == (wanted, "vector+text")
    assert all(h["method"] == "vector" for h in hits[1:])
    # filters on status and reconciliation hold too
    assert search_exceptions(engine, model, query, organization_id=org, status="RESOLVED") == []
    assert search_exceptions(
        engine, model, query, organization_id=org, reconciliation_id=rid, limit=3
    )


def _amounts_and_a_reference(
    url: str, count: int, reference: str
) -> tuple[sa.Engine, int, int, HashingEmbedder]:
    """A fresh migrated database with `count` amount exceptions and one holding `reference`,
    embedded by the hashing embedder: (engine, organization, the reference's id, embedder)."""
    from resources import migrations

    migrations.migrate(url)
    engine = engine_for(url)
    org = _org(engine)
    rid = _reconciliation(engine, org)
    for i in range(count):
        _exception(engine, rid, org, f"Invoice {i} amount differs from the bank amount")
    wanted = _exception(engine, rid, org, reference)
    fake = HashingEmbedder()
    embed_reconciliation(engine, fake, rid)
    return engine, org, wanted, fake


def test_word_frequencies_counted_or_from_statistics(
    fresh_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rare words are counted in the organization; common ones (past the cap) take ANALYZE's
    share once the table has statistics; either way the reference is found by its word."""
    from pipelines.embed import search

    engine, org, wanted, fake = _amounts_and_a_reference(
        fresh_database(), 59, "Reference zq7731kv has no match"
    )
    params = {"org": org, "doc": "EXCEPTION", "model": fake.model_name}
    words = ["amount", "zq7731kv", "absent"]
    monkeypatch.setattr(search, "TEXT_MATCH_CAP", 10)
    with engine.connect() as conn:
        texts, counted = search.lexeme_shares(conn, words, params)
    assert texts == 60 and counted == {"amount": 10 / 60, "zq7731kv": 1 / 60, "absent": 0.0}
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE document_embeddings"))
    with engine.connect() as conn:
        texts, shares = search.lexeme_shares(conn, words, params)
    assert texts == 60 and shares["zq7731kv"] == 1 / 60 and shares["absent"] == 0.0
    assert shares["amount"] == pytest.approx(59 / 61, abs=0.02)  # table-wide, from statistics
    hits = search_exceptions(engine, fake, "amount zq7731kv", organization_id=org, limit=3)
    assert hits[0]["exception_id"] == wanted and "text" in hits[0]["method"]
    engine.dispose()


def test_the_vector_search_walks_the_half_precision_index(
    engine: sa.Engine, model: SentenceTransformerEmbedder
) -> None:
    """Search orders by the expression of idx_embeddings_halfvec (migration 0007), with or
    without filters on the exception row, so the planner can walk that index (sorts and seq
    scans off: on a small test table sorting every row may cost less)."""
    from pipelines.embed import search

    org, rid, ids, _ = _planted(engine, count=3)
    embed_reconciliation(engine, model, rid)
    query = search.vector_literal(model.encode(["no match in the target"])[0])
    for filters in ({}, {"type": "MISSING_IN_TARGET", "reconciliation_id": rid}):
        chosen = search._filters(filters.get("reconciliation_id"), filters.get("type"), None, None)
        chosen.params.update({"org": org, "doc": "EXCEPTION", "model": model.model_name})
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            conn.execute(sa.text("SET LOCAL enable_sort = off"))
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    sa.text("EXPLAIN " + search.vector_statement(chosen)),
                    {**search._sql_params(chosen), "q": query, "k": 40},
                )
            )
        assert "Index Scan using idx_embeddings_halfvec" in plan, plan
    # the search's transaction: its HNSW settings, and no parallel workers (slower to start
    # than its statements take)
    with engine.begin() as conn:
        search.tune_hnsw(conn, 40, serial=True)
        settings = conn.execute(
            sa.text(
                "SELECT current_setting('hnsw.ef_search'), "
                "current_setting('max_parallel_workers_per_gather')"
            )
        ).one()
    assert tuple(settings) == ("200", "0")
    # the words search is planned for its words every time (a prepared statement's generic
    # plan does not know how rare they are)
    with engine.begin() as conn:
        chosen = search._filters(None, None, None, None)
        chosen.params.update({"org": org, "doc": "EXCEPTION", "model": model.model_name})
        search._text_candidates(conn, "no match", chosen, 40)
        mode = conn.execute(sa.text("SELECT current_setting('plan_cache_mode')")).scalar()
    assert mode == "force_custom_plan"
    hits = search_exceptions(engine, model, "no match in the target", organization_id=org)
    assert {h["exception_id"] for h in hits} == set(ids)
    assert all("vector" in h["method"] and h["similarity"] > 0.3 for h in hits)


def test_search_organization_resolves_the_name(
    database_url: str, engine: sa.Engine, model: SentenceTransformerEmbedder
) -> None:
    name = f"named-{_tag()}"
    org = _org(engine, name)
    rid = _reconciliation(engine, org)
    wanted = _exception(engine, rid, org, "Standing order to the landlord has no match")
    embed_reconciliation(engine, model, rid)
    hits = search_organization(database_url, "rent payment", organization=name, embedder=model)
    assert [h["exception_id"] for h in hits] == [wanted]
    from resources.errors import ReconError

    with pytest.raises(ReconError, match="no organization named"):
        search_organization(database_url, "rent", organization=f"none-{_tag()}", embedder=model)


# ---------------------------------------------------------------- suggestions


def test_the_open_exception_gets_its_semantic_twins_resolution(
    engine: sa.Engine, model: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, stranger = _org(engine), _org(engine)
    old, new = _reconciliation(engine, org, "january"), _reconciliation(engine, org, "february")
    precedents = {
        "fee": (
            "Monthly account maintenance fee charged by the bank, 12.50, not in the ledger",
            "Booked the bank fee to expense account 6100",
        ),
        "refund": (
            "Customer refund sent to Globex Corp reversing invoice 4411, not in the ledger",
            "Matched the refund to credit note CN-4411",
        ),
        "wire": (
            "Second identical wire transfer to Initech on the same day, not in the ledger",
            "Requested a recall of the duplicate wire from the bank",
        ),
        "interest": (
            "Interest earned on the savings deposit credited by the bank, not in the ledger",
            "Recorded interest income on account 7200",
        ),
    }
    ids = {
        key: _exception(engine, old, org, text, status="RESOLVED", resolution=resolution)
        for key, (text, resolution) in precedents.items()
    }
    # a closer twin of another type, and one in another organization: never the precedent
    _exception(
        engine,
        old,
        org,
        "Bank charged a monthly service fee of 12.50 that the ledger lacks",
        type="AMOUNT_MISMATCH",
        status="RESOLVED",
        resolution="WRONG TYPE",
    )
    foreign_rid = _reconciliation(engine, stranger)
    _exception(
        engine,
        foreign_rid,
        stranger,
        "Bank charged a monthly service fee of 12.50 that the ledger lacks",
        status="RESOLVED",
        resolution="OTHER ORGANIZATION",
    )
    fee = _exception(engine, new, org, "Bank charged a monthly service fee of 12.50")
    interest = _exception(engine, new, org, "Deposit interest credited by the bank this month")
    lonely = _exception(
        engine, new, org, "Row 7 failed validation: amount is not a number", type="VALIDATION_ERROR"
    )
    for rid in (old, new, foreign_rid):
        embed_reconciliation(engine, model, rid)

    assert suggest_resolutions(engine, model, new) == 2
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.text(
                    "SELECT id, suggestion FROM reconciliation_exceptions "
                    "WHERE reconciliation_id = :r"
                ),
                {"r": new},
            ).all()
        )
    assert stored[lonely] is None
    for open_id, key in ((fee, "fee"), (interest, "interest")):
        suggestion = stored[open_id]
        assert suggestion["resolution"] == precedents[key][1]
        assert suggestion["precedent_id"] == ids[key]
        evidence = suggestion["evidence"]
        assert evidence[0]["exception_id"] == ids[key]
        assert {e["exception_id"] for e in evidence} == set(ids.values())  # same org and type
        assert all(e["reconciliation_id"] == old for e in evidence)
        sims = [e["similarity"] for e in evidence]
        assert sims == sorted(sims, reverse=True) and sims[0] > sims[1]
        assert 0 < suggestion["score"] <= suggestion["similarity"] == sims[0]
    # many precedents: searched through the HNSW index instead of exactly, same answer
    monkeypatch.setattr("pipelines.embed.suggest.EXACT_LIMIT", 0)
    assert suggest_resolutions(engine, model, new) == 2
    with engine.connect() as conn:
        again = dict(
            conn.execute(
                sa.text(
                    "SELECT id, suggestion FROM reconciliation_exceptions "
                    "WHERE reconciliation_id = :r AND suggestion IS NOT NULL"
                ),
                {"r": new},
            ).all()
        )
    for open_id in (fee, interest):
        before, after = stored[open_id], again[open_id]
        assert (after["resolution"], after["precedent_id"]) == (
            before["resolution"],
            before["precedent_id"],
        )
        assert [e["exception_id"] for e in after["evidence"]] == [
            e["exception_id"] for e in before["evidence"]
        ]
        assert after["similarity"] == pytest.approx(before["similarity"], abs=1e-3)
    # resolved meanwhile: it keeps nothing stale when suggestions are computed again
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reconciliation_exceptions SET resolution = NULL WHERE id = ANY(:i)"),
            {"i": list(ids.values())},
        )
    assert suggest_resolutions(engine, None, new) == 0
    assert (
        _scalar(
            engine,
            "SELECT count(*) FROM reconciliation_exceptions WHERE reconciliation_id = :r "
            "AND suggestion IS NOT NULL",
            r=new,
        )
        == 0
    )


# ---------------------------------------------------------------- the Dagster asset


def test_the_asset_embeds_a_real_reconciliation(
    database_url: str,
    engine: sa.Engine,
    model: SentenceTransformerEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster import materialize
    from test_recon_run import write_case

    from pipelines.definitions import defs
    from pipelines.embeddings import exception_embeddings
    from recon.execution import QUIET
    from recon.run import RunRequest, run_reconciliation
    from resources.dagster_instance import dagster_instance

    case = write_case(tmp_path / "case", f"emb-e2e-{_tag()}")
    summary = run_reconciliation(
        database_url,
        RunRequest(source=case.bank, target=case.ledger, rules=case.rules, organization=case.org),
    )
    assert summary["status"] == "COMPLETED", summary["error_message"]
    rid = summary["reconciliation_id"]

    def run() -> Any:
        return materialize(
            [exception_embeddings],
            instance=dagster_instance(database_url),
            resources={**defs.resources, "embedder": EmbedderResource()},
            partition_key=str(rid),  # `recon run` added the reconciliation's partition
            run_config=QUIET,
            raise_on_error=False,
        )

    result = run()
    assert result.success
    (materialization,) = result.asset_materializations_for_node("exception_embeddings")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["reconciliation_id"] == rid
    assert meta["texts"] == summary["exception_count"] + 1 == 7
    assert meta["cache_hits"] + meta["embedded"] == meta["unique_texts"]
    assert meta["model_calls"] >= (1 if meta["embedded"] else 0)
    assert (
        _scalar(
            engine,
            "SELECT count(*) FROM document_embeddings WHERE reconciliation_id = :r "
            "AND model_name = :m",
            r=rid,
            m=DOCFIT_MODEL_NAME,  # the resource's default
        )
        == 7
    )
    hits = search_exceptions(
        engine,
        default_embedder(),
        "amount differs between bank and ledger",
        organization_id=_scalar(
            engine, "SELECT organization_id FROM reconciliations WHERE id = :r", r=rid
        ),
        reconciliation_id=rid,
        limit=3,
    )
    assert hits[0]["type"] == "AMOUNT_MISMATCH"

    # a second materialization is all cache; a failing one leaves the reconciliation COMPLETED
    again = run()
    assert again.success
    (second,) = again.asset_materializations_for_node("exception_embeddings")
    assert second.metadata["model_calls"].value == 0
    assert second.metadata["ivf_index"].value["built"] is False  # a few rows: HNSW serves

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("embedding store unavailable")

    monkeypatch.setattr("pipelines.embeddings.embed_reconciliation", broken)
    assert not run().success
    status = _scalar(engine, "SELECT status FROM reconciliations WHERE id = :r", r=rid)
    assert status == "COMPLETED"


def test_the_words_list_is_fused_only_when_words_can_add_something() -> None:
    close = [(1, 0.2), (2, 0.3)]  # cosine distances: similarity 0.8 and 0.7
    assert not needs_words("payments to the wrong supplier", close, limit=2)
    assert needs_words("payment INV-1042117", close, limit=2)  # a reference
    assert needs_words('"wrong supplier"', close, limit=2)  # a phrase
    assert needs_words("payments to the wrong supplier", close, limit=5)  # short list
    assert needs_words("payments to the wrong supplier", [(1, 0.7)], limit=1)  # nothing close
    assert needs_words("anything", [], limit=1)


def test_words_a_query_does_not_need_are_not_run_when_queued(
    fresh_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The words search is submitted beside every query; when the vectors answer alone and
    it is still queued behind other searches' words, it is cancelled, not run."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.embed import search

    engine, org, _, fake = _amounts_and_a_reference(
        fresh_database(), 30, "Reference qx5512mb has no match in the ledger"
    )
    pool = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    pool.submit(release.wait, 20)  # the one worker busy: a words search queues
    monkeypatch.setattr(search, "_WORDS", pool)
    ran: list[str] = []

    def words(conn: sa.Connection, text: str, *args: Any) -> list[int]:
        ran.append(text)
        return []

    monkeypatch.setattr(search, "_text_candidates", words)
    timer = threading.Timer(5, release.set)  # a wrong answer fails below, never hangs
    timer.start()
    hits = search_exceptions(
        engine, fake, "amount differs from the bank amount", organization_id=org, limit=3
    )
    assert len(hits) == 3 and {h["method"] for h in hits} == {"vector"}
    assert ran == []
    release.set()
    timer.cancel()
    search_exceptions(engine, fake, "amount qx5512mb", organization_id=org, limit=3)
    assert ran == ["amount qx5512mb"]  # a reference's words are always wanted
    pool.shutdown()
    engine.dispose()


def test_a_reference_search_runs_its_words_beside_the_vectors(
    fresh_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query holding a reference runs the words search on a pool thread with a connection
    of its own; ANALYZE's statistics are read once a minute, not per query; the vector list
    asks for 2 x limit (at least 20)."""
    import threading

    from pipelines.embed import search

    engine, org, wanted, fake = _amounts_and_a_reference(
        fresh_database(), 30, "Reference qx5512mb has no match in the ledger"
    )
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE document_embeddings"))
    threads: list[str] = []
    words = search._text_candidates

    def recorded(*args: Any, **kwargs: Any) -> list[int]:
        threads.append(threading.current_thread().name)
        return words(*args, **kwargs)

    monkeypatch.setattr(search, "_text_candidates", recorded)
    asked: list[int] = []
    vectors = search._vector_candidates

    def vector_k(conn: sa.Connection, query: Any, filters: Any, k: int) -> list[Any]:
        asked.append(k)
        return vectors(conn, query, filters, k)

    monkeypatch.setattr(search, "_vector_candidates", vector_k)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    search._STATISTICS.clear()
    for _ in range(2):
        hits = search_exceptions(engine, fake, "amount qx5512mb", organization_id=org, limit=3)
        assert hits[0]["exception_id"] == wanted and "text" in hits[0]["method"]
    assert len(threads) == 2 and all(t.startswith("recon-search-words") for t in threads)
    assert sum("pg_stats" in s for s in statements) == 1  # the second search kept it
    assert asked == [20, 20]
    search_exceptions(engine, fake, "amount differs", organization_id=org, limit=15)
    assert asked[-1] == 30
    engine.dispose()
