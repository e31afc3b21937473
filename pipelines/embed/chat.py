"""Chat context for a reconciliation: `recon ask RECONCILIATION_ID QUESTION`.

No generative model is available offline, so an answer is retrieval, worded plainly: the
reconciliation's own figures (counts, match rate, exceptions by type and severity) and the
exceptions most relevant to the question (hybrid search restricted to that reconciliation and
its organization), each cited by id with its score. The question and the answer are stored
in `chat_messages` (roles USER / ASSISTANT) under one `chat_sessions` row per reconciliation
(`context_type` RECONCILIATION), which a later question continues; the answer's citations go
in the message's `metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pipelines.embed.search import search_exceptions
from pipelines.reconcile.records import summary
from resources.database import scoped_transaction
from resources.embedder import Embedder
from resources.errors import ReconError

CONTEXT_TYPE = "RECONCILIATION"
CITED = 5


@dataclass(frozen=True)
class Answer:
    """An answer with the session it belongs to and what it cites."""

    session_id: int
    text: str
    citations: list[dict[str, Any]]


def _session(conn: sa.Connection, reconciliation_id: int, organization_id: int) -> int:
    found = conn.execute(
        sa.text(
            "SELECT id FROM chat_sessions WHERE reconciliation_id = :r AND context_type = :c "
            "ORDER BY id LIMIT 1"
        ),
        {"r": reconciliation_id, "c": CONTEXT_TYPE},
    ).scalar()
    if found is not None:
        conn.execute(
            sa.text("UPDATE chat_sessions SET updated_at = NOW() WHERE id = :i"), {"i": found}
        )
        return int(found)
    return int(
        conn.execute(
            sa.text(
                "INSERT INTO chat_sessions (reconciliation_id, context_type, organization_id) "
                "VALUES (:r, :c, :o) RETURNING id"
            ),
            {"r": reconciliation_id, "c": CONTEXT_TYPE, "o": organization_id},
        ).scalar_one()
    )


def _breakdown(conn: sa.Connection, reconciliation_id: int) -> list[tuple[str, str, int]]:
    return [
        (r.type, r.severity, int(r.n))
        for r in conn.execute(
            sa.text(
                "SELECT type, severity, count(*) AS n FROM reconciliation_exceptions "
                "WHERE reconciliation_id = :i GROUP BY type, severity ORDER BY count(*) DESC"
            ),
            {"i": reconciliation_id},
        )
    ]


def compose_answer(
    reconciliation: dict[str, Any],
    breakdown: list[tuple[str, str, int]],
    hits: list[dict[str, Any]],
) -> str:
    """The plain-language answer: the reconciliation's figures, then the cited exceptions."""
    r = reconciliation
    lines = [
        f'Reconciliation {r["reconciliation_id"]} ("{r["name"]}") is {r["status"]}: '
        f"{r['matched_records'] or 0} of {r['total_source_records'] or 0} source records "
        f"matched ({float(r['match_rate'] or 0):.2f}%), {r['unmatched_source_records'] or 0} "
        f"source and {r['unmatched_target_records'] or 0} target records unmatched, "
        f"{r['exception_count'] or 0} exceptions."
    ]
    if r["error_message"]:
        lines.append(f"It failed with: {r['error_message']}")
    if breakdown:
        parts = [f"{n} {kind} ({severity})" for kind, severity, n in breakdown[:6]]
        lines.append("Exceptions by type and severity: " + ", ".join(parts) + ".")
    if hits:
        lines.append("The exceptions most relevant to your question:")
        for hit in hits:
            suggestion = (hit.get("suggestion") or {}).get("resolution")
            advice = f' Suggested resolution: "{suggestion}".' if suggestion else ""
            lines.append(
                f"- [exception {hit['exception_id']}] {hit['type']}, {hit['severity']}, "
                f"{hit['status']}: {hit['description']} (relevance {hit['score']:.3f}, "
                f"found by {hit['method']}).{advice}"
            )
    else:
        lines.append("No exception of this reconciliation matches your question.")
    return "\n".join(lines)


def ask(
    engine: sa.Engine,
    embedder: Embedder,
    reconciliation_id: int,
    question: str,
    organization_id: int | None = None,
) -> Answer:
    """Answer a question about one reconciliation and keep both in its chat session (as
    `recon_app` with the organization set, when given; the search always is)."""
    question = " ".join(question.split())
    if not question:
        raise ReconError("the question is empty")
    reconciliation = summary(engine, reconciliation_id, organization_id)
    with scoped_transaction(engine, organization_id) as conn:
        breakdown = _breakdown(conn, reconciliation_id)
    hits = search_exceptions(
        engine,
        embedder,
        question,
        organization_id=reconciliation["organization_id"],
        reconciliation_id=reconciliation_id,
        limit=CITED,
    )
    text = compose_answer(reconciliation, breakdown, hits)
    citations = [
        {
            "exception_id": h["exception_id"],
            "score": h["score"],
            "similarity": h.get("similarity"),
            "method": h["method"],
        }
        for h in hits
    ]
    with scoped_transaction(engine, organization_id) as conn:
        session_id = _session(conn, reconciliation_id, reconciliation["organization_id"])
        conn.execute(
            sa.text(
                "INSERT INTO chat_messages (session_id, role, content, metadata) "
                "VALUES (:s, 'USER', :c, NULL)"
            ),
            {"s": session_id, "c": question},
        )
        conn.execute(
            sa.text(
                "INSERT INTO chat_messages (session_id, role, content, metadata) "
                "VALUES (:s, 'ASSISTANT', :c, CAST(:m AS jsonb))"
            ),
            {
                "s": session_id,
                "c": text,
                "m": json.dumps(
                    {
                        "citations": citations,
                        "reconciliation_id": reconciliation_id,
                        "model_name": embedder.model_name,
                        "retrieval": "hybrid vector + full-text search",
                    }
                ),
            },
        )
    return Answer(session_id, text, citations)
