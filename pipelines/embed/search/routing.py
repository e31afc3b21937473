"""Which searches' lists a query's ranking fuses: the words search's for a reference or a
quoted phrase (`wants_words`), or when the vectors found too little (`needs_words`). Both
searches run every time, side by side; this decides what is fused.
"""

from __future__ import annotations

import re

WEAK_SIMILARITY = 0.5
IDENTIFIER = re.compile(r"\w*\d\w*")


def wants_words(text: str) -> bool:
    """Whether the query holds something vectors are poor at matching exactly (a token with a
    digit: a reference, an id, an amount; or a quoted phrase): the words search's list is then
    fused whatever the vectors found."""
    return bool(IDENTIFIER.search(text)) or '"' in text


def needs_words(text: str, vector_hits: list[tuple[int, float]], limit: int) -> bool:
    """Whether the full-text search's list is fused with the vectors' (both ran, side by side).

    It is when the query holds something vectors are poor at matching exactly
    (`wants_words`), and as the fallback when the vector search came back short or with
    nothing close (best cosine similarity below WEAK_SIMILARITY). A plain-words question is
    answered by the vectors alone.
    """
    if wants_words(text):
        return True
    if len(vector_hits) < limit or not vector_hits:
        return True
    return 1.0 - vector_hits[0][1] < WEAK_SIMILARITY
