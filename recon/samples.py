"""Sample data for `recon demo`: a small bank export and the ledger it should reconcile against.

Deterministic (seeded). The bank side looks like a real export (`dd/MM/yyyy` dates, money as
`$1,234.56` with parenthesised negatives, a Y/N flag); the ledger is clean ISO dates and plain
decimals under different column names, with a few rows missing on either side, a few
amounts off by more than a cent (AMOUNT_MISMATCH) and a few dates a week late (DATE_MISMATCH).
"""

from __future__ import annotations

import random
from pathlib import Path


def write_samples(folder_bank: Path, folder_ledger: Path, rows: int = 200, seed: int = 11) -> None:
    """Write `bank_export.csv` into `folder_bank` and `ledger.csv` into `folder_ledger`."""
    rng = random.Random(seed)
    bank = ["transaction_id,booking_date,amount,description,is_fee"]
    ledger = ["entry_ref,posting_date,value,memo"]
    for i in range(1, rows + 1):
        day, month = rng.randint(1, 28), rng.randint(1, 12)
        cents = rng.randint(-200_000, 900_000)
        money = f"${abs(cents) / 100:,.2f}"
        shown = f'"({money[1:]})"' if cents < 0 else f'"{money}"'
        if i % 17 != 0:  # every 17th ledger entry is missing from the bank export
            bank.append(f"TXN{i:05},{day:02}/{month:02}/2024,{shown},Payment {i},{'YN'[i % 2]}")
        booked = cents + (2500 if i % 31 == 0 else 0)  # every 31st is booked 25.00 off
        # every 37th is posted a week away from the bank's booking date
        posted = (day + 7 if day <= 21 else day - 7) if i % 37 == 0 else day
        if i % 23 != 0:  # every 23rd bank transaction is missing from the ledger
            ledger.append(f"TXN{i:05},2024-{month:02}-{posted:02},{booked / 100:.2f},Invoice {i}")
    folder_bank.mkdir(parents=True, exist_ok=True)
    folder_ledger.mkdir(parents=True, exist_ok=True)
    (folder_bank / "bank_export.csv").write_text("\n".join(bank) + "\n", encoding="utf-8")
    (folder_ledger / "ledger.csv").write_text("\n".join(ledger) + "\n", encoding="utf-8")
