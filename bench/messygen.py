"""Seeded generator: a real-looking bank export (source) against a general-ledger cash account.

    .venv/bin/python bench/messygen.py --rows 10000 --seed 7 --out /tmp/messy

Written from how a bank statement export and an ERP cash-account detail really differ, not
from how any matcher works. ``--rows`` is the number of ledger data rows. Writes into ``--out``:

``bank.csv`` (the source), sorted by transaction date, as a bank portal exports it::

    Txn Date,Amount,Payee,Ref#,Description,Bank Txn Id
    03/01/2024,"($1,234.56)",WAYNE CATERING LTD,PAY-2024-00012,ACH DEBIT WAYNE CATERING LTD,...

- dates ``dd/MM/yyyy``; amounts ``$1,234.56``, debits in parentheses ``($95.28)``;
- ``Payee`` upper case, accents folded (``Müller`` -> ``MULLER``, ``Ø`` -> ``O``, ``ß`` ->
  ``SS``), apostrophes and dots dropped, ``&`` kept; the legal form as the bank holds it for
  that counterparty (``LTD`` for ``Limited``, ``INC`` for ``Incorporated``, ``CORP`` for
  ``Corporation``, ``LLC`` for ``L.L.C.``, ``SA`` for ``S.A.``, ...; mostly the same per
  counterparty, now and then another spelling) or dropped; cut at the field width of the
  payment record it came with (18-25 characters on ~30% of the lines, 35 otherwise); sometimes
  padded with spaces; now and then one typo (a character dropped, two swapped or one replaced,
  never the first);
- ``Ref#`` the ledger's document number, blank on 20-40% of the lines of true pairs (the share
  is drawn from the seed); about half of those quote the number inside ``Description`` only
  (``SEPA CT INV-2024-00123 ACME``);
- ``Bank Txn Id`` unique per line, ascending in file order.

``ledger.csv`` (the target), in entry order (``entry_id``), which mostly but not strictly
follows the posting date::

    entry_id,document_no,vendor_name,amount,posting_date,currency,memo
    JE0000001,PAY-2024-00012,Wayne Catering Limited,-1234.56,2024-01-02,USD,Payment ...

ISO dates, plain decimals, proper-case names with their legal forms, ``INV-yyyy-nnnnn`` for
customer receipts, ``PAY-yyyy-nnnnn`` for supplier payments and cheques, ``ACR-yyyy-nnnnn`` for
accruals. Every amount is in the account currency (USD); foreign invoices carry the original
amount and rate in ``memo``.

What is in it (rates are of the paired ledger entries unless said otherwise; exact counts are
returned by `generate` and printed by the CLI):

- a few hundred counterparties (``rows / 25``, between 200 and 800), about 60% suppliers
  (payments, negative on both sides) and 40% customers (receipts, positive on both sides),
  picked with Zipf-like popularity; some suppliers are recurring (rent, software, leasing,
  insurance, telecom: the same amount every month on the same day of the month; energy and
  water: monthly with a varying amount);
- ``fee`` (~2%, amounts of 50.00 or more): charges deducted by the bank, the bank amount is
  2.50-25.00 short in absolute value: an ``AMOUNT_MISMATCH``;
- ``fx`` / ``fx_beyond`` (~1% together): foreign-currency rounding, the amounts differ by
  0.01 (``fx``, within the 0.01 tolerance, a clean match) or 0.02-0.04 (``fx_beyond``, an
  ``AMOUNT_MISMATCH``); compared in whole cents;
- ``lag`` (~1 in 8): the bank date is 1-3 days after the posting date; ``lag_beyond`` (~1%):
  4-5 days, a ``DATE_MISMATCH`` (tolerance 3 days). Otherwise the same day. A pair can be both
  ``fee`` and ``lag_beyond`` and then has both exceptions (``fee`` and ``fx`` exclude each other);
- ``twin`` (~0.5% of entries): two genuine transactions with the same counterparty, amount and
  date, both in both files with distinct document numbers. Their bank lines show the same
  payee text, date and amount (no fee, fx, lag or typo on twins). When both bank lines have a
  blank ``Ref#`` nothing tells them apart: both pairs carry the same ``twin_group`` and either
  assignment within the group is right;
- duplicate postings: ~0.5% of the bank lines of true pairs appear a second time on the same
  date, identical but for ``Bank Txn Id``; ~0.3% of the ledger entries are posted twice (a new
  ``entry_id``, same document number, name, amount, date and memo). The later copy in the
  file is a ``DUPLICATE_FOUND`` (``other_row_number`` = the first copy, which is the one in the
  true pair) and nothing else;
- bank-only lines (~2% of the bank lines; ``MISSING_IN_TARGET``): bank charges (payee
  ``BANK CHARGES``), credit interest, card spend not yet booked, unidentified receipts (some
  with the payer's own reference, never a ledger document number); no two of them are equal
  in date, amount and payee (that would be a duplicate);
- ledger-only entries (~2% of the ledger; ``MISSING_IN_SOURCE``): outstanding cheques, accruals
  and deposits in transit.

Payee noise is tagged per pair: ``truncated``, ``typo``, ``legal_form`` (the bank's legal form
is another spelling than the ledger's, or none), ``accent`` (the ledger name has accents),
``punct`` (apostrophes or dots dropped outside the legal form), ``padded``; references:
``blank_ref``, ``ref_in_description``.

A blank reference never makes a pair ambiguous by construction: a counterparty never has two
ledger entries of the same amount within 10 days (twins apart), and a blank-ref bank line that
would fit another ledger entry of the same counterparty no worse than its own (amount and days
apart, each measured with the tolerance as a floor) keeps its ``Ref#``.

Truth files (row numbers are 1-based data rows, header excluded):

- ``truth_pairs.csv``: ``source_row_number,target_row_number,noise,twin_group``, one row per
  true pair (pairs with an ``AMOUNT_MISMATCH`` or ``DATE_MISMATCH`` are true pairs);
  ``noise`` is the ``+``-joined tags or ``clean``;
- ``truth_exceptions.csv``: ``type,side,row_number,other_row_number``: MISSING_IN_TARGET
  (source), MISSING_IN_SOURCE (target), AMOUNT_MISMATCH and DATE_MISMATCH (source, other =
  the ledger row), DUPLICATE_FOUND (the side of the later copy, other = the first copy);
- ``rules.yaml``: the rule file a data engineer would write by hand for these two files.

The same ``rows`` and ``seed`` always give byte-identical files.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime as dt
import itertools
import math
import random
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

YEAR = 2024
START = dt.date(YEAR, 1, 1)
DAYS = 366

FEE = 0.02
FX = 0.01
LAG = 0.125
LAG_BEYOND = 0.01
TWINS = 0.005
BANK_DUPLICATES = 0.005
LEDGER_DUPLICATES = 0.003
BANK_ONLY = 0.02
LEDGER_ONLY = 0.02
TYPO = 0.03
PADDED = 0.08
NARROW_CHANNEL = 0.30
TOLERANCE_CENTS = 1
TOLERANCE_DAYS = 3
UNIQUE_WINDOW_DAYS = 10

RULES_YAML = """\
name: messy-bank-vs-ledger
field_mappings:
  - {source_field: "Txn Date", target_field: posting_date, transformation_type: DATE_FORMAT, \
transformation_config: {format: "dd/MM/yyyy"}}
  - {source_field: Amount, target_field: amount, transformation_type: DIRECT}
  - {source_field: Payee, target_field: vendor_name, transformation_type: TRIM}
  - {source_field: "Ref#", target_field: document_no, transformation_type: DIRECT}
matching_rules:
  - {name: reference, match_type: EXACT, fields: [document_no], weight: 1.0}
  - {name: amount, match_type: RANGE, fields: [amount], weight: 1.0, tolerance: 0.01}
  - {name: date, match_type: DATE_RANGE, fields: [posting_date], weight: 0.8, tolerance: 3}
  - {name: payee, match_type: FUZZY, fields: [vendor_name], weight: 0.6, threshold: 0.80}
"""

BANK_COLUMNS = ("Txn Date", "Amount", "Payee", "Ref#", "Description", "Bank Txn Id")
LEDGER_COLUMNS = (
    "entry_id",
    "document_no",
    "vendor_name",
    "amount",
    "posting_date",
    "currency",
    "memo",
)

# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

# Legal forms: key -> (spellings a ledger uses, spellings a bank holds). The bank side is
# already upper case without dots.
LEGAL_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "LTD": (("Limited", "Ltd", "Ltd."), ("LTD", "LIMITED")),
    "PLC": (("plc", "PLC"), ("PLC",)),
    "LLP": (("LLP",), ("LLP",)),
    "INC": (("Inc.", "Incorporated", "Inc"), ("INC", "INCORPORATED")),
    "LLC": (("LLC", "L.L.C."), ("LLC",)),
    "CORP": (("Corporation", "Corp."), ("CORP", "CORPORATION")),
    "CO": (("Company", "Co."), ("CO", "COMPANY")),
    "GMBH": (("GmbH",), ("GMBH",)),
    "KG": (("GmbH & Co. KG",), ("GMBH & CO KG", "GMBH & CO")),
    "AG": (("AG",), ("AG",)),
    "SA": (("S.A.",), ("SA",)),
    "SARL": (("SARL",), ("SARL",)),
    "SL": (("S.L.",), ("SL",)),
    "BV": (("B.V.",), ("BV",)),
    "NV": (("N.V.",), ("NV",)),
    "SRL": (("S.r.l.",), ("SRL",)),
    "AB": (("AB",), ("AB",)),
}

LOCALES: dict[str, dict[str, object]] = {
    "en": {
        "weight": 0.55,
        "surnames": (
            "Hartley Ashford Bramwell Caldwell Danforth Ellison Fairbanks Garrison Holloway "
            "Ingram Jessop Kendrick Langley Merriman Northcott Oakley Pemberton Quinlan Radcliffe "
            "Sterling Thornbury Underwood Whitmore Yardley Abbott Barlow Chandler Dempsey Everett "
            "Fletcher Goodwin Hadley Jarvis Kimball Lockwood Mansfield Norwood Osborne Prescott "
            "Ramsey Sheffield Tennyson Wakefield Beckett Drummond Forsyth Gilmore Harlow Jennings "
            "Kingsley Marlowe Pryce Rowland Sutton Talbot Winslow Blackwood Davenport Fenwick "
            "Hawthorne Lancaster Pickering Rutherford Stanhope Whitfield O'Brien O'Connor "
            "O'Sullivan D'Arcy McAllister MacLeod Fitzgerald St.John"
        ).split(),
        "brands": (
            "Aperture Wayne Northwind Bluefin Crescent Summit Pinnacle Evergreen Ironbridge "
            "Redwood Silverline Keystone Harbor Meridian Atlas Beacon Cobalt Granite Horizon "
            "Lighthouse Sparrow Orchard Falcon Juniper Kestrel Lantern Maple Nimbus Oakridge "
            "Pioneer Quarry Riverside Sable Tidewater Vanguard Willow Zenith Amber Brightwater "
            "Clearview Driftwood Foxglove Goldcrest Highgate Ivy Larkspur Moorland Paragon "
            "Quayside Rosewood Stonegate Thistle Upland Westbrook"
        ).split(),
        "industries": (
            "Supplies|Catering|Logistics|Consulting|Software|Cleaning Services|Office Furniture|"
            "Print & Design|Security Services|Freight|Electrical|Engineering|Analytics|Packaging|"
            "Marketing|Legal Services|Recruitment|Facilities|Stationery|Couriers|Plumbing|"
            "Hardware|Travel|Media|Labs|Foods|Textiles|Motors|Timber|Metals|Medical|Dental|"
            "Optics|Brewing|Farms|Aviation|Removals|Signs|IT Solutions|Systems|Trading|Holdings"
        ).split("|"),
        "forms": (
            ("LTD", 0.35),
            ("INC", 0.2),
            ("LLC", 0.15),
            ("CORP", 0.1),
            ("CO", 0.1),
            ("PLC", 0.05),
            ("LLP", 0.05),
        ),
    },
    "de": {
        "weight": 0.15,
        "surnames": (
            "Müller Schäfer Schröder Köhler Weiß Groß Bäcker Krämer Jäger Vogel Hoffmann Becker "
            "Schulz Wagner Zimmermann Braun Krüger Hartmann Lange Wolff Würth Böhm Fröhlich "
            "Kühn Scholz Lößner"
        ).split(),
        "brands": "Aperture Nordlicht Alpenblick Rheintal Sonnenberg Elbe Isar Taunus".split(),
        "industries": (
            "Logistik|Bau|Maschinenbau|Elektrotechnik|Druckerei|Metallbau|Spedition|"
            "Gebäudereinigung|Haustechnik|Werkzeuge|Supplies|Software|Verpackung"
        ).split("|"),
        "forms": (("GMBH", 0.65), ("KG", 0.2), ("AG", 0.15)),
    },
    "fr": {
        "weight": 0.1,
        "surnames": (
            "Lefèvre Dubois Béranger Mercier Gagné Lemaître Fabré Rousseau Chevalier Girard "
            "Faure Géraud Bérard Hébert Thibault Noël"
        ).split(),
        "brands": "Étoile Lumière Océane Azur Mistral".split(),
        "industries": (
            "Transports|Nettoyage|Traiteur|Conseil|Imprimerie|Électricité|Bâtiment|Informatique"
        ).split("|"),
        "forms": (("SA", 0.6), ("SARL", 0.4)),
    },
    "es": {
        "weight": 0.08,
        "surnames": "Núñez García Peña Ibáñez Martínez Gómez Muñoz Sánchez Ordóñez Castaño".split(),
        "brands": "Solé Brisa Cumbre Alba".split(),
        "industries": "Distribución|Construcciones|Logística|Servicios|Alimentación".split("|"),
        "forms": (("SA", 0.5), ("SL", 0.5)),
    },
    "nl": {
        "weight": 0.07,
        "surnames": "Van der Berg|De Vries|Jansen|Bakker|Visser|Smit|Van Dijk|De Jong".split("|"),
        "brands": "Polder Molen Dijkstra Zeeland".split(),
        "industries": "Installatie|Transport|Bouw|Techniek|Handel".split("|"),
        "forms": (("BV", 0.8), ("NV", 0.2)),
    },
    "nordic": {
        "weight": 0.03,
        "surnames": "Nørgaard Åberg Sjöberg Østergaard Lindqvist Bjørnsen Söderström".split(),
        "brands": "Fjord Norrsken Skärgård".split(),
        "industries": "Shipping|Design|Marine|Trä".split("|"),
        "forms": (("AB", 1.0),),
    },
    "it": {
        "weight": 0.02,
        "surnames": "Rossi Ferrari Esposito Bianchi Romano Colombo Ricci Galli".split(),
        "brands": "Aurora Vesuvio".split(),
        "industries": "Meccanica|Arredamenti|Ceramiche|Tessile".split("|"),
        "forms": (("SRL", 1.0),),
    },
}

RECURRING_KINDS = (
    # industry word, fixed amount?, monthly amount range in dollars, rounding in cents
    ("Properties", True, (2_500, 18_000), 10_000),
    ("Estates", True, (1_800, 12_000), 10_000),
    ("Software", True, (29, 2_400), 100),
    ("Cloud Services", True, (49, 3_500), 100),
    ("Leasing", True, (300, 4_500), 1),
    ("Insurance", True, (150, 2_500), 1),
    ("Telecom", True, (60, 900), 1),
    ("Energy", False, (400, 6_000), 1),
    ("Water", False, (80, 900), 1),
)

_FOLD = str.maketrans(
    {"ß": "ss", "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Ł": "L", "ł": "l"}
)
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def fold(text: str) -> str:
    """Accents removed the way bank systems do it (``Müller`` -> ``Muller``, ``ß`` -> ``ss``)."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in text if not unicodedata.combining(c))


def bank_text(text: str) -> str:
    """Upper case, accents folded, apostrophes and dots dropped, spaces collapsed."""
    text = fold(text).upper().replace("'", "").replace(".", "")
    return " ".join(text.split())


@dataclass
class Counterparty:
    """One supplier or customer as the ledger names it, and how the bank usually shows it."""

    core: str  # name without legal form, as the ledger writes it
    form_key: str | None
    ledger_form: str
    bank_form: str  # the bank's usual legal-form text ("" = dropped)
    role: str  # "supplier" | "customer"
    scale: float  # typical amount in dollars
    recurring: tuple | None = None  # (fixed, amount range, rounding, day of month)
    rec_amount: int = 0

    @property
    def ledger_name(self) -> str:
        return f"{self.core} {self.ledger_form}".strip()


def _pick(rnd: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rnd.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


def _bank_form_choice(rnd: random.Random, key: str | None, ledger_form: str) -> str:
    """The legal form as the bank holds it: the same spelling, another one, or none."""
    if key is None:
        return ""
    same = bank_text(ledger_form)
    others = [f for f in LEGAL_FORMS[key][1] if f != same]
    u = rnd.random()
    if u < 0.2:
        return ""
    if u < 0.55 and others:
        return rnd.choice(others)
    return same


def make_counterparties(count: int, rnd: random.Random) -> list[Counterparty]:
    """`count` counterparties with distinct names (distinct also as the bank shows them)."""
    out: list[Counterparty] = []
    seen: set[str] = set()
    locales = list(LOCALES)
    weights = [float(LOCALES[k]["weight"]) for k in locales]  # type: ignore[arg-type]
    while len(out) < count:
        loc = LOCALES[rnd.choices(locales, weights)[0]]
        surnames, brands = loc["surnames"], loc["brands"]
        industries = loc["industries"]
        assert isinstance(surnames, list) and isinstance(brands, list)
        assert isinstance(industries, list)
        u = rnd.random()
        if u < 0.45:
            core = f"{rnd.choice(surnames)} {rnd.choice(industries)}"
        elif u < 0.75:
            core = f"{rnd.choice(brands)} {rnd.choice(industries)}"
        elif u < 0.85:
            core = f"{rnd.choice(surnames)} & Sons"
        elif u < 0.92:
            a, b = rnd.sample(surnames, 2)
            core = f"{a} & {b}"
        else:
            core = rnd.choice(brands) + rnd.choice(["", " Group", " International", " Partners"])
        forms = loc["forms"]
        assert isinstance(forms, tuple)
        key: str | None = _pick(rnd, forms)
        if rnd.random() < 0.1:  # an English brand registered abroad, or the other way round
            key = rnd.choice(list(LEGAL_FORMS))
        if rnd.random() < 0.04:
            key = None  # sole traders and partnerships without a legal form
        ledger_form = rnd.choice(LEGAL_FORMS[key][0]) if key else ""
        unique = bank_text(core)
        if unique in seen or unique[:14] in {s[:14] for s in seen}:
            continue
        seen.add(unique)
        role = "supplier" if rnd.random() < 0.6 else "customer"
        median = 700 if role == "supplier" else 2_200
        scale = median * math.exp(rnd.gauss(0, 1.1))
        out.append(
            Counterparty(
                core=core,
                form_key=key,
                ledger_form=ledger_form,
                bank_form=_bank_form_choice(rnd, key, ledger_form),
                role=role,
                scale=min(max(scale, 15.0), 250_000.0),
            )
        )
    return out


def make_recurring(count: int, rnd: random.Random, taken: set[str]) -> list[Counterparty]:
    """Recurring suppliers: landlord, software, leasing, insurance, telecom, utilities."""
    out: list[Counterparty] = []
    brands = [b for loc in LOCALES.values() for b in loc["brands"]]  # type: ignore[union-attr]
    surnames = list(LOCALES["en"]["surnames"])  # type: ignore[arg-type]
    while len(out) < count:
        industry, fixed, (low, high), rounding = rnd.choice(RECURRING_KINDS)
        stem = rnd.choice(brands if rnd.random() < 0.7 else surnames)
        core = f"{stem} {industry}"
        if bank_text(core) in taken:
            continue
        taken.add(bank_text(core))
        key = rnd.choice(["LTD", "INC", "LLC", "CORP", "CO", "PLC", "GMBH", "BV"])
        ledger_form = rnd.choice(LEGAL_FORMS[key][0])
        amount = int(math.exp(rnd.uniform(math.log(low), math.log(high))) * 100)
        if rounding > 1:
            amount = max(rounding, amount // rounding * rounding)
            if rounding == 100 and rnd.random() < 0.6:
                amount -= 1  # 49.00 -> 48.99 style prices
        day = 1 if industry in ("Properties", "Estates") else rnd.randint(1, 28)
        out.append(
            Counterparty(
                core=core,
                form_key=key,
                ledger_form=ledger_form,
                bank_form=_bank_form_choice(rnd, key, ledger_form),
                role="supplier",
                scale=amount / 100,
                recurring=(fixed, (low, high), rounding, day, industry),
                rec_amount=amount,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One ledger transaction (and, when paired, its bank line)."""

    cp: int  # index into the counterparty list, -1 for none
    cents: int  # ledger amount, signed
    day: int  # posting day, 0 = 1 Jan
    kind: str  # "pair" | "ledger_only"
    memo: str = ""
    prefix: str = ""
    doc: str = ""
    fx_memo: str = ""
    # bank side of a pair
    bank_cents: int = 0
    lag: int = 0
    tags: list[str] = field(default_factory=list)
    payee: str = ""
    ref: str = ""
    description: str = ""
    twin_of: int = -1
    twin_group: int | None = None
    entry_time: float = 0.0


def _date(day: int) -> dt.date:
    return START + dt.timedelta(days=day)


def _weekday_days(rnd: random.Random, n: int) -> list[int]:
    """`n` posting days over the year, weekends rare (people post on working days)."""
    weights = [0.08 if _date(d).weekday() >= 5 else 1.0 for d in range(DAYS)]
    return rnd.choices(range(DAYS), weights, k=n)


def _amount_cents(rnd: random.Random, cp: Counterparty) -> int:
    dollars = cp.scale * math.exp(rnd.gauss(0, 0.55))
    cents = max(100, int(round(dollars * 100)))
    u = rnd.random()
    if u < 0.08 and cents >= 10_000:
        cents = cents // 10_000 * 10_000 or 10_000  # whole hundreds
    elif u < 0.18:
        cents = cents // 100 * 100 or 100  # whole dollars
    return cents


def _is_free(index: dict, cp: int, cents: int, day: int) -> bool:
    days = index[(cp, cents)]
    pos = bisect.bisect_left(days, day - UNIQUE_WINDOW_DAYS)
    return pos == len(days) or days[pos] > day + UNIQUE_WINDOW_DAYS


def _claim(index: dict, cp: int, cents: int, day: int) -> None:
    bisect.insort(index[(cp, cents)], day)


def _typo(text: str, rnd: random.Random) -> str:
    letters = [i for i in range(1, len(text)) if text[i].isalpha()]
    for _ in range(20):
        pos = rnd.choice(letters)
        kind = rnd.randrange(3)
        if kind == 0:
            out = text[:pos] + text[pos + 1 :]
        elif kind == 1 and pos + 1 < len(text) and text[pos + 1].isalpha():
            out = text[:pos] + text[pos + 1] + text[pos] + text[pos + 2 :]
        else:
            out = text[:pos] + rnd.choice(_UPPER) + text[pos + 1 :]
        if out != text and "  " not in out and out.strip() == out:
            return out
    return text


def render_payee(
    cp: Counterparty, rnd: random.Random, allow_typo: bool = True
) -> tuple[str, list[str]]:
    """The bank's Payee text for one line of `cp`, and its noise tags."""
    tags: list[str] = []
    form = cp.bank_form
    if cp.form_key and rnd.random() < 0.1:  # another payment message, another spelling
        form = _bank_form_choice(rnd, cp.form_key, cp.ledger_form)
    if cp.form_key and form != cp.ledger_form.upper():
        tags.append("legal_form")
    if fold(cp.core) != cp.core:
        tags.append("accent")
    if "'" in cp.core or "." in cp.core:
        tags.append("punct")
    text = " ".join(filter(None, [bank_text(cp.core), form]))
    width = rnd.randint(18, 25) if rnd.random() < NARROW_CHANNEL else 35
    if len(text) > width:
        text = text[:width].rstrip()
        tags.append("truncated")
    if allow_typo and rnd.random() < TYPO and len(text) > 4:
        typo = _typo(text, rnd)
        if typo != text:
            text = typo
            tags.append("typo")
    if rnd.random() < PADDED:
        text = text.ljust(35) if rnd.random() < 0.7 else " " + text
        tags.append("padded")
    return text, tags


def _channel(rnd: random.Random, cents: int, recurring: bool) -> str:
    if recurring:
        return rnd.choice(["DIRECT DEBIT", "SEPA DD", "ACH DEBIT"])
    if cents < 0:
        return rnd.choices(
            ["ACH DEBIT", "SEPA CT", "WIRE OUT", "BILL PAYMENT", "FASTER PAYMENT", "CHQ PAID"],
            [30, 20, 10, 15, 15, 10],
        )[0]
    return rnd.choices(
        ["ACH CREDIT", "SEPA CT RCVD", "WIRE IN", "FASTER PAYMENT RCVD", "LOCKBOX DEP"],
        [35, 20, 15, 20, 10],
    )[0]


def _description(rnd: random.Random, channel: str, payee: str, ref: str) -> str:
    payee = payee.strip()
    words = payee.split()
    short = " ".join(words[: rnd.choice([1, 1, 2])])
    trace = ""
    if channel.startswith("WIRE"):
        trace = f"TRN {rnd.randrange(10**9, 10**10)} "
    if channel == "CHQ PAID":
        trace = f"{rnd.randrange(100_000, 200_000)} "
    if ref:
        return f"{channel} {trace}{ref} {short}".strip()
    return f"{channel} {trace}{payee}".strip()


def _bank_money(cents: int) -> str:
    text = f"${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    return f"({text})" if cents < 0 else text


def _ledger_money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


_PERSON_FIRST = "J M A S R D K P L T E C".split()
_PERSON_LAST = (
    "SMITH JONES GARCIA LOPEZ NGUYEN PATEL KOWALSKI MURPHY SCHMIDT ROSSI DUBOIS OKAFOR "
    "TANAKA SILVA HUGHES"
).split()
_CARD = (
    "AMZN MKTP US*2K4 AMAZON.COM",
    "UBER *TRIP",
    "SHELL OIL 57442",
    "STARBUCKS #10423",
    "DELTA AIR 0062",
    "HILTON HOTELS",
    "OFFICE DEPOT #1123",
    "GOOGLE *ADS",
    "LINKEDIN ADS",
    "APPLE.COM/BILL",
    "ZOOM.US",
    "PARKING METER 12",
)


def _bank_only(rnd: random.Random, n: int) -> list[dict]:
    """Lines only the bank has: charges, interest, card spend, unidentified receipts."""
    out = []
    month_ends = [(_date(d + 1).day == 1) for d in range(DAYS)]
    seen: set[tuple[int, int, str]] = set()
    for _ in range(n):
        u = rnd.random()
        day = rnd.randrange(DAYS)
        if u < 0.35:
            cents = -rnd.choice([250, 500, 750, 1_000, 1_500, 2_000, 2_500, 3_500, 4_500])
            text = rnd.choice(
                ["ACCOUNT MAINTENANCE FEE", "WIRE TRANSFER FEE", "SERVICE CHARGE", "FX COMMISSION"]
            )
            line = {"payee": "BANK CHARGES", "ref": "", "desc": f"BANK CHARGES {text}"}
            tag = "bank_charges"
        elif u < 0.5:
            while not month_ends[day]:
                day = (day + 1) % DAYS
            cents = rnd.randint(12, 8_500)
            line = {"payee": "CREDIT INTEREST", "ref": "", "desc": "INTEREST PAID GROSS"}
            tag = "interest"
        elif u < 0.75:
            merchant = rnd.choice(_CARD)
            cents = -rnd.randint(350, 65_000)
            card = rnd.choice(["4821", "7730", "1195"])
            line = {"payee": merchant[:22], "ref": "", "desc": f"CARD {card} {merchant}"}
            tag = "card"
        else:
            person = rnd.random() < 0.5
            if person:
                payer = f"{rnd.choice(_PERSON_FIRST)} {rnd.choice(_PERSON_LAST)}"
            else:
                payer = f"{rnd.choice(_PERSON_LAST)} {rnd.choice(['TRADING', 'HOLDINGS', 'INT'])}"
            cents = rnd.randint(2_000, 900_000)
            ref = ""
            if rnd.random() < 0.5:
                ref = rnd.choice(
                    [
                        f"PO {rnd.randrange(4_500_000_000, 4_600_000_000)}",
                        f"REMIT {rnd.randrange(10_000, 99_999)}",
                        f"ACCT {rnd.randrange(100_000, 999_999)}",
                    ]
                )
            channel = rnd.choice(["ACH CREDIT", "WIRE IN", "FASTER PAYMENT RCVD"])
            desc = f"{channel} {ref + ' ' if ref else ''}{payer}"
            line = {"payee": payer, "ref": ref, "desc": desc}
            tag = "unidentified"
        while (day, cents, line["payee"]) in seen:  # two equal lines would be a duplicate
            day = (day + 1) % DAYS
        seen.add((day, cents, line["payee"]))
        line.update({"cents": cents, "day": day, "tag": tag})
        out.append(line)
    return out


def generate(out_dir: Path | str, rows: int = 10_000, seed: int = 7) -> dict:
    """Write bank.csv, ledger.csv, the truth files and rules.yaml; paths and counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    blank_rate = rnd.uniform(0.20, 0.40)

    n_ledger_dup = round(rows * LEDGER_DUPLICATES)
    n_ledger_only = round(rows * LEDGER_ONLY)
    n_pair = rows - n_ledger_dup - n_ledger_only
    n_twin_groups = max(1, round(n_pair * TWINS / 2))

    # Counterparties: a Zipf-popular universe plus recurring suppliers.
    n_cp = min(800, max(200, rows // 25))
    n_rec = min(n_cp // 5, max(5, round(rows * 0.08 / 12)))
    cps = make_counterparties(n_cp - n_rec, rnd)
    taken = {bank_text(c.core) for c in cps}
    cps += make_recurring(n_rec, rnd, taken)
    popular = list(range(n_cp - n_rec))
    rnd.shuffle(popular)
    zipf = [1 / (rank + 3) ** 1.05 for rank in range(len(popular))]  # Zipf-Mandelbrot
    cum = list(itertools.accumulate(zipf))
    by_role: dict[str, tuple[list[int], list[float]]] = {}
    for role in ("supplier", "customer"):
        members = [(i, w) for i, w in zip(popular, zipf, strict=True) if cps[i].role == role]
        by_role[role] = ([i for i, _ in members], list(itertools.accumulate(w for _, w in members)))

    index: dict[tuple[int, int], list[int]] = defaultdict(list)
    entries: list[Entry] = []

    # Recurring monthly entries.
    for i in range(n_cp - n_rec, n_cp):
        cp = cps[i]
        assert cp.recurring is not None
        fixed, (low, high), _, dom, industry = cp.recurring
        for month in range(1, 13):
            day = (dt.date(YEAR, month, dom) - START).days
            while _date(day).weekday() >= 5:  # collected on the next working day
                day += 1
            cents = cp.rec_amount
            if not fixed:
                cents = int(cp.rec_amount * math.exp(rnd.gauss(0, 0.25)))
            if not _is_free(index, i, -cents, day):
                cents += 1
            _claim(index, i, -cents, day)
            memo = f"{industry} {_MONTHS[month - 1]} {YEAR}"
            entries.append(Entry(cp=i, cents=-cents, day=day, kind="pair", memo=memo))

    # One-off payments and receipts.
    n_oneoff = n_pair - n_twin_groups - len(entries)
    for day in _weekday_days(rnd, n_oneoff):
        i = rnd.choices(popular, cum_weights=cum)[0]
        cp = cps[i]
        sign = -1 if cp.role == "supplier" else 1
        for _ in range(50):
            cents = sign * _amount_cents(rnd, cp)
            if _is_free(index, i, cents, day):
                break
        _claim(index, i, cents, day)
        if sign < 0:
            memo = f"Payment {cp.ledger_name} inv {rnd.randrange(1000, 99999)}"
        else:
            memo = f"Receipt {cp.ledger_name}"
        entries.append(Entry(cp=i, cents=cents, day=day, kind="pair", memo=memo))

    # Ledger-only entries: outstanding cheques, accruals, deposits in transit.
    for _ in range(n_ledger_only):
        u = rnd.random()
        members, acc = by_role["supplier" if u < 0.85 else "customer"]
        i = rnd.choices(members, cum_weights=acc)[0]
        cp = cps[i]
        if u < 0.55:
            day = DAYS - 1 - rnd.randrange(45) if rnd.random() < 0.5 else rnd.randrange(DAYS)
            cents = -_amount_cents(rnd, cp)
            memo = f"Cheque {rnd.randrange(100_000, 200_000)} {cp.ledger_name} not presented"
            prefix = "PAY"
        elif u < 0.85:
            month = rnd.randrange(12)  # the last day of the month
            day = (dt.date(YEAR + (month == 11), (month + 1) % 12 + 1, 1) - START).days - 1
            cents = -_amount_cents(rnd, cp)
            memo = (
                f"Accrued {rnd.choice(['services', 'utilities', 'fees', 'freight'])} "
                f"{_MONTHS[month]} {YEAR}"
            )
            prefix = "ACR"
        else:
            day = DAYS - 1 - rnd.randrange(5)
            cents = _amount_cents(rnd, cp)
            memo = f"Deposit in transit {cp.ledger_name}"
            prefix = "INV"
        while not _is_free(index, i, cents, day):
            cents += 1 if cents > 0 else -1
        _claim(index, i, cents, day)
        entries.append(
            Entry(cp=i, cents=cents, day=day, kind="ledger_only", memo=memo, prefix=prefix)
        )

    # Twins: a second genuine transaction, same counterparty, amount and day.
    candidates = [
        k for k, e in enumerate(entries) if e.kind == "pair" and cps[e.cp].recurring is None
    ]
    for k in rnd.sample(candidates, n_twin_groups):
        base = entries[k]
        base.twin_of = len(entries)
        memo = base.memo
        if memo.startswith("Payment"):
            memo = f"Payment {cps[base.cp].ledger_name} inv {rnd.randrange(1000, 99999)}"
        entries.append(
            Entry(cp=base.cp, cents=base.cents, day=base.day, kind="pair", memo=memo, twin_of=k)
        )

    # Document numbers: per prefix, in posting order.
    for e in entries:
        if not e.prefix:
            e.prefix = "INV" if e.cents > 0 else "PAY"
    seq: Counter[str] = Counter()
    for e in sorted(entries, key=lambda e: (e.day, rnd.random())):
        seq[e.prefix] += 1
        e.doc = f"{e.prefix}-{YEAR}-{seq[e.prefix]:05d}"
        if e.kind == "pair" and e.cents > 0 and e.memo.startswith("Receipt"):
            e.memo = f"Receipt {e.doc} {cps[e.cp].ledger_name}"

    # Bank side of the pairs.
    pairs = [k for k, e in enumerate(entries) if e.kind == "pair"]
    twin_pairs = {k for k in pairs if entries[k].twin_of >= 0}
    for k in pairs:
        e = entries[k]
        if k in twin_pairs and e.twin_of < k:
            continue  # rendered with its first twin below
        cp = cps[e.cp]
        e.bank_cents = e.cents
        twin = k in twin_pairs
        if not twin:
            u = rnd.random()
            if u < FEE and abs(e.cents) >= 5_000:
                fee = rnd.randint(250, 2_500)
                if rnd.random() < 0.5:
                    fee = rnd.choice([250, 500, 1_000, 1_500, 2_000, 2_500])
                e.bank_cents = e.cents - fee if e.cents > 0 else e.cents + fee
                e.tags.append("fee")
            elif FEE <= u < FEE + FX:
                diff = rnd.randint(1, 4) * rnd.choice([-1, 1])
                e.bank_cents = e.cents + diff
                e.tags.append("fx" if abs(diff) <= TOLERANCE_CENTS else "fx_beyond")
                foreign = rnd.choice(["EUR", "GBP", "CHF", "CAD"])
                rate = rnd.uniform(0.7, 1.4)
                e.fx_memo = f"{foreign} {abs(e.cents) / 100 / rate:,.2f} @ {rate:.5f}"
            u = rnd.random()
            if u < LAG_BEYOND:
                e.lag = rnd.randint(4, 5)
            elif u < LAG_BEYOND + LAG:
                e.lag = rnd.randint(1, 3)
        payee, payee_tags = render_payee(cp, rnd, allow_typo=not twin)
        e.payee = payee
        e.tags += payee_tags
        if twin:
            other = entries[e.twin_of]
            other.bank_cents, other.lag, other.payee = e.bank_cents, e.lag, e.payee
            other.tags = list(e.tags)
            both_blank = rnd.random() < 0.4
            for t in (e, other):
                t.tags.append("twin")
                _reference(t, rnd, blank_rate, force_blank=both_blank)
        else:
            _reference(e, rnd, blank_rate)
        channel = _channel(rnd, e.cents, cp.recurring is not None)
        for t in [e] + ([entries[e.twin_of]] if twin else []):
            t.description = _description(rnd, channel, t.payee, t.description)

    # A blank reference must not leave the line fitting another entry of the counterparty as
    # well as its own (outside twins): then the bank line keeps its reference. "As well":
    # no further off in amount and in days than its own entry, both measured with the
    # tolerances as a floor.
    by_cp: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for k, e in enumerate(entries):
        by_cp[e.cp].append((e.day, k))
    for days in by_cp.values():
        days.sort()
    restored = 0
    for k in pairs:
        e = entries[k]
        if e.ref or e.twin_of >= 0:
            continue
        bank_day = e.day + e.lag
        cents_room = max(abs(e.bank_cents - e.cents), TOLERANCE_CENTS)
        day_room = max(e.lag, TOLERANCE_DAYS)
        near = by_cp[e.cp]
        lo = bisect.bisect_left(near, (bank_day - day_room, -1))
        hi = bisect.bisect_right(near, (bank_day + day_room, len(entries)))
        if any(
            j != k and abs(e.bank_cents - entries[j].cents) <= cents_room for _, j in near[lo:hi]
        ):
            e.ref = e.doc
            e.tags = [t for t in e.tags if t not in ("blank_ref", "ref_in_description")]
            restored += 1

    # Twin groups: twins whose bank lines both have a blank Ref#.
    group = 0
    for k in sorted(twin_pairs):
        e = entries[k]
        o = entries[e.twin_of]
        if k < e.twin_of and not e.ref and not o.ref:
            group += 1
            e.twin_group = o.twin_group = group

    # Duplicate postings.
    clean = [
        k
        for k in pairs
        if entries[k].twin_of < 0
        and abs(entries[k].bank_cents - entries[k].cents) <= TOLERANCE_CENTS
        and entries[k].lag <= TOLERANCE_DAYS
    ]
    n_bank_only = round(n_pair * BANK_ONLY / (1 - BANK_ONLY - BANK_DUPLICATES))
    n_bank_dup = round((n_pair + n_bank_only) * BANK_DUPLICATES)
    chosen = rnd.sample(clean, n_bank_dup + n_ledger_dup)
    bank_dups, ledger_dups = chosen[:n_bank_dup], chosen[n_bank_dup:]

    # Ledger file, in entry order.
    for e in entries:
        jitter = 0 if rnd.random() < 0.8 else rnd.randint(1, 4)
        e.entry_time = e.day + jitter + rnd.random()
    ledger_lines: list[tuple[float, int, bool]] = [
        (e.entry_time, k, False) for k, e in enumerate(entries)
    ]
    ledger_lines += [(entries[k].entry_time + rnd.randint(1, 10), k, True) for k in ledger_dups]
    copied = set(bank_dups)
    ledger_lines.sort()
    ledger_row: dict[int, int] = {}
    ledger_copy_row: dict[int, int] = {}
    ledger_csv: list[list[str]] = []
    for row, (_, k, copy) in enumerate(ledger_lines, start=1):
        e = entries[k]
        (ledger_copy_row if copy else ledger_row)[k] = row
        memo = f"{e.memo} ({e.fx_memo})" if e.fx_memo else e.memo
        ledger_csv.append(
            [
                f"JE{row:07d}",
                e.doc,
                cps[e.cp].ledger_name,
                _ledger_money(e.cents),
                _date(e.day).isoformat(),
                "USD",
                memo,
            ]
        )

    # Bank file, by date; a duplicate copy later on the same date.
    lines: list[tuple[int, float, str, dict]] = []
    for k in pairs:
        e = entries[k]
        line = {
            "cents": e.bank_cents,
            "day": e.day + e.lag,
            "payee": e.payee,
            "ref": e.ref,
            "desc": e.description,
            "pair": k,
        }
        r = rnd.random()
        lines.append((line["day"], r, "pair", line))
        if k in copied:
            lines.append((line["day"], r + (1 - r) * rnd.random() + 1e-9, "copy", line))
    for line in _bank_only(rnd, n_bank_only):
        lines.append((line["day"], rnd.random(), "only", line))
    lines.sort(key=lambda x: (x[0], x[1]))
    txn_id = rnd.randrange(7_700_000_000, 7_800_000_000)
    bank_csv: list[list[str]] = []
    bank_row: dict[int, int] = {}
    bank_copies: list[tuple[int, int]] = []
    bank_only_rows: list[int] = []
    bank_only_kinds: Counter[str] = Counter()
    for row, (_, _, what, line) in enumerate(lines, start=1):
        txn_id += rnd.randint(1, 9)
        bank_csv.append(
            [
                _date(line["day"]).strftime("%d/%m/%Y"),
                _bank_money(line["cents"]),
                line["payee"],
                line["ref"],
                line["desc"],
                str(txn_id),
            ]
        )
        if what == "pair":
            bank_row[line["pair"]] = row
        elif what == "copy":
            bank_copies.append((row, line["pair"]))
        else:
            bank_only_rows.append(row)
            bank_only_kinds[line["tag"]] += 1

    # Truth.
    truth_pairs = []
    exceptions: list[tuple[str, str, int, int | None]] = []
    tag_counts: Counter[str] = Counter()
    for k in pairs:
        e = entries[k]
        s, t = bank_row[k], ledger_row[k]
        cents_off = abs(e.bank_cents - e.cents)
        lag = e.lag
        if 1 <= lag <= TOLERANCE_DAYS:
            e.tags.append("lag")
        elif lag > TOLERANCE_DAYS:
            e.tags.append("lag_beyond")
        if cents_off > TOLERANCE_CENTS:
            exceptions.append(("AMOUNT_MISMATCH", "source", s, t))
        if lag > TOLERANCE_DAYS:
            exceptions.append(("DATE_MISMATCH", "source", s, t))
        order = [
            "fee",
            "fx",
            "fx_beyond",
            "lag",
            "lag_beyond",
            "blank_ref",
            "ref_in_description",
            "truncated",
            "typo",
            "legal_form",
            "accent",
            "punct",
            "padded",
            "twin",
        ]
        tags = [tag for tag in order if tag in e.tags]
        tag_counts.update(tags or ["clean"])
        truth_pairs.append((s, t, "+".join(tags) or "clean", e.twin_group))
    truth_pairs.sort()
    for k, e in enumerate(entries):
        if e.kind == "ledger_only":
            exceptions.append(("MISSING_IN_SOURCE", "target", ledger_row[k], None))
    for row in bank_only_rows:
        exceptions.append(("MISSING_IN_TARGET", "source", row, None))
    for row, k in bank_copies:
        exceptions.append(("DUPLICATE_FOUND", "source", row, bank_row[k]))
    for k in ledger_dups:
        exceptions.append(("DUPLICATE_FOUND", "target", ledger_copy_row[k], ledger_row[k]))
    kinds = [
        "MISSING_IN_TARGET",
        "MISSING_IN_SOURCE",
        "AMOUNT_MISMATCH",
        "DATE_MISMATCH",
        "DUPLICATE_FOUND",
    ]
    exceptions.sort(key=lambda x: (kinds.index(x[0]), x[1], x[2]))

    paths = {
        "source": out / "bank.csv",
        "target": out / "ledger.csv",
        "truth_pairs": out / "truth_pairs.csv",
        "truth_exceptions": out / "truth_exceptions.csv",
        "rules": out / "rules.yaml",
    }
    _write(paths["source"], BANK_COLUMNS, bank_csv)
    _write(paths["target"], LEDGER_COLUMNS, ledger_csv)
    _write(
        paths["truth_pairs"],
        ("source_row_number", "target_row_number", "noise", "twin_group"),
        [[str(s), str(t), n, "" if g is None else str(g)] for s, t, n, g in truth_pairs],
    )
    _write(
        paths["truth_exceptions"],
        ("type", "side", "row_number", "other_row_number"),
        [[k, side, str(r), "" if o is None else str(o)] for k, side, r, o in exceptions],
    )
    paths["rules"].write_text(RULES_YAML, encoding="utf-8")

    n_blank = sum(1 for line in bank_csv if not line[3])
    return {
        **paths,
        "source_rows": len(bank_csv),
        "target_rows": len(ledger_csv),
        "pairs": len(truth_pairs),
        "exceptions": dict(sorted(Counter(x[0] for x in exceptions).items())),
        "phenomena": {
            "counterparties": n_cp,
            "recurring_counterparties": n_rec,
            "blank_ref_rate_drawn": round(blank_rate, 4),
            "bank_lines_with_blank_ref": n_blank,
            "blank_refs_restored_to_avoid_ambiguity": restored,
            "twin_pairs_of_entries": n_twin_groups,
            "twin_groups_indistinguishable": group,
            "bank_duplicate_copies": len(bank_copies),
            "ledger_duplicate_copies": len(ledger_dups),
            "bank_only_lines": dict(sorted(bank_only_kinds.items())),
            "ledger_only_entries": dict(
                sorted(Counter(e.prefix for e in entries if e.kind == "ledger_only").items())
            ),
            "pair_noise_tags": dict(sorted(tag_counts.items())),
            "receipts_payments": {
                "receipts": sum(1 for k in pairs if entries[k].cents > 0),
                "payments": sum(1 for k in pairs if entries[k].cents < 0),
            },
        },
    }


def _reference(e: Entry, rnd: random.Random, blank_rate: float, force_blank: bool = False) -> None:
    """Ref# of a pair's bank line; `description` temporarily carries the quoted reference."""
    if force_blank or rnd.random() < blank_rate:
        e.ref = ""
        e.tags.append("blank_ref")
        if rnd.random() < 0.5:
            e.description = e.doc
            e.tags.append("ref_in_description")
        else:
            e.description = ""
    else:
        e.ref = e.doc
        e.description = e.doc if rnd.random() < 0.5 else ""


def _write(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="ledger data rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    made = generate(args.out, args.rows, args.seed)
    print(
        f"bank {made['source_rows']:,} rows: {made['source']}\n"
        f"ledger {made['target_rows']:,} rows: {made['target']}\n"
        f"true pairs {made['pairs']:,}: {made['truth_pairs']}\n"
        f"expected exceptions {made['exceptions']}: {made['truth_exceptions']}\n"
        f"rules: {made['rules']}"
    )
    for key, value in made["phenomena"].items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
