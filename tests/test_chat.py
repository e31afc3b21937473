"""`recon ask`: answers about one reconciliation, retrieved and cited, kept in chat tables."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import run_recon
from test_recon_run import Case, write_case

from recon.run import RunRequest, run_reconciliation


@pytest.fixture(scope="module")
def reconciled(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    case: Case = write_case(tmp_path_factory.mktemp("chat"), f"chat-{uuid.uuid4().hex[:8]}")
    code, out, err = run_recon(
        "run", "--source", str(case.bank), "--target", str(case.ledger),
        "--rules", str(case.rules), "--org", case.org,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    # a second reconciliation of the same organization, whose exceptions must not be cited
    # (a name of its own: the same files, rules and name would run the first again in place)
    other = run_reconciliation(
        database_url,
        RunRequest(
            source=case.bank,
            target=case.ledger,
            rules=case.rules,
            organization=case.org,
            name="chat: another reconciliation",
        ),
    )
    return {"summary": summary, "other": other["reconciliation_id"], "org": case.org}


def test_ask_answers_from_the_reconciliation_and_cites_its_exceptions(
    database_url: str, reconciled: dict[str, Any]
) -> None:
    rid = reconciled["summary"]["reconciliation_id"]
    question = "which amounts differ between bank and ledger?"
    code, out, err = run_recon("ask", str(rid), question, "--org", reconciled["org"])
    assert code == 0, err[-2000:]
    assert f"Reconciliation {rid}" in out and "AMOUNT_MISMATCH" in out
    with psycopg.connect(database_url) as conn:
        session = conn.execute(
            "SELECT id, context_type, organization_id FROM chat_sessions "
            "WHERE reconciliation_id = %s",
            (rid,),
        ).fetchall()
        assert len(session) == 1 and session[0][1] == "RECONCILIATION"
        messages = conn.execute(
            "SELECT role, content, metadata FROM chat_messages WHERE session_id = %s ORDER BY id",
            (session[0][0],),
        ).fetchall()
        assert [m[0] for m in messages] == ["USER", "ASSISTANT"]
        cited = [c["exception_id"] for c in messages[1][2]["citations"]]
        assert cited, "the answer cites exceptions"
        owners = {
            row[0]
            for row in conn.execute(
                "SELECT reconciliation_id FROM reconciliation_exceptions WHERE id = ANY(%s)",
                (cited,),
            )
        }
        top = conn.execute(
            "SELECT type FROM reconciliation_exceptions WHERE id = %s", (cited[0],)
        ).fetchone()[0]
    assert owners == {rid}  # never the other reconciliation's exceptions
    assert top == "AMOUNT_MISMATCH"
    for exception_id in cited:
        assert f"[exception {exception_id}]" in messages[1][1]


def test_a_second_question_continues_the_session(
    database_url: str, reconciled: dict[str, Any]
) -> None:
    rid = reconciled["summary"]["reconciliation_id"]
    for question in ("what is missing in the ledger?", "any dates off?"):
        code, _, err = run_recon("ask", str(rid), question, "--org", reconciled["org"])
        assert code == 0, err[-2000:]
    with psycopg.connect(database_url) as conn:
        sessions = conn.execute(
            "SELECT count(*) FROM chat_sessions WHERE reconciliation_id = %s", (rid,)
        ).fetchone()[0]
        messages = conn.execute(
            "SELECT count(*) FROM chat_messages m JOIN chat_sessions s ON s.id = m.session_id "
            "WHERE s.reconciliation_id = %s",
            (rid,),
        ).fetchone()[0]
    assert sessions == 1 and messages >= 4


def test_ask_about_a_missing_reconciliation_is_one_line(database_url: str) -> None:
    code, out, err = run_recon("ask", "987654321", "anything?")
    assert code == 1 and "is not one of" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_ids_of_another_organization_are_refused(
    database_url: str, reconciled: dict[str, Any]
) -> None:
    """ask, embed, cancel and lineage act for --org only; another's id is one line, no rows."""
    rid = reconciled["summary"]["reconciliation_id"]
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO organizations (name) VALUES ('Tenant B') ON CONFLICT DO NOTHING")
        exception_id = conn.execute(
            "SELECT min(id) FROM reconciliation_exceptions WHERE reconciliation_id = %s", (rid,)
        ).fetchone()[0]
    for args in (
        ("ask", str(rid), "what is missing?"),
        ("embed", str(rid)),
        ("cancel", str(rid)),
        ("lineage", str(exception_id)),
    ):
        for org in ("Tenant B", "Default Organization"):
            code, out, err = run_recon(*args, "--org", org)
            assert code == 1, (args, org, out)
            [line] = err.strip().splitlines()
            assert "is not one of" in line and reconciled["org"] not in line
            assert out.strip() == ""


def test_recon_search_cli_is_restricted_to_the_organization(
    database_url: str, reconciled: dict[str, Any]
) -> None:
    code, out, err = run_recon(
        "search", "amount differs", "--org", reconciled["org"], "--json", "--limit", "5"
    )
    assert code == 0, err[-2000:]
    hits = [json.loads(line) for line in out.strip().splitlines()]
    assert hits and hits[0]["type"] == "AMOUNT_MISMATCH"
    with psycopg.connect(database_url) as conn:
        orgs = {
            row[0]
            for row in conn.execute(
                "SELECT o.name FROM reconciliation_exceptions e JOIN organizations o "
                "ON o.id = e.organization_id WHERE e.id = ANY(%s)",
                ([h["exception_id"] for h in hits],),
            )
        }
    assert orgs == {reconciled["org"]}
    code, _, err = run_recon("search", "amount", "--org", "no such organization here")
    assert code == 1 and "no organization named" in err


def test_recon_embed_makes_an_unembedded_reconciliation_searchable(
    database_url: str, tmp_path: Path
) -> None:
    case = write_case(tmp_path, f"embed-{uuid.uuid4().hex[:8]}")
    code, out, err = run_recon(
        "run", "--no-embed", "--source", str(case.bank), "--target", str(case.ledger),
        "--rules", str(case.rules), "--org", case.org,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    rid = json.loads(out.strip().splitlines()[-1])["reconciliation_id"]
    query = ("search", "amount differs", "--org", case.org, "--json")
    code, out, _ = run_recon(*query)
    assert code == 0 and out.strip() == ""  # nothing embedded yet
    code, out, err = run_recon("embed", str(rid), "--org", case.org)
    assert code == 0, err[-2000:]
    code, out, _ = run_recon(*query)
    hits = [json.loads(line) for line in out.strip().splitlines()]
    assert hits and {h["reconciliation_id"] for h in hits} == {rid}
