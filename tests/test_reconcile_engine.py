"""The reconciliation engine as plain functions: mapping, linkage, one-to-one and exceptions.

Small polars frames shaped like the canonical files (`_row_number`, typed columns, `_valid`);
no Dagster and no database. Splink trains on what `link` is given, so the scenarios that need
the probabilistic stage build a few hundred rows.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.ingest.column_schema import ColumnSchema, FileSchema
from pipelines.reconcile.exceptions import SeverityPolicy, build_exceptions
from pipelines.reconcile.linkage import LinkResult, assign_one_to_one, link
from pipelines.reconcile.mapping import MappingError, apply_mappings, conform
from pipelines.reconcile.rules import RuleSet, RuleSetError, parse_rule_set

logging.getLogger("splink").setLevel(logging.ERROR)

FAILURE_SCHEMA = {
    "file": pl.String,
    "row_number": pl.Int64,
    "column": pl.String,
    "check": pl.String,
    "value": pl.String,
}
NO_FAILURES = pl.DataFrame(schema=FAILURE_SCHEMA)
REF_AMOUNT = [
    {"name": "ref", "match_type": "EXACT", "fields": ["ref"]},
    {"name": "amount", "match_type": "RANGE", "fields": ["amount"], "tolerance": 0.01},
]


def frame(**columns: Any) -> pl.DataFrame:
    """A canonical-looking frame: `_row_number` 1..n, then the given columns."""
    height = len(next(iter(columns.values())))
    return pl.DataFrame({"_row_number": list(range(1, height + 1)), **columns}).with_columns(
        pl.col("_row_number").cast(pl.Int64)
    )


def rules(
    matching: list[dict[str, Any]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> RuleSet:
    return parse_rule_set(
        {
            "name": "engine-test",
            "field_mappings": mappings or [],
            "matching_rules": matching or REF_AMOUNT,
            **extra,
        }
    )


def mapped(source: pl.DataFrame, *mappings: dict[str, Any], **kwargs: Any) -> pl.DataFrame:
    return apply_mappings(source, rules(mappings=list(mappings)), **kwargs)


def exceptions_for(
    source: pl.DataFrame,
    target: pl.DataFrame,
    rule_set: RuleSet,
    linked: LinkResult,
    *,
    source_failures: pl.DataFrame = NO_FAILURES,
) -> pl.DataFrame:
    return build_exceptions(
        conform(source, target, rule_set),
        linked,
        rule_set,
        source_records=source,
        target_records=target,
        source_failures=source_failures,
        target_failures=NO_FAILURES,
    )


def pairs(linked: LinkResult) -> dict[int, tuple[int, str]]:
    """source row -> (target row, kind)."""
    return {s: (t, k) for s, t, k in linked.links.select("source_row", "target_row", "kind").rows()}


def by_key(found: pl.DataFrame) -> dict[tuple[str, int | None, int | None], dict[str, Any]]:
    return {
        (r["type"], r["source_row_number"], r["target_row_number"]): r
        for r in found.iter_rows(named=True)
    }


# ---------------------------------------------------------------- transformations


def test_direct_keeps_values_and_type_under_the_target_name() -> None:
    source = frame(Amount=[1.5, -2.25], Notes=["a", "b"])
    out = mapped(source, {"source_field": "Amount", "target_field": "amount"})
    assert out.columns == ["_row_number", "Notes", "amount"]
    assert out.schema["amount"] == pl.Float64
    assert out.get_column("amount").to_list() == [1.5, -2.25]


def test_uppercase_lowercase_and_trim() -> None:
    source = frame(
        Ref=["ab-1", " Cd-2 "], Name=["ACME Ltd", None], Code=["**X1--", "-Y2*"], Num=[7, 8]
    )
    out = mapped(
        source,
        {"source_field": "Ref", "target_field": "ref", "transformation_type": "UPPERCASE"},
        {"source_field": "Name", "target_field": "name", "transformation_type": "LOWERCASE"},
        {"source_field": "Ref", "target_field": "ref_trim", "transformation_type": "TRIM"},
        {
            "source_field": "Code",
            "target_field": "code",
            "transformation_type": "TRIM",
            "transformation_config": {"characters": "*-"},
        },
        {"source_field": "Num", "target_field": "num", "transformation_type": "UPPERCASE"},
    )
    assert out.get_column("ref").to_list() == ["AB-1", " CD-2 "]
    assert out.get_column("name").to_list() == ["acme ltd", None]
    assert out.get_column("ref_trim").to_list() == ["ab-1", "Cd-2"]
    assert out.get_column("code").to_list() == ["X1", "Y2"]
    assert out.get_column("num").to_list() == ["7", "8"]  # text transformations give text


@pytest.mark.parametrize("pattern", ["dd/MM/yyyy", "%d/%m/%Y"])
def test_date_format_parses_text_with_the_rules_pattern(pattern: str) -> None:
    source = frame(Booked=["15/01/2024", " 03/02/2024 ", "31/02/2024", None])
    out = mapped(
        source,
        {
            "source_field": "Booked",
            "target_field": "date",
            "transformation_type": "DATE_FORMAT",
            "transformation_config": {"format": pattern},
        },
    )
    assert out.schema["date"] == pl.Date
    # 3 February (day first), not 2 March; an impossible date is null, not an error
    assert out.get_column("date").to_list() == [date(2024, 1, 15), date(2024, 2, 3), None, None]


def test_date_format_can_render_text() -> None:
    source = frame(Booked=["15/01/2024"])
    out = mapped(
        source,
        {
            "source_field": "Booked",
            "target_field": "date",
            "transformation_type": "DATE_FORMAT",
            "transformation_config": {"format": "dd/MM/yyyy", "output_format": "yyyy-MM-dd"},
        },
    )
    assert out.get_column("date").to_list() == ["2024-01-15"]


def test_date_format_on_text_needs_a_format() -> None:
    source = frame(Booked=["15/01/2024"])
    with pytest.raises(MappingError, match="needs transformation_config `format`"):
        mapped(
            source,
            {
                "source_field": "Booked",
                "target_field": "date",
                "transformation_type": "DATE_FORMAT",
            },
        )


def test_date_format_rereads_a_column_typed_with_another_pattern() -> None:
    # the file stage read "03/04/2024" and "12/05/2024" as month first (MM/dd/yyyy)
    source = frame(Booked=[date(2024, 3, 4), date(2024, 12, 5)])
    mapping = {
        "source_field": "Booked",
        "target_field": "date",
        "transformation_type": "DATE_FORMAT",
        "transformation_config": {"format": "dd/MM/yyyy"},
    }
    schema = FileSchema([ColumnSchema("Booked", "DATE", format="MM/dd/yyyy")])
    out = mapped(source, mapping, schema=schema)
    assert out.get_column("date").to_list() == [date(2024, 4, 3), date(2024, 5, 12)]
    # detected with the rule's own pattern: nothing to re-read
    same = FileSchema([ColumnSchema("Booked", "DATE", format="dd/MM/yyyy")])
    out = mapped(source, mapping, schema=same)
    assert out.get_column("date").to_list() == [date(2024, 3, 4), date(2024, 12, 5)]


def _conversion(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_field": "Amount",
        "target_field": "amount",
        "transformation_type": "CURRENCY_CONVERSION",
        "transformation_config": config,
    }


def test_currency_conversion_with_rates_and_a_currency_field() -> None:
    source = frame(Amount=[100.0, 200.0, 50.0, None], Ccy=["eur", " GBP", "USD", "EUR"])
    out = mapped(
        source,
        _conversion({"rates": {"EUR": 1.1, "GBP": 1.25}, "currency_field": "Ccy", "to": "USD"}),
    )
    assert out.get_column("amount").to_list() == pytest.approx([110.0, 250.0, 50.0, None])


def test_currency_conversion_with_from_and_rate() -> None:
    source = frame(Amount=[10.0, -4.0])
    out = mapped(source, _conversion({"from": "EUR", "rate": 1.5, "to": "USD"}))
    assert out.get_column("amount").to_list() == pytest.approx([15.0, -6.0])


@pytest.fixture()
def rates_file(tmp_path: Path) -> Path:
    path = tmp_path / "rates.csv"
    path.write_text(
        "currency,rate,date\n"
        "EUR,1.10,2024-01-01\n"
        "EUR,1.20,2024-02-01\n"
        "GBP,1.30,2024-01-01\n"
        "EUR,1.50,2024-06-01\n",
        encoding="utf-8",
    )
    return path


def test_currency_conversion_uses_the_rate_in_force_on_the_rows_date(rates_file: Path) -> None:
    source = frame(
        Amount=[100.0, 100.0, 100.0, 100.0, 100.0],
        Ccy=["EUR", "EUR", "GBP", "EUR", "EUR"],
        Booked=[
            date(2024, 3, 10),  # latest before: 1 Feb -> 1.20
            date(2024, 1, 15),  # 1.10
            date(2024, 1, 31),  # GBP 1.30
            date(2024, 2, 1),  # dated that very day -> 1.20
            date(2024, 1, 31),  # the day before the change -> 1.10
        ],
    )
    config = {
        "rates_file": str(rates_file),
        "currency_field": "Ccy",
        "date_field": "Booked",
        "to": "USD",
    }
    out = mapped(source, _conversion(config))
    assert out.get_column("_row_number").to_list() == [1, 2, 3, 4, 5]
    assert out.get_column("amount").to_list() == pytest.approx([120.0, 110.0, 130.0, 120.0, 110.0])
    # without a date_field, each currency's latest rate
    del config["date_field"]
    out = mapped(source, _conversion(config))
    assert out.get_column("amount").to_list() == pytest.approx([150.0, 150.0, 130.0, 150.0, 150.0])


def test_currency_conversion_reads_text_dates_of_the_date_field(rates_file: Path) -> None:
    # a date column the file stage left as text (ISO) must still pick the dated rate
    source = frame(Amount=[100.0, 100.0], Ccy=["EUR", "EUR"], Booked=["2024-03-10", "2024-01-15"])
    config = {
        "rates_file": str(rates_file),
        "currency_field": "Ccy",
        "date_field": "Booked",
        "to": "USD",
    }
    out = mapped(source, _conversion(config))
    assert out.get_column("amount").to_list() == pytest.approx([120.0, 110.0])


def test_a_row_dated_before_any_rate_has_no_rate(rates_file: Path) -> None:
    source = frame(
        Amount=[100.0, 100.0], Ccy=["EUR", "EUR"], Booked=[date(2024, 5, 1), date(2023, 12, 31)]
    )
    config = {"rates_file": str(rates_file), "currency_field": "Ccy", "date_field": "Booked"}
    with pytest.raises(MappingError) as caught:
        mapped(source, _conversion(config), name="bank.csv")
    message = str(caught.value)
    assert "bank.csv: row 2, field 'Amount'" in message
    assert "no rate for currency 'EUR'" in message


def test_a_currency_without_a_rate_names_row_and_field() -> None:
    source = frame(Amount=[1.0, 2.0, 3.0, 4.0], Ccy=["EUR", "USD", "JPY", "JPY"])
    with pytest.raises(MappingError) as caught:
        mapped(
            source,
            _conversion({"rates": {"EUR": 1.1}, "currency_field": "Ccy", "to": "USD"}),
            name="bank.csv",
        )
    message = str(caught.value)
    assert "bank.csv: row 3, field 'Amount': no rate for currency 'JPY'" in message
    assert "2 row(s) affected" in message


def test_conform_types_the_matching_fields_alike_on_both_sides() -> None:
    source = frame(ref=["A1 ", "B2"], amount=[1, 2], booked=[date(2024, 1, 2), None])
    target = frame(ref=["A1", "B2"], amount=[1.0, 2.5], booked=["2024-01-02", "2024-01-03"])
    rule_set = rules(
        [
            *REF_AMOUNT,
            {"match_type": "DATE_RANGE", "fields": ["booked"], "tolerance": 1},
        ]
    )
    conformed = conform(source, target, rule_set)
    assert conformed.field_types == {"amount": "RANGE", "booked": "DATE_RANGE", "ref": "EXACT"}
    for side in (conformed.source, conformed.target):
        assert side.schema["amount"] == pl.Float64
        assert side.schema["booked"] == pl.Date
        assert side.schema["ref"] == pl.String
        assert side.get_column("_valid").to_list() == [True, True]
    assert conformed.source.get_column("ref").to_list() == ["a1", "b2"]  # normalised text
    assert conformed.target.get_column("booked").to_list() == [date(2024, 1, 2), date(2024, 1, 3)]


def test_conform_names_a_matching_field_missing_after_mapping() -> None:
    with pytest.raises(MappingError, match="target: matching field 'amount'"):
        conform(frame(ref=["A"], amount=[1.0]), frame(ref=["A"], value=[1.0]), rules())


# ---------------------------------------------------------------- match types


def test_exact_links_equal_keys_one_to_one() -> None:
    source = frame(ref=["A", "B", "C", "E"])
    target = frame(ref=["C", "A", "D", "B"])
    rule_set = rules([{"match_type": "EXACT", "fields": ["ref"]}])
    linked = link(conform(source, target, rule_set), rule_set)
    assert pairs(linked) == {1: (2, "EXACT"), 2: (4, "EXACT"), 3: (1, "EXACT")}
    assert linked.links.get_column("score").to_list() == [1.0, 1.0, 1.0]


def _jaro_winkler(a: str, b: str) -> float:
    return duckdb.connect().execute("SELECT jaro_winkler_similarity(?, ?)", [a, b]).fetchall()[0][0]


def test_fuzzy_threshold_decides_the_pre_pass() -> None:
    names = [
        ("JONATHAN SMITH", "JONATHON SMITH"),  # just above 0.97
        ("MARTHA", "MARHTA"),  # just below
        ("JONATHAN SMITH", "PETER BROWN"),  # clearly below
    ]
    above, just_below, clearly_below = (_jaro_winkler(a, b) for a, b in names)
    assert 0.97 <= above < 0.98 and 0.96 <= just_below < 0.97 and clearly_below < 0.5
    source = frame(ref=["A", "B", "C"], payee=[a for a, _ in names])
    target = frame(ref=["A", "B", "C"], payee=[b for _, b in names])
    rule_set = rules(
        [
            {"match_type": "EXACT", "fields": ["ref"]},
            {"match_type": "FUZZY", "fields": ["payee"], "threshold": 0.97},
        ]
    )
    linked = link(conform(source, target, rule_set), rule_set)
    # the first pre-pass pairs what agrees on every rule: only A; its score is the weighted
    # mean of the rules' similarities
    exact = linked.links.filter(pl.col("kind") == "EXACT")
    assert exact.select("source_row", "target_row").rows() == [(1, 1)]
    assert exact.row(0, named=True)["score"] == pytest.approx((1.0 + above) / 2)
    # the identifier pre-pass pairs B (same reference, a name just below the threshold is
    # no contradiction); C's names contradict its shared reference
    keyed = linked.links.filter(pl.col("kind") == "REFERENCE")
    assert keyed.select("source_row", "target_row").rows() == [(2, 2)]


@pytest.fixture(scope="module")
def ledger_case() -> dict[str, Any]:
    """250 bank/ledger pairs with planted differences, linked once (Splink trains on them)."""
    rng = random.Random(5)
    n = 250
    payees = ["ACME LTD", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "STARK", "WAYNE", "WONKA"]
    refs = [f"R{i:04}" for i in range(1, n + 1)]
    amounts = [round(rng.uniform(10, 5000), 2) for _ in refs]
    dates = [date(2024, 1, 1) + timedelta(days=rng.randint(0, 300)) for _ in refs]
    names = [f"{rng.choice(payees)} {rng.randint(1, 99)}" for _ in refs]
    source = frame(ref=refs, amount=amounts, date=dates, payee=names)
    t_amounts, t_dates = list(amounts), list(dates)
    t_amounts[9] = round(amounts[9] + 0.004, 3)  # row 10: within the 0.01 tolerance
    t_amounts[19] = round(amounts[19] + 250, 2)  # row 20: far beyond it
    t_dates[29] = dates[29] + timedelta(days=10)  # row 30: beyond the 3 days
    t_dates[39] = dates[39] - timedelta(days=3)  # row 40: exactly the tolerance
    target = frame(ref=refs, amount=t_amounts, date=t_dates, payee=names)
    rule_set = rules(
        [
            {"name": "ref", "match_type": "EXACT", "fields": ["ref"]},
            {"name": "amount", "match_type": "RANGE", "fields": ["amount"], "tolerance": 0.01},
            {"name": "date", "match_type": "DATE_RANGE", "fields": ["date"], "tolerance": 3},
            {"match_type": "FUZZY", "fields": ["payee"], "threshold": 0.9, "weight": 0.5},
        ],
        match_threshold=0.9,
    )
    linked = link(conform(source, target, rule_set), rule_set)
    found = exceptions_for(source, target, rule_set, linked)
    return {"linked": linked, "found": found, "n": n, "rule_set": rule_set}


def test_range_within_tolerance_is_a_clean_exact_match(ledger_case: dict[str, Any]) -> None:
    linked, found = ledger_case["linked"], ledger_case["found"]
    assert pairs(linked)[10] == (10, "EXACT")
    score = linked.links.filter(pl.col("source_row") == 10).get_column("score")[0]
    assert 0.5 < score < 1.0  # a difference lowers the pre-pass score, within tolerance
    assert found.filter(pl.col("source_row_number") == 10).height == 0


def test_range_beyond_tolerance_is_paired_by_its_reference_as_amount_mismatch(
    ledger_case: dict[str, Any],
) -> None:
    linked, found = ledger_case["linked"], ledger_case["found"]
    assert linked.trained and linked.model is not None
    assert pairs(linked)[20] == (20, "REFERENCE")  # paired by its reference, then judged
    [row] = found.filter(pl.col("source_row_number") == 20).iter_rows(named=True)
    assert (row["type"], row["target_row_number"]) == ("AMOUNT_MISMATCH", 20)
    [diff] = json.loads(row["diff"])
    assert diff["field"] == "amount" and diff["delta"] == pytest.approx(-250.0)
    assert row["confidence"] == pytest.approx(
        linked.links.filter(pl.col("source_row") == 20).get_column("score")[0]
    )
    assert row["confidence"] > 0.5


def test_date_range_within_and_beyond_tolerance(ledger_case: dict[str, Any]) -> None:
    linked, found = ledger_case["linked"], ledger_case["found"]
    assert pairs(linked)[40] == (40, "EXACT")  # 3 days apart, tolerance 3
    assert found.filter(pl.col("source_row_number") == 40).height == 0
    assert pairs(linked)[30] == (30, "REFERENCE")  # same reference, 10 days apart
    [row] = found.filter(pl.col("source_row_number") == 30).iter_rows(named=True)
    assert row["type"] == "DATE_MISMATCH"
    assert json.loads(row["diff"])[0]["delta"] == -10.0


def test_the_planted_case_links_everything_else_exactly(ledger_case: dict[str, Any]) -> None:
    linked, found, n = ledger_case["linked"], ledger_case["found"], ledger_case["n"]
    assert linked.links.height == n
    assert linked.links.select((pl.col("source_row") == pl.col("target_row")).all()).item()
    assert linked.stats["exact_matches"] == n - 2
    assert sorted(found.get_column("type").to_list()) == ["AMOUNT_MISMATCH", "DATE_MISMATCH"]


def test_a_difference_of_exactly_the_tolerance_is_agreement() -> None:
    # "a difference up to the tolerance is agreement": one cent apart with a 0.01 tolerance
    source = frame(ref=["A", "B", "C"], amount=[1.00, 100.00, 2500.10])
    target = frame(ref=["A", "B", "C"], amount=[1.01, 100.01, 2500.09])
    rule_set = rules()
    linked = link(conform(source, target, rule_set), rule_set)
    assert pairs(linked) == {1: (1, "EXACT"), 2: (2, "EXACT"), 3: (3, "EXACT")}
    found = exceptions_for(source, target, rule_set, linked)
    assert found.filter(pl.col("type") == "AMOUNT_MISMATCH").height == 0


# ---------------------------------------------------------------- one-to-one


PAIRS = pl.DataFrame(
    {
        "source_row": [1, 1, 2, 2, 3, 3, 4, 9, 5],
        "target_row": [1, 2, 2, 1, 4, 3, 3, 9, 5],
        "score": [0.9, 0.95, 0.95, 0.6, 0.7, 0.7, 0.7, 0.2, 0.99],
        "kind": ["PROBABILISTIC"] * 9,
    },
    schema={"source_row": pl.Int64, "target_row": pl.Int64, "score": pl.Float64, "kind": pl.String},
)


def test_one_to_one_best_score_first_with_row_tie_breaks() -> None:
    chosen = assign_one_to_one(PAIRS)
    assert chosen.select("source_row", "target_row", "score").rows() == [
        (1, 2, 0.95),  # ties with (2, 2): the lower source row wins
        (2, 1, 0.6),  # what is left for source 2
        (3, 3, 0.7),  # ties with (3, 4) and (4, 3): the lower target row wins
        (5, 5, 0.99),
        (9, 9, 0.2),  # uncontested pairs are kept whatever their score
    ]
    assert chosen.get_column("source_row").is_unique().all()
    assert chosen.get_column("target_row").is_unique().all()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_one_to_one_does_not_depend_on_input_order(seed: int) -> None:
    shuffled = PAIRS.sample(fraction=1.0, shuffle=True, seed=seed)
    assert assign_one_to_one(shuffled).equals(assign_one_to_one(PAIRS))


def test_one_to_one_of_nothing() -> None:
    assert assign_one_to_one(PAIRS.clear()).height == 0


# ---------------------------------------------------------------- exceptions


@pytest.fixture(scope="module")
def small_case() -> dict[str, Any]:
    """Missing records, repeated rows and a row that failed validation, linked once."""
    source = frame(
        ref=["A", "B", "B", "C", "E"],
        amount=[10.0, 20.0, 20.0, 5000.0, 70.0],
        memo=["a", "b", "b", "c", "bad"],
        _valid=[True, True, True, True, False],
    )
    target = frame(ref=["A", "B", "D", "D"], amount=[10.0, 20.0, 5.0, 5.0], note=["", "", "", ""])
    failures = pl.DataFrame(
        {
            "file": ["bank.csv", "bank.csv"],
            "row_number": [5, 5],
            "column": ["amount", "booking_date"],
            "check": ["not_null", "date_format"],
            "value": [None, "31/02/2024"],
        },
        schema=FAILURE_SCHEMA,
    )
    rule_set = rules()
    linked = link(conform(source, target, rule_set), rule_set)
    found = exceptions_for(source, target, rule_set, linked, source_failures=failures)
    return {
        "source": source,
        "target": target,
        "failures": failures,
        "rule_set": rule_set,
        "linked": linked,
        "found": found,
    }


def test_missing_and_duplicate_records(small_case: dict[str, Any]) -> None:
    found = by_key(small_case["found"])
    assert pairs(small_case["linked"]) == {1: (1, "EXACT"), 2: (2, "EXACT")}
    assert set(found) == {
        ("DUPLICATE_FOUND", 3, None),  # repeats source row 2, which matched
        ("MISSING_IN_TARGET", 4, None),
        ("VALIDATION_ERROR", 5, None),  # kept out of matching, not missing
        ("MISSING_IN_SOURCE", None, 3),  # the first of two equal unmatched rows is missing
        ("DUPLICATE_FOUND", None, 4),  # the second repeats it
    }
    assert json.loads(found[("DUPLICATE_FOUND", 3, None)]["diff"]) == [
        {"field": "_row_number", "duplicate_of": 2}
    ]
    assert json.loads(found[("DUPLICATE_FOUND", None, 4)]["diff"])[0]["duplicate_of"] == 3
    assert "repeats row 2" in found[("DUPLICATE_FOUND", 3, None)]["description"]
    missing = found[("MISSING_IN_TARGET", 4, None)]
    assert missing["confidence"] == 1.0  # no candidate was scored
    assert "ref=c" in missing["description"]  # as compared (normalised)


def test_missing_records_are_graded_by_their_own_amount(small_case: dict[str, Any]) -> None:
    found = by_key(small_case["found"])
    assert found[("MISSING_IN_TARGET", 4, None)]["severity"] == "CRITICAL"  # 5000
    assert found[("MISSING_IN_SOURCE", None, 3)]["severity"] == "LOW"  # 5
    assert found[("DUPLICATE_FOUND", 3, None)]["severity"] == "MEDIUM"
    assert found[("VALIDATION_ERROR", 5, None)]["severity"] == "HIGH"


def test_validation_error_one_per_row_with_every_failure(small_case: dict[str, Any]) -> None:
    row = by_key(small_case["found"])[("VALIDATION_ERROR", 5, None)]
    diff = json.loads(row["diff"])
    assert {(d["field"], d["check"], d["source_value"]) for d in diff} == {
        ("amount", "not_null", None),
        ("booking_date", "date_format", "31/02/2024"),
    }
    assert "bank.csv" in row["description"] and "kept out of matching" in row["description"]
    assert json.loads(row["source_data"])["memo"] == "bad"


def test_records_travel_as_json_with_their_row_numbers(small_case: dict[str, Any]) -> None:
    found = by_key(small_case["found"])
    source_data = json.loads(found[("MISSING_IN_TARGET", 4, None)]["source_data"])
    assert source_data == {"_row_number": 4, "ref": "C", "amount": 5000.0, "memo": "c"}
    assert found[("MISSING_IN_TARGET", 4, None)]["target_data"] is None
    target_data = json.loads(found[("MISSING_IN_SOURCE", None, 3)]["target_data"])
    assert target_data["_row_number"] == 3 and target_data["ref"] == "D"
    assert found[("MISSING_IN_SOURCE", None, 3)]["source_data"] is None


def test_fingerprints_are_stable_and_distinct(small_case: dict[str, Any]) -> None:
    first = small_case["found"]
    again = exceptions_for(
        small_case["source"],
        small_case["target"],
        small_case["rule_set"],
        small_case["linked"],
        source_failures=small_case["failures"],
    )
    assert first.get_column("fingerprint").to_list() == again.get_column("fingerprint").to_list()
    prints = first.get_column("fingerprint")
    assert prints.is_unique().all() and prints.str.len_chars().eq(64).all()
    # the same data in another order: same records, so the same fingerprints
    reordered_target = (
        small_case["target"]
        .reverse()
        .with_columns(pl.int_range(1, 5, dtype=pl.Int64).alias("_row_number"))
    )
    rule_set = small_case["rule_set"]
    linked = link(conform(small_case["source"], reordered_target, rule_set), rule_set)
    moved = exceptions_for(
        small_case["source"],
        reordered_target,
        rule_set,
        linked,
        source_failures=small_case["failures"],
    )
    assert sorted(moved.get_column("fingerprint")) == sorted(prints)


# ---------------------------------------------------------------- severity


@pytest.fixture(scope="module")
def mismatches() -> dict[str, Any]:
    """Matched pairs with known differences (links given, not inferred)."""
    day = date(2024, 5, 1)
    #            LOW      MEDIUM   HIGH     CRITICAL CRIT.rel MED.rel
    s_amounts = [10000.5, 10020.0, 10200.0, 12000.0, 26.0, 392.0, 50.0, 50.0, 50.0, 50.0]
    t_amounts = [10000.0, 10000.0, 10000.0, 10000.0, 20.0, 400.0, 50.0, 50.0, 50.0, 50.0]
    shifts = [0, 0, 0, 0, 0, 0, 5, 8, 20, 40]  # days; tolerance 3
    n = len(s_amounts)
    refs = [f"R{i}" for i in range(n)]
    source = frame(ref=refs, amount=s_amounts, date=[day] * n)
    target = frame(ref=refs, amount=t_amounts, date=[day + timedelta(days=d) for d in shifts])
    links = pl.DataFrame(
        {
            "source_row": range(1, n + 1),
            "target_row": range(1, n + 1),
            "score": [0.95] * n,
            "kind": ["PROBABILISTIC"] * n,
        },
        schema={
            "source_row": pl.Int64,
            "target_row": pl.Int64,
            "score": pl.Float64,
            "kind": pl.String,
        },
    )
    empty = pl.DataFrame(schema={"source_row": pl.Int64, "best_probability": pl.Float64})
    linked = LinkResult(links, empty, empty.rename({"source_row": "target_row"}), None, False)
    matching = [
        *REF_AMOUNT,
        {"name": "date", "match_type": "DATE_RANGE", "fields": ["date"], "tolerance": 3},
    ]
    return {"source": source, "target": target, "linked": linked, "matching": matching}


def _severities(case: dict[str, Any], severity: dict[str, Any] | None = None) -> dict[int, str]:
    rule_set = rules(case["matching"], severity=severity or {})
    found = exceptions_for(case["source"], case["target"], rule_set, case["linked"])
    assert found.get_column("type").n_unique() == 2
    return dict(found.select("source_row_number", "severity").rows())


def test_default_severity_bands(mismatches: dict[str, Any]) -> None:
    assert _severities(mismatches) == {
        1: "LOW",  # 0.50 off
        2: "MEDIUM",  # 20 off
        3: "HIGH",  # 200 off
        4: "CRITICAL",  # 2000 off
        5: "CRITICAL",  # only 6 off, but 30 % of the amount
        6: "MEDIUM",  # 8 off, 2 % of the amount
        7: "LOW",  # 5 days: 2 beyond the tolerance
        8: "MEDIUM",  # 8 days: 5 beyond
        9: "HIGH",  # 20 days: 17 beyond
        10: "CRITICAL",  # 40 days: 37 beyond
    }


def test_a_rule_sets_severity_policy_changes_the_band(mismatches: dict[str, Any]) -> None:
    custom = {
        "amount_absolute": [0.25, 1000, 5000],
        "amount_relative": [0.5, 0.6, 0.7],
        "date_days": [1, 2, 3],
    }
    changed = _severities(mismatches, custom)
    assert changed[1] == "MEDIUM"  # 0.50 off now reaches MEDIUM
    assert changed[3] == "MEDIUM"  # 200 off is no longer HIGH
    assert changed[5] == "MEDIUM"  # 30 % is below the new relative bands
    assert changed[7] == "HIGH"  # 2 days beyond
    assert changed[10] == "CRITICAL"


def test_a_bad_severity_policy_is_refused() -> None:
    with pytest.raises(RuleSetError, match="three increasing thresholds"):
        SeverityPolicy.from_config({"amount_absolute": [100, 10, 1]})
    with pytest.raises(RuleSetError, match="unknown key"):
        SeverityPolicy.from_config({"amount": [1, 2, 3]})
    with pytest.raises(RuleSetError, match="is not one of"):
        SeverityPolicy.from_config({"duplicate": "URGENT"})
    assert SeverityPolicy.from_config({"duplicate": "low"}).duplicate == "LOW"


@pytest.mark.parametrize("bands", [5, ["a", "b", "c"], None])
def test_severity_bands_that_are_not_three_numbers_are_a_rule_set_error(bands: Any) -> None:
    with pytest.raises(RuleSetError, match="severity.amount_absolute"):
        SeverityPolicy.from_config({"amount_absolute": bands})


def test_a_date_column_meets_a_text_column_as_the_files_wrote_them() -> None:
    # the source file typed its compact dates; the target kept them as text (some were not
    # dates at all): EXACT compares what each file wrote, not ISO text against compact text
    source = frame(dob=[date(1956, 4, 9), date(1990, 2, 7)])
    target = frame(dob=["19560409", "19900270"])
    conformed = conform(
        source,
        target,
        rules([{"name": "dob", "match_type": "EXACT", "fields": ["dob"]}]),
        source_schema=FileSchema([ColumnSchema("dob", "DATE", format="yyyyMMdd")]),
        target_schema=FileSchema([ColumnSchema("dob", "STRING")]),
    )
    assert conformed.source.get_column("dob").to_list() == ["19560409", "19900207"]
    assert conformed.target.get_column("dob").to_list() == ["19560409", "19900270"]
