"""Labelled queries a reconciler would type, over `bench/retrieval_corpus.py`'s exceptions.

`labelled_queries(corpus, seed)` returns >= 100 `Query`s in seven classes, each with its
relevant exception ids and a grade (2: what the query asks for; 1: close to it, e.g. the
right kind of break for another counterparty), computed from the generator's facts only:

- fee_short: "payment short by a bank fee", "short by 15.00 bank charges Globex";
- duplicate: "duplicate posting Globex March" (that counterparty's duplicates that month: 2,
  its other duplicates: 1);
- reference: a literal reference as it appears ("INV-4821936", lower-case, or its digits);
- amount: "1,250.00", "1250", "$49.99" (exceptions whose bank or ledger amount it is);
- payee_typo: a misspelled payee, alone or with the kind of break;
- missing: "ledger entry with no bank line for Initech", "bank debit not in the ledger HOOLI";
- date: "posted 5 days late", "value date two weeks after the ledger date Acme".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.retrieval_corpus import MONTHS, Corpus
from bench.retrieval_world import COUNTERPARTIES, typo

CLASSES = ("fee_short", "duplicate", "reference", "amount", "payee_typo", "missing", "date")
NUMBER_WORDS = {
    4: "four",
    5: "five",
    6: "six",
    7: "a week",
    10: "ten",
    14: "two weeks",
    21: "three weeks",
    30: "a month",
}


@dataclass(frozen=True)
class Query:
    """One query: its class, text and graded relevant exception ids."""

    qid: str
    cls: str
    text: str
    relevant: dict[int, int]


Facts = dict[str, Any]


def _grade(
    corpus: Corpus, exact: Callable[[Facts], bool], near: Callable[[Facts], bool]
) -> dict[int, int]:
    out = {}
    for i, f in corpus.facts.items():
        if exact(f):
            out[i] = 2
        elif near(f):
            out[i] = 1
    return out


def _never(f: Facts) -> bool:
    return False


def _fee_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    fee = lambda f: f["kind"] == "fee_short"  # noqa: E731
    out = []
    for text in (
        "payment short by a bank fee",
        "bank charges deducted from the payment",
        "customer paid less, transfer fee taken by the bank",
        "received amount lower because of bank fees",
        "wire fee deducted",
        "short payment due to bank charge",
    ):
        out.append((text, _grade(corpus, fee, _never)))
    for amount, text in (
        (15.0, "short by 15.00 bank fee"),
        (25.0, "25.00 short, bank charges"),
        (2.5, "payment 2.50 short"),
        (15.0, "15 deducted by the bank"),
        (25.0, "bank took 25 from the transfer"),
    ):
        out.append((text, _grade(corpus, lambda f, a=amount: fee(f) and f["fee"] == a, fee)))
    cps = rng.sample(range(12), 5)
    for cp in cps:
        short = COUNTERPARTIES[cp][2]
        text = rng.choice(
            (
                "{} payment short by a bank fee",
                "bank fee deducted {}",
                "{} paid short, bank charges",
            )
        )
        out.append(
            (text.format(short), _grade(corpus, lambda f, c=cp: fee(f) and f["cp"] == c, fee))
        )
    return out


def _duplicate_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    dup = lambda f: f["kind"] == "duplicate"  # noqa: E731
    seen = sorted({(f["cp"], f["month"]) for f in corpus.facts.values() if dup(f)})
    out = [
        ("duplicate posting", _grade(corpus, dup, _never)),
        (
            "same bank transaction booked twice",
            _grade(corpus, lambda f: dup(f) and f.get("side") == "source", dup),
        ),
        (
            "ledger entry posted twice",
            _grade(corpus, lambda f: dup(f) and f.get("side") == "target", dup),
        ),
    ]
    for cp, month in rng.sample(seen, 13):
        short = COUNTERPARTIES[cp][2]
        text = rng.choice(
            (
                "duplicate posting {} {}",
                "{} charged twice in {}",
                "{} payment duplicated {}",
                "double entry {} {}",
            )
        )
        out.append(
            (
                text.format(short, month),
                _grade(
                    corpus,
                    lambda f, c=cp, m=month: dup(f) and f["cp"] == c and f["month"] == m,
                    lambda f, c=cp: dup(f) and f["cp"] == c,
                ),
            )
        )
    return out


def _reference_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    with_ref = sorted(i for i, f in corpus.facts.items() if f["references"])
    out = []
    for i in rng.sample(with_ref, 20):
        ref = sorted(corpus.facts[i]["references"])[0]
        style = rng.random()
        text = ref if style < 0.6 else ref.lower() if style < 0.8 else ref.split("-")[1]
        out.append((text, _grade(corpus, lambda f, r=ref: r in f["references"], _never)))
    return out


def _amount_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    counts: dict[float, int] = {}
    for f in corpus.facts.values():
        for a in f["amounts"]:
            counts[a] = counts.get(a, 0) + 1
    round_ones = sorted(a for a, n in counts.items() if n >= 5)
    rare = sorted(a for a, n in counts.items() if n == 1 and a >= 100)
    picked = rng.sample(round_ones, min(6, len(round_ones))) + rng.sample(rare, 9)
    out = []
    for amount in picked:
        style = rng.randrange(4)
        text = (
            f"{amount:,.2f}",
            f"{amount:.2f}",
            f"{amount:g}" if amount == int(amount) else f"{amount:.2f}",
            f"${amount:,.2f}",
        )[style]
        out.append((text, _grade(corpus, lambda f, a=amount: a in f["amounts"], _never)))
    return out


def _typo_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    out = []
    phrases = (
        ("", None),
        ("missing payment", ("missing_bank_line", "missing_ledger_entry")),
        ("duplicate", ("duplicate",)),
        ("amount difference", ("fee_short", "amount_other")),
        ("late payment", ("date_lag",)),
    )
    for cp in rng.sample(range(30), 15):
        ledger_name, bank_name, _, _ = COUNTERPARTIES[cp]
        name = typo(rng, rng.choice((ledger_name, bank_name.title())))
        phrase, kinds = rng.choice(phrases)
        text = f"{name} {phrase}".strip()
        if kinds is None:
            relevant = _grade(corpus, lambda f, c=cp: f["cp"] == c, _never)
        else:
            relevant = _grade(
                corpus,
                lambda f, c=cp, k=kinds: f["cp"] == c and f["kind"] in k,
                lambda f, c=cp: f["cp"] == c,
            )
        out.append((text, relevant))
    return out


def _missing_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    ledger_only = lambda f: f["kind"] == "missing_bank_line"  # noqa: E731
    bank_only = lambda f: f["kind"] == "missing_ledger_entry"  # noqa: E731
    out = [
        ("ledger entry with no bank line", _grade(corpus, ledger_only, bank_only)),
        ("bank transaction not recorded in the ledger", _grade(corpus, bank_only, ledger_only)),
        (
            "bank line without a reference and no ledger entry",
            _grade(corpus, lambda f: bank_only(f) and f.get("blank_reference"), bank_only),
        ),
    ]
    for cp in rng.sample(range(24), 12):
        ledger_name, bank_name, short, _ = COUNTERPARTIES[cp]
        if rng.random() < 0.5:
            text = rng.choice(
                (
                    "ledger entry with no bank line for {}",
                    "{} invoice never paid",
                    "no bank payment found for {}",
                )
            ).format(short)
            exact, near = ledger_only, bank_only
        else:
            text = rng.choice(
                (
                    "bank debit not in the ledger {}",
                    "{} payment missing from ledger",
                    "unrecorded bank transaction {}",
                )
            ).format(bank_name)
            exact, near = bank_only, ledger_only
        out.append(
            (
                text,
                _grade(
                    corpus,
                    lambda f, c=cp, e=exact: e(f) and f["cp"] == c,
                    lambda f, c=cp, n=near: n(f) and f["cp"] == c,
                ),
            )
        )
    return out


def _date_queries(corpus: Corpus, rng: random.Random) -> list[tuple[str, dict[int, int]]]:
    late = lambda f: f["kind"] == "date_lag"  # noqa: E731
    out = [
        ("posted late", _grade(corpus, lambda f: late(f) and f["lag"] > 0, late)),
        (
            "bank value date earlier than the ledger posting date",
            _grade(corpus, lambda f: late(f) and f["lag"] < 0, late),
        ),
    ]
    for lag in rng.sample(list(NUMBER_WORDS), 7):
        word = NUMBER_WORDS[lag]
        text = rng.choice(
            (
                f"posted {word} days late",
                f"posted {lag} days late",
                f"value date {lag} days after the ledger date",
                f"booked {word} late",
            )
        ).replace("a week days", "a week")
        text = text.replace("two weeks days", "two weeks").replace("a month days", "a month")
        text = text.replace("three weeks days", "three weeks")
        out.append(
            (
                text,
                _grade(
                    corpus,
                    lambda f, n=lag: late(f) and f["lag"] == n,
                    lambda f, n=lag: late(f) and abs(f["lag"] - n) <= 2,
                ),
            )
        )
    for cp in rng.sample(range(20), 6):
        short = COUNTERPARTIES[cp][2]
        text = rng.choice(
            ("{} payment posted late", "{} value date days after booking", "late posting {}")
        ).format(short)
        out.append((text, _grade(corpus, lambda f, c=cp: late(f) and f["cp"] == c, late)))
    return out


def labelled_queries(corpus: Corpus, seed: int = 7) -> list[Query]:
    """The query set; every query has at least one relevant exception."""
    rng = random.Random(seed)
    makers = {
        "fee_short": _fee_queries,
        "duplicate": _duplicate_queries,
        "reference": _reference_queries,
        "amount": _amount_queries,
        "payee_typo": _typo_queries,
        "missing": _missing_queries,
        "date": _date_queries,
    }
    queries = []
    for cls in CLASSES:
        for n, (text, relevant) in enumerate(makers[cls](corpus, rng), start=1):
            if relevant:
                queries.append(Query(f"{cls}-{n:02d}", cls, text, relevant))
    return queries


__all__ = ["CLASSES", "MONTHS", "Query", "labelled_queries"]
