"""The balance check of a statement: opening balance + entries = closing balance.

`check_balances` gives one `BalanceResult` per statement of a parsed file. A statement without
both balances (MT942, camt.054, OFX, a BAI2 account without `010`/`015`) is not checked
(`checked` False, `passed` True). Sums are exact (`Decimal`); `difference` is the closing balance
less the expected one. Real files often carry interim or partial balances, so a failure is a
warning (the `statement_balances` asset check) and the file lands all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pipelines.ingest.statements.model import ParsedStatements, amount_text


@dataclass(frozen=True)
class BalanceResult:
    """One statement's balance check."""

    statement_id: str | None
    account: str | None
    entries: int
    entries_total: Decimal
    opening_balance: Decimal | None
    closing_balance: Decimal | None

    @property
    def checked(self) -> bool:
        return self.opening_balance is not None and self.closing_balance is not None

    @property
    def expected_closing(self) -> Decimal | None:
        if self.opening_balance is None:
            return None
        return self.opening_balance + self.entries_total

    @property
    def difference(self) -> Decimal:
        expected = self.expected_closing
        if expected is None or self.closing_balance is None:
            return Decimal(0)
        return self.closing_balance - expected

    @property
    def passed(self) -> bool:
        return self.difference == 0

    def as_data(self) -> dict[str, object]:
        """JSON-friendly form (amounts as exact decimal text) for metadata and messages."""

        def text(value: Decimal | None) -> str | None:
            return None if value is None else amount_text(value)

        return {
            "statement_id": self.statement_id,
            "account": self.account,
            "entries": self.entries,
            "checked": self.checked,
            "passed": self.passed,
            "opening_balance": text(self.opening_balance),
            "entries_total": text(self.entries_total),
            "expected_closing": text(self.expected_closing),
            "closing_balance": text(self.closing_balance),
            "difference": text(self.difference),
        }


def check_balances(parsed: ParsedStatements) -> list[BalanceResult]:
    """One balance result per statement of the file, in file order."""
    return [
        BalanceResult(
            statement_id=statement.statement_id,
            account=statement.account,
            entries=len(statement.entries),
            entries_total=sum((entry.amount for entry in statement.entries), Decimal(0)),
            opening_balance=statement.opening_balance,
            closing_balance=statement.closing_balance,
        )
        for statement in parsed.statements
    ]
