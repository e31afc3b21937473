"""Rule sets: validation messages, the check against the files' columns, and stored versions."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.reconcile.rule_store import load_stored_rule_set, store_rule_set
from pipelines.reconcile.rules import (
    RuleSet,
    RuleSetError,
    check_against_columns,
    load_rule_set_file,
    parse_rule_set,
)
from resources.database import engine_for


def _rules(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "bank-vs-ledger",
        "description": "Bank export against the ledger",
        "match_threshold": 0.9,
        "field_mappings": [
            {
                "source_field": "Reference",
                "target_field": "reference",
                "transformation_type": "UPPERCASE",
            },
            {
                "source_field": "Value Date",
                "target_field": "date",
                "transformation_type": "DATE_FORMAT",
                "transformation_config": {"format": "dd/MM/yyyy"},
            },
            {"source_field": "Amount", "target_field": "amount"},
        ],
        "matching_rules": [
            {"name": "reference", "match_type": "EXACT", "fields": ["reference"]},
            {"name": "amount", "match_type": "RANGE", "fields": ["amount"], "tolerance": 0.01},
            {"name": "date", "match_type": "DATE_RANGE", "fields": ["date"], "tolerance": 3},
            {
                "name": "payee",
                "match_type": "FUZZY",
                "fields": ["counterparty"],
                "threshold": 0.85,
                "weight": 0.5,
            },
        ],
    }
    data.update(changes)
    return data


def _with_rule(index: int, **changes: Any) -> dict[str, Any]:
    data = _rules()
    data["matching_rules"] = copy.deepcopy(data["matching_rules"])
    data["matching_rules"][index].update(changes)
    for key, value in changes.items():
        if value is None:
            del data["matching_rules"][index][key]
    return data


def _error(data: Any) -> str:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(data, "rules.yaml")
    return str(caught.value)


# ---------------------------------------------------------------- parsing


def test_a_complete_rule_set_parses_with_its_numbers() -> None:
    rule_set = parse_rule_set(_rules(), "rules.yaml")
    assert rule_set.name == "bank-vs-ledger"
    assert rule_set.match_threshold == 0.9
    assert [m.transformation_type for m in rule_set.field_mappings] == [
        "UPPERCASE",
        "DATE_FORMAT",
        "DIRECT",
    ]
    by_name = {r.name: r for r in rule_set.matching_rules}
    assert by_name["amount"].tolerance == 0.01 and by_name["amount"].weight == 1.0
    assert by_name["payee"].threshold == 0.85 and by_name["payee"].weight == 0.5
    assert rule_set.matching_fields() == ["reference", "amount", "date", "counterparty"]
    assert rule_set.target_field_for("Value Date") == "date"


def test_unknown_transformation_type_is_named() -> None:
    data = _rules()
    data["field_mappings"] = [
        {"source_field": "Amount", "target_field": "amount", "transformation_type": "ROT13"}
    ]
    message = _error(data)
    assert "field_mappings[1]" in message
    assert "unknown transformation_type 'ROT13'" in message
    assert "CURRENCY_CONVERSION" in message  # says what is allowed


def test_unknown_match_type_is_named() -> None:
    message = _error(_with_rule(1, match_type="CLOSE_ENOUGH"))
    assert "matching_rules[2]" in message
    assert "unknown match_type 'CLOSE_ENOUGH'" in message
    assert "DATE_RANGE" in message


@pytest.mark.parametrize("tolerance", [-0.5, 10_000_000])
def test_impossible_tolerance_is_refused(tolerance: float) -> None:
    message = _error(_with_rule(1, tolerance=tolerance))
    assert "matching_rules[2]: tolerance" in message
    assert "impossible" in message


def test_tolerance_that_is_not_a_number_is_refused() -> None:
    message = _error(_with_rule(1, tolerance="a cent"))
    assert "tolerance: expected a number, got 'a cent'" in message


def test_threshold_above_one_is_refused() -> None:
    message = _error(_with_rule(3, threshold=1.5))
    assert "matching_rules[4]: threshold" in message
    assert "1.5 is impossible" in message and "between 0 and 1" in message


def test_match_threshold_above_one_is_refused() -> None:
    message = _error(_rules(match_threshold=2))
    assert "match_threshold" in message and "impossible" in message


@pytest.mark.parametrize(("index", "kind"), [(1, "RANGE"), (2, "DATE_RANGE")])
def test_range_rules_need_a_tolerance(index: int, kind: str) -> None:
    message = _error(_with_rule(index, tolerance=None))
    assert f"matching_rules[{index + 1}]: {kind} needs a `tolerance`" in message


def test_no_matching_rules_is_refused() -> None:
    assert "at least one matching rule is needed" in _error(_rules(matching_rules=[]))
    data = _rules()
    del data["matching_rules"]
    assert "at least one matching rule is needed" in _error(data)


def test_only_weightless_rules_link_nothing() -> None:
    data = _rules(matching_rules=[{"match_type": "EXACT", "fields": ["reference"], "weight": 0}])
    assert "weight 0" in _error(data)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ({"amount_absolute": [100, 10, 1]}, "severity.amount_absolute"),
        ({"amount": [1, 2, 3]}, "severity: unknown key"),
        ({"duplicate": "URGENT"}, "severity.duplicate"),
    ],
)
def test_a_bad_severity_policy_is_refused_when_parsing(
    severity: dict[str, Any], expected: str
) -> None:
    # refused before anything is written, not when the exceptions stage first reads it
    assert expected in _error(_rules(severity=severity))


def test_missing_name() -> None:
    assert "`name` is required" in _error(_rules(name="  "))


def _mapping_config(config: dict[str, Any]) -> dict[str, Any]:
    data = _rules()
    data["field_mappings"] = [
        {
            "source_field": "Value Date",
            "target_field": "date",
            "transformation_type": "DATE_FORMAT",
            "transformation_config": config,
        }
    ]
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            _rules(rules=[]),
            "rules.yaml: unknown key 'rules'; accepted: name, description, match_threshold, "
            "text_normalization, field_mappings, matching_rules, severity, aggregation; "
            "did you mean 'matching_rules'?",
        ),
        (
            _mapping_config({"from": "dd/MM/yyyy", "to": "yyyy-MM-dd"}),
            "rules.yaml: field_mappings[1].transformation_config (DATE_FORMAT): unknown key "
            "'from'; accepted: format, input_format, output_format; did you mean 'format'?",
        ),
        (
            {**_rules(), "field_mappings": [{"source_field": "A", "target_field": "a", "kind": 1}]},
            "rules.yaml: field_mappings[1]: unknown key 'kind'",
        ),
        (_with_rule(0, treshold=0.9), "did you mean 'threshold'?"),
        (_rules(severity={"dupliate": "LOW"}), "severity: unknown key 'dupliate'"),
        (
            _rules(text_normalization={"legal_form": False}),
            "text_normalization: unknown key 'legal_form'; accepted: enabled, legal_forms, "
            "equivalents; did you mean 'legal_forms'?",
        ),
        (_rules(text_normalization={"enabled": "yes"}), "expected true or false"),
        (_with_rule(1, tolerance=float("nan")), "nan is not a finite number"),
        (_rules(description=["a", "list"]), "description must be text"),
    ],
)
def test_an_unknown_key_anywhere_is_one_line_naming_it(data: dict, expected: str) -> None:
    message = _error(data)
    assert expected in message
    assert "\n" not in message


def test_target_field_mapped_twice_is_refused() -> None:
    data = _rules()
    data["field_mappings"] = [
        {"source_field": "Amount", "target_field": "amount"},
        {"source_field": "Gross", "target_field": "amount"},
    ]
    assert "target field(s) mapped twice: amount" in _error(data)


def test_currency_conversion_needs_rates() -> None:
    data = _rules()
    data["field_mappings"] = [
        {
            "source_field": "Amount",
            "target_field": "amount",
            "transformation_type": "CURRENCY_CONVERSION",
            "transformation_config": {"to": "USD"},
        }
    ]
    assert "CURRENCY_CONVERSION needs `rates`" in _error(data)


def test_a_rules_file_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("name: [unclosed\nmatching_rules: {\n", encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_rule_set_file(path)
    assert str(path) in str(caught.value)
    assert "not valid YAML" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rules_file_that_is_yaml_but_not_a_rule_set(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("just some words about matching\n", encoding="utf-8")
    with pytest.raises(RuleSetError, match="expected a mapping with name"):
        load_rule_set_file(path)


def test_a_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="does not exist"):
        load_rule_set_file(tmp_path / "absent.yaml")


def test_the_file_round_trips_through_yaml(tmp_path: Path) -> None:
    rule_set = parse_rule_set(_rules())
    path = tmp_path / "again.yaml"
    path.write_text(rule_set.to_yaml(), encoding="utf-8")
    again = load_rule_set_file(path)
    assert again == rule_set
    assert again.content_sha256() == rule_set.content_sha256()


# ---------------------------------------------------------------- check against the files

SOURCE = ["Reference", "Value Date", "Amount", "counterparty", "Notes"]
TARGET = ["reference", "date", "amount", "counterparty", "entry_id"]


def test_the_example_fits_its_files() -> None:
    check_against_columns(parse_rule_set(_rules()), SOURCE, TARGET)


def test_a_mapping_naming_a_missing_source_column() -> None:
    rule_set = parse_rule_set(_rules())
    source = [c for c in SOURCE if c != "Value Date"]
    with pytest.raises(RuleSetError) as caught:
        check_against_columns(rule_set, source, TARGET)
    message = str(caught.value)
    assert "source column(s) Value Date not in the source file" in message
    assert "Reference" in message  # lists what the file has


def test_a_rule_naming_a_field_the_target_lacks() -> None:
    rule_set = parse_rule_set(_rules())
    target = [c for c in TARGET if c != "counterparty"]
    with pytest.raises(RuleSetError) as caught:
        check_against_columns(rule_set, SOURCE, target)
    message = str(caught.value)
    assert "matching rule 'payee' names field 'counterparty'" in message
    assert "target file does not have" in message


def test_source_and_target_with_nothing_in_common() -> None:
    rule_set = parse_rule_set(
        {"name": "n", "matching_rules": [{"match_type": "EXACT", "fields": ["entry_id"]}]}
    )
    with pytest.raises(RuleSetError) as caught:
        check_against_columns(rule_set, ["txn", "booked", "value"], ["entry_id", "posted"])
    message = str(caught.value)
    assert "'entry_id', which no source column provides" in message
    assert "add a field mapping" in message


def test_a_currency_field_that_is_not_a_source_column() -> None:
    data = _rules()
    data["field_mappings"] = [
        *data["field_mappings"][:2],
        {
            "source_field": "Amount",
            "target_field": "amount",
            "transformation_type": "CURRENCY_CONVERSION",
            "transformation_config": {"rates": {"EUR": 1.1}, "currency_field": "Ccy", "to": "USD"},
        },
    ]
    with pytest.raises(RuleSetError, match="currency_field 'Ccy'"):
        check_against_columns(parse_rule_set(data), SOURCE, TARGET)


# ---------------------------------------------------------------- stored versions


@pytest.fixture()
def engine(database_url: str) -> sa.Engine:
    return engine_for(database_url)


@pytest.fixture()
def org_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id FROM organizations WHERE name = 'Default Organization'")
        ).scalar_one()


def _unique(**changes: Any) -> RuleSet:
    return parse_rule_set(_rules(name=f"rules-{uuid.uuid4().hex[:10]}", **changes))


def _versions(engine: sa.Engine, org_id: int, name: str) -> list[tuple[int, int, bool]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT id, version, active FROM rule_sets "
                    "WHERE organization_id = :o AND name = :n ORDER BY version"
                ),
                {"o": org_id, "n": name},
            )
        ]


def test_storing_the_same_content_twice_is_one_version(engine: sa.Engine, org_id: int) -> None:
    rule_set = _unique()
    first = store_rule_set(engine, org_id, rule_set)
    again = store_rule_set(engine, org_id, parse_rule_set(rule_set.content()))
    assert (first.version, first.created) == (1, True)
    assert (again.id, again.version, again.created) == (first.id, 1, False)
    assert _versions(engine, org_id, rule_set.name) == [(first.id, 1, True)]
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM field_mappings WHERE rule_set_id = :r), "
                "(SELECT count(*) FROM matching_rules WHERE rule_set_id = :r)"
            ),
            {"r": first.id},
        ).one()
    assert tuple(counts) == (3, 4)


def test_changed_content_is_a_new_version_and_the_old_one_stays(
    engine: sa.Engine, org_id: int
) -> None:
    v1 = _unique()
    changed = _rules(name=v1.name)
    changed["matching_rules"] = copy.deepcopy(changed["matching_rules"])
    changed["matching_rules"][1]["tolerance"] = 0.5
    v2 = parse_rule_set(changed)
    first = store_rule_set(engine, org_id, v1)
    second = store_rule_set(engine, org_id, v2)
    assert (second.version, second.created) == (2, True) and second.id != first.id
    assert _versions(engine, org_id, v1.name) == [(first.id, 1, False), (second.id, 2, True)]
    # the inactive version is still what older reconciliations ran with
    assert load_stored_rule_set(engine, first.id) == v1
    assert load_stored_rule_set(engine, second.id) == v2
    # the v1 content again is v1 (not a version 3), active again
    back = store_rule_set(engine, org_id, v1)
    assert (back.id, back.version, back.created) == (first.id, 1, False)
    assert _versions(engine, org_id, v1.name) == [(first.id, 1, True), (second.id, 2, False)]


def test_a_description_only_change_is_not_a_new_version(engine: sa.Engine, org_id: int) -> None:
    rule_set = _unique()
    first = store_rule_set(engine, org_id, rule_set)
    reworded = parse_rule_set({**rule_set.content(), "description": "Reworded, same rules"})
    again = store_rule_set(engine, org_id, reworded)
    assert (again.id, again.version, again.created) == (first.id, 1, False)
    assert len(_versions(engine, org_id, rule_set.name)) == 1


def test_a_different_organization_has_its_own_versions(engine: sa.Engine, org_id: int) -> None:
    rule_set = _unique()
    with engine.begin() as conn:
        other = conn.execute(
            sa.text("INSERT INTO organizations (name) VALUES (:n) RETURNING id"),
            {"n": f"org-{uuid.uuid4().hex[:8]}"},
        ).scalar_one()
    mine = store_rule_set(engine, org_id, rule_set)
    theirs = store_rule_set(engine, other, rule_set)
    assert theirs.id != mine.id and (theirs.version, theirs.created) == (1, True)


def test_stored_values_round_trip(engine: sa.Engine, org_id: int) -> None:
    data = _rules(
        severity={"amount_absolute": [5, 50, 500], "duplicate": "LOW"},
        match_threshold=0.75,
    )
    data["field_mappings"] = [
        *data["field_mappings"][:2],
        {
            "source_field": "Amount",
            "target_field": "amount",
            "transformation_type": "currency_conversion",
            "transformation_config": {
                "rates": {"EUR": 1.0835, "GBP": 1.27},
                "currency_field": "Ccy",
                "to": "USD",
            },
        },
    ]
    data["matching_rules"] = copy.deepcopy(data["matching_rules"])
    data["matching_rules"][1].update(tolerance=0.005, weight=0.8)
    data["matching_rules"][2].update(tolerance=2, weight=0.25)
    rule_set = _unique(**{k: v for k, v in data.items() if k != "name"})
    stored = store_rule_set(engine, org_id, rule_set, is_ai_generated=True)
    loaded = load_stored_rule_set(engine, stored.id)
    assert loaded.field_mappings == rule_set.field_mappings
    assert loaded.field_mappings[2].transformation_type == "CURRENCY_CONVERSION"
    assert loaded.field_mappings[2].transformation_config == {
        "rates": {"EUR": 1.0835, "GBP": 1.27},
        "currency_field": "Ccy",
        "to": "USD",
    }
    assert loaded.matching_rules == rule_set.matching_rules
    amount = loaded.matching_rules[1]
    assert (amount.tolerance, amount.weight, amount.fields) == (0.005, 0.8, ("amount",))
    assert loaded.matching_rules[3].threshold == 0.85
    assert loaded.match_threshold == 0.75
    assert loaded.severity == {"amount_absolute": [5, 50, 500], "duplicate": "LOW"}
    assert loaded.description == rule_set.description
    assert loaded.is_ai_generated is True
    assert loaded.content_sha256() == rule_set.content_sha256()


def test_loading_a_rule_set_that_does_not_exist(engine: sa.Engine) -> None:
    with pytest.raises(RuleSetError, match="rule set 987654321 does not exist"):
        load_stored_rule_set(engine, 987_654_321)


def test_an_alias_bomb_is_refused_quickly_with_nothing_written(tmp_path: Path) -> None:
    import resource
    import time

    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        levels.append(f"a{i}: &a{i} [{refs}]")
    body = "\n".join(f"    {line}" for line in levels)
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "name: bomb\nfield_mappings:\n  - source_field: A\n    target_field: a\n"
        "    transformation_type: DATE_FORMAT\n    transformation_config:\n"
        f"      format:\n{body.replace('    ', '        ')}\n"
        "matching_rules:\n  - {match_type: EXACT, fields: [a]}\n",
        encoding="utf-8",
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(RuleSetError, match="expands to more than 100,000 values"):
        load_rule_set_file(path)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: deep\nx: " + "[" * 60 + "]" * 60 + "\n", "nested more than 40 levels"),
        ("name: big\n# " + "x" * 1_100_000 + "\n", "may be 1,000,000 at most"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_rules_files_are_read_with_limits(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError, match=expected):
        load_rule_set_file(path)
