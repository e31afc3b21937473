"""Sample data for `recon demo`: a bank export against a ledger, and a week of two daily feeds.

Deterministic (seeded). The bank side looks like a real export (`dd/MM/yyyy` dates, money as
`$1,234.56` with parenthesised negatives, a Y/N flag); the ledger is clean ISO dates and plain
decimals under different column names, with a few rows missing on either side, a few
amounts off by more than a cent (AMOUNT_MISMATCH) and a few dates a week late (DATE_MISMATCH).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
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


def write_feed_day(
    organization_zone: Path,
    day: date,
    rows: int = 40,
    which: tuple[str, ...] = ("bank", "ledger", "invoices", "payments"),
) -> list[Path]:
    """One business date of the demo's two feeds: bank + ledger, invoices + payments.

    Files go to `<zone>/bank/bank_<yyyy-MM-dd>.csv`, `ledger/ledger_<yyyy-MM-dd>.csv`,
    `invoices/invoices_<yyyyMMdd>.csv` and `payments/payments_<yyyyMMdd>.csv`. Each day has a
    few amount and date mismatches and rows missing on either side; a seed per date keeps the
    files identical across runs (so landing them again is recognised as a duplicate).
    """
    rng = random.Random(day.toordinal())
    bank = ["transaction_id,booking_date,amount,description,is_fee"]
    ledger = ["entry_ref,posting_date,value,memo"]
    invoices = ["invoice_no,customer,total,issued_on"]
    payments = ["payment_ref,paid_invoice,payer,paid_amount,paid_on"]
    customers = ["Acme Ltd", "Globex", "Initech", "Umbrella Corp", "Stark Industries", "Wayne Ent"]
    for i in range(1, rows + 1):
        ref = f"{day:%y%m%d}{i:03}"
        cents = rng.randint(-200_000, 900_000)
        money = f"${abs(cents) / 100:,.2f}"
        shown = f'"({money[1:]})"' if cents < 0 else f'"{money}"'
        if rng.random() > 0.05:  # ~5% of ledger entries never reach the bank export
            bank.append(f"T{ref},{day:%d/%m/%Y},{shown},Payment {i},{'YN'[i % 2]}")
        if rng.random() > 0.05:  # ~5% of bank transactions are not booked
            off = 2500 if rng.random() < 0.05 else 0  # ~5% booked 25.00 off
            posted = day + timedelta(days=7) if rng.random() < 0.04 else day
            ledger.append(f"T{ref},{posted.isoformat()},{(cents + off) / 100:.2f},Entry {i}")
        total = rng.randint(5_000, 500_000)
        customer = rng.choice(customers)
        invoices.append(f"inv-{ref},{customer},{total / 100:.2f},{day.isoformat()}")
        if rng.random() > 0.1:  # ~10% of invoices are not paid yet
            paid = total - (1000 if rng.random() < 0.05 else 0)
            payer = customer.upper()
            paid_on = day + timedelta(days=rng.randint(0, 10))
            payments.append(f"P{ref},INV-{ref},{payer},{paid / 100:.2f},{paid_on.isoformat()}")
    written = []
    for folder, stem, stamp, lines in (
        ("bank", "bank", day.isoformat(), bank),
        ("ledger", "ledger", day.isoformat(), ledger),
        ("invoices", "invoices", f"{day:%Y%m%d}", invoices),
        ("payments", "payments", f"{day:%Y%m%d}", payments),
    ):
        if folder not in which:
            continue
        path = organization_zone / folder / f"{stem}_{stamp}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written
