"""Column-name heuristics: whether a column's name reads as an identifier, a date, or a count
or an amount (tokens of snake_case and camelCase names)."""

from __future__ import annotations

import re

_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_ID_TOKENS = frozenset(
    "id ids no nr number ref reference iban account acct invoice code key uuid guid bic swift "
    "sku ean upc isbn serial seq sequence voucher receipt phone tel telephone mobile fax zip "
    "postcode postal".split()
)
_ID_SUFFIXES = ("id", "no", "nr", "num", "number", "ref", "code", "key")
_ID_PREFIXES = frozenset(
    "ref inv invoice doc acct acc account txn trans transaction tx cust customer client order po "
    "cheque chk serial seq batch voucher receipt vendor supplier item part line journal je entry "
    "bank card policy claim ticket case reg contract loan member employee emp user branch store "
    "sort routing payment pay check statement stmt".split()
)
_MONEY_TOKENS = frozenset(
    "amount amounts amt price balance bal debit credit dr cr total fee fees cost payment paid "
    "charge charges tax net gross sum value withdrawal withdrawals deposit deposits money "
    "subtotal".split()
)
_COUNT_TOKENS = frozenset(
    "count counts cnt qty quantity items units of age size score level rank days hours".split()
)
_DATE_TOKENS = frozenset(
    "date dt dte day time timestamp ts datetime posted posting booked booking valuta created "
    "updated modified settled settlement period when at on".split()
)


def _name_tokens(name: str) -> set[str]:
    return {token.lower() for token in _TOKEN_RE.findall(name)}


def _has_id_token(tokens: set[str]) -> bool:
    if tokens & _ID_TOKENS:
        return True
    for token in tokens:
        for suffix in _ID_SUFFIXES:
            if token.endswith(suffix) and token[: -len(suffix)] in _ID_PREFIXES:
                return True
    return False


def _is_id_name(name: str) -> bool:
    tokens = _name_tokens(name)
    blocked = _MONEY_TOKENS | _COUNT_TOKENS | _DATE_TOKENS
    return _has_id_token(tokens) and not tokens & blocked


def _is_date_name(name: str) -> bool:
    return bool(_name_tokens(name) & _DATE_TOKENS)


def _is_count_or_amount_name(name: str) -> bool:
    tokens = _name_tokens(name)
    return bool(tokens & (_MONEY_TOKENS | _COUNT_TOKENS | {"num", "number", "n", "nb"}))
