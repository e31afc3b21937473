"""What the short text MiniLM embeds (`embedding_text`, the `dense_texts` option) keeps of an
exception - the kind (not the severity), the difference in words, the month, payee names,
references and amounts once each - and what it leaves out (identifiers, dates, currency codes,
confidences)."""

from __future__ import annotations

import json
from typing import Any

from pipelines.embed.texts import embedding_text, exception_text

BANK_LINE = {
    "Transaction ID": "BK000000417",
    "Value Date": "04/03/2024",
    "Details": "SEPA CT FROM GLOBEX CORP REF INV-8079512",
    "Reference": "INV-8079512",
    "Counterparty Name": "GLOBEX CORP",
    "Amount": "$985.00",
    "Currency": "USD",
    "_row_number": 17,
}
LEDGER_ENTRY = {
    "entry_id": "JE00000311",
    "reference": "INV-8079512",
    "counterparty": "Globex Corporation",
    "amount": 1000.0,
    "posting_date": "2024-03-04",
    "currency": "USD",
    "_row_number": 5,
}
FEE_SHORT: dict[str, Any] = {
    "type": "AMOUNT_MISMATCH",
    "severity": "LOW",
    "description": "amount differs by -15.0 (source 985.0, target 1000.0; tolerance 0.01); "
    "matched with confidence 0.962",
    "source_data": json.dumps(BANK_LINE),
    "target_data": json.dumps(LEDGER_ENTRY),
    "diff": json.dumps(
        [{"field": "amount", "source_value": 985.0, "target_value": 1000.0, "delta": -15.0}]
    ),
}


def _late(source: str, target: str) -> dict[str, Any]:
    return {
        "type": "DATE_MISMATCH",
        "severity": "MEDIUM",
        "source_data": {**BANK_LINE, "Value Date": "20/04/2024"},
        "target_data": {**LEDGER_ENTRY, "amount": 985.0, "posting_date": target},
        "diff": [{"field": "posting_date", "source_value": source, "target_value": target}],
    }


def test_an_amount_break_says_the_shortfall_in_words_and_keeps_payees_and_reference() -> None:
    text = embedding_text(FEE_SHORT)
    assert text.startswith("amount mismatch. 15.00 short, 985.00 against 1000.00. March.")
    for kept in ("SEPA CT FROM GLOBEX CORP REF INV-8079512", "Globex Corporation"):
        assert kept in text
    assert text.count("INV-8079512") == 1  # quoted in the details: once is enough
    assert "985.00" in text and "$985.00" not in text  # the amount said once
    for dropped in ("BK000000417", "JE00000311", "confidence", "tolerance", "USD", "2024"):
        assert dropped not in text
    assert "low" not in text  # the severity is a filter, not searched words
    assert len(text) < 0.4 * len(exception_text(FEE_SHORT))


def test_an_overpayment_is_over_not_short() -> None:
    over = {
        **FEE_SHORT,
        "diff": [{"field": "amount", "source_value": 1012.5, "target_value": 1000}],
    }
    assert "12.50 over, 1012.50 against 1000.00" in embedding_text(over)


def test_a_date_break_says_how_many_days_and_which_side_is_later() -> None:
    late = embedding_text(_late("2024-04-20", "2024-04-15"))
    assert late.startswith("date mismatch. posting date differs by 5 day(s), source value")
    assert "source value date 5 days late, after target posting date. April." in late
    early = embedding_text(_late("2024-05-28", "2024-06-27"))
    assert (
        "differs by -30 day(s), source value date 30 days early, before target posting date"
        in early
    )
    assert "$985.00" in late  # the amount, not part of the difference, is kept


def test_a_missing_record_keeps_payee_reference_and_amount_without_identifiers() -> None:
    row = {
        "type": "MISSING_IN_TARGET",
        "severity": "HIGH",
        "description": "Source row 17 has no match in the target (reference=INV-8079512, "
        "posting_date=2024-03-04)",
        "source_data": BANK_LINE,
        "target_data": None,
        "diff": "[]",
    }
    text = embedding_text(row)
    assert text.startswith("missing in target, no match. March.")
    assert "GLOBEX CORP" in text and "INV-8079512" in text and "$985.00" in text
    assert "BK000000417" not in text and "row 17" not in text


def test_a_duplicate_says_its_amount_once_whatever_its_formatting() -> None:
    row = {
        "type": "DUPLICATE_FOUND",
        "severity": "MEDIUM",
        "source_data": {**BANK_LINE, "Amount": "$1,250.00"},
        "target_data": {**LEDGER_ENTRY, "amount": 1250.0},
        "diff": [{"field": "_row_number", "duplicate_of": 12}],
    }
    text = embedding_text(row)
    assert text.startswith("duplicate, repeated twice.")
    assert "$1,250.00" in text and "1250.00" not in text and "repeats row" not in text


def test_a_validation_error_names_the_failed_check_and_the_bad_value() -> None:
    row = {
        "type": "VALIDATION_ERROR",
        "severity": "HIGH",
        "source_data": {**BANK_LINE, "Amount": "12O.00"},
        "diff": [{"field": "Amount", "check": "parse_amount", "source_value": "12O.00"}],
    }
    text = embedding_text(row)
    assert text.startswith("validation error. amount failed parse amount 12O.00.")
    assert text.count("12O.00") == 1


def test_a_kind_it_does_not_know_keeps_the_description() -> None:
    row = {"type": "FX_RATE_DRIFT", "description": "rate  moved by 2%", "source_data": BANK_LINE}
    text = embedding_text(row)
    assert text.startswith("fx rate drift. rate moved by 2%.") and "GLOBEX CORP" in text
