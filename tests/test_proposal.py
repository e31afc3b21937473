"""Rule proposal: mappings, transformations and matching rules worked out from two files, and
an aggregation where one side's records settle several of the other's (issue 16)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
from helpers import run_recon

from pipelines.ingest.profiling import convert, detect_schema
from pipelines.reconcile.proposal import name_words, propose_from_frames, propose_rule_set
from pipelines.reconcile.rules import RuleSet, check_against_columns, parse_rule_set
from resources.embedder import (
    EmbedderResource,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    encode_queries,
)

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
    # the resource's real one: column names go to the packaged MiniLM (`encode_queries`)
    embedder = EmbedderResource().embedder()
    names = ["posting date", "amount"]
    assert np.allclose(
        encode_queries(embedder, names), SentenceTransformerEmbedder().encode(names), atol=1e-6
    )
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


# ---------------------------------------------------------------- aggregation (issue 16)

_FIRMS = [
    f"{a} {b}"
    for a in ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Proseware")
    + ("Alpine", "Bluebird", "Coho", "Lucerne", "Margie", "Woodgrove", "Relecloud", "Cronus")
    for b in ("Traders", "Foods", "Labs", "Supplies", "Media", "Works")
]
_LEGAL = (("Ltd", "LIMITED"), ("Inc", "INCORPORATED"), ("LLC", "L.L.C."))


def receipts_and_invoices(folder: Path, receipts: int = 300, seed: int = 16) -> dict[int, set[int]]:
    """A bank's receipts (source) and AR invoices (target): 40 % of receipts settle two to five
    invoices of one customer dated up to 9 days before, the payer SHOUTED with its legal form
    written another way, a third quoting the invoice numbers in `Remittance`, half the
    one-invoice receipts carrying the number in `Reference`. Writes `bank.csv` and
    `invoices.csv`; returns receipt row -> its invoices' rows."""
    rnd = random.Random(seed)
    bank, invoices, settles = [], [], []
    number = 500_000
    for _ in range(receipts):
        firm = _FIRMS[rnd.randrange(len(_FIRMS))]
        short, long = _LEGAL[_FIRMS.index(firm) % len(_LEGAL)]
        paid = date(2024, 1, 10) + timedelta(days=rnd.randrange(120))
        count = rnd.randint(2, 5) if rnd.random() < 0.4 else 1
        mine = []
        for _ in range(count):
            number += 1
            amount = rnd.randrange(10_000, 500_000) / 100
            day = paid - timedelta(days=rnd.randint(0, 9))
            invoices.append((f"INV{number}", f"{firm} {short}", f"{amount:.2f}", day.isoformat()))
            mine.append((f"INV{number}", amount))
        total = round(sum(a for _, a in mine), 2)
        reference = mine[0][0] if count == 1 and rnd.random() < 0.5 else ""
        quoted = " ".join(n for n, _ in mine) if rnd.random() < 1 / 3 else ""
        remittance = f"PAYMENT {quoted}" if quoted else "CUSTOMER PAYMENT"
        bank.append(f'{paid:%d/%m/%Y},{total:.2f},"{firm.upper()} {long}",{reference},{remittance}')
        settles.append({n for n, _ in mine})
    rnd.shuffle(invoices)
    row_of = {inv[0]: row for row, inv in enumerate(invoices, start=1)}
    (folder / "bank.csv").write_text(
        "Value Date,Amount,Payer,Reference,Remittance\n" + "\n".join(bank) + "\n"
    )
    (folder / "invoices.csv").write_text(
        "invoice_number,customer_name,amount,invoice_date\n"
        + "\n".join(f'{n},"{c}",{a},{d}' for n, c, a, d in invoices)
        + "\n"
    )
    return {row: {row_of[n] for n in s} for row, s in enumerate(settles, start=1)}


@pytest.mark.parametrize("seed", [16, 2])
def test_receipts_against_invoices_get_an_aggregation_proposed(tmp_path: Path, seed: int) -> None:
    """Seed 2's amounts differ too much one to one for a RANGE rule (sums of several make the
    distributions differ): the exact sums found add it."""
    receipts_and_invoices(tmp_path, seed=seed)
    rule_set = propose_rule_set(
        tmp_path / "bank.csv", tmp_path / "invoices.csv", embedder=FAKE.embedder()
    )
    assert _rules(rule_set)["customer_name"][0] == "FUZZY"
    assert _rules(rule_set)["amount"] == ("RANGE", 0.8, None, 0.01)
    assert ("'amount' RANGE added" in (rule_set.description or "")) == (seed == 2)
    (aggregation,) = rule_set.aggregation
    assert aggregation.many_side == "target"
    assert aggregation.group_by == ("customer_name",)
    assert (aggregation.amount_field, aggregation.date_field) == ("amount", "invoice_date")
    assert aggregation.date_window_days == 10.0  # the widest gap seen (9 days) plus one
    assert aggregation.max_group_size == 5
    assert aggregation.tolerance == 0.01
    assert (aggregation.reference_field, aggregation.reference_target_field) == (
        "Remittance",
        "invoice_number",
    )
    assert "Aggregation: many side target:" in (rule_set.description or "")
    assert parse_rule_set(rule_set.content()).content() == rule_set.content()


def test_a_one_to_one_bank_and_ledger_gets_no_aggregation(
    bank_ledger_proposal: tuple[RuleSet, pl.DataFrame, pl.DataFrame],
) -> None:
    rule_set, _, _ = bank_ledger_proposal
    assert rule_set.aggregation == ()
    assert "aggregation" not in rule_set.content()
    assert "Aggregation: none (many side target: 0 of" in (rule_set.description or "")


def test_recon_run_without_rules_matches_the_groups(database_url: str, tmp_path: Path) -> None:
    planted = receipts_and_invoices(tmp_path)
    code, out, err = run_recon(
        "run",
        "--no-embed",
        "--source",
        str(tmp_path / "bank.csv"),
        "--target",
        str(tmp_path / "invoices.csv"),
        "--org",
        f"propose-agg-{uuid.uuid4().hex[:8]}",
        timeout=300,
    )
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    multi = {r: rows for r, rows in planted.items() if len(rows) > 1}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT source_row_number, target_row_number FROM reconciliation_matches "
            "WHERE reconciliation_id = %s AND match_kind = 'AGGREGATE'",
            (summary["reconciliation_id"],),
        ).fetchall()
        (ai,) = conn.execute(
            "SELECT s.is_ai_generated FROM reconciliations r "
            "JOIN rule_sets s ON s.id = r.rule_set_id WHERE r.id = %s",
            (summary["reconciliation_id"],),
        ).fetchone()
    found: dict[int, set[int]] = {}
    for s, t in rows:
        found.setdefault(s, set()).add(t)
    right = sum(1 for r, t in found.items() if planted.get(r) == t)
    assert ai is True
    assert summary["matched_groups"] == len(found)
    assert right >= 0.95 * len(multi), (right, len(multi))
    assert len(found) - right <= 0.02 * len(multi)
    assert summary["unmatched_target_records"] <= 0.03 * sum(len(t) for t in planted.values())
