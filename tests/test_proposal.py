"""Rule proposal: mappings, transformations and matching rules worked out from two files."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.ingest.profiling import convert, detect_schema
from pipelines.reconcile.proposal import name_words, propose_from_frames, propose_rule_set
from pipelines.reconcile.rules import RuleSet, check_against_columns, parse_rule_set
from resources.embedder import EmbedderResource, HashingEmbedder, SentenceTransformerEmbedder

ROWS = 400
_NAMES = [
    f"{a} {b} {c}"
    for a in ("Hartley", "Ashford", "Bramwell", "Caldwell", "Danforth", "Ellison", "Garrison")
    for b in ("Logistics", "Trading", "Foods", "Holdings", "Media")
    for c in ("Ltd", "LLC", "Inc")
]


# the embedder resource's fake: hashed words, so shared words mean similar names, no model
FAKE = EmbedderResource(implementation="hashing")


@pytest.fixture(scope="module")
def model() -> Any:
    embedder = EmbedderResource().embedder()  # the resource's real one: the packaged MiniLM
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def typed(columns: dict[str, list[str | None]]) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """A raw all-text frame profiled and converted as the file stage does."""
    height = len(next(iter(columns.values())))
    raw = pl.DataFrame(columns, schema={k: pl.String for k in columns}).with_columns(
        pl.int_range(1, height + 1, dtype=pl.Int64).alias("_row_number")
    )
    schema = detect_schema(raw)
    return convert(raw, schema).frame, schema


def bank_and_ledger(rows: int = ROWS, seed: int = 5) -> tuple[dict, dict]:
    """Raw columns of a small bank export and ledger describing the same transactions."""
    rnd = random.Random(seed)
    start = date(2024, 1, 1)
    bank: dict[str, list[str | None]] = {
        k: [] for k in ("Txn Id", "Value Date", "Ref", "Payee Name", "Amt", "Currency", "Memo")
    }
    ledger: dict[str, list[str | None]] = {
        k: [] for k in ("entry_id", "posting_date", "invoice_reference", "counterparty")
    }
    ledger |= {"amount": [], "ccy": []}
    for i in range(rows):
        day = start + timedelta(days=rnd.randrange(300))
        cents = rnd.randrange(100, 2_000_000) * (-1 if rnd.random() < 0.6 else 1)
        ref = f"INV-{100_000 + i}"
        name = rnd.choice(_NAMES)
        currency = rnd.choice(["USD", "USD", "USD", "EUR", "GBP"])
        shown = name if rnd.random() > 0.1 else name[:3] + name[4:]  # a deleted letter
        money = f"{abs(cents) / 100:,.2f}"
        bank["Txn Id"].append(f"B{rows - i:07d}")
        bank["Value Date"].append(
            (day + timedelta(days=rnd.choice([0, 0, 1]))).strftime("%d/%m/%Y")
        )
        bank["Ref"].append(ref.lower() if rnd.random() < 0.2 else ref)
        bank["Payee Name"].append(shown)
        bank["Amt"].append(f"({money})" if cents < 0 else f"${money}")
        bank["Currency"].append(currency)
        bank["Memo"].append(rnd.choice(["see file", "monthly", "urgent", "n/a"]) + f" {i % 97}")
        ledger["entry_id"].append(f"JE{i + 1:08d}")
        ledger["posting_date"].append(day.isoformat())
        ledger["invoice_reference"].append(ref)
        ledger["counterparty"].append(name)
        ledger["amount"].append(f"{cents / 100:.2f}")
        ledger["ccy"].append(currency)
    return bank, ledger


@pytest.fixture(scope="module")
def bank_ledger_proposal(model: Any) -> tuple[RuleSet, pl.DataFrame, pl.DataFrame]:
    bank, ledger = bank_and_ledger()
    (source, s_schema), (target, t_schema) = typed(bank), typed(ledger)
    rule_set = propose_from_frames(
        source, target, s_schema, t_schema, name="ai:bank-vs-ledger", embedder=model
    )
    return rule_set, source, target


def _mappings(rule_set: RuleSet) -> dict[str, tuple[str, str, dict | None]]:
    return {
        m.source_field: (m.target_field, m.transformation_type, m.transformation_config)
        for m in rule_set.field_mappings
    }


def _rules(rule_set: RuleSet) -> dict[str, tuple[str, float, float | None, float | None]]:
    return {
        r.fields[0]: (r.match_type, r.weight, r.threshold, r.tolerance)
        for r in rule_set.matching_rules
    }


def test_differently_named_columns_are_mapped_with_the_right_transformations(
    bank_ledger_proposal: tuple[RuleSet, pl.DataFrame, pl.DataFrame],
) -> None:
    rule_set, _, _ = bank_ledger_proposal
    assert _mappings(rule_set) == {
        "Value Date": ("posting_date", "DATE_FORMAT", {"format": "dd/MM/yyyy"}),
        "Ref": ("invoice_reference", "UPPERCASE", None),
        "Payee Name": ("counterparty", "TRIM", None),
        "Amt": ("amount", "DIRECT", None),
        "Currency": ("ccy", "TRIM", None),
    }
    assert rule_set.is_ai_generated
    assert rule_set.description and "'Ref' -> 'invoice_reference' UPPERCASE" in rule_set.description


def test_columns_without_a_counterpart_are_not_mapped(
    bank_ledger_proposal: tuple[RuleSet, pl.DataFrame, pl.DataFrame],
) -> None:
    rule_set, _, _ = bank_ledger_proposal
    sources = {m.source_field for m in rule_set.field_mappings}
    targets = {m.target_field for m in rule_set.field_mappings}
    assert "Memo" not in sources  # free text with nothing like it in the ledger
    assert "Txn Id" not in sources and "entry_id" not in targets  # row ids, no shared value
    assert "'Memo' not mapped" in (rule_set.description or "")


def test_match_types_follow_the_data(
    bank_ledger_proposal: tuple[RuleSet, pl.DataFrame, pl.DataFrame],
) -> None:
    rule_set, _, _ = bank_ledger_proposal
    assert _rules(rule_set) == {
        "invoice_reference": ("EXACT", 1.0, None, None),
        "amount": ("RANGE", 0.8, None, 0.01),
        "posting_date": ("DATE_RANGE", 0.6, None, 3.0),
        "counterparty": ("FUZZY", 0.5, 0.85, None),
        "ccy": ("EXACT", 0.2, None, None),
    }
    assert rule_set.match_threshold == 0.9


def test_the_proposal_passes_validation(
    bank_ledger_proposal: tuple[RuleSet, pl.DataFrame, pl.DataFrame],
) -> None:
    rule_set, source, target = bank_ledger_proposal
    again = parse_rule_set(rule_set.content())
    assert again.content() == rule_set.content()
    assert again.content_sha256() == rule_set.content_sha256()
    check_against_columns(
        rule_set,
        [c for c in source.columns if c != "_row_number"],
        [c for c in target.columns if c != "_row_number"],
    )


def test_propose_rule_set_reads_the_files(tmp_path: Path, model: Any) -> None:
    bank, ledger = bank_and_ledger(rows=300, seed=9)
    source, target = tmp_path / "bank_export.csv", tmp_path / "ledger.csv"
    pl.DataFrame(bank).write_csv(source)
    pl.DataFrame(ledger).write_csv(target)
    rule_set = propose_rule_set(source, target, embedder=model)
    assert rule_set.name == "ai:bank_export-vs-ledger"
    assert _mappings(rule_set)["Ref"] == ("invoice_reference", "UPPERCASE", None)
    check_against_columns(rule_set, list(bank), list(ledger))


def test_lowercase_when_the_target_writes_lower_case_and_direct_for_same_format_dates() -> None:
    rnd = random.Random(1)
    codes = [f"ACC-{rnd.randrange(10_000, 99_999)}-X{i}" for i in range(200)]
    days = [(date(2024, 3, 1) + timedelta(days=i % 90)).isoformat() for i in range(200)]
    source, s_schema = typed({"account_code": codes, "booked": days})
    target, t_schema = typed({"account_code": [c.lower() for c in codes], "booked": days})
    rule_set = propose_from_frames(source, target, s_schema, t_schema, embedder=FAKE.embedder())
    assert _mappings(rule_set) == {
        "account_code": ("account_code", "LOWERCASE", None),
        "booked": ("booked", "DIRECT", None),
    }
    assert _rules(rule_set)["account_code"][0] == "EXACT"


def test_an_unrelated_unique_column_never_becomes_a_rule() -> None:
    source, s_schema = typed(
        {
            "id": [f"S{i:05d}" for i in range(200)],
            "reference": [f"R{i:05d}" for i in range(200)],
        }
    )
    target, t_schema = typed(
        {
            "id": [f"T{i:05d}" for i in range(200)],
            "reference": [f"R{i:05d}" for i in range(200)],
        }
    )
    rule_set = propose_from_frames(source, target, s_schema, t_schema, embedder=FAKE.embedder())
    assert set(_rules(rule_set)) == {"reference"}


def test_name_words_spell_out_abbreviations() -> None:
    assert name_words("Txn Amt") == "transaction amount"
    assert name_words("invoiceNo") == "invoice number"
    assert name_words("posting_date") == "posting date"


def test_the_names_are_embedded_by_the_embedder_resource_handed_in() -> None:
    fake = FAKE.embedder()
    assert isinstance(fake, HashingEmbedder)
    seen: list[str] = []

    class Recording:
        """The resource's fake, noting what the proposal asks it to embed."""

        model_name, dimensions = fake.model_name, fake.dimensions

        def encode(self, texts: Any) -> Any:
            seen.extend(texts)
            return fake.encode(texts)

    invoices = [f"INV-{i:05d}" for i in range(200)]
    amounts = [f"{i * 3.25:.2f}" for i in range(200)]
    source, s_schema = typed({"invoiceNo": invoices, "Txn Amt": amounts})
    target, t_schema = typed({"invoice_number": invoices, "transaction_amount": amounts})
    rule_set = propose_from_frames(source, target, s_schema, t_schema, embedder=Recording())
    assert seen == ["invoice number", "transaction amount"] * 2  # source names, then target's
    assert _mappings(rule_set)["invoiceNo"][0] == "invoice_number"
    assert _mappings(rule_set)["Txn Amt"][0] == "transaction_amount"
