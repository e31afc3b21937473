"""The SQL both searches share: the organization and the optional filters as clauses on
`document_embeddings d` and `reconciliation_exceptions e`, the candidates' FROM and WHERE,
and the exception columns a hit returns. Candidates come from `EMBEDDINGS` (migration 0010):
under row-level security its full-text `@@` can use the GIN index, the table's cannot. Every
filter is on the embedding row (migration 0017 copies an exception's type, severity and status
onto it), so no candidate search joins the exception table; the hits' exception rows are
read with the same filters checked again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.embed.search.ivf import RESOLVED
from pipelines.work.exceptions_work import TYPES

# document_embeddings as the organization set sees it (every row for the owner), migration 0010
EMBEDDINGS = "organization_document_embeddings"
# texts matched before a type, severity or status filter keeps some of them (`_text_matches`)
FILTERED_MATCH_FACTOR = 4
# the filter values partial IVF indexes are built on (`ivf.type_index`): each known type, and
# RESOLVED
INDEXED = {("type", t) for t in TYPES} | {("status", RESOLVED)}
EXCEPTION_COLUMNS = (
    "e.id, e.reconciliation_id, e.type, e.severity, e.status, e.description, e.suggestion"
)


@dataclass
class Filters:
    """The organization and the optional filters as SQL clauses on `document_embeddings d`
    and on `reconciliation_exceptions e`, with their parameters."""

    # on the embedding's own column (reconciliation) and on the exception's columns copied
    # onto it (type, severity, status; migration 0017)
    on_reconciliation: str = ""
    copied: str = ""
    on_exception: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def on_embedding(self) -> str:
        """Every filter as clauses on `document_embeddings d`."""
        return self.on_reconciliation + self.copied


def _filters(
    reconciliation_id: int | None, type: str | None, severity: str | None, status: str | None
) -> Filters:
    found = Filters()
    for column, embedding, value in (
        ("reconciliation_id", "reconciliation_id", reconciliation_id),
        ("type", "exception_type", type),
        ("severity", "exception_severity", severity),
        ("status", "exception_status", status),
    ):
        if value is None:
            continue
        found.params[column] = value = value.upper() if isinstance(value, str) else value
        # a known type (and RESOLVED) is written into the statement: the planner matches a
        # partial index's predicate (the type's IVF indexes, `ivf.type_index`) against a
        # constant, never a parameter of a prepared statement's generic plan (psycopg prepares
        # after 5 uses); anything else stays a parameter
        given = f"'{value}'" if (column, value) in INDEXED else f":{column}"
        clause = f" AND d.{embedding} = {given}"
        if embedding == column:
            found.on_reconciliation += clause
        else:
            found.copied += clause
        found.on_exception += f" AND e.{column} = :{column}"
    return found


def _candidates_from(filters: Filters) -> str:
    """FROM and WHERE of a candidate search: the organization's embeddings of exceptions of
    the model within the filters."""
    return (
        f" FROM {EMBEDDINGS} d WHERE d.organization_id = :org"
        " AND d.document_type = :doc AND d.model_name = :model" + filters.on_embedding
    )


def _text_matches(filters: Filters, match: str) -> str:
    """A subquery of at most :cap (document_id, content_tsv) rows of the organization's texts
    of the model matching the tsquery expression `match`, within the filters.

    On the embeddings alone: a join to `reconciliation_exceptions` beside `@@` let its
    row-level security turn the GIN lookup into a scan of every embedding (82-125 ms against
    0.15 ms at 1M rows). The words are matched first, up to `FILTERED_MATCH_FACTOR` x :cap
    texts, and a type, severity or status filter kept on those: beside `@@`, the planner
    ANDed the GIN lookup with the B-tree of those columns (migration 0017), reading ~170,000
    entries of one type for a word found once (35 ms). The subquery's LIMIT keeps the two
    apart.
    """
    own = (
        f"SELECT d.document_id, d.content_tsv, d.exception_type, d.exception_severity,"
        f" d.exception_status FROM {EMBEDDINGS} d WHERE d.organization_id = :org"
        " AND d.document_type = :doc AND d.model_name = :model"
        + filters.on_reconciliation
        + f" AND d.content_tsv @@ {match}"
    )
    if not filters.copied:
        return f"({own} LIMIT :cap)"
    return (
        f"(SELECT d.document_id, d.content_tsv FROM ({own} LIMIT {FILTERED_MATCH_FACTOR} * :cap)"
        f" d WHERE TRUE{filters.copied} LIMIT :cap)"
    )


def _sql_params(filters: Filters) -> dict[str, Any]:
    return {k: v for k, v in filters.params.items() if not k.startswith("_")}
