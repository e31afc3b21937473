"""Seeded generator: a messy bank export (source) against a clean ledger (target), with truth.

    .venv/bin/python bench/bankgen.py --rows 100000 --seed 7 --out /tmp/bankgen

writes into ``--out``:

``ledger.csv`` (target, exactly ``rows`` data rows), sorted by posting date::

    entry_id,reference,counterparty,amount,posting_date,currency
    JE00000001,INV-1042117,Hartley Logistics Ltd,-1234.56,2024-01-01,USD

``bank_export.csv`` (source, about ``rows`` + 1% data rows), sorted by value date::

    Transaction ID,Value Date,Details,Reference,Counterparty Name,Amount,Currency
    BK000000001,03/01/2024,PAYMENT TO HARTLEY LOGISTICS LTD REF INV-1042117,INV-1042117,
        Hartley Logistics Ltd,"(1,234.56)",USD

Amounts in the bank export are written ``$1,234.56`` with negatives in parentheses
``(1,234.56)`` (no ``$`` inside the parentheses), dates ``dd/MM/yyyy``; the ledger has plain
decimals (``-1234.56``, some with four decimals) and ISO ``yyyy-MM-dd`` dates. Signs agree:
a payment is negative on both sides. ``Transaction ID`` and ``Details`` are bank-only columns
that no rule uses. ``rules/bankgen.yaml`` maps the bank columns onto the ledger's names.

``truth_pairs.csv``: ``source_row_number,target_row_number,noise``, one row per true pair.
``truth_exceptions.csv``: ``type,side,row_number,other_row_number``, one row per expected
exception. Row numbers are 1-based data row numbers (header excluded) of ``bank_export.csv``
(source) and ``ledger.csv`` (target).

How the data is made and what the truth means, exactly:

- A base transaction is one ledger entry (``rows`` of them) or one bank-only transaction
  (2% of ``rows`` more). Every reference is unique across all base transactions.
- ``MISSING_IN_SOURCE`` (side ``target``): 2% of the ledger entries have no bank row at all.
  Their ledger row is the expected exception.
- ``MISSING_IN_TARGET`` (side ``source``): the bank-only transactions (2% of ``rows``; 30% of
  them have a blank reference). Nothing in the ledger corresponds to them.
- True pair: every other ledger entry and its (first) bank row, including the pairs listed
  below as AMOUNT_MISMATCH or DATE_MISMATCH: those are matched pairs that also raise an
  exception. ``noise`` lists what was done to the bank side ("+"-joined, or ``clean``):

  - ``subcent`` (10%): the ledger amount has four decimals and the bank shows it rounded
    to cents; the difference is at most 0.0049, within the 0.01 amount tolerance.
  - ``amount_mismatch`` (1%): the bank amount differs by 0.05 .. 50.00 (same sign), beyond
    tolerance. Expected exception ``AMOUNT_MISMATCH``, side ``source``, the bank row
    (``other_row_number`` is the ledger row). The reference is always present; the other
    within-tolerance noises (``date_shift``, ``typo``, ``lower_ref``) may come with it.
  - ``date_shift`` (20%): value date = posting date +-1..3 days (within the 3-day tolerance).
  - ``date_mismatch`` (1%): value date = posting date +-5..30 days, beyond tolerance.
    Expected exception ``DATE_MISMATCH``, side ``source``, the bank row. The reference is
    always present and the amount within tolerance (``subcent``, ``typo``, ``lower_ref`` may
    come with it). Never combined with ``amount_mismatch``.
  - ``typo`` (10%): one edit (substitution, deletion, insertion or transposition) in the
    counterparty name, never on its first character.
  - ``blank_ref`` (5%): the bank row's reference is empty; it has to be matched on amount,
    date and counterparty. Never combined with a mismatch or a twin.
  - ``lower_ref`` (5% of the present references): the reference is lower-case
    (the rule set maps it with UPPERCASE).
  - ``twin`` (about 1% of entries, in pairs): two distinct ledger entries with identical
    amount, posting date and currency but different references and counterparties; their
    bank rows show the same amount and the same value date too (no date shift, no typo, no
    blank reference, no mismatch; ``lower_ref`` may occur). Only reference and counterparty
    tell them apart. Twins are not duplicates.

- ``DUPLICATE_FOUND`` (side ``source``): 1% of the bank rows of true pairs without a
  mismatch are written twice: the copy is identical in every column (``Transaction ID``
  included) and comes later in the file, on the same value date. The first occurrence is the
  one in the true pair; each later copy is an expected ``DUPLICATE_FOUND`` on its own row
  (``other_row_number`` = the first occurrence's row) and is neither in a pair nor a
  ``MISSING_IN_TARGET``. The ledger has no duplicates. No two other bank rows are equal.
- No ``VALIDATION_ERROR`` is expected: every cell parses.

Counts are drawn per row with the given rates, so they vary slightly with the seed. The same
``rows`` and ``seed`` always give byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

MISSING_IN_BANK = 0.02
BANK_ONLY = 0.02
BANK_ONLY_BLANK_REF = 0.30
SUBCENT = 0.10
AMOUNT_MISMATCH = 0.01
DATE_MISMATCH = 0.01
DATE_SHIFT = 0.20
TYPO = 0.10
BLANK_REF = 0.05
LOWER_REF = 0.05
TWINS = 0.01
DUPLICATES = 0.01

START = dt.date(2024, 1, 1)
DAYS = 366

_SURNAMES = (
    "Hartley Ashford Bramwell Caldwell Danforth Ellison Fairbanks Garrison Holloway Ingram "
    "Jessop Kendrick Langley Merriman Northcott Oakley Pemberton Quinlan Radcliffe Sterling "
    "Thornbury Underwood Vance Whitmore Yardley Abbott Barlow Chandler Dempsey Everett Fletcher "
    "Goodwin Hadley Irving Jarvis Kimball Lockwood Mansfield Norwood Osborne Prescott Ramsey "
    "Sheffield Tennyson Upton Wakefield Ashby Beckett Colby Drummond Eastman Forsyth Gilmore "
    "Harlow Iverson Jennings Kingsley Lowell Marlowe Nash Ormond Pryce Rowland Sutton Talbot "
    "Vaughn Winslow Aldridge Blackwood Cromwell Davenport Elmore Fenwick Grantham Hawthorne "
    "Kensington Lancaster Montague Newbury Pickering Rutherford Stanhope Trevelyan Whitfield"
).split()
_INDUSTRIES = (
    "Logistics Trading Consulting Engineering Foods Textiles Holdings Capital Systems Software "
    "Construction Pharma Energy Marine Freight Imports Exports Media Publishing Interiors "
    "Hardware Supplies Electrical Plumbing Catering Security Cleaning Printing Motors Dairy "
    "Timber Metals Plastics Packaging Analytics Robotics Medical Dental Optics Acoustics "
    "Brewing Farms Fisheries Mining Aviation Rail Couriers Travel Leisure Fitness"
).split()
_SUFFIXES = ("Ltd", "LLC", "Inc", "plc", "GmbH", "& Co", "Group", "Partners", "Corp", "SA")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Generated:
    """Paths written by `generate` and the truth counts."""

    source: Path
    target: Path
    truth_pairs: Path
    truth_exceptions: Path
    source_rows: int
    target_rows: int
    pairs: int
    exceptions: dict[str, int]


def _counterparties(count: int, rng: np.random.Generator) -> list[str]:
    combos = len(_SURNAMES) * len(_INDUSTRIES) * len(_SUFFIXES)
    count = min(count, combos)
    picks = rng.choice(combos, size=count, replace=False)
    names = []
    for k in picks.tolist():
        k, s = divmod(k, len(_SUFFIXES))
        k, i = divmod(k, len(_INDUSTRIES))
        names.append(f"{_SURNAMES[k]} {_INDUSTRIES[i]} {_SUFFIXES[s]}")
    return names


def _typo(name: str, rnd: random.Random) -> str:
    while True:
        pos = rnd.randrange(1, len(name))
        kind = rnd.randrange(4)
        if kind == 0:
            out = name[:pos] + rnd.choice(_LETTERS) + name[pos + 1 :]
        elif kind == 1:
            out = name[:pos] + name[pos + 1 :]
        elif kind == 2:
            out = name[:pos] + rnd.choice(_LETTERS) + name[pos:]
        else:
            pos = min(pos, len(name) - 2)
            out = name[:pos] + name[pos + 1] + name[pos] + name[pos + 2 :]
        if out != name and "  " not in out and out.strip() == out:
            return out


def _bank_money(cents: int) -> str:
    text = f"{abs(cents) / 100:,.2f}"
    return f"({text})" if cents < 0 else f"${text}"


def _ledger_money(ten_thousandths: int) -> str:
    sign = "-" if ten_thousandths < 0 else ""
    whole, frac = divmod(abs(ten_thousandths), 10_000)
    if frac % 100 == 0:
        return f"{sign}{whole}.{frac // 100:02d}"
    return f"{sign}{whole}.{frac:04d}"


def generate(out_dir: Path | str, rows: int = 100_000, seed: int = 7) -> Generated:
    """Write ledger.csv, bank_export.csv and the truth files into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    n_ledger = rows
    n_bank_only = round(rows * BANK_ONLY)
    total = n_ledger + n_bank_only
    is_ledger = np.arange(total) < n_ledger

    # Base transactions: unique references, counterparties (skewed), amounts, dates, currency.
    ref_numbers = rng.permutation(total) + 1_000_000
    names = _counterparties(max(300, rows // 50), rng)
    cp_index = np.minimum((rng.random(total) ** 2 * len(names)).astype(np.int64), len(names) - 1)
    cents = rng.integers(100, 5_000_001, size=total)
    cents = np.where(rng.random(total) < 0.6, -cents, cents)
    day = rng.integers(0, DAYS, size=total)
    currency = rng.choice(np.array(["USD", "EUR", "GBP"]), size=total, p=[0.85, 0.10, 0.05])

    in_bank = ~is_ledger | (rng.random(total) >= MISSING_IN_BANK)
    paired = is_ledger & in_bank

    # Twins: pairs of paired ledger entries sharing amount, date and currency.
    twin = np.zeros(total, dtype=bool)
    candidates = np.flatnonzero(paired)
    n_twin_pairs = int(len(candidates) * TWINS / 2)
    chosen = rng.choice(candidates, size=2 * n_twin_pairs, replace=False)
    firsts, seconds = chosen[:n_twin_pairs], chosen[n_twin_pairs:]
    cents[seconds] = cents[firsts]
    day[seconds] = day[firsts]
    currency[seconds] = currency[firsts]
    same_cp = cp_index[seconds] == cp_index[firsts]
    cp_index[seconds] = np.where(same_cp, (cp_index[seconds] + 1) % len(names), cp_index[seconds])
    twin[chosen] = True

    # Noise on the bank side of true pairs.
    free = paired & ~twin
    u = rng.random(total)
    amount_mismatch = free & (u < AMOUNT_MISMATCH)
    date_mismatch = free & (u >= AMOUNT_MISMATCH) & (u < AMOUNT_MISMATCH + DATE_MISMATCH)
    mismatch = amount_mismatch | date_mismatch
    subcent = paired & ~twin & ~amount_mismatch & (rng.random(total) < SUBCENT)
    date_shift = free & ~date_mismatch & (rng.random(total) < DATE_SHIFT)
    typo = free & (rng.random(total) < TYPO)
    blank_ref = free & ~mismatch & (rng.random(total) < BLANK_REF)
    blank_ref |= ~is_ledger & (rng.random(total) < BANK_ONLY_BLANK_REF)
    lower_ref = in_bank & ~blank_ref & (rng.random(total) < LOWER_REF)

    sub = rng.integers(1, 50, size=total) * np.where(rng.random(total) < 0.5, -1, 1)
    ledger_units = cents * 100 + np.where(subcent, sub * np.sign(cents), 0)
    delta = rng.integers(5, 5_001, size=total)
    bank_cents = np.where(
        amount_mismatch,
        np.where(np.abs(cents) - delta >= 100, np.abs(cents) - delta, np.abs(cents) + delta)
        * np.sign(cents),
        cents,
    )
    forward = rng.random(total) < 0.8
    shift = np.where(
        date_shift,
        rng.integers(1, 4, size=total) * np.where(forward, 1, -1),
        np.where(date_mismatch, rng.integers(5, 31, size=total) * np.where(forward, 1, -1), 0),
    )
    bank_day = day + shift

    # Ledger file: sorted by posting date, random order within a day.
    ledger_ids = np.flatnonzero(is_ledger)
    order = np.lexsort((rng.random(len(ledger_ids)), day[ledger_ids]))
    ledger_ids = ledger_ids[order]
    ledger_row = np.zeros(total, dtype=np.int64)
    ledger_row[ledger_ids] = np.arange(1, len(ledger_ids) + 1)
    dates = [START + dt.timedelta(days=d) for d in range(-40, DAYS + 40)]
    iso = [d.isoformat() for d in dates]
    dmy = [d.strftime("%d/%m/%Y") for d in dates]
    cp_l, ref_l, ccy_l = cp_index.tolist(), ref_numbers.tolist(), currency.tolist()
    units_l, day_l = ledger_units.tolist(), day.tolist()
    ledger = pl.DataFrame(
        {
            "entry_id": [f"JE{r:08d}" for r in range(1, len(ledger_ids) + 1)],
            "reference": [f"INV-{ref_l[i]}" for i in ledger_ids.tolist()],
            "counterparty": [names[cp_l[i]] for i in ledger_ids.tolist()],
            "amount": [_ledger_money(units_l[i]) for i in ledger_ids.tolist()],
            "posting_date": [iso[day_l[i] + 40] for i in ledger_ids.tolist()],
            "currency": [ccy_l[i] for i in ledger_ids.tolist()],
        }
    )

    # Bank file: sorted by value date; duplicate copies later on the same value date.
    bank_ids = np.flatnonzero(in_bank)
    key = bank_day[bank_ids] + rng.random(len(bank_ids)) * 0.5
    dup_pool = np.flatnonzero(in_bank & paired & ~mismatch)
    dup_of = rng.choice(dup_pool, size=int(len(bank_ids) * DUPLICATES), replace=False)
    pos_of = np.zeros(total, dtype=np.int64)
    pos_of[bank_ids] = np.arange(len(bank_ids))
    dup_key = key[pos_of[dup_of]] + 0.49 * rng.random(len(dup_of)) + 1e-6
    all_ids = np.concatenate([bank_ids, dup_of])
    is_copy = np.concatenate([np.zeros(len(bank_ids), bool), np.ones(len(dup_of), bool)])
    order = np.argsort(np.concatenate([key, dup_key]), kind="stable")
    all_ids, is_copy = all_ids[order], is_copy[order]
    bank_row = np.zeros(total, dtype=np.int64)
    originals = ~is_copy
    bank_row[all_ids[originals]] = np.flatnonzero(originals) + 1
    txn = np.zeros(total, dtype=np.int64)
    txn[all_ids[originals]] = np.arange(1, int(originals.sum()) + 1)

    shown_cp: dict[int, str] = {}
    for i in np.flatnonzero(typo).tolist():
        shown_cp[i] = _typo(names[cp_l[i]], rnd)
    bank_cents_l, bank_day_l, txn_l = bank_cents.tolist(), bank_day.tolist(), txn.tolist()
    blank_l, lower_l = blank_ref.tolist(), lower_ref.tolist()
    columns: dict[str, list[str | None]] = {
        k: []
        for k in (
            "Transaction ID",
            "Value Date",
            "Details",
            "Reference",
            "Counterparty Name",
            "Amount",
            "Currency",
        )
    }
    for i in all_ids.tolist():
        cp = shown_cp.get(i) or names[cp_l[i]]
        ref = "" if blank_l[i] else f"INV-{ref_l[i]}"
        if lower_l[i]:
            ref = ref.lower()
        amount = bank_cents_l[i]
        details = f"{'PAYMENT TO' if amount < 0 else 'RECEIPT FROM'} {cp.upper()}"
        columns["Transaction ID"].append(f"BK{txn_l[i]:09d}")
        columns["Value Date"].append(dmy[bank_day_l[i] + 40])
        columns["Details"].append(f"{details} REF {ref.upper()}" if ref else details)
        columns["Reference"].append(ref or None)
        columns["Counterparty Name"].append(cp)
        columns["Amount"].append(_bank_money(amount))
        columns["Currency"].append(ccy_l[i])
    bank = pl.DataFrame(columns)

    # Truth.
    pair_ids = np.flatnonzero(paired)
    tags = {
        "subcent": subcent,
        "amount_mismatch": amount_mismatch,
        "date_shift": date_shift,
        "date_mismatch": date_mismatch,
        "typo": typo,
        "blank_ref": blank_ref,
        "lower_ref": lower_ref,
        "twin": twin,
    }
    tag_lists = {name: flags.tolist() for name, flags in tags.items()}
    noise = [
        "+".join(name for name, flags in tag_lists.items() if flags[i]) or "clean"
        for i in pair_ids.tolist()
    ]
    pairs = pl.DataFrame(
        {
            "source_row_number": bank_row[pair_ids],
            "target_row_number": ledger_row[pair_ids],
            "noise": noise,
        }
    ).sort("source_row_number")

    copy_rows = np.flatnonzero(is_copy) + 1
    copy_of = bank_row[all_ids[is_copy]]
    missing_source = np.flatnonzero(is_ledger & ~in_bank)
    missing_target = np.flatnonzero(~is_ledger)
    parts = [
        ("MISSING_IN_SOURCE", "target", ledger_row[missing_source], None),
        ("MISSING_IN_TARGET", "source", bank_row[missing_target], None),
        ("AMOUNT_MISMATCH", "source", bank_row[amount_mismatch], ledger_row[amount_mismatch]),
        ("DATE_MISMATCH", "source", bank_row[date_mismatch], ledger_row[date_mismatch]),
        ("DUPLICATE_FOUND", "source", copy_rows, copy_of),
    ]
    exceptions = pl.concat(
        [
            pl.DataFrame(
                {
                    "type": [kind] * len(rows_),
                    "side": [side] * len(rows_),
                    "row_number": rows_.astype(np.int64),
                    "other_row_number": pl.Series(
                        other.astype(np.int64) if other is not None else [None] * len(rows_),
                        dtype=pl.Int64,
                    ),
                }
            )
            for kind, side, rows_, other in parts
        ]
    )

    paths = Generated(
        source=out / "bank_export.csv",
        target=out / "ledger.csv",
        truth_pairs=out / "truth_pairs.csv",
        truth_exceptions=out / "truth_exceptions.csv",
        source_rows=bank.height,
        target_rows=ledger.height,
        pairs=pairs.height,
        exceptions=dict(exceptions.group_by("type").len().sort("type").iter_rows()),
    )
    bank.write_csv(paths.source)
    ledger.write_csv(paths.target)
    pairs.write_csv(paths.truth_pairs)
    exceptions.write_csv(paths.truth_exceptions)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="ledger rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    made = generate(args.out, args.rows, args.seed)
    print(
        f"bank {made.source_rows:,} rows: {made.source}\n"
        f"ledger {made.target_rows:,} rows: {made.target}\n"
        f"true pairs {made.pairs:,}: {made.truth_pairs}\n"
        f"expected exceptions {made.exceptions}: {made.truth_exceptions}"
    )


if __name__ == "__main__":
    main()
