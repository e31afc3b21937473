"""Aggregate matching's search, from frames and lists to the compiled kernel and back.

`candidate_pool` turns the candidate join's frame (`pipelines.reconcile.aggregation`) into the
kernel's columns (`pipelines.reconcile.aggregation_kernel`); `settle` runs the search and the
competition between records (best group first; a record whose group lost a member searches
again without it); `best_group` searches one record's `Candidate`s (a list), through the same
kernel.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import polars as pl
from numba import njit

from pipelines.reconcile.aggregation_kernel import (
    NODE_BUDGET,
    SHORT_ABSOLUTE,
    SHORT_SHARE,
    Found,
    Pool,
    Settings,
    search,
)
from pipelines.reconcile.aggregation_rules import AggregationRule

__all__ = [
    "SHORT_ABSOLUTE",
    "SHORT_SHARE",
    "Candidate",
    "Group",
    "Settled",
    "best_group",
    "settle",
]


class Candidate(NamedTuple):
    """A many-side record that could be a member of a one-side record's group."""

    row: int
    cents: int  # absolute amount in cents
    days: int
    key: int | str  # the member's group_by values (or their rank): a group's members share it
    quoted: bool
    # paired one to one with another record, `gap` cents apart (a break): a member of an exact
    # group, or of a short-paid one falling short by less than that
    foreign: bool = False
    same: bool = True  # group_by values equal to the one side's (not merely similar)
    gap: int = 0


class Group(NamedTuple):
    """A candidate group for one one-side record, with its preference rank (lower wins)."""

    members: tuple[int, ...]
    total: int  # cents
    diff: int  # group total - one-side amount, in cents (absolute amounts)
    exact: bool
    rank: tuple[Any, ...]


def settings(rule: AggregationRule, budget: int = NODE_BUDGET) -> Settings:
    return Settings(
        rule.max_group_size, round(rule.tolerance * 100), rule.many_side == "target", budget
    )


def candidate_pool(found: pl.DataFrame, gaps: pl.DataFrame) -> tuple[Pool, np.ndarray]:
    """The kernel's pool of `found` (one_row, many_row, cents, days, key, quoted, foreign_,
    same; `key` integers) and its records (one-side rows, ascending); `gaps` (many_row, gap)
    are the breaks' differences."""
    gaps = gaps.with_columns(pl.col("many_row").cast(found.schema["many_row"]))
    found = (
        found.join(gaps, on="many_row", how="left")
        .with_columns(pl.when(pl.col("foreign_")).then(pl.col("gap")).otherwise(0).fill_null(0))
        .sort("one_row", "key", pl.col("cents"), "many_row", descending=[False, False, True, False])
    )
    ones = found["one_row"].to_numpy()
    records, starts = np.unique(ones, return_index=True)
    offsets = np.append(starts, len(ones)).astype(np.int64)

    def column(name: str, kind: type) -> np.ndarray:
        return np.ascontiguousarray(found[name].to_numpy().astype(kind))

    pool = Pool(
        offsets,
        column("many_row", np.int64),
        column("cents", np.int64),
        column("days", np.int32),
        column("key", np.int32),
        column("quoted", np.bool_),
        column("foreign_", np.bool_),
        column("gap", np.int64),
        column("same", np.bool_),
    )
    return pool, records.astype(np.int64)


def _rank(found: Found, i: int) -> tuple[Any, ...]:
    size = int(found.size[i])
    return (
        0 if found.exact[i] else 1,
        -int(found.quoted[i]),
        bool(found.similar[i]),
        abs(int(found.diff[i])),
        size,
        int(found.days[i]),
        tuple(int(r) for r in found.members[i, :size]),
    )


def group_of(found: Found, i: int) -> Group:
    """Record i's group as a `Group`."""
    size = int(found.size[i])
    members = tuple(int(r) for r in found.members[i, :size])
    return Group(
        members, int(found.total[i]), int(found.diff[i]), bool(found.exact[i]), _rank(found, i)
    )


def best_group(
    amount: int, candidates: list[Candidate], rule: AggregationRule, *, budget: int = NODE_BUDGET
) -> tuple[Group | None, bool]:
    """The preferred group of `candidates` for a one-side `amount` (absolute cents) and whether
    the search ran out of budget."""
    if not candidates:
        return None, False
    keys = {k: i for i, k in enumerate(sorted({c.key for c in candidates}))}
    frame = pl.DataFrame(
        {
            "one_row": [0] * len(candidates),
            "many_row": [c.row for c in candidates],
            "cents": [c.cents for c in candidates],
            "days": [c.days for c in candidates],
            "key": [keys[c.key] for c in candidates],
            "quoted": [c.quoted for c in candidates],
            "foreign_": [c.foreign for c in candidates],
            "same": [c.same for c in candidates],
        }
    )
    gaps = pl.DataFrame(
        {"many_row": [c.row for c in candidates], "gap": [c.gap for c in candidates]}
    )
    pool, _ = candidate_pool(frame, gaps)
    used = np.zeros(max(c.row for c in candidates) + 1, np.bool_)
    found = search(pool, np.array([amount], np.int64), np.array([0]), used, settings(rule, budget))
    group = group_of(found, 0) if found.found[0] else None
    return group, bool(found.exhausted[0])


@njit(cache=True)
def _take(order, members, size, used, taken):
    """Serve records in `order`: a group none of whose members is used yet is taken."""
    for i in order:
        free = True
        for j in range(size[i]):
            if used[members[i, j]]:
                free = False
                break
        if free:
            taken[i] = True
            for j in range(size[i]):
                used[members[i, j]] = True


class Settled(NamedTuple):
    """The groups records took: `records[i]`'s members `members[i, :size[i]]`, and so on."""

    records: np.ndarray
    members: np.ndarray
    size: np.ndarray
    total: np.ndarray
    diff: np.ndarray
    exact: np.ndarray
    used: np.ndarray  # many-side rows in a group, ascending
    exhausted: int  # searches that ran out of budget


def settle(
    pool: Pool,
    records: np.ndarray,
    amounts: np.ndarray,
    break_diff: np.ndarray,
    rule: AggregationRule,
    rounds: int,
) -> Settled:
    """The groups the pool's records take.

    `break_diff[i]` is the difference of record i's one-to-one break (-1: none): the record
    takes a group only when it is exact or closer. Offers are served best rank first (then
    lower record); a record whose group lost a member searches again without it.
    """
    rows_end = int(pool.rows.max()) + 1 if pool.rows.size else 1
    used = np.zeros(rows_end, np.bool_)
    pending = np.arange(records.size)
    width = max(rule.max_group_size, 1)
    kept = Found(
        np.zeros(records.size, np.bool_),
        np.full((records.size, width), -1, np.int64),
        *(np.zeros(records.size, np.int64) for _ in range(3)),
        np.zeros(records.size, np.bool_),
        np.zeros(records.size, np.int64),
        np.zeros(records.size, np.bool_),
        np.zeros(records.size, np.int64),
        np.zeros(records.size, np.bool_),
    )
    exhausted = 0
    for _ in range(rounds):
        found = search(pool, amounts, pending, used, settings(rule))
        exhausted += int(found.exhausted[pending].sum())
        offer = pending[found.found[pending]]
        gap = break_diff[offer]
        offer = offer[(gap < 0) | found.exact[offer] | (np.abs(found.diff[offer]) < gap)]
        keys = [records[offer]]
        keys += [found.members[offer, j] for j in reversed(range(width))]
        keys += [found.days[offer], found.size[offer], np.abs(found.diff[offer])]
        keys += [found.similar[offer], -found.quoted[offer], ~found.exact[offer]]
        order = offer[np.lexsort(keys)]
        taken = np.zeros(records.size, np.bool_)
        _take(order, found.members, found.size, used, taken)
        for column, values in zip(kept, found, strict=True):
            column[taken] = values[taken]
        pending = np.sort(order[~taken[order]])
        if not pending.size:
            break
    chosen = np.flatnonzero(kept.found)
    return Settled(
        records[chosen],
        kept.members[chosen],
        kept.size[chosen],
        kept.total[chosen],
        kept.diff[chosen],
        kept.exact[chosen],
        np.flatnonzero(used),
        exhausted,
    )
