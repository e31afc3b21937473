"""The live database against the documented schema (tests/documented_schema.yaml).

Every documented table, column (type, nullability, default), primary key, unique constraint,
foreign key with its ON DELETE rule, enumeration CHECK and index must exist as documented.
A difference passes only when the YAML lists it as a deliberate deviation, and a listed
deviation that no longer occurs fails too, so the list stays honest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

DOC = yaml.safe_load((Path(__file__).parent / "documented_schema.yaml").read_text())
ON_DELETE = {"c": "CASCADE", "n": "SET NULL", "a": "NO ACTION", "r": "RESTRICT", "d": "SET DEFAULT"}


def _normalise_default(value: str | None) -> str | None:
    """`'VIEWER'::character varying` -> `'VIEWER'`, `nextval(...)` -> `serial`, 1.0 -> `1`."""
    if value is None:
        return None
    if value.startswith("nextval("):
        return "serial"
    value = re.sub(r"::[a-z ]+(\(\d+(,\d+)?\))?$", "", value.strip())
    if value.lower() == "now()" or value == "CURRENT_TIMESTAMP":
        return "now()"
    try:
        return str(float(value))
    except ValueError:
        return value


def _live(conn: psycopg.Connection, table: str) -> dict[str, Any]:
    columns = {
        name: {"type": typ, "nullable": not notnull, "default": default}
        for name, typ, notnull, default in conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attribute a LEFT JOIN pg_attrdef d
                 ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""",
            (table,),
        )
    }
    constraints = conn.execute(
        """SELECT c.contype, c.confdeltype, c.confrelid::regclass::text,
                  ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n ORDER BY k.i),
                  ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute ON attrelid = c.confrelid AND attnum = k.n ORDER BY k.i),
                  pg_get_constraintdef(c.oid)
           FROM pg_constraint c WHERE c.conrelid = %s::regclass""",
        (table,),
    ).fetchall()
    indexes = {}
    for name, definition in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
        (table,),
    ):
        match = re.search(r"USING (\w+) \((.*?)\)(?: WITH \((.*)\))?$", definition)
        assert match, definition
        parts = [p.strip() for p in match.group(2).split(",")]
        # drop operator classes ("embedding vector_cosine_ops") but keep DESC
        cols = [" ".join(w for w in p.split() if not w.endswith("_ops")) for p in parts]
        indexes[name] = {"method": match.group(1), "columns": cols, "with": match.group(3)}
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


def _differences(conn: psycopg.Connection) -> list[dict[str, str]]:
    """Every way the live database differs from the document, as deviation-shaped dicts."""
    found: list[dict[str, str]] = []

    def differ(where: dict[str, str], field: str, documented: Any, actual: Any) -> None:
        found.append(
            {**where, "field": field, "documented": str(documented), "actual": str(actual)}
        )

    for table, spec in DOC["tables"].items():
        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0]
        if exists is None:
            differ({"table": table}, "exists", True, False)
            continue
        live = _live(conn, table)
        for column, col in spec["columns"].items():
            where = {"table": table, "column": column}
            actual = live["columns"].get(column)
            if actual is None:
                differ(where, "exists", True, False)
                continue
            if actual["type"] != col["type"]:
                differ(where, "type", col["type"], actual["type"])
            if actual["nullable"] != col["nullable"]:
                differ(where, "nullable", col["nullable"], actual["nullable"])
            documented_default = _normalise_default(col["default"])
            if _normalise_default(actual["default"]) != documented_default:
                differ(where, "default", col["default"], actual["default"])
        cons = live["constraints"]
        if not any(c[0] == "p" and c[3] == spec["primary_key"] for c in cons):
            differ({"table": table}, "primary_key", spec["primary_key"], "missing")
        for unique in spec["unique"]:
            if not any(c[0] == "u" and c[3] == unique for c in cons):
                differ({"table": table, "unique": ",".join(unique)}, "exists", True, False)
        for fk in spec["foreign_keys"]:
            where = {"table": table, "foreign_key": ",".join(fk["columns"])}
            live_fk = [
                c
                for c in cons
                if c[0] == "f"
                and c[3] == fk["columns"]
                and c[2] == fk["references"]
                and c[4] == fk["ref_columns"]
            ]
            if not live_fk:
                differ(where, "exists", True, False)
            elif ON_DELETE[live_fk[0][1]] != fk["on_delete"]:
                differ(where, "on_delete", fk["on_delete"], ON_DELETE[live_fk[0][1]])
        for check in spec["checks"]:
            where = {"table": table, "check": check["column"]}
            defs = [c[5] for c in cons if c[0] == "c" and check["column"] in c[3]]
            allowed = [set(re.findall(r"'([^']*)'", d)) for d in defs]
            if set(check["values"]) not in allowed:
                differ(where, "values", sorted(check["values"]), [sorted(a) for a in allowed])
        for name, index in spec["indexes"].items():
            documented = index if isinstance(index, dict) else {"columns": index}
            where = {"table": table, "index": name}
            actual = live["indexes"].get(name)
            if actual is None:
                differ(where, "exists", True, False)
                continue
            if actual["columns"] != documented["columns"]:
                differ(where, "columns", documented["columns"], actual["columns"])
            if actual["method"] != documented.get("method", "btree"):
                differ(where, "method", documented.get("method", "btree"), actual["method"])
    installed = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    for extension in DOC["extensions"] + ["uuid-ossp"]:
        if extension not in installed:
            differ({"extension": extension}, "installed", "true", "false")
    return found


def _key(entry: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in entry.items() if k != "why"))


@pytest.fixture(scope="module")
def conn(database_url: str) -> psycopg.Connection:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def test_database_matches_the_documented_schema(conn: psycopg.Connection) -> None:
    declared = {_key(d) for d in DOC["deviations"]}
    found = {_key(d) for d in _differences(conn)}
    undeclared = sorted(found - declared)
    stale = sorted(declared - found)
    assert not undeclared, f"differences from the documented schema not declared: {undeclared}"
    assert not stale, f"declared deviations that no longer occur: {stale}"
    assert all(d.get("why") for d in DOC["deviations"])


def test_the_comparison_sees_a_broken_schema(fresh_database: Any) -> None:
    """The check above could fail: on an altered copy it reports each alteration."""
    from resources import migrations

    url = fresh_database()
    migrations.migrate(url)
    with psycopg.connect(url, autocommit=True) as broken:
        broken.execute("ALTER TABLE users ALTER COLUMN role SET DEFAULT 'ADMIN'")
        broken.execute("DROP INDEX idx_rulesets_name")
        broken.execute(
            "ALTER TABLE reconciliation_exceptions DROP CONSTRAINT ck_exceptions_severity"
        )
        broken.execute("ALTER TABLE chat_messages ALTER COLUMN metadata TYPE json")
        found = {
            (d.get("column") or d.get("index") or d.get("check"), d["field"])
            for d in _differences(broken)
        }
    assert {
        ("role", "default"),
        ("idx_rulesets_name", "exists"),
        ("severity", "values"),
        ("metadata", "type"),
    } <= found


def test_hnsw_index_has_the_sibling_seed_parameters(conn: psycopg.Connection) -> None:
    definition = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_embeddings_vector'"
    ).fetchone()[0]
    assert "USING hnsw (embedding vector_cosine_ops)" in definition
    assert "m='16'" in definition and "ef_construction='64'" in definition


def test_enumerations_are_enforced(conn: psycopg.Connection) -> None:
    org = conn.execute(
        "SELECT id FROM organizations WHERE name = 'Default Organization'"
    ).fetchone()
    assert org is not None
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO users (email, name, role, organization_id) "
            "VALUES ('a@b', 'a', 'OWNER', %s)",
            org,
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO uploaded_files (original_filename, stored_filename, content_type, "
            "file_size, status, organization_id) VALUES ('f', 'g', 'text/csv', 1, 'DONE', %s)",
            org,
        )


def test_updated_at_is_kept_current_by_the_database(conn: psycopg.Connection) -> None:
    for table in DOC["updated_at_trigger_tables"]:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            (table,),
        ).fetchone()[0]
        assert triggers >= 1, f"{table} has no updated_at trigger"
    row_id = conn.execute(
        "INSERT INTO organizations (name, updated_at) "
        "VALUES ('touch-test', NOW() - interval '1 day') RETURNING id"
    ).fetchone()[0]
    conn.execute("UPDATE organizations SET description = 'changed' WHERE id = %s", (row_id,))
    age = conn.execute(
        "SELECT NOW() - updated_at < interval '1 minute' FROM organizations WHERE id = %s",
        (row_id,),
    ).fetchone()[0]
    conn.execute("DELETE FROM organizations WHERE id = %s", (row_id,))
    assert age is True


def test_documented_default_rows_exist(conn: psycopg.Connection) -> None:
    for row in DOC["default_rows"]:
        found = conn.execute(
            "SELECT description FROM organizations WHERE name = %s", (row["name"],)
        ).fetchone()
        assert found == (row["description"],)
