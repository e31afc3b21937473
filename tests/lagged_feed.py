"""A fortnight of bank-vs-ledger files as they really arrive: the bank posts days after the ledger.

Each ledger entry (booked on its day) reaches the bank on the same day (about seven in eight)
or one to three days later, so its bank line lands in a later day's file; some never reach
it within the fortnight (5 %, or a lag past its end). The bank deducts a fee from about 3 % of
payments, leaves the reference blank on about 5 % of lines and shouts payee names in capitals;
each day carries one bank-only line (a charge or interest). The truth is what a reconciler of
the whole fortnight would raise: AMOUNT_MISMATCH for each short payment, MISSING_IN_SOURCE for
each entry the bank never shows, MISSING_IN_TARGET for each bank-only line; the lagged entries
are no breaks at all. Keys are (exception type, reference).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

BANK_HEADER = "transaction_id,booking_date,amount,description,is_fee"
LEDGER_HEADER = "entry_ref,posting_date,value,memo"
PAYEES = [
    "Acme Ltd",
    "Globex Corporation",
    "Initech",
    "Umbrella Corp",
    "Wayne Enterprises",
    "Stark Industries",
    "Hooli",
    "Vandelay Industries",
]
# rules for these files: the date tolerance covers the bank's posting lag
RULES = """name: lagged-bank-vs-ledger
description: A bank export posting up to three days after the ledger
match_threshold: 0.8
field_mappings:
  - {source_field: transaction_id, target_field: entry_ref, transformation_type: UPPERCASE}
  - source_field: booking_date
    target_field: posting_date
    transformation_type: DATE_FORMAT
    transformation_config: {format: dd/MM/yyyy}
  - {source_field: amount, target_field: value, transformation_type: DIRECT}
  - {source_field: description, target_field: memo, transformation_type: TRIM}
matching_rules:
  - {name: reference, match_type: EXACT, fields: [entry_ref], weight: 1.0}
  - {name: amount, match_type: RANGE, fields: [value], weight: 0.8, tolerance: 0.01}
  - {name: date, match_type: DATE_RANGE, fields: [posting_date], weight: 0.6, tolerance: 3}
"""


@dataclass
class Fortnight:
    """The files of each day, the truth, and the lagged entries (boundary candidates)."""

    days: list[date]
    bank: dict[date, list[str]] = field(default_factory=dict)
    ledger: dict[date, list[str]] = field(default_factory=dict)
    truth: set[tuple[str, str]] = field(default_factory=set)
    lagged: set[str] = field(default_factory=set)  # refs whose bank line lands days later
    blank: set[str] = field(default_factory=set)  # refs whose bank line carries no reference

    def bank_csv(self, day: date) -> str:
        return "\n".join([BANK_HEADER, *self.bank[day]]) + "\n"

    def ledger_csv(self, day: date) -> str:
        return "\n".join([LEDGER_HEADER, *self.ledger[day]]) + "\n"

    def whole(self) -> tuple[str, str]:
        """The fortnight's two files as one reconciliation sees them."""
        bank = [line for day in self.days for line in self.bank[day]]
        ledger = [line for day in self.days for line in self.ledger[day]]
        return "\n".join([BANK_HEADER, *bank]) + "\n", "\n".join([LEDGER_HEADER, *ledger]) + "\n"


def fortnight(start: date, days: int = 14, per_day: int = 30, seed: int = 7) -> Fortnight:
    """The fortnight from `start` (see the module docstring)."""
    rng = random.Random(seed)
    dates = [start + timedelta(days=i) for i in range(days)]
    out = Fortnight(dates, {d: [] for d in dates}, {d: [] for d in dates})
    last = dates[-1]
    for day in dates:
        for i in range(1, per_day + 1):
            ref = f"INV{day:%m%d}{i:03d}"
            cents = rng.randint(1_500, 950_000)
            payee = rng.choice(PAYEES)
            out.ledger[day].append(f"{ref},{day.isoformat()},{cents / 100:.2f},{payee}")
            if rng.random() < 0.05:
                out.truth.add(("MISSING_IN_SOURCE", ref))
                continue
            lag = 0 if rng.random() < 7 / 8 else rng.randint(1, 3)
            posted = day + timedelta(days=lag)
            if posted > last:  # the bank shows it after the fortnight: missing within it
                out.truth.add(("MISSING_IN_SOURCE", ref))
                continue
            if lag:
                out.lagged.add(ref)
            paid = cents
            if rng.random() < 0.03:  # a correspondent bank's fee deducted
                paid -= rng.randint(250, 1_500)
                out.truth.add(("AMOUNT_MISMATCH", ref))
            shown = "" if rng.random() < 0.05 else ref
            if not shown:
                out.blank.add(ref)
            out.bank[posted].append(
                f"{shown},{posted:%d/%m/%Y},{paid / 100:.2f},PAYMENT {payee.upper()},N"
            )
        charge = f"CHG{day:%m%d}"
        out.bank[day].append(
            f"{charge},{day:%d/%m/%Y},-{rng.randint(500, 4_000) / 100:.2f},ACCOUNT CHARGES,Y"
        )
        out.truth.add(("MISSING_IN_TARGET", charge))
    return out


def f1(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> float:
    """Exception-type F1: a break counts when its type and reference are both right."""
    hits = len(found & truth)
    if not found or not truth:
        return 1.0 if found == truth else 0.0
    precision, recall = hits / len(found), hits / len(truth)
    return 0.0 if not hits else 2 * precision * recall / (precision + recall)
