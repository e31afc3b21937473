"""What keeping suggested matches costs at the 1M scale, in memory (no database, no Splink).

    .venv/bin/python bench/suggested_match_bench.py [--repeat 5]

`best_candidates` (linkage, both sides) against the two best-probability group-bys it
replaced, on 3M scored pairs and 970k links; `with_suggested_matches` (exceptions stage) on
two 1M-row conformed sides (reference, amount, date, name) and 83k exceptions, 60k of them
MISSING with a kept candidate. Synthetic data from a fixed seed; medians of `--repeat`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.reconcile.mapping import ROW, Conformed  # noqa: E402
from pipelines.reconcile.suggested_match import (  # noqa: E402
    best_candidates,
    with_suggested_matches,
)

ROWS = 1_000_000
PAIRS = 3_000_000
LINKS = 970_000
KEPT = 30_000  # a side


def _median(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _old(scored: pl.DataFrame, links: pl.DataFrame) -> None:
    """The best-probability group-bys linkage ran before suggested matches were kept."""
    for side in ("source_row", "target_row"):
        scored.filter(~pl.col(side).is_in(links.get_column(side).implode())).group_by(side).agg(
            pl.col("score").max().alias("best_probability")
        )


def _side(rng: np.random.Generator) -> pl.DataFrame:
    start = dt.date(2020, 1, 1)
    return pl.DataFrame(
        {
            ROW: np.arange(1, ROWS + 1),
            "_valid": np.ones(ROWS, dtype=bool),
            "ref": [f"r{i}" for i in range(ROWS)],
            "amount": rng.random(ROWS) * 1000,
            "date": pl.date_range(start, start + dt.timedelta(days=ROWS - 1), eager=True),
            "name": [f"name {i % 977}" for i in range(ROWS)],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(1)
    scored = pl.DataFrame(
        {
            "source_row": rng.integers(1, ROWS, PAIRS),
            "target_row": rng.integers(1, ROWS, PAIRS),
            "score": rng.random(PAIRS),
        }
    )
    links = pl.DataFrame(
        {
            "source_row": rng.permutation(ROWS)[:LINKS] + 1,
            "target_row": rng.permutation(ROWS)[:LINKS] + 1,
        }
    )
    old = _median(lambda: _old(scored, links), repeat)
    new = _median(
        lambda: [best_candidates(scored, links, side) for side in ("source", "target")], repeat
    )
    print(f"linkage, {PAIRS:,} scored pairs: old group-bys {old:.3f} s, new {new:.3f} s")

    types = {"ref": "EXACT", "amount": "RANGE", "date": "DATE_RANGE", "name": "FUZZY"}
    conformed = Conformed(_side(rng), _side(rng), types)
    rows_s, rows_t = rng.permutation(ROWS)[:KEPT] + 1, rng.permutation(ROWS)[:KEPT] + 1
    candidates = pl.DataFrame(
        {"source_row": rows_s, "target_row": rng.permutation(rows_t), "score": rng.random(KEPT)}
    )
    none = pl.DataFrame(schema={"source_row": pl.Int64, "target_row": pl.Int64})
    best = {side: best_candidates(candidates, none, side) for side in ("source", "target")}
    others = 23_000
    body = pl.DataFrame(
        {
            "type": ["MISSING_IN_TARGET"] * KEPT + ["MISSING_IN_SOURCE"] * KEPT
            + ["AMOUNT_MISMATCH"] * others,
            "source_row_number": [*rows_s.tolist(), *[None] * KEPT, *range(1, others + 1)],
            "target_row_number": [*[None] * KEPT, *rows_t.tolist(), *range(1, others + 1)],
        },
        schema_overrides={"source_row_number": pl.Int64, "target_row_number": pl.Int64},
    )  # fmt: skip
    attach = _median(lambda: with_suggested_matches(body, conformed, best, 0.9), repeat)
    print(
        f"exceptions, {body.height:,} with {2 * KEPT:,} kept candidates on {ROWS:,}-row sides: "
        f"with_suggested_matches {attach:.3f} s"
    )


if __name__ == "__main__":
    main()
