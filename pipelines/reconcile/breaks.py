"""Which records break, found by the linkage engine: the exceptions stage's heavy half.

`find_breaks` reads every record and every link once and returns only what an exception is
made of, small frames the exceptions stage (`exceptions.build_exceptions`) words in polars:

- `beyond[(rule, field)]`: the matched pairs (one to one, not aggregated groups) whose
  RANGE / DATE_RANGE `field` differs beyond the rule's tolerance (`source_row`, `target_row`,
  `score`, `<field>__s`, `<field>__t`), by the same test as a clean match (tolerance plus
  `TOLERANCE_EPSILON`);
- `leftover[side]`: the side's valid records left unmatched (`_row_number` and the matching
  fields), each with its group of records equal on every matching field: `_group` (its
  size), `_group_matched` (a member matched), `_first_unmatched`, `_first` (lowest rows).

It is SQL on a connection with DuckDB's calls (`register`, `sql(...).to_arrow_table()`,
`unregister`): an in-process DuckDB connection by default, a
`linkage.spark_sql.SparkConnection` on the `spark` engine, where the joins and windows over
every record run as Spark jobs and only the breaks come back to the driver - the same SQL,
so both engines find the same breaks. Rows come back sorted, so what follows is the same
whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipelines.reconcile.mapping import ROW, Conformed
from pipelines.reconcile.rules import TOLERANCE_EPSILON, RuleSet


@dataclass
class Breaks:
    """What the exceptions are made of (see the module's notes)."""

    beyond: dict[tuple[int, str], pl.DataFrame] = field(default_factory=dict)
    leftover: dict[str, pl.DataFrame] = field(default_factory=dict)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _beyond_sql(name: str, match_type: str, tolerance: float) -> str:
    column = _quoted(name)
    s, t = f"s.{column}", f"t.{column}"
    delta = f"({s} - {t})" if match_type == "RANGE" else f"date_diff('day', {t}, {s})"
    return (
        f"SELECT l.source_row, l.target_row, l.score, {s} AS {_quoted(name + '__s')},"
        f" {t} AS {_quoted(name + '__t')} FROM recon_break_links l"
        f" JOIN recon_break_s s ON s.{ROW} = l.source_row"
        f" JOIN recon_break_t t ON t.{ROW} = l.target_row"
        f" WHERE l.kind <> 'AGGREGATE' AND abs({delta}) > {float(tolerance + TOLERANCE_EPSILON)!r}"
        " ORDER BY l.source_row, l.target_row"
    )


def _leftover_sql(view: str, link_column: str, fields: list[str]) -> str:
    group = ", ".join(_quoted(f) for f in fields)
    window = f"OVER (PARTITION BY {group})" if group else "OVER ()"
    return (
        f"WITH linked AS (SELECT DISTINCT {link_column} AS linked_row FROM recon_break_links),"
        f" marked AS (SELECT {', '.join([f'v.{ROW}', *(f'v.{_quoted(f)}' for f in fields)])},"
        f" linked.linked_row IS NOT NULL AS _matched FROM {view} v"
        f" LEFT JOIN linked ON linked.linked_row = v.{ROW} WHERE v._valid),"
        f" grouped AS (SELECT *, count(*) {window} AS _group,"
        f" bool_or(_matched) {window} AS _group_matched,"
        f" min(CASE WHEN NOT _matched THEN {ROW} END) {window} AS _first_unmatched,"
        f" min({ROW}) {window} AS _first FROM marked)"
        f" SELECT * FROM grouped WHERE NOT _matched ORDER BY {ROW}"
    )


def _collected(con: Any, sql: str, dtypes: dict[str, pl.DataType]) -> pl.DataFrame:
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.cast({c: d for c, d in dtypes.items() if c in frame.columns})


def _duckdb() -> Any:
    import duckdb

    return duckdb.connect()


def find_breaks(
    conformed: Conformed,
    links: pl.DataFrame,
    rule_set: RuleSet,
    *,
    connect: Callable[[], Any] = _duckdb,
) -> Breaks:
    """The pairs beyond tolerance and the records left over (see the module's notes), found
    on a connection from `connect` (in-process DuckDB by default), closed at the end."""
    fields = list(conformed.field_types)
    views = {
        "source": ("recon_break_s", conformed.source),
        "target": ("recon_break_t", conformed.target),
    }
    con = connect()
    found = Breaks()
    try:  # closing the connection drops what was registered on it (DuckDB's and Spark's)
        for view, frame in views.values():
            con.register(view, frame.select(ROW, "_valid", *fields).to_arrow())
        con.register(
            "recon_break_links",
            links.select("source_row", "target_row", "score", "kind").to_arrow(),
        )
        pair_types: dict[str, pl.DataType] = {
            "source_row": pl.Int64,
            "target_row": pl.Int64,
            "score": pl.Float64,
        }
        for index, rule in enumerate(rule_set.matching_rules):
            if rule.match_type not in ("RANGE", "DATE_RANGE"):
                continue
            for name in rule.fields:
                dtype = conformed.source.schema[name]
                found.beyond[(index, name)] = _collected(
                    con,
                    _beyond_sql(name, rule.match_type, rule.tolerance or 0),
                    {**pair_types, f"{name}__s": dtype, f"{name}__t": dtype},
                )
        for side, (view, frame) in views.items():
            schema = frame.schema
            found.leftover[side] = _collected(
                con,
                _leftover_sql(view, f"{side}_row", fields),
                {
                    ROW: schema[ROW],
                    **{f: schema[f] for f in fields},
                    "_group": pl.UInt32,
                    "_first_unmatched": schema[ROW],
                    "_first": schema[ROW],
                },
            ).drop("_matched")
    finally:
        con.close()
    return found
