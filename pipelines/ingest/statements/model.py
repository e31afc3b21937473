"""The parsed form every statement reader returns: entries and statements with exact amounts.

Each format module (`mt94x`, `camt`, `bai`, `ofx`) turns a file into a `ParsedStatements`:
one `Statement` per statement, account report or notification in the file, each with its
booked `Entry` rows in file order, amounts as `Decimal` signed from the account holder's side
(credits positive, debits negative) and the opening and closing balances where the file carries
them. `canonical.to_frame` makes the canonical table of it, `balance.check_balances` the
per-statement balance results. `statement_error` builds the one-line error a malformed file
raises, naming the file, the entry (its 1-based number in the file) and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from pipelines.ingest.readers.limits import FileFormatError


@dataclass(frozen=True)
class Entry:
    """One booked movement on the account (one row of the canonical table)."""

    amount: Decimal
    booking_date: date | None = None
    value_date: date | None = None
    currency: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    reference: str | None = None
    bank_reference: str | None = None
    description: str | None = None
    transaction_code: str | None = None


@dataclass(frozen=True)
class Statement:
    """One statement (or report, notification, BAI2 account) of a file."""

    statement_id: str | None
    account: str | None
    currency: str | None
    entries: tuple[Entry, ...] = ()
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None


@dataclass(frozen=True)
class ParsedStatements:
    """A whole statement file: its format ("mt940", "camt.053", "bai2", "ofx"...) and statements."""

    file_format: str
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    @property
    def entry_count(self) -> int:
        return sum(len(statement.entries) for statement in self.statements)


def statement_error(
    name: str, problem: str, *, entry: int | None = None, field_name: str = ""
) -> FileFormatError:
    """The one-line error for a malformed statement: file, entry number and field when known."""
    where = f"entry {entry}" if entry is not None else ""
    if field_name:
        where = f"{where}, field {field_name}" if where else f"field {field_name}"
    prefix = f"{name}: {where}: " if where else f"{name}: "
    return FileFormatError(
        f"{prefix}{problem}; the bank statement is malformed - ask the bank for the file again"
    )


_SPACES = re.compile(r"\s+")


def clean(text: object) -> str | None:
    """Text with runs of whitespace made one space, stripped; None when nothing is left."""
    if text is None:
        return None
    cleaned = _SPACES.sub(" ", str(text)).strip()
    return cleaned or None


def decimal_of(text: str | None, name: str, entry: int | None, field_name: str) -> Decimal:
    """An exact amount from text such as "1234.56" or "1234,56" (a comma is a decimal point)."""
    raw = (text or "").strip().replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not raw or not value.is_finite():
        raise statement_error(
            name, f"{(text or '')[:40]!r} is not an amount", entry=entry, field_name=field_name
        )
    return value


def amount_text(value: Decimal) -> str:
    """The exact amount as plain decimal text with at least two decimals ("-9" is "-9.00")."""
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(Decimal("0.01"))
    return format(value, "f")
