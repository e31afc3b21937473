"""The canonical statement table: one row per booked entry, the same columns for every format.

`to_frame` gives `_row_number` (1-based, in file order over all statements of the file) and
`COLUMNS`, every cell as text as the table readers give it: dates ISO `yyyy-MM-dd`, amounts
exact plain decimals signed from the account holder's side (debits negative, at least two
decimals). Profiling then types them as for any file (`amount` DECIMAL, the dates DATE, the
references and accounts STRING by their names). The cell size limit of every file
(`MAX_CELL_BYTES`) applies.
"""

from __future__ import annotations

import polars as pl

from pipelines.ingest.readers.finishing import _check_size
from pipelines.ingest.readers.limits import ROW_NUMBER, FileFormatError
from pipelines.ingest.statements.model import ParsedStatements, amount_text

COLUMNS = (
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "counterparty_name",
    "counterparty_account",
    "reference",
    "bank_reference",
    "description",
    "transaction_code",
    "account",
    "statement_id",
)


def to_frame(parsed: ParsedStatements, name: str) -> pl.DataFrame:
    """The canonical table of a parsed statement file; see the module doc."""
    columns: dict[str, list[str | None]] = {column: [] for column in COLUMNS}
    for statement in parsed.statements:
        for entry in statement.entries:
            values = {
                "booking_date": entry.booking_date.isoformat() if entry.booking_date else None,
                "value_date": entry.value_date.isoformat() if entry.value_date else None,
                "amount": amount_text(entry.amount),
                "currency": entry.currency or statement.currency,
                "counterparty_name": entry.counterparty_name,
                "counterparty_account": entry.counterparty_account,
                "reference": entry.reference,
                "bank_reference": entry.bank_reference,
                "description": entry.description,
                "transaction_code": entry.transaction_code,
                "account": statement.account,
                "statement_id": statement.statement_id,
            }
            for column in COLUMNS:
                columns[column].append(values[column])
    if not columns["amount"]:
        raise FileFormatError(
            f"{name}: is a {parsed.file_format} bank statement with no booked entries; there "
            "is nothing to reconcile in it"
        )
    data = pl.DataFrame(columns, schema=dict.fromkeys(COLUMNS, pl.String))
    _check_size(name, list(COLUMNS), data)
    return data.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER), pl.all())
