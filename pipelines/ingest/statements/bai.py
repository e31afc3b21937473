"""BAI2 cash management balance reports (US), read with the `bai2` package.

`bai2.parse_from_string` checks the record structure and every control total and record count
(a truncated or edited file is refused). Each account (`03` record) of each group (`02`)
becomes one statement: its id is the group's as-of date and the account number, its opening
balance the `010` (opening ledger) summary and its closing balance the `015` (closing
ledger) summary. Each `16` transaction detail is an entry: type codes 100-399 are credits,
400-699 debits (the package's type-code table); amounts carry no decimal point, so they are
scaled by the currency's minor unit (2, 0 for JPY and the like, 3 for BHD/KWD...). The booking
and value date is the group's as-of date; the customer reference, bank reference and the
text (with its `88` continuations) come from the record, the transaction code is the BAI type
code.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bai2 import bai2
from bai2.constants import TypeCodeTransaction

from pipelines.ingest.statements.model import (
    Entry,
    ParsedStatements,
    Statement,
    clean,
    statement_error,
)

_ZERO_DECIMALS = {"JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "PYG", "UGX"}
_THREE_DECIMALS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}


def _scale(amount: int | None, currency: str | None) -> Decimal:
    places = 0 if currency in _ZERO_DECIMALS else 3 if currency in _THREE_DECIMALS else 2
    return Decimal(amount or 0).scaleb(-places)


def parse(data: bytes, name: str, file_format: str) -> ParsedStatements:
    """Parse a BAI2 file into one statement per account; see the module doc."""
    text = data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    try:
        document = bai2.parse_from_string(text.strip("\n"), check_integrity=True)
    except Exception as exc:  # ParsingException, IntegrityException, ValueError from a field
        raise statement_error(name, f"cannot be read as BAI2 ({str(exc)[:160]})") from exc
    statements = []
    number = 0
    for group in document.children:
        as_of = group.header.as_of_date
        for account in group.children:
            currency = account.header.currency or group.header.currency
            entries = []
            for detail in account.children:
                number += 1
                entries.append(_entry(detail, as_of, currency, name, number))
            summaries = {s.type_code.code: s.amount for s in account.header.summary_items}
            number_ = clean(account.header.customer_account_number)
            statements.append(
                Statement(
                    statement_id=f"{as_of.isoformat() if as_of else ''} {number_ or ''}".strip(),
                    account=number_,
                    currency=currency,
                    entries=tuple(entries),
                    opening_balance=_scale(summaries["010"], currency)
                    if summaries.get("010") is not None
                    else None,
                    closing_balance=_scale(summaries["015"], currency)
                    if summaries.get("015") is not None
                    else None,
                )
            )
    return ParsedStatements(file_format, tuple(statements))


def _entry(detail: Any, as_of: Any, currency: str | None, name: str, number: int) -> Entry:
    type_code = detail.type_code
    if type_code is None or type_code.transaction not in (
        TypeCodeTransaction.credit,
        TypeCodeTransaction.debit,
    ):
        code = getattr(type_code, "code", None)
        raise statement_error(
            name,
            f"type code {code!r} is neither a credit nor a debit",
            entry=number,
            field_name="16 type code",
        )
    if detail.amount is None:
        raise statement_error(name, "no amount", entry=number, field_name="16 amount")
    amount = _scale(detail.amount, currency)
    if type_code.transaction == TypeCodeTransaction.debit:
        amount = -amount
    return Entry(
        amount=amount,
        booking_date=as_of,
        value_date=as_of,
        currency=currency,
        reference=clean(detail.customer_reference),
        bank_reference=clean(detail.bank_reference),
        description=clean(detail.text),
        transaction_code=type_code.code,
    )
