"""Aggregate matching (issue 16): one receipt settles several invoices.

The `aggregation:` section's validation; the search on small frames through `link` and
`build_exceptions` (an exact three-invoice group, a short-paid group and its one
AMOUNT_MISMATCH, an unpaid invoice and a receipt without invoices left missing, a one-to-one
break losing to a group, determinism, the budget on a pathological case); the rule-set version
stored and loaded with its aggregation (and unchanged without). `recon run` end to end and
`recon lineage` of a group are in tests/test_aggregation_run.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest

from pipelines.reconcile.aggregation import Candidate, best_group
from pipelines.reconcile.aggregation_groups import group_sizes, quotes_frame
from pipelines.reconcile.exceptions import build_exceptions
from pipelines.reconcile.linkage import LinkResult, link
from pipelines.reconcile.mapping import apply_mappings, conform
from pipelines.reconcile.rule_store import load_stored_rule_set, store_rule_set
from pipelines.reconcile.rules import RuleSet, RuleSetError, parse_rule_set
from pipelines.stage_metadata import group_metadata
from resources.database import engine_for

logging.getLogger("splink").setLevel(logging.ERROR)

FAILURES = pl.DataFrame(
    schema={
        "file": pl.String,
        "row_number": pl.Int64,
        "column": pl.String,
        "check": pl.String,
        "value": pl.String,
    }
)
MATCHING = [
    {"name": "invoice", "match_type": "EXACT", "fields": ["invoice_number"]},
    {"name": "customer", "match_type": "FUZZY", "fields": ["customer_name"], "threshold": 0.85},
    {"name": "amount", "match_type": "RANGE", "fields": ["amount"], "tolerance": 0.01},
    {"name": "date", "match_type": "DATE_RANGE", "fields": ["invoice_date"], "tolerance": 10},
]
AGGREGATION = {
    "name": "one receipt settles several invoices",
    "many_side": "target",
    "group_by": ["customer_name"],
    "amount_field": "amount",
    "date_field": "invoice_date",
    "date_window_days": 10,
    "max_group_size": 5,
    "tolerance": 0.01,
    "reference_field": "memo",
    "reference_target_field": "invoice_number",
}
DAY = date(2024, 3, 1)


def rules(aggregation: list[dict[str, Any]] | None = None, **extra: Any) -> RuleSet:
    data: dict[str, Any] = {"name": "aggregation-test", "matching_rules": MATCHING, **extra}
    if aggregation is not None:
        data["aggregation"] = aggregation
    return parse_rule_set(data)


# ---------------------------------------------------------------- the rules file


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"many_side": "both"}, "many_side: input should be 'source' or 'target'"),
        ({"max_group_size": 1}, "max_group_size: input should be greater than or equal to 2"),
        ({"max_group_size": 11}, "max_group_size: input should be less than or equal to 10"),
        ({"max_group_size": True}, "max_group_size: input should be a valid integer"),
        ({"max_group_size": 2.5}, "max_group_size: input should be a valid integer"),
        ({"tolerance": float("nan")}, "tolerance: input should be a finite number"),
        ({"tolerance": -1}, "tolerance: input should be greater than or equal to 0"),
        ({"date_window_days": float("inf")}, "date_window_days: input should be a finite number"),
        ({"group_by": ["amount"]}, "'amount' is no field of a FUZZY or EXACT matching rule"),
        ({"group_by": ["payee"]}, "'payee' is no field of a FUZZY or EXACT matching rule"),
        ({"group_by": []}, "group_by: list should have at least 1 item"),
        ({"amount_field": "invoice_date"}, "amount_field: 'invoice_date' is no field of a RANGE"),
        ({"date_field": "amount"}, "date_field: 'amount' is no field of a DATE_RANGE"),
        ({"reference_target_field": None}, "give reference_field and reference_target_field"),
        ({"gruop_by": ["customer_name"]}, "unknown key 'gruop_by'; accepted: name, many_side"),
        ({"name": 7}, "name: input should be a valid string"),
    ],
)
def test_the_aggregation_section_is_validated_strictly(
    change: dict[str, Any], message: str
) -> None:
    entry = {k: v for k, v in {**AGGREGATION, **change}.items() if v is not None}
    with pytest.raises(RuleSetError) as caught:
        rules([entry])
    assert message in str(caught.value)
    assert str(caught.value).startswith("rule set: aggregation[1]")
    assert "\n" not in str(caught.value)


def test_the_section_must_be_a_list_of_distinct_names() -> None:
    with pytest.raises(RuleSetError, match="expected a list of aggregations"):
        rules({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(RuleSetError, match="is used twice"):
        rules([AGGREGATION, AGGREGATION])


def test_a_rule_set_without_aggregation_has_the_content_and_hash_it_had() -> None:
    plain = rules()
    assert plain.aggregation == ()
    assert "aggregation" not in plain.content()
    # the hash as computed before aggregation existed: the same keys, the same JSON
    old = {k: v for k, v in plain.content().items() if k != "description"}
    assert set(old) == {"name", "match_threshold", "field_mappings", "matching_rules"}
    assert (
        plain.content_sha256()
        == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    )
    grouped = rules([AGGREGATION])
    assert grouped.content_sha256() != plain.content_sha256()
    assert grouped.content()["aggregation"][0]["group_by"] == ["customer_name"]
    assert grouped.aggregation[0].one_side == "source"


def test_the_version_stores_and_loads_its_aggregation(database_url: str) -> None:
    engine = engine_for(database_url)
    with engine.begin() as conn:
        org = conn.exec_driver_sql(
            "INSERT INTO organizations (name) VALUES (%s) RETURNING id",
            (f"agg-{uuid.uuid4().hex[:8]}",),
        ).scalar_one()
    grouped = parse_rule_set(
        {"name": "agg-store", "matching_rules": MATCHING, "aggregation": [AGGREGATION]}
    )
    stored = store_rule_set(engine, org, grouped)
    assert load_stored_rule_set(engine, stored.id).aggregation == grouped.aggregation
    again = store_rule_set(engine, org, grouped)
    assert (again.id, again.created) == (stored.id, False)
    plain = parse_rule_set({"name": "agg-plain", "matching_rules": MATCHING})
    kept = store_rule_set(engine, org, plain)
    with engine.connect() as conn:
        metadata = conn.exec_driver_sql(
            "SELECT metadata FROM rule_sets WHERE id = %s", (kept.id,)
        ).scalar_one()
    assert "aggregation" not in metadata
    assert load_stored_rule_set(engine, kept.id).aggregation == ()
    engine.dispose()


# ---------------------------------------------------------------- the search


def frame(**columns: Any) -> pl.DataFrame:
    height = len(next(iter(columns.values())))
    return pl.DataFrame({"_row_number": list(range(1, height + 1)), **columns}).with_columns(
        pl.col("_row_number").cast(pl.Int64)
    )


def receipts_case() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Receipts (source) and invoices (target) with every outcome planted.

    receipt 1: ACME 600.00 = invoices 1 + 2 + 3 (exact, three members)
    receipt 2: GLOBEX 290.00 for invoices 4 + 5 (300.00): short by a 10.00 bank charge; its
               remittance quotes both
    receipt 3: INITECH 55.00, no invoice (MISSING_IN_TARGET); invoice 6 is never paid
    receipt 4: HOOLI 10.00 = invoice 7 one to one (reference INV-9)
    """
    source = frame(
        invoice_number=[None, None, None, "INV-9"],
        customer_name=["ACME LTD", "GLOBEX CORP", "INITECH", "HOOLI"],
        amount=[600.0, 290.0, 55.0, 10.0],
        invoice_date=[DAY, DAY + timedelta(days=2), DAY, DAY],
        memo=["PAYMENT", "PAYMENT INV-201 INV-202", "TRANSFER", "INV-9"],
    )
    target = frame(
        invoice_number=["INV-101", "INV-102", "INV-103", "INV-201", "INV-202", "INV-301", "INV-9"],
        customer_name=["Acme Limited"] * 3 + ["Globex Corporation"] * 2 + ["Initech", "Hooli"],
        amount=[100.0, 200.0, 300.0, 100.0, 200.0, 999.0, 10.0],
        invoice_date=[DAY - timedelta(days=d) for d in (1, 3, 5, 0, 2, 4, 0)],
    )
    return source, target


def run_case(
    source: pl.DataFrame, target: pl.DataFrame, rule_set: RuleSet
) -> tuple[LinkResult, pl.DataFrame]:
    conformed = conform(source, target, rule_set)
    quotes = quotes_frame(apply_mappings(source, rule_set), target, rule_set)
    linked = link(conformed, rule_set, quotes=quotes)
    found = build_exceptions(
        conformed,
        linked,
        rule_set,
        source_records=source,
        target_records=target,
        source_failures=FAILURES,
        target_failures=FAILURES,
    )
    return linked, found


def groups_of(linked: LinkResult) -> dict[int, set[int]]:
    """One-side (source) row -> its group's target rows."""
    grouped = linked.links.filter(pl.col("kind") == "AGGREGATE")
    out: dict[int, set[int]] = {}
    for s, t in grouped.select("source_row", "target_row").iter_rows():
        out.setdefault(s, set()).add(t)
    return out


@pytest.fixture(scope="module")
def case_result() -> tuple[LinkResult, pl.DataFrame]:
    source, target = receipts_case()
    return run_case(source, target, rules([AGGREGATION]))


def test_three_invoices_settle_one_receipt_exactly(
    case_result: tuple[LinkResult, pl.DataFrame],
) -> None:
    linked, found = case_result
    assert groups_of(linked) == {1: {1, 2, 3}, 2: {4, 5}}
    rows = linked.links.filter(pl.col("source_row") == 1)
    assert rows.get_column("match_group").n_unique() == 1
    assert rows.get_column("score").to_list() == [1.0, 1.0, 1.0]
    other = linked.links.filter(pl.col("source_row") == 2).get_column("match_group").unique()
    assert other.len() == 1 and other[0] != rows.get_column("match_group")[0]
    # the one-to-one pair is untouched and carries no group
    hooli = linked.links.filter(pl.col("source_row") == 4).row(0, named=True)
    assert (hooli["target_row"], hooli["kind"], hooli["match_group"]) == (7, "EXACT", None)
    assert not found.filter(pl.col("source_row_number") == 1).height
    # what the materializations show
    assert group_sizes(linked.links) == {"2": 1, "3": 1}
    shown = group_metadata(linked.links)
    assert shown["matched_groups"] == 2
    assert group_metadata(linked.links.drop("match_group")) == {}


def test_a_short_paid_group_raises_one_amount_mismatch(
    case_result: tuple[LinkResult, pl.DataFrame],
) -> None:
    _, found = case_result
    mismatches = found.filter(pl.col("type") == "AMOUNT_MISMATCH")
    assert mismatches.height == 1
    row = mismatches.row(0, named=True)
    assert (row["source_row_number"], row["target_row_number"]) == (2, None)
    receipt = json.loads(row["source_data"])
    assert receipt["_row_number"] == 2 and receipt["amount"] == 290.0
    members = json.loads(row["target_data"])["members"]
    assert [m["_row_number"] for m in members] == [4, 5]
    assert [m["invoice_number"] for m in members] == ["INV-201", "INV-202"]
    (diff,) = json.loads(row["diff"])
    assert diff == {
        "field": "amount",
        "source_value": 290.0,
        "target_value": 300.0,
        "delta": -10.0,
        "tolerance": 0.01,
        "members": 2,
    }
    assert row["fingerprint"] and row["severity"] in ("MEDIUM", "HIGH")


def test_unpaid_invoices_and_receipts_without_invoices_stay_missing(
    case_result: tuple[LinkResult, pl.DataFrame],
) -> None:
    _, found = case_result
    kinds = {
        (k, s, t)
        for k, s, t in found.select("type", "source_row_number", "target_row_number").iter_rows()
    }
    assert kinds == {
        ("AMOUNT_MISMATCH", 2, None),
        ("MISSING_IN_TARGET", 3, None),
        ("MISSING_IN_SOURCE", None, 6),
    }


def test_a_group_wins_over_a_one_to_one_break() -> None:
    """Receipt 1's reference names invoice 3, so the reference pass pairs them 300 apart;
    invoices 1 + 2 + 3 sum to the receipt exactly and take it."""
    source, target = receipts_case()
    source = source.with_columns(
        pl.when(pl.col("_row_number") == 1)
        .then(pl.lit("INV-103"))
        .otherwise(pl.col("invoice_number"))
        .alias("invoice_number")
    )
    plain, _ = run_case(source, target, rules())
    pair = plain.links.filter(pl.col("source_row") == 1).row(0, named=True)
    assert (pair["target_row"], pair["kind"]) == (3, "REFERENCE")
    linked, found = run_case(source, target, rules([AGGREGATION]))
    assert groups_of(linked)[1] == {1, 2, 3}
    assert linked.stats["aggregation"]["breaks_replaced"] >= 1
    assert not found.filter(pl.col("source_row_number") == 1).height


def test_a_receipt_naming_its_own_invoice_keeps_it_from_another_receipts_group() -> None:
    """Receipt 1 names INV-101 and is 5.00 short of it (a fee): that pair is settled by an
    identifier. Receipt 2 (300.00, no reference) would be INV-101 + INV-102 exactly, but
    taking INV-101 left receipt 1 missing (an outside probe: 40 bank lines whose own
    reference equals the invoice lost it so)."""
    source = frame(
        invoice_number=["INV-101", None],
        customer_name=["ACME LTD", "ACME LTD"],
        amount=[95.0, 300.0],
        invoice_date=[DAY, DAY],
        memo=["INV-101", "PAYMENT"],
    )
    target = frame(
        invoice_number=["INV-101", "INV-102"],
        customer_name=["Acme Limited"] * 2,
        amount=[100.0, 200.0],
        invoice_date=[DAY, DAY],
    )
    linked, found = run_case(source, target, rules([AGGREGATION]))
    assert groups_of(linked) == {}
    pair = linked.links.filter(pl.col("source_row") == 1).row(0, named=True)
    assert (pair["target_row"], pair["kind"]) == (1, "REFERENCE")
    kinds = set(found.select("type", "source_row_number", "target_row_number").iter_rows())
    assert kinds == {
        ("AMOUNT_MISMATCH", 1, 1),
        ("MISSING_IN_TARGET", 2, None),
        ("MISSING_IN_SOURCE", None, 2),
    }


def test_a_record_quoting_an_invoice_takes_no_group_of_another_customer() -> None:
    """The bank line quotes INV-110031 (Iron Field, 15.00 short of it); two invoices of "Iron
    Ridge" (similar enough for the FUZZY rule) sum to it 11.31 short: no group, the quoted
    invoice is what it pays."""
    rule = rules([AGGREGATION]).aggregation[0]
    candidates = [
        Candidate(row=1, cents=1_822_463, days=20, key="iron field dental", quoted=True),
        Candidate(row=2, cents=430_319, days=4, key="iron ridge dental", quoted=False),
        Candidate(row=3, cents=1_391_775, days=6, key="iron ridge dental", quoted=False),
    ]
    group, _ = best_group(1_820_963, candidates, rule)
    assert group is None
    unquoted = [c._replace(quoted=False) for c in candidates]
    group, _ = best_group(1_820_963, unquoted, rule)  # quoting nothing, the group stands
    assert group is not None and group.members == (2, 3)
    # nor of the same customer's other invoices: the line names its own (its reference)
    same = [c._replace(key="iron field dental") for c in candidates]
    assert best_group(1_820_963, same, rule)[0] is None


def test_aggregation_is_deterministic_whatever_the_row_order() -> None:
    source, target = receipts_case()
    first, found = run_case(source, target, rules([AGGREGATION]))
    # the same records in another order (row numbers travel with them)
    again, found_again = run_case(
        source.sample(fraction=1.0, shuffle=True, seed=3),
        target.sample(fraction=1.0, shuffle=True, seed=5),
        rules([AGGREGATION]),
    )
    assert first.links.equals(again.links)
    assert (
        found.get_column("fingerprint").sort().equals(found_again.get_column("fingerprint").sort())
    )


def test_the_search_is_bounded_on_a_pathological_case() -> None:
    """Twenty near-equal candidates, five members, a total no subset reaches: the node budget
    ends it fast; with a small budget it says so."""
    rule = rules([AGGREGATION]).aggregation[0]
    rng = random.Random(1)
    candidates = [
        Candidate(row, 100_000 + rng.randint(0, 50), rng.randint(0, 10), "k", False)
        for row in range(1, 21)
    ]
    group, exhausted = best_group(500_000 + 10_000, candidates, rule)
    assert group is None
    _, small = best_group(450_123, candidates, rule, budget=50)
    assert small is True
    # a reachable total is found, preferring fewer members, then closer dates
    found, _ = best_group(candidates[0].cents + candidates[1].cents, candidates, rule)
    assert found is not None and found.exact and len(found.members) == 2


def _reference(amount: int, candidates: list[Candidate], rule: Any) -> tuple[int, ...] | None:
    """The documented preference, by brute force over every subset (small cases only)."""
    from itertools import combinations

    from pipelines.reconcile.aggregation_search import SHORT_ABSOLUTE, SHORT_SHARE

    tol = round(rule.tolerance * 100)

    def judge(members: tuple[Candidate, ...]) -> tuple[Any, ...] | None:
        total = sum(m.cents for m in members)
        diff = total - amount
        exact = abs(diff) <= tol
        short = diff if rule.many_side == "target" else -diff
        limit = max(round(total * SHORT_SHARE), SHORT_ABSOLUTE)
        if not exact and (
            any(m.foreign and abs(diff) >= m.gap for m in members) or not tol < short <= limit
        ):
            return None
        rows = tuple(sorted(m.row for m in members))
        similar = not all(m.same for m in members)
        quoted = sum(m.quoted for m in members)
        days = sum(m.days for m in members)
        return (0 if exact else 1, -quoted, similar, abs(diff), len(members), days, rows)

    quoted = sorted((c for c in candidates if c.quoted), key=lambda c: c.row)
    if len(quoted) >= 2 and (alone := judge(tuple(quoted[: rule.max_group_size]))):
        return alone[-1]
    # quoting any, the record takes only a group holding one of those
    ranks = [
        rank
        for size in range(2, rule.max_group_size + 1)
        for group in combinations(candidates, size)
        if len({c.key for c in group}) == 1
        and (any(c.quoted for c in group) or not quoted)
        and (rank := judge(group)) is not None
    ]
    return min(ranks)[-1] if ranks else None


@pytest.mark.parametrize("many_side", ["target", "source"])
def test_the_compiled_search_agrees_with_brute_force(many_side: str) -> None:
    """Random small cases (keys, quotes, foreign members with gaps, short payments): the
    kernel's group is the brute-force best by the documented preference."""
    rule = rules([{**AGGREGATION, "many_side": many_side}]).aggregation[0]
    rng = random.Random(7)
    checked = found = 0
    for _ in range(400):
        members = rng.randint(2, 4)
        amounts = [rng.choice([1_000, 2_500, 10_000, 12_345, 50_000]) for _ in range(9)]
        candidates = [
            Candidate(
                row=row,
                cents=cents,
                days=rng.randint(0, 10),
                key=rng.choice(["acme", "acme co", "zenith"]),
                quoted=rng.random() < 0.2,
                foreign=(foreign := rng.random() < 0.15),
                same=rng.random() < 0.8,
                gap=rng.randint(1, 3_000) if foreign else 0,
            )
            for row, cents in enumerate(amounts, start=1)
        ]
        target = sum(rng.sample(amounts, members)) + rng.choice([0, 0, -1_500, 1_500, 40])
        group, exhausted = best_group(target, candidates, rule)
        expected = _reference(target, candidates, rule)
        assert not exhausted
        assert (group.members if group else None) == expected, (target, candidates)
        checked += 1
        found += expected is not None
    assert checked == 400 and found > 100
