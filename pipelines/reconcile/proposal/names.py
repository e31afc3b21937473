"""Name similarity: column names as words (abbreviations spelled out), embedded with the
embedder the caller hands in (`resources.embedder`: the packaged all-MiniLM-L6-v2 through
`EmbedderResource`, or its hashing fake in unit tests) and blended with rapidfuzz string
similarity.
"""

from __future__ import annotations

import re

import numpy as np

from pipelines.reconcile.proposal.columns import _Column
from resources.embedder import Embedder, encode_queries

_ABBREVIATIONS = {
    "no": "number",
    "nr": "number",
    "num": "number",
    "nbr": "number",
    "ref": "reference",
    "amt": "amount",
    "ccy": "currency",
    "cur": "currency",
    "curr": "currency",
    "dt": "date",
    "txn": "transaction",
    "trx": "transaction",
    "trans": "transaction",
    "desc": "description",
    "descr": "description",
    "qty": "quantity",
    "acct": "account",
    "acc": "account",
    "cpty": "counterparty",
    "val": "value",
    "doc": "document",
    "inv": "invoice",
    "cust": "customer",
    "addr": "address",
    "bal": "balance",
}
_TOKEN_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def name_words(name: str) -> str:
    """A column name as words for the embedding: split, lower case, abbreviations spelled out."""
    tokens = [t.lower() for t in _TOKEN_RE.findall(name)]
    return " ".join(_ABBREVIATIONS.get(t, t) for t in tokens) or name.lower()


def _name_scores(source: list[_Column], target: list[_Column], embedder: Embedder) -> np.ndarray:
    from rapidfuzz import fuzz

    s_words = [name_words(c.name) for c in source]
    t_words = [name_words(c.name) for c in target]
    vectors = encode_queries(embedder, s_words + t_words).astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1.0, norms)
    cosine = np.clip(vectors[: len(source)] @ vectors[len(source) :].T, 0.0, 1.0)
    strings = np.array(
        [
            [(fuzz.token_set_ratio(a, b) + fuzz.ratio(a, b)) / 200.0 for b in t_words]
            for a in s_words
        ]
    )
    return 0.6 * cosine + 0.4 * strings
