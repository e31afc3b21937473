"""The rule proposal's weights and thresholds: how pairs are scored, how many values are
sampled, and the evidence each kind of matching rule needs.
"""

from __future__ import annotations

NAME_WEIGHT = 0.35
"""Share of the name similarity in a pair's score (the rest is the value profile)."""
MIN_SCORE = 0.4
"""Pairs scoring below this are never mapped."""
SAMPLE_SIZE = 3_000
"""Values sampled per column for the overlap and distribution checks."""
FUZZY_SOURCE_SAMPLE = 300
FUZZY_TARGET_SAMPLE = 3_000
LOW_CARDINALITY = 50
"""A column with at most this many distinct values is a code (currency, status)."""
ID_DISTINCT_RATIO = 0.9
"""Distinct values per filled row from which a text column counts as an identifier."""
EXACT_OVERLAP = 0.8
"""Cross overlap an identifier needs to become an EXACT rule."""
FUZZY_SHARE = 0.5
"""Share of sampled values with a Jaro-Winkler >= FUZZY_THRESHOLD partner for a FUZZY rule."""
FUZZY_THRESHOLD = 0.85
NUMBER_EVIDENCE = 0.6
DATE_RANGE_OVERLAP = 0.5
DATE_TOLERANCE_DAYS = 3
MATCH_THRESHOLD = 0.9
STATEMENT_TEXT_COLUMNS = frozenset({"counterparty_name", "description"})
"""Columns of the canonical bank statement table (pipelines/ingest/statements) that hold names
and free text as the bank wrote them (capitalised, abbreviated): compared FUZZY, never EXACT
as identifiers however distinct they are."""
SEED = 20_240_601
