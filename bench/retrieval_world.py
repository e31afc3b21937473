"""The world `bench/retrieval_corpus.py` draws from: 48 counterparties as a ledger and a bank
name them, and the ways amounts and names are written (bank amounts, the engine's rounding,
one-letter typos).
"""

from __future__ import annotations

import random

# ledger name | bank name | short name a person types | customer (pays us) or supplier (we pay)
_COUNTERPARTY_TABLE = """
Acme Limited | ACME LTD | Acme | customer
Globex Corporation | GLOBEX CORP | Globex | customer
Initech Inc | INITECH INC | Initech | customer
Umbrella Holdings plc | UMBRELLA HOLDINGS PLC | Umbrella | customer
Hooli Inc | HOOLI INC | Hooli | supplier
Stark Industries | STARK IND | Stark | customer
Wayne Enterprises | WAYNE ENTERPRISES | Wayne | customer
Soylent Foods LLC | SOYLENT FOODS | Soylent | supplier
Cyberdyne Systems | CYBERDYNE SYS | Cyberdyne | customer
Tyrell Corporation | TYRELL CORP | Tyrell | customer
Vandelay Industries | VANDELAY IND | Vandelay | supplier
Wonka Confectionery Ltd | WONKA CONFECT | Wonka | customer
Oceanic Airlines | OCEANIC AIRLINES | Oceanic | supplier
Massive Dynamic | MASSIVE DYNAMIC | Massive Dynamic | customer
Pied Piper Inc | PIED PIPER | Pied Piper | customer
Dunder Mifflin Paper Co | DUNDER MIFFLIN | Dunder Mifflin | supplier
Sterling Cooper Advertising | STERLING COOPER | Sterling Cooper | customer
Prestige Worldwide | PRESTIGE WW | Prestige | customer
Gringotts Bank Charges | GRINGOTTS | Gringotts | supplier
Hartley Logistics Ltd | HARTLEY LOGISTICS | Hartley | supplier
Ashford Engineering Ltd | ASHFORD ENG | Ashford | customer
Bramwell Foods Limited | BRAMWELL FOODS LTD | Bramwell | supplier
Caldwell Textiles GmbH | CALDWELL TEXTILES | Caldwell | customer
Danforth Consulting LLC | DANFORTH CONSULT | Danforth | customer
Ellison Marine Freight | ELLISON MARINE | Ellison | supplier
Fairbanks Pharma SA | FAIRBANKS PHARMA | Fairbanks | customer
Garrison Security Services | GARRISON SECURITY | Garrison | supplier
Holloway Printing Ltd | HOLLOWAY PRINT | Holloway | supplier
Ingram Office Supplies | INGRAM OFFICE SUP | Ingram | supplier
Jessop Catering Group | JESSOP CATERING | Jessop | supplier
Kendrick Software Partners | KENDRICK SOFTWARE | Kendrick | customer
Langley Property Management | LANGLEY PROPERTY | Langley | supplier
Merriman Electrical | MERRIMAN ELEC | Merriman | supplier
Northcott Capital | NORTHCOTT CAP | Northcott | customer
Oakley Plumbing & Co | OAKLEY PLUMBING | Oakley | supplier
Pemberton Analytics | PEMBERTON ANALYTICS | Pemberton | customer
Quinlan Media Group | QUINLAN MEDIA | Quinlan | customer
Radcliffe Motors | RADCLIFFE MOTORS | Radcliffe | customer
Thornbury Dairy Farms | THORNBURY DAIRY | Thornbury | supplier
Underwood Timber Ltd | UNDERWOOD TIMBER | Underwood | supplier
Whitmore Cleaning Services | WHITMORE CLEANING | Whitmore | supplier
Yardley Travel | YARDLEY TRAVEL | Yardley | supplier
Blackwood Medical | BLACKWOOD MED | Blackwood | customer
Cromwell Packaging | CROMWELL PACKAGING | Cromwell | supplier
Davenport Couriers | DAVENPORT COURIERS | Davenport | supplier
Fenwick Optics Inc | FENWICK OPTICS | Fenwick | customer
Grantham Energy plc | GRANTHAM ENERGY | Grantham | supplier
Montague Interiors | MONTAGUE INTERIORS | Montague | customer
"""
COUNTERPARTIES: tuple[tuple[str, str, str, bool], ...] = tuple(
    (ledger, bank, short, role == "customer")
    for ledger, bank, short, role in (
        tuple(part.strip() for part in line.split("|"))
        for line in _COUNTERPARTY_TABLE.strip().splitlines()
    )
)


def money_text(value: float) -> str:
    """A rounded amount as the engine's descriptions print it (polars: 985.0, 1234.56)."""
    return repr(round(value, 2))


def bank_amount(value: float) -> str:
    """The bank export's amount: `$1,234.56`, negatives `(1,234.56)`."""
    return f"({-value:,.2f})" if value < 0 else f"${value:,.2f}"


def typo(rng: random.Random, name: str) -> str:
    """One edit (substitution, deletion, insertion, transposition), never the first letter."""
    letters = [i for i, c in enumerate(name) if c.isalpha() and i > 0]
    i = rng.choice(letters)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    c = rng.choice(alphabet)
    c = c.upper() if name[i].isupper() else c
    op = rng.randrange(4)
    if op == 0:
        return name[:i] + c + name[i + 1 :]
    if op == 1:
        return name[:i] + name[i + 1 :]
    if op == 2:
        return name[:i] + c + name[i:]
    j = min(i + 1, len(name) - 1)
    return name[:i] + name[j] + name[i] + name[j + 1 :] if j > i else name[:i] + c
