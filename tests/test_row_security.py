"""Organizations separated by PostgreSQL (migration 0010): as `recon_app` with organization A
set no table returns a row of B, with nothing set no organization table returns a row, a row
of B cannot be written with A set, and the product's scoped paths still work under it.

Two organizations get a row in every organization table (owner SQL for the plumbing, the
product's own functions for embeddings, search, chat, lineage and the summary).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from pipelines.embed.chat import ask
from pipelines.embed.search import search_exceptions
from pipelines.embed.store import embed_reconciliation
from pipelines.reconcile.lineage import exception_lineage
from pipelines.reconcile.records import summary
from recon.scope import require_owned
from resources import migrations
from resources.database import engine_for, organization_transaction
from resources.embedder import HashingEmbedder
from resources.errors import ReconError
from resources.file_store import FileStore
from resources.migrations import MIGRATIONS_DIR

# how each organization table reaches its organization (t is the row)
ORGANIZATION_OF = {
    "organizations": "t.id",
    "field_mappings": "(SELECT r.organization_id FROM rule_sets r WHERE r.id = t.rule_set_id)",
    "matching_rules": "(SELECT r.organization_id FROM rule_sets r WHERE r.id = t.rule_set_id)",
    "chat_messages": "(SELECT s.organization_id FROM chat_sessions s WHERE s.id = t.session_id)",
    **{
        table: "t.organization_id"
        for table in (
            "users",
            "data_sources",
            "uploaded_files",
            "rule_sets",
            "reconciliations",
            "reconciliation_exceptions",
            "reconciliation_matches",
            "chat_sessions",
            "document_embeddings",
            "pipeline_run_logs",
            "sync_logs",
            "linkage_models",
            "reconciliation_feeds",
            "audit_log",
            "exception_work",
            "exception_reason_codes",
            "reconciliation_carried_rows",
        )
    },
}
# the owner's only: no organization's rows (a shared cache) and migration bookkeeping
OWNER_ONLY = {
    "embedding_cache",
    "recon_migration_checksums",
    "_yoyo_log",
    "_yoyo_migration",
    "_yoyo_version",
    "yoyo_lock",
}


def _one(conn: sa.Connection, sql: str, **params: object) -> int:
    return conn.execute(sa.text(sql + " RETURNING id"), params).scalar_one()


def _organization(engine: sa.Engine, name: str) -> dict[str, int]:
    """One organization with a row in every organization table; the ids that matter."""
    with engine.begin() as conn:
        org = _one(conn, "INSERT INTO organizations (name) VALUES (:n)", n=name)
        conn.execute(
            sa.text("INSERT INTO users (email, name, organization_id) VALUES (:e, :n, :o)"),
            {"e": f"{name}@example.test", "n": name, "o": org},
        )
        sides = [
            _one(
                conn,
                "INSERT INTO data_sources (name, type, organization_id) VALUES (:n, 'FILE', :o)",
                n=f"{name}-{side}",
                o=org,
            )
            for side in ("bank", "ledger")
        ]
        files = [
            _one(
                conn,
                "INSERT INTO uploaded_files (original_filename, stored_filename, content_type, "
                "file_size, status, data_source_id, organization_id) "
                "VALUES (:f, :f, 'text/csv', 1, 'PROCESSED', :d, :o)",
                f=f"{name}-{i}.csv",
                d=side,
                o=org,
            )
            for i, side in enumerate(sides)
        ]
        rules = _one(
            conn, "INSERT INTO rule_sets (name, organization_id) VALUES (:n, :o)", n=name, o=org
        )
        conn.execute(
            sa.text(
                "INSERT INTO field_mappings (source_field, target_field, rule_set_id) "
                "VALUES ('a', 'b', :r)"
            ),
            {"r": rules},
        )
        conn.execute(
            sa.text(
                "INSERT INTO matching_rules (name, match_type, fields, rule_set_id) "
                "VALUES ('ref', 'EXACT', '[]', :r)"
            ),
            {"r": rules},
        )
        conn.execute(
            sa.text(
                "INSERT INTO linkage_models (rule_set_id, organization_id, engine_version, model) "
                "VALUES (:r, :o, '1', '{}')"
            ),
            {"r": rules, "o": org},
        )
        conn.execute(
            sa.text(
                "INSERT INTO reconciliation_feeds (name, organization_id, source_data_source_id, "
                "target_data_source_id, rule_set_id, business_date, definition, "
                "definition_sha256, is_active) "
                "VALUES (:n, :o, :s, :t, :r, '{}', '{}', repeat('0', 64), FALSE)"
            ),
            {"n": f"feed-{name}", "o": org, "s": sides[0], "t": sides[1], "r": rules},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sync_logs (organization_id, uploaded_file_id, system, status) "
                "VALUES (:o, :f, 'test', 'SUCCESS')"
            ),
            {"o": org, "f": files[0]},
        )
        rec = _one(
            conn,
            "INSERT INTO reconciliations (name, status, source_file_id, target_file_id, "
            "rule_set_id, organization_id) VALUES (:n, 'COMPLETED', :s, :t, :r, :o)",
            n=name,
            s=files[0],
            t=files[1],
            r=rules,
            o=org,
        )
        conn.execute(
            sa.text(
                "INSERT INTO reconciliation_matches (reconciliation_id, organization_id, "
                "source_row_number, target_row_number, match_score, match_kind) "
                "VALUES (:r, :o, 1, 1, 1.0, 'EXACT')"
            ),
            {"r": rec, "o": org},
        )
        exc = _one(
            conn,
            "INSERT INTO reconciliation_exceptions (reconciliation_id, type, severity, "
            "description, source_data, source_row_number, organization_id) VALUES (:r, "
            "'MISSING_IN_TARGET', 'HIGH', :d, CAST(:s AS jsonb), 2, :o)",
            r=rec,
            d=f"Source row 2 has no match in the target (payee {name} shared words)",
            s=json.dumps({"_row_number": 2, "payee": name}),
            o=org,
        )
        # an open item carried in from an earlier date (0015)
        conn.execute(
            sa.text(
                "INSERT INTO reconciliation_carried_rows (reconciliation_id, side, row_number, "
                "from_reconciliation_id, from_row_number, from_exception_id, organization_id) "
                "VALUES (:r, 'source', 9, :r, 2, :e, :o)"
            ),
            {"r": rec, "e": exc, "o": org},
        )
        # working the exceptions (0012): its work state, a reason code, an audit event
        conn.execute(
            sa.text(
                "INSERT INTO exception_work (organization_id, reconciliation_id, exception_key, "
                "reason_code) VALUES (:o, :r, :k, 'OTHER')"
            ),
            {"o": org, "r": rec, "k": f"id:{exc}"},
        )
        conn.execute(
            sa.text("INSERT INTO exception_reason_codes (organization_id, code) VALUES (:o, 'X')"),
            {"o": org},
        )
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (organization_id, actor, entity, entity_id, action) "
                "VALUES (:o, 'system', 'exception', :e, 'ASSIGN')"
            ),
            {"o": org, "e": exc},
        )
    # the product's own writes: embeddings and their model-call log, a chat session
    embed_reconciliation(engine, HashingEmbedder(), rec)
    ask(engine, HashingEmbedder(), rec, "which payee has no match?", organization_id=org)
    return {"org": org, "reconciliation": rec, "exception": exc}


@pytest.fixture(scope="module")
def two(database_url: str) -> tuple[sa.Engine, dict[str, int], dict[str, int]]:
    engine = engine_for(database_url)
    suffix = str(id(engine))[-6:]
    return (
        engine,
        _organization(engine, f"rls-a-{suffix}"),
        _organization(engine, f"rls-b-{suffix}"),
    )


def _product_tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                    "current_schema() AND table_type = 'BASE TABLE'"
                )
            ).scalars()
        )


def test_every_organization_table_is_known_to_this_test(two) -> None:
    engine, _, _ = two
    assert _product_tables(engine) == set(ORGANIZATION_OF) | OWNER_ONLY


def test_with_a_set_no_table_returns_a_row_of_b(two) -> None:
    engine, a, b = two
    for table, organization in ORGANIZATION_OF.items():
        count = f"SELECT count(*) FROM {table} t WHERE {organization} = :o"
        with engine.connect() as conn:
            of_a = conn.execute(sa.text(count), {"o": a["org"]}).scalar_one()
            of_b = conn.execute(sa.text(count), {"o": b["org"]}).scalar_one()
        assert of_a > 0 and of_b > 0, table  # both organizations have rows here
        with organization_transaction(engine, a["org"]) as conn:
            seen = conn.execute(
                sa.text(
                    f"SELECT count(*), count(*) FILTER (WHERE {organization} IS DISTINCT FROM "
                    f":o) FROM {table} t"
                ),
                {"o": a["org"]},
            ).one()
        assert tuple(seen) == (of_a, 0), table
    # the search's view of the embeddings too
    with organization_transaction(engine, a["org"]) as conn:
        others = conn.execute(
            sa.text(
                "SELECT count(*) FROM organization_document_embeddings WHERE organization_id <> :o"
            ),
            {"o": a["org"]},
        ).scalar_one()
    assert others == 0


def test_with_nothing_set_no_organization_table_returns_a_row(two) -> None:
    engine, a, _ = two
    tables = [*ORGANIZATION_OF, "organization_document_embeddings"]
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL ROLE recon_app"))
        for table in tables:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        for table in OWNER_ONLY:  # not readable at all
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with conn.begin_nested():
                    conn.execute(sa.text(f"SELECT 1 FROM {table}"))
    # after a transaction with A set, the setting is empty again on that session: still none
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(
                sa.text("SELECT set_config('recon.organization_id', :o, true)"),
                {"o": str(a["org"])},
            )
        with conn.begin():
            conn.execute(sa.text("SET LOCAL ROLE recon_app"))
            assert conn.execute(sa.text("SELECT count(*) FROM reconciliations")).scalar() == 0


def test_a_row_of_b_cannot_be_written_with_a_set(two) -> None:
    engine, a, b = two
    with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
        with organization_transaction(engine, a["org"]) as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO reconciliation_matches (reconciliation_id, organization_id, "
                    "source_row_number, target_row_number, match_score, match_kind) "
                    "VALUES (:r, :o, 9, 9, 1.0, 'MANUAL')"
                ),
                {"r": b["reconciliation"], "o": b["org"]},
            )
    with organization_transaction(engine, a["org"]) as conn:
        changed = conn.execute(
            sa.text("UPDATE reconciliation_exceptions SET status = 'IGNORED' WHERE id = :i"),
            {"i": b["exception"]},
        ).rowcount
        gone = conn.execute(
            sa.text("DELETE FROM reconciliations WHERE id = :i"), {"i": b["reconciliation"]}
        ).rowcount
    assert (changed, gone) == (0, 0)
    with engine.connect() as conn:  # the owner sees B's rows untouched
        status = conn.execute(
            sa.text("SELECT status FROM reconciliation_exceptions WHERE id = :i"),
            {"i": b["exception"]},
        ).scalar()
    assert status == "OPEN"


def test_recon_app_is_no_superuser_and_owns_nothing(two) -> None:
    engine, _, _ = two
    with engine.connect() as conn:
        role = conn.execute(
            sa.text(
                "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                "WHERE rolname = 'recon_app'"
            )
        ).one()
        owned = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                "WHERE r.rolname = 'recon_app'"
            )
        ).scalar_one()
        unprotected = conn.execute(
            sa.text(
                "SELECT array_agg(relname ORDER BY relname) FROM pg_class WHERE relname = "
                "ANY(:t) AND relkind = 'r' AND (NOT relrowsecurity OR NOT EXISTS ("
                "SELECT 1 FROM pg_policy p WHERE p.polrelid = pg_class.oid))"
            ),
            {"t": list(ORGANIZATION_OF)},
        ).scalar()
    assert tuple(role) == (False, False, False) and owned == 0 and unprotected is None


def test_the_scoped_product_paths_see_only_their_organization(two, tmp_path) -> None:
    engine, a, b = two
    fake = HashingEmbedder()
    hits = search_exceptions(engine, fake, "payee shared words no match", organization_id=a["org"])
    assert [h["exception_id"] for h in hits] == [a["exception"]]
    assert require_owned(engine, _name(engine, a["org"]), "exception", a["exception"]) == a["org"]
    with pytest.raises(ReconError, match="is not one of"):
        require_owned(engine, _name(engine, a["org"]), "exception", b["exception"])
    store = FileStore(tmp_path)
    chain = exception_lineage(engine, store, a["exception"], organization_id=a["org"])
    assert chain["reconciliation"]["id"] == a["reconciliation"]
    assert chain["source"]["file"]["original_filename"].endswith("-0.csv")
    with pytest.raises(ReconError, match="does not exist"):
        exception_lineage(engine, store, b["exception"], organization_id=a["org"])
    assert summary(engine, a["reconciliation"], a["org"])["exception_count"] is not None
    with pytest.raises(ReconError, match="does not exist"):
        summary(engine, b["reconciliation"], a["org"])
    answer = ask(engine, fake, a["reconciliation"], "what is missing?", organization_id=a["org"])
    assert f"[exception {a['exception']}]" in answer.text


def _name(engine: sa.Engine, org: int) -> str:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT name FROM organizations WHERE id = :i"), {"i": org}
        ).scalar_one()


def test_migrating_twice_and_rolling_back_0010(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrations.migrate(url)
    assert migrations.migrate(url) == []
    # 0010 and every later migration, newest first (later ones depend on its role)
    later = sorted(
        (
            p.name.removesuffix(".sql")
            for p in MIGRATIONS_DIR.glob("*.sql")
            if not p.name.endswith(".rollback.sql") and p.name >= "0010"
        ),
        reverse=True,
    )
    assert later[-1] == "0010_row_security" and len(later) >= 4
    assert migrations.rollback(url, steps=len(later)) == later
    engine = engine_for(url)
    with engine.connect() as conn:
        protected = conn.execute(
            sa.text("SELECT count(*) FROM pg_class WHERE relrowsecurity")
        ).scalar_one()
        grants = conn.execute(
            sa.text(
                "SELECT count(*) FROM information_schema.role_table_grants "
                "WHERE grantee = 'recon_app' AND table_catalog = current_database()"
            )
        ).scalar_one()
    assert (protected, grants) == (0, 0)
    assert migrations.migrate(url) == later[::-1]
    assert migrations.verify(url) == []
    engine.dispose()
