"""Receipts against AR invoices, with the truth: a data set for aggregate matching (issue 16).

    .venv/bin/python bench/receiptgen.py OUT_DIR [--receipts 5000] [--seed 7]

Writes into OUT_DIR:

- ``bank.csv`` (source): ``Value Date`` (dd/MM/yyyy), ``Amount``, ``Payer`` (the customer's name
  SHOUTED in capitals, its legal form written another way), ``Reference`` (the invoice number
  for half of the one-invoice receipts and a fifth of the others, else blank) and ``Remittance``
  (free text; for a third of the receipts it quotes every invoice number paid, as
  ``PAYMENT INV502210 INV502211``);
- ``invoices.csv`` (target): ``invoice_number``, ``customer_name``, ``amount``,
  ``invoice_date``;
- ``rules.yaml`` (with the ``aggregation:`` section) and ``rules_plain.yaml`` (the same rules
  without it: the one-to-one baseline);
- ``truth_pairs.csv`` (``source_row_number,target_row_number``: every receipt with each invoice
  it settles) and ``truth_exceptions.csv`` (``type,side,row_number,other_row_number``).

How receipts are made: 60 % settle one invoice, 40 % two to five of one customer's invoices
dated up to 9 days before the receipt; 4 % of receipts are short by a bank charge (5.00 to
25.00: AMOUNT_MISMATCH on the receipt); 4 % of invoices are never paid (MISSING_IN_SOURCE);
3 % of receipts pay no invoice (MISSING_IN_TARGET). Customers come in families of similar
names (``Northwind Traders Ltd``, ``Northwind Trading Ltd``, ``Northwind Trade Ltd``), which a
FUZZY rule at 0.85 cannot tell apart; each customer pays about twice a month
(`RECEIPTS_PER_CUSTOMER` over four months). Both files are shuffled.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

FIRST = (
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Proseware", "Adventure",
    "Alpine", "Bluebird", "Coho", "Datum", "Fourth", "Graphic", "Humongous", "Lucerne", "Margie",
    "Nod", "Southridge", "Trey", "Wideworld", "Woodgrove", "Consolidated", "Relecloud", "Bellows",
    "Cronus", "Globex", "Initech", "Umbrella", "Hooli", "Acme", "Vandelay", "Kramerica", "Oceanic",
    "Tyrell", "Wayne", "Stark", "Cyberdyne", "Soylent", "Gringotts", "Monarch", "Hanso", "Dharma",
    "Weyland", "Aperture", "Black", "Mesa", "Oscorp", "Zorg", "Nakatomi", "Virtucon", "Gekko",
    "Duff", "Krusty", "Planet", "Express", "Sirius", "Encom", "Ingen", "Pied", "Piper", "Aviato",
    "Raviga", "Bachman", "Endframe", "Sterling", "Cooper", "Dunder", "Mifflin", "Prestige",
    "Worldwide", "Quartz", "Ember", "Falcon", "Juniper", "Keystone", "Lantern", "Meridian",
    "Nimbus", "Orchid", "Pinnacle", "Quarry", "Rowan", "Sapphire", "Thistle", "Upland", "Verity",
    "Willow", "Xenon", "Yarrow", "Zephyr", "Amber", "Birch", "Cedar", "Dover", "Elm", "Fern",
    "Granite", "Hazel", "Iris", "Jasper", "Kestrel", "Laurel", "Maple", "Nova", "Onyx", "Pebble",
)  # fmt: skip
SECOND = (
    "", "North", "South", "East", "West", "Central", "Atlantic", "Pacific", "Metro", "Coastal",
    "Valley", "Highland", "Harbour", "Union", "Summit", "Pioneer", "Premier", "United",
)  # fmt: skip
RECEIPTS_PER_CUSTOMER = 8  # over the four months: about two payments a month
SUFFIXES = ("Traders", "Trading", "Trade", "Group", "Holdings", "Services", "Supplies")
LEGAL = (("Ltd", "LIMITED"), ("Limited", "LTD"), ("Inc", "INCORPORATED"), ("LLC", "L.L.C."))
FEES = (5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 25.0)
START = date(2024, 1, 1)
DAYS = 120

RULES = """\
name: receipts-vs-invoices{suffix}
description: bank receipts against open AR invoices
match_threshold: 0.9
field_mappings:
  - {{source_field: Reference, target_field: invoice_number, transformation_type: UPPERCASE}}
  - source_field: Value Date
    target_field: invoice_date
    transformation_type: DATE_FORMAT
    transformation_config: {{format: dd/MM/yyyy}}
  - {{source_field: Amount, target_field: amount}}
  - {{source_field: Payer, target_field: customer_name}}
matching_rules:
  - {{name: invoice, match_type: EXACT, fields: [invoice_number]}}
  - {{name: amount, match_type: RANGE, fields: [amount], tolerance: 0.01}}
  - {{name: date, match_type: DATE_RANGE, fields: [invoice_date], tolerance: 10}}
  - {{name: customer, match_type: FUZZY, fields: [customer_name], threshold: 0.85, weight: 0.5}}
"""
AGGREGATION = """\
aggregation:
  - {name: one receipt settles several invoices, many_side: target, group_by: [customer_name],
     amount_field: amount, date_field: invoice_date, date_window_days: 10, max_group_size: 5,
     tolerance: 0.01, reference_field: Remittance, reference_target_field: invoice_number}
"""


@dataclass
class Made:
    """Paths and counts of one generated data set (the accuracy bench's `made`)."""

    source: Path
    target: Path
    rules: Path
    rules_plain: Path
    truth_pairs: Path
    truth_exceptions: Path
    source_rows: int
    target_rows: int
    pairs: int
    groups: int


def _customers(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """(ledger name, bank name) of `count` customers: families of similar names (one stem,
    one to three suffixes)."""
    stems = [f"{a} {b}".strip() for a in FIRST for b in SECOND]
    rng.shuffle(stems)
    out: list[tuple[str, str]] = []
    for stem in stems:
        legal, bank_legal = rng.choice(LEGAL)
        for suffix in rng.sample(SUFFIXES, rng.randint(1, 3)):
            name = f"{stem} {suffix}"
            out.append((f"{name} {legal}", f"{name} {bank_legal}".upper()))
            if len(out) >= count:
                return out
    return out


def generate(out: Path, receipts: int = 5000, seed: int = 7) -> Made:
    """Write the files and truth into `out`; returns where and how many."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    customers = _customers(rng, max(1, receipts // RECEIPTS_PER_CUSTOMER))
    invoices: list[dict] = []  # invoice_number, customer, amount, date, receipt (index|None)
    bank: list[dict] = []
    number = 500_000
    for index in range(receipts):
        ledger_name, bank_name = rng.choice(customers)
        paid = START + timedelta(days=rng.randint(10, DAYS))
        orphan = rng.random() < 0.03
        count = 0 if orphan else (1 if rng.random() < 0.6 else rng.randint(2, 5))
        members = []
        for _ in range(count):
            number += rng.randint(1, 3)
            amount = round(rng.uniform(200, 8000), 2)
            dated = paid - timedelta(days=rng.randint(0, 9))
            invoices.append(
                {
                    "no": f"INV{number}",
                    "name": ledger_name,
                    "amount": amount,
                    "date": dated,
                    "receipt": index,
                }  # fmt: skip
            )
            members.append(invoices[-1])
        total = round(sum(m["amount"] for m in members), 2)
        short = bool(members) and rng.random() < 0.04
        if short:
            total = round(total - rng.choice(FEES), 2)
        if orphan:
            total = round(rng.uniform(50, 9000), 2)
        quotes = " ".join(m["no"] for m in members)
        remittance = (
            f"PAYMENT {quotes}"
            if members and rng.random() < 1 / 3
            else rng.choice(["BACS CREDIT", "FASTER PAYMENT", "", "TRANSFER", "CUSTOMER PAYMENT"])
        )
        odds = 0.5 if count == 1 else 0.2
        reference = members[0]["no"] if members and rng.random() < odds else ""
        bank.append(
            {
                "date": paid,
                "amount": total,
                "payer": bank_name,
                "reference": reference,
                "remittance": remittance,
                "short": short,
                "members": members,
            }  # fmt: skip
        )
    # unpaid invoices: 4 % of all invoices
    unpaid = round(len(invoices) * 0.04 / 0.96)
    for _ in range(unpaid):
        ledger_name, _ = rng.choice(customers)
        number += rng.randint(1, 3)
        dated = START + timedelta(days=rng.randint(0, DAYS))
        invoices.append(
            {
                "no": f"INV{number}",
                "name": ledger_name,
                "amount": round(rng.uniform(200, 8000), 2),
                "date": dated,
                "receipt": None,
            }  # fmt: skip
        )
    rng.shuffle(bank)
    rng.shuffle(invoices)
    for row, invoice in enumerate(invoices, start=1):
        invoice["row"] = row
    pairs, exceptions = [], []
    with (out / "bank.csv").open("w", encoding="utf-8") as f:
        f.write("Value Date,Amount,Payer,Reference,Remittance\n")
        for row, receipt in enumerate(bank, start=1):
            f.write(
                f'{receipt["date"]:%d/%m/%Y},{receipt["amount"]:.2f},"{receipt["payer"]}",'
                f"{receipt['reference']},{receipt['remittance']}\n"
            )
            for member in receipt["members"]:
                pairs.append((row, member["row"]))
            if not receipt["members"]:
                exceptions.append(("MISSING_IN_TARGET", "source", row, ""))
            elif receipt["short"]:
                other = receipt["members"][0]["row"] if len(receipt["members"]) == 1 else ""
                exceptions.append(("AMOUNT_MISMATCH", "source", row, other))
    with (out / "invoices.csv").open("w", encoding="utf-8") as f:
        f.write("invoice_number,customer_name,amount,invoice_date\n")
        for invoice in invoices:
            f.write(
                f'{invoice["no"]},"{invoice["name"]}",{invoice["amount"]:.2f},'
                f"{invoice['date']:%Y-%m-%d}\n"
            )
            if invoice["receipt"] is None:
                exceptions.append(("MISSING_IN_SOURCE", "target", invoice["row"], ""))
    (out / "truth_pairs.csv").write_text(
        "source_row_number,target_row_number\n" + "".join(f"{s},{t}\n" for s, t in sorted(pairs))
    )
    (out / "truth_exceptions.csv").write_text(
        "type,side,row_number,other_row_number\n"
        + "".join(f"{k},{s},{r},{o}\n" for k, s, r, o in sorted(exceptions, key=str))
    )
    (out / "rules.yaml").write_text(RULES.format(suffix="") + AGGREGATION, encoding="utf-8")
    (out / "rules_plain.yaml").write_text(RULES.format(suffix="-plain"), encoding="utf-8")
    return Made(
        out / "bank.csv",
        out / "invoices.csv",
        out / "rules.yaml",
        out / "rules_plain.yaml",
        out / "truth_pairs.csv",
        out / "truth_exceptions.csv",
        len(bank),
        len(invoices),
        len(pairs),
        sum(1 for r in bank if len(r["members"]) > 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--receipts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    made = generate(args.out, args.receipts, args.seed)
    print(
        f"{made.source_rows} receipts, {made.target_rows} invoices, {made.pairs} true pairs, "
        f"{made.groups} multi-invoice receipts -> {args.out}"
    )


if __name__ == "__main__":
    main()
