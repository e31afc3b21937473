"""OFX/QFX bank and credit-card statements: SGML OFX 1.x and XML OFX 2.x.

`ofx_tree.read_tree` reads the header (version, encoding and charset) and turns the body, SGML
with unclosed leaf elements or XML alike, into an element tree; it is written by hand because
the maintained OFX package, `ofxtools`, is GPL-3.0-only and this project is Apache-2.0 (see its
docstring). No OFX object model is imposed: real files break the specification's length limits
and required elements (a bank id over nine characters, a missing sign-on), and a statement should
land all the same. The elements are read here, per `STMTRS` (bank) or `CCSTMTRS` (credit card):
`ACCTID` (account), `CURDEF` (currency), `LEDGERBAL/BALAMT` (closing balance; OFX carries no
opening balance, so no balance check) and per `STMTTRN`: `DTPOSTED` (booking date),
`DTUSER`/`DTAVAIL` (value date), `TRNAMT` (already signed), `NAME` or `PAYEE/NAME`
(counterparty), `BANKACCTTO`/`CCACCTTO` `ACCTID` (counterparty account), `REFNUM` or `CHECKNUM`
(reference), `FITID` (bank reference), `MEMO` (description) and `TRNTYPE` (transaction code).
"""

from __future__ import annotations

from datetime import date
from xml.etree.ElementTree import Element

from pipelines.ingest.statements.model import (
    Entry,
    ParsedStatements,
    Statement,
    clean,
    decimal_of,
    statement_error,
)
from pipelines.ingest.statements.ofx_tree import read_tree


def _text(parent: Element | None, path: str) -> str | None:
    node = parent.find(path) if parent is not None else None
    return clean(node.text) if node is not None else None


def _day(text: str | None, name: str, entry: int | None, field_name: str) -> date | None:
    if not text:
        return None
    digits = text[:8]
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise statement_error(
            name, f"{text[:30]!r} is not an OFX date", entry=entry, field_name=field_name
        ) from None


def parse(data: bytes, name: str, file_format: str) -> ParsedStatements:
    """Parse an OFX 1.x/2.x file into one statement per account statement; see the module doc."""
    root = read_tree(data, name)
    containers = [*root.iter("STMTRS"), *root.iter("CCSTMTRS")]
    if not containers:
        raise statement_error(name, "has no bank or credit-card statement (STMTRS)")
    statements = []
    number = 0
    for container in containers:
        currency = _text(container, "CURDEF")
        account = _text(container, "BANKACCTFROM/ACCTID") or _text(container, "CCACCTFROM/ACCTID")
        # one list of transactions by the specification; some exporters write one per
        # transaction, and every one of them is read
        lists = container.findall("BANKTRANLIST")
        entries = []
        for trn in (t for found in lists for t in found.iter("STMTTRN")):
            number += 1
            entries.append(_entry(trn, currency, name, number))
        starts = sorted(d for d in (_text(t, "DTSTART") for t in lists) if d)
        ends = sorted(d for d in (_text(t, "DTEND") for t in lists) if d)
        start, end = (starts[0] if starts else None), (ends[-1] if ends else None)
        period = f"{(start or '')[:8]}-{(end or '')[:8]}" if start or end else None
        balance = _text(container, "LEDGERBAL/BALAMT")
        statements.append(
            Statement(
                statement_id=" ".join(p for p in (account, period) if p) or None,
                account=account,
                currency=currency,
                entries=tuple(entries),
                opening_balance=None,
                closing_balance=decimal_of(balance, name, None, "LEDGERBAL/BALAMT")
                if balance
                else None,
            )
        )
    return ParsedStatements(file_format, tuple(statements))


def _entry(trn: Element, currency: str | None, name: str, number: int) -> Entry:
    posted = _day(_text(trn, "DTPOSTED"), name, number, "DTPOSTED")
    user = _day(_text(trn, "DTUSER") or _text(trn, "DTAVAIL"), name, number, "DTUSER")
    counter_account = _text(trn, "BANKACCTTO/ACCTID") or _text(trn, "CCACCTTO/ACCTID")
    return Entry(
        amount=decimal_of(_text(trn, "TRNAMT"), name, number, "TRNAMT"),
        booking_date=posted,
        value_date=user or posted,
        currency=_text(trn, "CURRENCY/CURSYM") or currency,
        counterparty_name=_text(trn, "NAME") or _text(trn, "PAYEE/NAME"),
        counterparty_account=counter_account,
        reference=_text(trn, "REFNUM") or _text(trn, "CHECKNUM"),
        bank_reference=_text(trn, "FITID"),
        description=_text(trn, "MEMO"),
        transaction_code=_text(trn, "TRNTYPE"),
    )
