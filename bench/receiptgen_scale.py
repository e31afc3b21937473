"""Receipts against AR invoices at scale (1M receipts), vectorised, with a one-to-one twin.

    .venv/bin/python bench/receiptgen_scale.py OUT_DIR [--receipts 1000000] [--seed 7]

The same kind of data as `receiptgen.py` (whose per-row Python and 107 x 18 customer stems do
not scale: at 1M receipts its ~4,000 customers would each pay ~250 times in four months), made
with numpy and written with polars, so 1M receipts take seconds:

- receipts: 3 % pay no invoice, 60 % of the rest one, 40 % two to five
  (`GROUP_SIZE_WEIGHTS`: mean 2.75, so ~1.7 invoices a receipt with the 4 % unpaid); 4 % of the
  receipts with invoices are short by a bank charge (5.00-25.00); a third quote every invoice
  number in the remittance (``PAYMENT INV1 INV2``); a reference for half of the one-invoice
  receipts and a fifth of the others; members dated up to 9 days before the receipt;
- customers: ``receipts / 8`` (about two payments a month), named ``<Made-up word> <FIRST>
  <suffix> <legal form>`` in families of one to three suffixes (similar names, as in
  `receiptgen.py`); the bank shows the name in capitals with the legal form written another way.

Files (as `receiptgen.py`): ``bank.csv``, ``invoices.csv``, ``rules.yaml``,
``rules_plain.yaml``, ``truth_pairs.csv``, ``truth_exceptions.csv``; and the one-to-one twin:
``invoices_merged.csv`` (each receipt's invoices merged into one: the first member's number,
the members' total, the earliest date; unpaid invoices as they are), ``truth_pairs_merged.csv``
and ``truth_exceptions_merged.csv``. `generate` returns both as `receiptgen.Made`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from receiptgen import AGGREGATION, DAYS, FEES, FIRST, LEGAL, RULES, START, SUFFIXES, Made

RECEIPTS_PER_CUSTOMER = 8
GROUP_SIZE_WEIGHTS = {2: 0.5, 3: 0.3, 4: 0.15, 5: 0.05}
REMITTANCES = ("BACS CREDIT", "FASTER PAYMENT", "", "TRANSFER", "CUSTOMER PAYMENT")
SYLLABLES = [c + v for c in "BDFGKLMNPRSTVZ" for v in "aeiou"]


def _customers(rng: np.random.Generator, count: int) -> tuple[list[str], list[str]]:
    """(ledger names, bank names) of `count` customers in families of similar names."""
    ledger: list[str] = []
    bank: list[str] = []
    n = len(SYLLABLES)
    words = rng.choice(n**3, size=count, replace=False)
    for code in words.tolist():
        a, b, c = code // n**2, code // n % n, code % n
        stem = f"{SYLLABLES[a]}{SYLLABLES[b].lower()}{SYLLABLES[c].lower()} "
        stem += FIRST[int(rng.integers(len(FIRST)))]
        legal, bank_legal = LEGAL[int(rng.integers(len(LEGAL)))]
        for k in rng.choice(len(SUFFIXES), size=int(rng.integers(1, 4)), replace=False):
            name = f"{stem} {SUFFIXES[k]}"
            ledger.append(f"{name} {legal}")
            bank.append(f"{name} {bank_legal}".upper())
            if len(ledger) >= count:
                return ledger, bank
    return ledger, bank


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """A shuffle: item i lands on data row `rows[i]` (1-based)."""
    rows = np.empty(n, dtype=np.int64)
    rows[rng.permutation(n)] = np.arange(1, n + 1)
    return rows


def _dates(days: np.ndarray) -> pl.Series:
    """Days after START as dates."""
    return pl.Series((days + (START - date(1970, 1, 1)).days).astype(np.int32)).cast(pl.Date)


def _invoice_frame(numbers, names, cents, days, rows) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "invoice_number": numbers,
            "customer_name": names,
            "amount": cents / 100,
            "invoice_date": _dates(days),
            "row": rows,
        }
    )
    return frame.with_columns(pl.col("amount").round(2)).sort("row")


def _write_truth(out: Path, suffix: str, pairs: pl.DataFrame, exceptions: pl.DataFrame) -> None:
    pairs.sort(pairs.columns).write_csv(out / f"truth_pairs{suffix}.csv")
    exceptions.sort("type", "side", "row_number").write_csv(
        out / f"truth_exceptions{suffix}.csv", null_value=""
    )


def generate(out: Path, receipts: int = 1_000_000, seed: int = 7) -> tuple[Made, Made]:
    """Write the files into `out`; (the aggregation case, its one-to-one twin)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ledger, bank_names = _customers(rng, max(1, receipts // RECEIPTS_PER_CUSTOMER))
    ledger_s, bank_s = pl.Series(ledger), pl.Series(bank_names)
    n = receipts
    customer = rng.integers(0, len(ledger), n)
    paid = rng.integers(10, DAYS + 1, n)
    orphan = rng.random(n) < 0.03
    sizes = rng.choice(list(GROUP_SIZE_WEIGHTS), size=n, p=list(GROUP_SIZE_WEIGHTS.values()))
    count = np.where(orphan, 0, np.where(rng.random(n) < 0.6, 1, sizes))
    # paid invoices, in receipt order
    owner = np.repeat(np.arange(n), count)
    m = owner.size
    number = 500_000 + np.cumsum(rng.integers(1, 4, m))
    cents = rng.integers(20_000, 800_001, m)
    dated = paid[owner] - rng.integers(0, 10, m)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])  # index of each receipt's first member
    total = np.bincount(owner, weights=cents, minlength=n).astype(np.int64)
    short = (count > 0) & (rng.random(n) < 0.04)
    fee = (np.array(FEES)[rng.integers(0, len(FEES), n)] * 100).astype(np.int64)
    total = np.where(short, total - fee, total)
    total = np.where(orphan, rng.integers(5_000, 900_001, n), total)
    # unpaid invoices: 4 % of all
    u = round(m * 0.04 / 0.96)
    u_number = number[-1] + np.cumsum(rng.integers(1, 4, u)) if m else 500_000 + np.arange(u)
    u_customer = rng.integers(0, len(ledger), u)
    u_cents = rng.integers(20_000, 800_001, u)
    u_dated = rng.integers(0, DAYS + 1, u)

    bank_row = _rows(rng, n)
    inv_row = _rows(rng, m + u)
    inv_no = pl.DataFrame({"n": np.concatenate([number, u_number])})
    inv_no = inv_no.select(pl.format("INV{}", "n").alias("no")).to_series()
    paid_no = inv_no.slice(0, m)
    quotes = (
        pl.DataFrame({"owner": owner, "no": paid_no})
        .group_by("owner", maintain_order=True)
        .agg(pl.col("no").str.join(" "))
    )
    quoted = np.zeros(n, dtype=bool)
    quoted[quotes["owner"].to_numpy()] = True
    quoted &= rng.random(n) < 1 / 3
    remittance = np.array(REMITTANCES, dtype=object)[rng.integers(0, len(REMITTANCES), n)]
    joined = np.full(n, "", dtype=object)
    joined[quotes["owner"].to_numpy()] = quotes["no"].to_numpy()
    remittance = np.where(quoted, "PAYMENT " + joined, remittance)
    first_no = np.full(n, "", dtype=object)
    has = count > 0
    first_no[has] = paid_no.to_numpy()[first[has]]
    odds = np.where(count == 1, 0.5, 0.2)
    reference = np.where(has & (rng.random(n) < odds), first_no, "")
    bank = pl.DataFrame(
        {
            "Value Date": _dates(paid),
            "Amount": total / 100,
            "Payer": bank_s.gather(customer),
            "Reference": reference.astype(str),
            "Remittance": remittance.astype(str),
            "row": bank_row,
        }
    ).sort("row")
    bank.with_columns(pl.col("Value Date").dt.strftime("%d/%m/%Y")).drop("row").write_csv(
        out / "bank.csv", float_precision=2
    )
    invoices = _invoice_frame(
        inv_no,
        ledger_s.gather(np.concatenate([customer[owner], u_customer])),
        np.concatenate([cents, u_cents]),
        np.concatenate([dated, u_dated]),
        inv_row,
    )
    invoices.drop("row").write_csv(out / "invoices.csv", float_precision=2)
    pairs = pl.DataFrame({"source_row_number": bank_row[owner], "target_row_number": inv_row[:m]})
    single = np.zeros(n, dtype=np.int64)
    single[has] = inv_row[first[has]]
    other = np.where(count == 1, single, 0)

    def exceptions(target_rows: np.ndarray, others: np.ndarray) -> pl.DataFrame:
        parts = [
            pl.DataFrame(
                {"type": "MISSING_IN_TARGET", "side": "source", "row_number": bank_row[orphan]}
            ),
            pl.DataFrame(
                {
                    "type": "AMOUNT_MISMATCH",
                    "side": "source",
                    "row_number": bank_row[short],
                    "other_row_number": others[short],
                }
            ),
            pl.DataFrame(
                {"type": "MISSING_IN_SOURCE", "side": "target", "row_number": target_rows}
            ),
        ]
        done = pl.concat(parts, how="diagonal_relaxed").select(
            "type", "side", "row_number", "other_row_number"
        )
        return done.with_columns(
            pl.when(pl.col("other_row_number") > 0).then(pl.col("other_row_number"))
        )

    _write_truth(out, "", pairs, exceptions(inv_row[m:], other))
    (out / "rules.yaml").write_text(RULES.format(suffix="") + AGGREGATION, encoding="utf-8")
    (out / "rules_plain.yaml").write_text(RULES.format(suffix="-plain"), encoding="utf-8")
    made = Made(
        out / "bank.csv",
        out / "invoices.csv",
        out / "rules.yaml",
        out / "rules_plain.yaml",
        out / "truth_pairs.csv",
        out / "truth_exceptions.csv",
        n,
        m + u,
        m,
        int((count > 1).sum()),
    )
    # the twin: each receipt's invoices merged into one
    k = int(has.sum())
    merged_row = _rows(rng, k + u)
    earliest = np.minimum.reduceat(dated, first[has]) if m else dated
    merged = _invoice_frame(
        pl.concat([paid_no.gather(first[has]), inv_no.slice(m, u)]),
        ledger_s.gather(np.concatenate([customer[has], u_customer])),
        np.concatenate([np.bincount(owner, weights=cents, minlength=n)[has], u_cents]),
        np.concatenate([earliest, u_dated]),
        merged_row,
    )
    merged.drop("row").write_csv(out / "invoices_merged.csv", float_precision=2)
    twin_of = np.zeros(n, dtype=np.int64)
    twin_of[has] = merged_row[:k]
    _write_truth(
        out,
        "_merged",
        pl.DataFrame({"source_row_number": bank_row[has], "target_row_number": merged_row[:k]}),
        exceptions(merged_row[k:], twin_of),
    )
    twin = replace(
        made,
        target=out / "invoices_merged.csv",
        rules=out / "rules_plain.yaml",
        truth_pairs=out / "truth_pairs_merged.csv",
        truth_exceptions=out / "truth_exceptions_merged.csv",
        target_rows=k + u,
        pairs=k,
        groups=0,
    )
    return made, twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    made, twin = generate(args.out, args.receipts, args.seed)
    print(
        f"{made.source_rows:,} receipts, {made.target_rows:,} invoices, {made.pairs:,} true "
        f"pairs, {made.groups:,} multi-invoice receipts; one-to-one twin {twin.target_rows:,} "
        f"invoices -> {args.out} in {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
