"""Seeded generator of realistic reconciliation exceptions, with their ground truth.

    from bench.retrieval_corpus import generate
    corpus = generate(count=4200, seed=21)   # corpus.exceptions, corpus.facts

Each exception is a `reconciliation_exceptions` row as the engine stores it (the mapping
`pipelines.embed.texts.exception_text` reads): `id`, `type`, `severity`, `description` (the
engine's wording, `pipelines/reconcile/exceptions.py`), `source_data` (the bank export row as
JSON: Transaction ID, Value Date dd/MM/yyyy, Details, Reference, Counterparty Name, Amount
"$1,234.56" / "(1,234.56)", Currency, `_row_number`), `target_data` (the ledger row: entry_id,
reference, counterparty, amount, posting_date, currency, `_row_number`) and `diff`.

What is in it is drawn from how bank-against-ledger breaks happen: incoming payments short by
a bank fee (2.50, 15.00 or 25.00) or outgoing ones charged one on top; partial payments,
overpayments, FX rounding and keying errors; value dates days or weeks after the posting;
bank lines booked twice and ledger entries posted twice; ledger entries with no bank line and
bank lines (card payments, direct debits, the bank's own charges) with no ledger entry; blank
references; payee names in capitals with bank prefixes ("CARD PAYMENT TO GLOBEX CORP") and
abbreviations ("ACME LTD" for "Acme Limited"), some misspelled; six months; 48
counterparties, a few of them frequent; recurring round amounts (rent, subscriptions).

`facts` holds, per exception id, what was done (the truth the query labels of
`bench/retrieval_queries.py` are derived from; no model is involved).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from typing import Any

from bench.retrieval_world import COUNTERPARTIES, bank_amount, money_text, typo

MONTHS = ("January", "February", "March", "April", "May", "June")
FEES = (2.5, 15.0, 25.0)
LAGS = (4, 5, 6, 7, 10, 14, 21, 30)
# what goes wrong, and how often (shares of the exceptions)
KINDS: tuple[tuple[str, float], ...] = (
    ("fee_short", 0.12),
    ("amount_other", 0.13),
    ("date_lag", 0.15),
    ("duplicate", 0.12),
    ("missing_bank_line", 0.19),  # MISSING_IN_SOURCE: a ledger entry with no bank line
    ("missing_ledger_entry", 0.19),  # MISSING_IN_TARGET: a bank line with no ledger entry
    ("validation", 0.10),
)
IN_PREFIXES = ("FASTER PAYMENT RECEIVED FROM", "SEPA CT FROM", "BGC", "TRANSFER FROM")
OUT_PREFIXES = ("CARD PAYMENT TO", "DIRECT DEBIT", "BACS PAYMENT TO", "TRANSFER TO")
START = dt.date(2024, 1, 1)


@dataclass
class Corpus:
    """The exceptions (rows as stored) and, per id, the truth behind each."""

    exceptions: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)


def _pick_kind(rng: random.Random) -> str:
    r = rng.random() * sum(w for _, w in KINDS)
    for kind, weight in KINDS:
        r -= weight
        if r <= 0:
            return kind
    return KINDS[-1][0]


def _amount(rng: random.Random, recurring: tuple[float, ...]) -> float:
    if rng.random() < 0.35:
        return rng.choice(recurring)
    return round(rng.lognormvariate(6.3, 1.1), 2) + 0.01 * rng.randrange(1, 99)


def _key_text(reference: str, counterparty: str, amount: float, date: dt.date) -> str:
    ref = reference.upper() or "-"
    return (
        f"reference={ref}, counterparty={counterparty}, amount={money_text(amount)}, "
        f"posting_date={date.isoformat()}, currency=USD"
    )


class _Maker:
    """Builds one exception at a time from a transaction drawn for it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        weights = [1.0 / (i + 1) ** 0.7 for i in range(len(COUNTERPARTIES))]
        self.weights = weights
        self.recurring = {
            i: tuple(
                rng.choice((250.0, 500.0, 750.0, 1250.0, 1500.0, 2000.0, 4500.0, 99.0, 49.99))
                for _ in range(2)
            )
            for i in range(len(COUNTERPARTIES))
        }
        self.row = {"source": 1000, "target": 1000}
        self.ref_numbers = rng.sample(range(1_000_000, 9_999_999), 20_000)

    def next_row(self, side: str) -> int:
        self.row[side] += self.rng.randrange(1, 40)
        return self.row[side]

    def transaction(self) -> dict[str, Any]:
        rng = self.rng
        cp = rng.choices(range(len(COUNTERPARTIES)), weights=self.weights)[0]
        ledger_name, bank_name, short, customer = COUNTERPARTIES[cp]
        amount = _amount(rng, self.recurring[cp])
        number = self.ref_numbers.pop()
        prefix = "INV" if customer else rng.choice(("PO", "BILL"))
        day = START + dt.timedelta(days=rng.randrange(182))
        return {
            "cp": cp,
            "customer": customer,
            "ledger_name": ledger_name,
            "bank_name": typo(rng, bank_name) if rng.random() < 0.1 else bank_name,
            "short": short,
            "amount": amount if customer else -amount,
            "reference": f"{prefix}-{number}",
            "date": day,
            "month": MONTHS[day.month - 1],
        }

    def bank_row(self, t: dict[str, Any], amount: float, day: dt.date, blank: bool) -> dict:
        rng = self.rng
        ref = "" if blank else t["reference"]
        if rng.random() < 0.05 and ref:
            ref = ref.lower()
        prefixes = IN_PREFIXES if amount >= 0 else OUT_PREFIXES
        details = f"{rng.choice(prefixes)} {t['bank_name']}"
        if ref:
            details += f" REF {ref.upper()}"
        return {
            "Transaction ID": f"BK{rng.randrange(10**8):09d}",
            "Value Date": day.strftime("%d/%m/%Y"),
            "Details": details,
            "Reference": ref,
            "Counterparty Name": t["bank_name"],
            "Amount": bank_amount(amount),
            "Currency": "USD",
            "_row_number": self.next_row("source"),
        }

    def ledger_row(self, t: dict[str, Any]) -> dict:
        return {
            "entry_id": f"JE{self.rng.randrange(10**7):08d}",
            "reference": t["reference"],
            "counterparty": t["ledger_name"],
            "amount": t["amount"],
            "posting_date": t["date"].isoformat(),
            "currency": "USD",
            "_row_number": self.next_row("target"),
        }


def _severity_amount(delta: float, target: float) -> str:
    bands = sum(abs(delta) >= t for t in (10.0, 100.0, 1000.0))
    rel = abs(delta) / max(abs(target), 1e-9)
    bands = max(bands, sum(rel >= t for t in (0.01, 0.05, 0.25)))
    return ("LOW", "MEDIUM", "HIGH", "CRITICAL")[bands]


def _mismatch(m: _Maker, t: dict[str, Any], kind: str) -> tuple[dict, dict]:
    rng = m.rng
    facts: dict[str, Any] = {}
    target = t["amount"]
    day = t["date"] + dt.timedelta(days=rng.randrange(0, 3))
    if kind == "fee_short":
        fee = rng.choice(FEES)
        facts["fee"] = fee
        source = round(target - fee, 2)  # received less, or paid out more
    elif kind == "amount_other":
        how = rng.choice(("partial", "overpaid", "fx", "keying"))
        facts["how"] = how
        if how == "partial":
            source = round(target * rng.uniform(0.3, 0.7), 2)
        elif how == "overpaid":
            source = round(target * rng.uniform(1.05, 1.5), 2)
        elif how == "fx":
            delta = rng.choice((0.03, 0.17, 0.41, 1.09, 3.37, 4.12, 7.93, 11.46))
            source = round(target + rng.choice((-1, 1)) * delta, 2)
        else:  # two digits swapped
            cents = f"{abs(target):.2f}".replace(".", "")
            i = rng.randrange(len(cents) - 1)
            swapped = cents[:i] + cents[i + 1] + cents[i] + cents[i + 2 :]
            source = round((1 if target > 0 else -1) * int(swapped) / 100, 2)
            if source == target:
                source = round(target * 1.1, 2)
    else:  # date_lag
        lag = rng.choice(LAGS) * (1 if rng.random() < 0.85 else -1)
        facts["lag"] = lag
        source, day = target, t["date"] + dt.timedelta(days=lag)
    src = m.bank_row(t, source, day, blank=False)
    tgt = m.ledger_row(t)
    confidence = round(rng.uniform(0.9, 0.999), 3)
    if kind == "date_lag":
        lag = facts["lag"]
        severity = ("LOW", "MEDIUM", "HIGH", "CRITICAL")[
            sum(abs(lag) - 3 >= b for b in (3.0, 10.0, 30.0))
        ]
        description = (
            f"posting_date differs by {lag} day(s) (source {day.isoformat()}, target "
            f"{t['date'].isoformat()}; tolerance 3); matched with confidence {confidence}"
        )
        diff = [
            {
                "field": "posting_date",
                "source_value": day.isoformat(),
                "target_value": t["date"].isoformat(),
                "delta": float(lag),
                "tolerance": 3.0,
            }
        ]
        kind_type = "DATE_MISMATCH"
    else:
        delta = round(source - target, 2)
        facts["delta"] = delta
        severity = _severity_amount(delta, target)
        description = (
            f"amount differs by {money_text(delta)} (source {money_text(source)}, target "
            f"{money_text(target)}; tolerance 0.01); matched with confidence {confidence}"
        )
        diff = [
            {
                "field": "amount",
                "source_value": source,
                "target_value": target,
                "delta": delta,
                "tolerance": 0.01,
            }
        ]
        kind_type = "AMOUNT_MISMATCH"
    facts["amounts"] = {round(abs(source), 2), round(abs(target), 2)}
    row = {
        "type": kind_type,
        "severity": severity,
        "description": description,
        "source_data": src,
        "target_data": tgt,
        "diff": diff,
    }
    return row, facts


def _unmatched(m: _Maker, t: dict[str, Any], kind: str) -> tuple[dict, dict]:
    rng = m.rng
    facts: dict[str, Any] = {"amounts": {round(abs(t["amount"]), 2)}}
    if kind == "duplicate":
        side = "source" if rng.random() < 0.75 else "target"
        facts["side"] = side
        if side == "source":
            record = m.bank_row(t, t["amount"], t["date"], blank=rng.random() < 0.05)
            name, ref = t["bank_name"], record["Reference"]
        else:
            record = m.ledger_row(t)
            name, ref = t["ledger_name"], t["reference"]
        row_no = record["_row_number"]
        first = row_no - rng.randrange(1, 30)
        description = (
            f"{side.capitalize()} row {row_no} repeats row {first} of the same file "
            f"({_key_text(ref, name, t['amount'], t['date'])})"
        )
        return {
            "type": "DUPLICATE_FOUND",
            "severity": "MEDIUM",
            "description": description,
            f"{side}_data": record,
            "diff": [{"field": "_row_number", "duplicate_of": first}],
        }, facts
    if kind == "missing_bank_line":  # ledger only
        record = m.ledger_row(t)
        side, other, name, ref = "target", "source", t["ledger_name"], t["reference"]
        kind_type = "MISSING_IN_SOURCE"
    else:  # bank only; a third with a blank reference
        blank = rng.random() < 0.3
        record = m.bank_row(t, t["amount"], t["date"], blank=blank)
        side, other, name, ref = "source", "target", t["bank_name"], record["Reference"]
        kind_type = "MISSING_IN_TARGET"
        facts["blank_reference"] = blank
    probability = round(rng.random() * 0.6, 3) if rng.random() < 0.7 else 0.0
    severity = ("LOW", "MEDIUM", "HIGH", "CRITICAL")[
        sum(abs(t["amount"]) >= b for b in (10.0, 100.0, 1000.0))
    ]
    description = (
        f"{side.capitalize()} row {record['_row_number']} has no match in the {other} "
        f"({_key_text(ref, name, t['amount'], t['date'])}); best candidate probability "
        f"{probability}"
    )
    return {
        "type": kind_type,
        "severity": severity,
        "description": description,
        f"{side}_data": record,
        "diff": [],
    }, facts


def _validation(m: _Maker, t: dict[str, Any]) -> tuple[dict, dict]:
    rng = m.rng
    record = m.bank_row(t, t["amount"], t["date"], blank=False)
    column, check, value = rng.choice(
        (
            ("Amount", "parse_amount", "12O.00"),
            ("Value Date", "parse_date", "31/02/2024"),
            ("Currency", "allowed_values", "US"),
            ("Amount", "not_null", None),
        )
    )
    record[column] = value
    diff = [{"field": column, "check": check, "source_value": value}]
    description = (
        f"Source row {record['_row_number']} of bank_export.csv failed validation: "
        f"{column} ({check}); kept out of matching"
    )
    return {
        "type": "VALIDATION_ERROR",
        "severity": "HIGH",
        "description": description,
        "source_data": record,
        "diff": diff,
    }, {"amounts": set()}


def generate(count: int = 4200, seed: int = 21) -> Corpus:
    """`count` exceptions (ids 1..count) and their facts; the same arguments, the same corpus."""
    maker = _Maker(seed)
    corpus = Corpus()
    for i in range(1, count + 1):
        kind = _pick_kind(maker.rng)
        t = maker.transaction()
        if kind in ("fee_short", "amount_other", "date_lag"):
            row, facts = _mismatch(maker, t, kind)
        elif kind == "validation":
            row, facts = _validation(maker, t)
        else:
            row, facts = _unmatched(maker, t, kind)
        stored = {
            "id": i,
            "type": row["type"],
            "severity": row["severity"],
            "description": row["description"],
            "source_data": json.dumps(row["source_data"]) if "source_data" in row else None,
            "target_data": json.dumps(row["target_data"]) if "target_data" in row else None,
            "diff": json.dumps(row["diff"]),
        }
        corpus.exceptions.append(stored)
        references = {
            str(r.get(k) or "").upper()
            for r in (row.get("source_data") or {}, row.get("target_data") or {})
            for k in ("Reference", "reference")
        } - {""}
        corpus.facts[i] = {
            "kind": kind,
            "type": row["type"],
            "cp": t["cp"],
            "month": t["month"],
            "customer": t["customer"],
            "references": references,
            "typo_in_bank_name": t["bank_name"] != COUNTERPARTIES[t["cp"]][1],
            **facts,
        }
    return corpus
