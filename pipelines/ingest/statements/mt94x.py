"""SWIFT MT940 statements and MT942 interim reports, read with the `mt-940` package.

`mt940.parse_statements` splits the file on `:20:` (so a file of several statements gives
several, each with its own balances) and parses the tags with every opt-in fix of
`mt940.Options.all()` (a reversal of a credit `RC` is negative, lower-case marks, a byte-order
mark, unbounded `:86:` details, `?31` as the counterparty IBAN). The package's processors
already split the German/Polish structured `:86:` (`?20`...`?63` sub-fields and the SEPA
`EREF+`/`SVWZ+` keywords). What the banks put in `:86:` otherwise differs, and is read here:

- slash-coded details (ING, ABN AMRO and Rabobank SEPA formats): `/EREF/.../NAME/.../REMI/...`,
  ING's `/CNTP/<account>/<bic>/<name>/<city>/`, Rabobank's `/BENM//NAME/...`;
- `>NN` sub-fields (Triodos): `>20`-`>29` remittance, `>31` account, `>32`/`>33` name;
- mBank's `; `-separated fields after the code (`911 TRANSAKCJA COLLECT; ...`): `Z RACH.:` or
  `NA RACH.:` the counterparty account (from, to), `OD:` or `DLA:` the counterparty (from, for;
  its first line is the name, the next ones the address), `TYT.:` the description (title);
- Sberbank (Hungary), with no `:86:` but `:NS:` lines `NNtext` under the `:61:`: `15`+`16` the
  counterparty name (cut at a fixed width, so joined as is), `09` the description, `33`+`34`
  the counterparty's bank code and account (the 8+16 digits of a Hungarian account number);
- free text (ABN AMRO's older format, ING's older format): the description.

The `:61:` line gives the value date, the booking (entry) date, the signed amount, the
transaction type (`NTRF`, `N192`...), the customer reference (`NONREF` means none) and the
bank reference after `//`; the supplementary details after it are the counterparty account
(Rabobank) or name, except a bank's own transaction type text such as mBank's
`911-TRANSAKCJA IPH` (three digits and a dash), which is the description when `:86:` gives none.
Balances: `:60F:`/`:60M:` opening, `:62F:`/`:62M:` closing.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

import mt940

from pipelines.ingest.readers.sniffing import _guess_legacy_encoding
from pipelines.ingest.statements.model import (
    Entry,
    ParsedStatements,
    Statement,
    clean,
    statement_error,
)

_NO_REFERENCE = {"NONREF", "NOTPROVIDED", "NONE", ""}
_SLASH_CODES = (
    "TRTP|IBAN|BIC|NAME|REMI|EREF|CSID|MARF|CNTP|ORDP|BENM|ADDR|PREF|RTRN|ISDT|CDTRREF|"
    "CDTRREFTP|SCOR|ISSR|USTD|STRD|ULTC|ULTD|ULTB|PURP|FX|EXCH|CHGS|RTYP|ID|BUSP|SVCL|PERI"
)
_SLASH_CODE = re.compile(rf"/({_SLASH_CODES})/")
_ANGLE_FIELD = re.compile(r">(\d{2})")
_LINE_61 = re.compile(r"(?m)^:61:(.*)$")
# 6!n[4!n]2a[1!a]15d1!a3!c: value date, entry date, mark, funds code, amount, type; the
# amount's decimal comma is required by SWIFT, but some banks leave it out of whole amounts
# (Knab: `C500NTRF`), which the package reads as 500
_VALID_61 = re.compile(r"\d{6}(\d{4}|\s{4})?R?[DC][A-Z]?\s?\d{1,15}(,\d*)?[A-Z][A-Z0-9 ]{3}", re.I)
_BANK_TYPE_TEXT = re.compile(r"^\d{3}-\D")  # mBank's "911-TRANSAKCJA IPH" after the :61:
_MBANK_FIELD = re.compile(r"(?:^|;)\s*(Z RACH\.|NA RACH\.|OD|DLA|TYT\.|ID IPH|TNR):")
_MBANK_START = re.compile(r"^\s*\d{3} [^;\n]*;")
_IBAN_LIKE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$|^[A-Z]?\d[\d.\- ]{5,}\d$")


# a SEPA end-to-end reference (EREF+) is at most 35 characters; a German structured `:86:`
# sub-field ?20-?29 at most 27, so a value goes on into the next one only when it is full
SEPA_REFERENCE_MAX = 35
SUBFIELD_WIDTH = 27
_SUBFIELD = re.compile(r"\?(\d{2})")
_SEPA_KEYWORD = re.compile(r"^[A-Z]{4}\+")


def _keep_raw_details(transactions: Any, tag: Any, tag_dict: dict[str, Any]) -> dict[str, Any]:
    """Before the package's own processor (which takes the text apart and drops it): the
    `:86:` text as it was, for `_end_to_end`."""
    tag_dict["raw_details"] = tag_dict.get("transaction_details")
    return tag_dict


_PROCESSORS = {"pre_transaction_details": [_keep_raw_details]}


def _end_to_end(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(EREF+ reference, text glued onto it) of a structured `:86:`. The package joins ?20-?29
    and splits on the SEPA keywords, so text after the reference without a keyword of its own
    (a return's `MTLG:Grund ...`) became part of it: longer than SEPA allows, the reference is
    read from its own sub-field again, continued only through full ones."""
    joined = str(data.get("end_to_end_reference") or "")
    if len(joined) <= SEPA_REFERENCE_MAX:
        return joined or None, None
    raw = "".join(line.strip("\r") for line in str(data.get("raw_details") or "").splitlines())
    marks = list(_SUBFIELD.finditer(raw))
    parts = [
        (m.group(1), raw[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(raw)])
        for i, m in enumerate(marks)
    ]
    for i, (code, text) in enumerate(parts):
        if code.startswith("2") and text.startswith("EREF+"):
            value, width = text[len("EREF+") :], len(text)
            for next_code, more in parts[i + 1 :]:
                if width < SUBFIELD_WIDTH or not next_code.startswith("2"):
                    break
                if _SEPA_KEYWORD.match(more):
                    break
                value, width = value + more, len(more)
            value = value.strip()
            if value and joined.startswith(value):
                return value, clean(joined[len(value) :])
    return joined, None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode(_guess_legacy_encoding(data, True) or "cp1252", errors="replace")


def parse(data: bytes, name: str, file_format: str) -> ParsedStatements:
    """Parse an MT940/MT942 file into statements; see the module doc."""
    text = _decode(data).replace("\r\n", "\n").replace("\r", "\n")
    _check_statement_lines(text, name)
    try:
        blocks = mt940.parse_statements(text, options=mt940.Options.all(), processors=_PROCESSORS)
    except Exception as exc:  # the package raises RuntimeError with (message, tag, value)
        raise _tag_error(name, text, exc) from exc
    statements: list[Statement] = []
    number = 0
    for block in blocks:
        entries = []
        for transaction in block.transactions:
            number += 1
            entries.append(_entry(transaction.data, name, number))
        data_ = block.data
        opening = _balance(data_, "final_opening_balance", "opening_balance")
        opening = (
            opening if opening is not None else _balance(data_, "intermediate_opening_balance")
        )
        closing = _balance(data_, "final_closing_balance", "closing_balance")
        closing = (
            closing if closing is not None else _balance(data_, "intermediate_closing_balance")
        )
        statement_number = clean(data_.get("statement_number"))
        sequence = clean(data_.get("sequence_number"))
        statement_id = clean(data_.get("transaction_reference"))
        if statement_number:
            suffix = (
                f"{statement_number}/{sequence}"
                if sequence and sequence != "None"
                else (statement_number)
            )
            statement_id = f"{statement_id} {suffix}" if statement_id else suffix
        statements.append(
            Statement(
                statement_id=statement_id,
                account=clean(data_.get("account_identification")),
                currency=block.currency,
                entries=tuple(entries),
                opening_balance=opening,
                closing_balance=closing,
            )
        )
    return ParsedStatements(file_format, tuple(statements))


def _check_statement_lines(text: str, name: str) -> None:
    """Refuse a `:61:` line the package would misread (it takes `7X0,25` as 7 and a reference)."""
    for number, match in enumerate(_LINE_61.finditer(text), start=1):
        if not _VALID_61.match(match.group(1)):
            raise statement_error(
                name,
                f"{match.group(1)[:40]!r} is not a value date, debit/credit mark, amount and "
                "transaction type",
                entry=number,
                field_name=":61: statement line",
            )


def _tag_error(name: str, text: str, exc: BaseException) -> Exception:
    args = getattr(exc, "args", ())
    tag = args[1] if len(args) > 2 else None
    value = str(args[2]) if len(args) > 2 else ""
    tag_id = getattr(tag, "id", None)
    shown = value.strip().splitlines()[0][:60] if value.strip() else ""
    if tag_id is not None:
        entry = None
        if str(tag_id) in ("61", "86") and value:
            # the :61: lines up to the value: a :61:'s own line is among them, as is the :61:
            # an :86: follows
            at = text.find(value)
            entry = max(len(re.findall(r"(?m)^:61:", text[: at if at >= 0 else len(text)])), 1)
        return statement_error(
            name, f"cannot read {shown!r}", entry=entry, field_name=f":{tag_id}: tag"
        )
    return statement_error(name, f"cannot be read as MT940 ({str(exc)[:120]})")


def _balance(data: dict[str, Any], *keys: str) -> Decimal | None:
    for key in keys:
        balance = data.get(key)
        if balance is not None:
            return Decimal(balance.amount.amount)
    return None


def _day(value: Any) -> date | None:
    if value is None:
        return None
    return date(value.year, value.month, value.day)


def _reference(value: Any) -> str | None:
    text = clean(value)
    return None if text is None or text.upper() in _NO_REFERENCE else text


def _entry(data: dict[str, Any], name: str, number: int) -> Entry:
    amount = data.get("amount")
    if amount is None:
        raise statement_error(name, "no amount", entry=number, field_name=":61: statement line")
    details = _details(data)
    extra = clean(data.get("extra_details"))
    name_ = details.get("name")
    account = details.get("account")
    description = details.get("description")
    if extra and _BANK_TYPE_TEXT.match(extra):
        description = description or extra
    elif extra and not account and _IBAN_LIKE.match(extra.replace(" ", "")):
        account = extra
    elif extra and not name_ and not _IBAN_LIKE.match(extra.replace(" ", "")):
        name_ = extra
    reference = details.get("reference") or _reference(data.get("customer_reference"))
    code = clean(data.get("id"))
    gvc = clean(data.get("transaction_code"))
    return Entry(
        amount=Decimal(amount.amount),
        booking_date=_day(data.get("entry_date") or data.get("date")),
        value_date=_day(data.get("date")),
        currency=clean(data.get("currency")) or clean(getattr(amount, "currency", None)),
        counterparty_name=name_,
        counterparty_account=account,
        reference=reference,
        bank_reference=_reference(data.get("bank_reference")),
        description=description,
        transaction_code=f"{code} {gvc}" if code and gvc and gvc != code else code or gvc,
    )


def _details(data: dict[str, Any]) -> dict[str, str | None]:
    """Counterparty, reference and description of one `:86:`, whatever the bank's layout."""
    if "transaction_details" not in data and ("non_swift_15" in data or "non_swift_09" in data):
        return _non_swift_details(data)  # Sberbank: :NS: lines instead of :86:
    if "transaction_details" not in data:  # structured ?NN details, split by the package
        purpose = clean(data.get("purpose"))
        posting = clean(data.get("posting_text"))
        reference, glued = _end_to_end(data)
        return {
            "name": clean(data.get("applicant_name")),
            "account": clean(data.get("applicant_iban") or data.get("gvc_applicant_iban")),
            "reference": _reference(reference),
            "description": purpose or glued or posting,
        }
    raw = str(data.get("transaction_details") or "")
    one_line = raw.replace("\n", "")
    if _SLASH_CODE.search(one_line) and one_line.lstrip().startswith("/"):
        return _slash_details(one_line)
    if _ANGLE_FIELD.search(raw):
        return _angle_details(raw)
    if _MBANK_START.match(raw) and _MBANK_FIELD.search(raw):
        return _mbank_details(raw)
    return {"name": None, "account": None, "reference": None, "description": clean(raw)}


def _slash_details(text: str) -> dict[str, str | None]:
    fields: dict[str, str] = {}
    matches = list(_SLASH_CODE.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[match.end() : end].strip("/ ")
        fields.setdefault(match.group(1), value)
    name, account = fields.get("NAME"), fields.get("IBAN")
    if "CNTP" in fields:  # ING: /CNTP/account/bic/name/city/
        parts = fields["CNTP"].split("/")
        account = account or (parts[0] if parts else None)
        name = name or (parts[2] if len(parts) > 2 else None)
    remittance = fields.get("REMI", "")
    for prefix in ("USTD//", "USTD/", "STRD/CUR/", "STRD/"):
        if remittance.startswith(prefix):
            remittance = remittance[len(prefix) :]
    return {
        "name": clean(name),
        "account": clean(account),
        "reference": _reference(fields.get("EREF")) or _reference(fields.get("CDTRREF")),
        "description": clean(remittance.replace("/", " ")) or clean(fields.get("TRTP")),
    }


def _angle_details(text: str) -> dict[str, str | None]:
    parts: dict[str, list[str]] = {}
    matches = list(_ANGLE_FIELD.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        parts.setdefault(match.group(1), []).append(text[match.end() : end].replace("\n", ""))
    remittance = "".join("".join(parts.get(str(n), [])) for n in range(20, 30)) or " ".join(
        parts.get("00", [])
    )
    return {
        "name": clean(" ".join(parts.get("32", []) + parts.get("33", []))),
        "account": clean(" ".join(parts.get("31", []) or parts.get("10", []))),
        "reference": None,
        "description": clean(remittance),
    }


def _mbank_details(text: str) -> dict[str, str | None]:
    fields: dict[str, str] = {}
    matches = list(_MBANK_FIELD.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields.setdefault(match.group(1), text[match.end() : end].strip(" ;\n"))
    party = fields.get("OD") or fields.get("DLA") or ""
    account = fields.get("Z RACH.") or fields.get("NA RACH.") or ""
    return {
        "name": clean(party.split("\n", 1)[0]),  # the lines after the first are the address
        "account": clean(account.replace("\n", "").replace(" ", "")),
        "reference": None,
        "description": clean(fields.get("TYT.")) or clean(text[: matches[0].start()]),
    }


def _non_swift_details(data: dict[str, Any]) -> dict[str, str | None]:
    def part(key: str) -> str:
        return str(data.get(f"non_swift_{key}") or "")

    bank_code, number = part("33").strip(), part("34").strip()
    return {
        "name": clean(part("15") + part("16")),
        "account": clean(bank_code + number) if number else None,
        "reference": None,
        "description": clean(part("09")),
    }
