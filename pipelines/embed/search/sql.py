"""The SQL both searches share: the organization and the optional filters as clauses on
`document_embeddings d` and `reconciliation_exceptions e`, the candidates' FROM and WHERE,
and the exception columns a hit returns. Candidates come from `EMBEDDINGS` (migration 0010):
under row-level security its full-text `@@` can use the GIN index, the table's cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# document_embeddings as the organization set sees it (every row for the owner), migration 0010
EMBEDDINGS = "organization_document_embeddings"
# texts matched before a filter on the exception row keeps some of them (`_text_matches`)
FILTERED_MATCH_FACTOR = 4
EXCEPTION_COLUMNS = (
    "e.id, e.reconciliation_id, e.type, e.severity, e.status, e.description, e.suggestion"
)


@dataclass
class Filters:
    """The organization and the optional filters as SQL clauses on `document_embeddings d`
    and on `reconciliation_exceptions e`, with their parameters."""

    on_embedding: str = ""
    on_exception: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def _filters(
    reconciliation_id: int | None, type: str | None, severity: str | None, status: str | None
) -> Filters:
    found = Filters()
    if reconciliation_id is not None:
        found.on_embedding += " AND d.reconciliation_id = :rid"
        found.on_exception += " AND e.reconciliation_id = :rid"
        found.params["rid"] = reconciliation_id
    exception_only = ""
    for column, value in (("type", type), ("severity", severity), ("status", status)):
        if value is not None:
            exception_only += f" AND e.{column} = :{column}"
            found.params[column] = value.upper()
    found.on_exception += exception_only
    # rows the index scan must join to the exception to keep (type, severity, status)
    found.params["_join"] = bool(exception_only)
    return found


def _candidates_from(filters: Filters) -> str:
    """FROM and WHERE of a candidate search: the organization's embeddings of exceptions of
    the model, joined to their exception rows only when a filter is on those."""
    join = (
        " JOIN reconciliation_exceptions e ON e.id = d.document_id AND e.organization_id = :org"
        if filters.params.get("_join")
        else ""
    )
    where = filters.on_embedding + (filters.on_exception if join else "")
    return (
        f" FROM {EMBEDDINGS} d" + join + " WHERE d.organization_id = :org"
        " AND d.document_type = :doc AND d.model_name = :model" + where
    )


def _text_matches(filters: Filters, match: str) -> str:
    """A subquery of at most :cap (document_id, content_tsv) rows of the organization's texts
    of the model matching the tsquery expression `match`, within the filters.

    With a filter on the exception row (type, severity, status) the words are matched first,
    on their own, up to `FILTERED_MATCH_FACTOR` x :cap texts, and the exception rows joined to
    those afterwards: a join to `reconciliation_exceptions` at the same level as `@@` lets
    its row-level security turn the GIN lookup into a scan of every embedding (82-125 ms
    against 0.15 ms at 1M rows). The subquery's LIMIT keeps the planner from merging the two.
    """
    own = (
        f"SELECT d.document_id, d.content_tsv FROM {EMBEDDINGS} d WHERE d.organization_id = :org"
        " AND d.document_type = :doc AND d.model_name = :model"
        + filters.on_embedding
        + f" AND d.content_tsv @@ {match}"
    )
    if not filters.params.get("_join"):
        return f"({own} LIMIT :cap)"
    return (
        f"(SELECT w.document_id, w.content_tsv FROM ({own}"
        f" LIMIT {FILTERED_MATCH_FACTOR} * :cap) w JOIN reconciliation_exceptions e"
        " ON e.id = w.document_id AND e.organization_id = :org WHERE TRUE"
        + filters.on_exception
        + " LIMIT :cap)"
    )


def _sql_params(filters: Filters) -> dict[str, Any]:
    return {k: v for k, v in filters.params.items() if not k.startswith("_")}
