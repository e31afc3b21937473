"""ISO 20022 cash management messages: camt.053 statements, camt.052 reports, camt.054
notifications, any version (`urn:iso:std:iso:20022:tech:xsd:camt.05x.001.NN`).

Read here with the standard library's ElementTree through `defusedxml` (no DTD, no entity
expansion, no external resource: a billion-laughs or XXE file is refused), by local element
names so every schema version reads the same. The packages on offer were read first:
`pycamt` finds no `Ntfctn` (camt.054) and turns balances into floats; `camt053` drags in a web
stack (FastAPI, uvicorn, xmlschema, cryptography...) to read XML. See the README.

Per `Stmt`/`Rpt`/`Ntfctn`: `Id` (statement_id), `Acct/Id/IBAN` or `Acct/Id/Othr/Id`
(account), balances `OPBD`/`PRCD` (opening) and `CLBD` (closing), or the first and last `ITBD`
of an interim report. Per booked `Ntry` (status `BOOK`, or none given; pending and information
entries are left out, they are booked later): `Amt`/`@Ccy` signed by `CdtDbtInd`, `BookgDt`,
`ValDt`, `AcctSvcrRef` (bank_reference), the bank transaction code (`Domn/Cd-Fmly/Cd-SubFmlyCd`
or `Prtry/Cd`). A batched entry whose `TxDtls` each carry an amount in the entry's currency that
add up to the entry becomes one row per `TxDtls`; otherwise the entry is one row. From the
`TxDtls`: `EndToEndId` (reference, else the creditor reference or `InstrId`), the counterparty
(the debtor for a credit, the creditor for a debit: `Nm` and `IBAN`/`Othr/Id`), and the
remittance lines (`Ustrd`, joined) as description, else `AddtlTxInf`/`AddtlNtryInf`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from pipelines.ingest.statements.model import (
    Entry,
    ParsedStatements,
    Statement,
    clean,
    decimal_of,
    statement_error,
)

_CONTAINERS = ("Stmt", "Rpt", "Ntfctn")
_BOOKED = {"BOOK", ""}
_NO_REFERENCE = {"NOTPROVIDED", "NONREF", "NONE"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(parent: Element | None, name: str) -> Iterator[Element]:
    if parent is None:
        return
    for child in parent:
        if _local(child.tag) == name:
            yield child


def _child(parent: Element | None, *path: str) -> Element | None:
    """The first element down `path` of local names (each step: the first such child)."""
    node = parent
    for name in path:
        node = next(_children(node, name), None)
        if node is None:
            return None
    return node


def _text(parent: Element | None, *path: str) -> str | None:
    node = _child(parent, *path)
    return clean(node.text) if node is not None else None


def parse(data: bytes, name: str, file_format: str) -> ParsedStatements:
    """Parse a camt.052/053/054 document into statements; see the module doc."""
    try:
        root = SafeET.parse(io.BytesIO(data), forbid_dtd=True).getroot()
    except DefusedXmlException as exc:
        raise statement_error(
            name, f"the XML declares a DTD or entities ({type(exc).__name__}), refused"
        ) from exc
    except SafeET.ParseError as exc:
        raise statement_error(name, f"is not well-formed XML ({exc})") from exc
    message = next(iter(root), None)  # BkToCstmrStmt / BkToCstmrAcctRpt / ...DbtCdtNtfctn
    containers = [
        c for c in (message if message is not None else []) if _local(c.tag) in _CONTAINERS
    ]
    if not containers:
        raise statement_error(name, "has no Stmt, Rpt or Ntfctn element", field_name="Document")
    statements = []
    number = 0
    for container in containers:
        entries: list[Entry] = []
        for ntry in _children(container, "Ntry"):
            number_before = number
            rows, number = _entry_rows(ntry, name, number)
            if rows:
                entries.extend(rows)
            else:
                number = number_before
        opening, closing = _balances(container, name)
        account = _text(container, "Acct", "Id", "IBAN") or _text(
            container, "Acct", "Id", "Othr", "Id"
        )
        statements.append(
            Statement(
                statement_id=_text(container, "Id"),
                account=account,
                currency=_text(container, "Acct", "Ccy"),
                entries=tuple(entries),
                opening_balance=opening,
                closing_balance=closing,
            )
        )
    return ParsedStatements(file_format, tuple(statements))


def _signed(
    amount: Decimal, indicator: str | None, name: str, entry: int | None, where: str
) -> Decimal:
    if indicator == "DBIT":
        return -amount
    if indicator == "CRDT":
        return amount
    raise statement_error(
        name,
        f"credit/debit indicator {indicator!r} is not CRDT or DBIT",
        entry=entry,
        field_name=where,
    )


def _balances(container: Element, name: str) -> tuple[Decimal | None, Decimal | None]:
    found: dict[str, list[Decimal]] = {}
    for bal in _children(container, "Bal"):
        code = _text(bal, "Tp", "CdOrPrtry", "Cd") or _text(bal, "Tp", "CdOrPrtry", "Prtry") or ""
        amount = decimal_of(_text(bal, "Amt"), name, None, f"Bal {code} Amt")
        signed = _signed(amount, _text(bal, "CdtDbtInd"), name, None, f"Bal {code} CdtDbtInd")
        found.setdefault(code, []).append(signed)
    opening = (found.get("OPBD") or found.get("PRCD") or [None])[0]
    closing = (found.get("CLBD") or [None])[0]
    interim = found.get("ITBD", [])
    if opening is None and closing is None and len(interim) >= 2:
        opening, closing = interim[0], interim[-1]
    return opening, closing


def _day(parent: Element | None, name: str, entry: int, field_name: str) -> date | None:
    text = _text(parent, "Dt") or _text(parent, "DtTm")
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise statement_error(
            name, f"{text[:40]!r} is not a date", entry=entry, field_name=field_name
        ) from None


def _code(ntry: Element) -> str | None:
    domain = _child(ntry, "BkTxCd", "Domn")
    if domain is not None:
        parts = [
            _text(domain, "Cd"),
            _text(domain, "Fmly", "Cd"),
            _text(domain, "Fmly", "SubFmlyCd"),
        ]
        return "-".join(p for p in parts if p) or None
    return _text(ntry, "BkTxCd", "Prtry", "Cd")


def _party(tx: Element, role: str) -> tuple[str | None, str | None]:
    parties = _child(tx, "RltdPties")
    party = _child(parties, role)
    name = _text(party, "Nm") or _text(party, "Pty", "Nm")
    account = _text(parties, role + "Acct", "Id", "IBAN") or _text(
        parties, role + "Acct", "Id", "Othr", "Id"
    )
    return name, account


def _reference(tx: Element | None) -> str | None:
    for path in (
        ("Refs", "EndToEndId"),
        ("RmtInf", "Strd", "CdtrRefInf", "Ref"),
        ("Refs", "InstrId"),
    ):
        value = _text(tx, *path)
        if value and value.upper() not in _NO_REFERENCE:
            return value
    return None


def _remittance(tx: Element | None) -> str | None:
    remittance = _child(tx, "RmtInf")
    lines = [clean(u.text) for u in _children(remittance, "Ustrd")]
    return clean(" ".join(line for line in lines if line)) or _text(tx, "AddtlTxInf")


def _tx_amount(tx: Element, name: str, entry: int) -> tuple[Decimal, str | None] | None:
    node = _child(tx, "Amt")
    if node is None:
        node = _child(tx, "AmtDtls", "TxAmt", "Amt")
    if node is None:
        return None
    amount = decimal_of(node.text, name, entry, "TxDtls Amt")
    return amount, node.get("Ccy")


def _entry_rows(ntry: Element, name: str, number: int) -> tuple[list[Entry], int]:
    status = (_text(ntry, "Sts", "Cd") or _text(ntry, "Sts") or "").upper()
    if status not in _BOOKED:
        return [], number
    number += 1
    amount_node = _child(ntry, "Amt")
    amount = decimal_of(amount_node.text if amount_node is not None else None, name, number, "Amt")
    currency = amount_node.get("Ccy") if amount_node is not None else None
    indicator = _text(ntry, "CdtDbtInd")
    signed = _signed(amount, indicator, name, number, "CdtDbtInd")
    common = {
        "booking_date": _day(_child(ntry, "BookgDt"), name, number, "BookgDt"),
        "value_date": _day(_child(ntry, "ValDt"), name, number, "ValDt"),
        "currency": currency,
        "bank_reference": _text(ntry, "AcctSvcrRef") or _text(ntry, "NtryRef"),
        "transaction_code": _code(ntry),
    }
    details = [tx for block in _children(ntry, "NtryDtls") for tx in _children(block, "TxDtls")]
    entry_info = _text(ntry, "AddtlNtryInf")

    def row(tx: Element | None, value: Decimal) -> Entry:
        tx_indicator = _text(tx, "CdtDbtInd") or indicator
        role = "Dbtr" if (value > 0 or (value == 0 and tx_indicator == "CRDT")) else "Cdtr"
        party_name, party_account = _party(tx, role) if tx is not None else (None, None)
        bank_reference = _text(tx, "Refs", "AcctSvcrRef") or common["bank_reference"]
        return Entry(
            amount=value,
            counterparty_name=party_name,
            counterparty_account=party_account,
            reference=_reference(tx),
            description=_remittance(tx) or entry_info,
            **{**common, "bank_reference": bank_reference},
        )

    if len(details) > 1:
        amounts = [_tx_amount(tx, name, number) for tx in details]
        if all(a is not None and (a[1] in (None, currency)) for a in amounts):
            signs = [_text(tx, "CdtDbtInd") or indicator for tx in details]
            split = [
                _signed(a[0], s, name, number, "TxDtls CdtDbtInd")  # type: ignore[index]
                for a, s in zip(amounts, signs, strict=True)
            ]
            if sum(split, Decimal(0)) == signed:
                return [row(tx, value) for tx, value in zip(details, split, strict=True)], number
        first = row(details[0], signed)
        joined = clean(" ".join(filter(None, (_remittance(tx) for tx in details))))
        return [replace(first, description=joined or entry_info)], number
    return [row(details[0] if details else None, signed)], number
