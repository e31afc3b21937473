"""Aggregate matching's search: one one-side record's group among its candidates.

`best_group` runs the bounded subset sum described in `pipelines.reconcile.aggregation` over a
record's `Candidate`s (integer cents); `CandidatePool` keeps every record's candidates as
columns (numpy) and builds a record's list only when it is searched, so a million records'
candidates are not all Python objects at once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import polars as pl

from pipelines.reconcile.aggregation_rules import AggregationRule

NODE_BUDGET = 30_000  # combinations visited per one-side record
SHORT_SHARE = 0.002  # a short payment of up to 0.2 % of the group's total ...
SHORT_ABSOLUTE = 2_500  # ... or up to 25.00 (cents): a bank charge


class Candidate(NamedTuple):
    """A many-side record that could be a member of a one-side record's group."""

    row: int
    cents: int  # absolute amount in cents
    days: int
    key: str  # the member's group_by values: members of one group share it
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


def _short_limit(total: int) -> int:
    return max(round(total * SHORT_SHARE), SHORT_ABSOLUTE)


def _judge(amount: int, members: list[Candidate], rule: AggregationRule, tol: int) -> Group | None:
    """The group these members make for a one-side `amount` (cents), or None."""
    total = sum(m.cents for m in members)
    diff = total - amount
    exact = abs(diff) <= tol
    short = diff if rule.many_side == "target" else -diff
    if not exact and (
        any(m.foreign and abs(diff) >= m.gap for m in members)
        or not tol < short <= _short_limit(total)
    ):
        return None
    rows = tuple(sorted(m.row for m in members))
    quoted = sum(m.quoted for m in members)
    days = sum(m.days for m in members)
    similar = not all(m.same for m in members)  # a similar name, not the one side's own
    rank = (0 if exact else 1, -quoted, similar, abs(diff), len(members), days, rows)
    return Group(rows, total, diff, exact, rank)


def best_group(
    amount: int, candidates: list[Candidate], rule: AggregationRule, *, budget: int = NODE_BUDGET
) -> tuple[Group | None, bool]:
    """The preferred group of `candidates` for a one-side `amount` (absolute cents) and whether
    the search ran out of budget."""
    tol = round(rule.tolerance * 100)
    quoted = [c for c in candidates if c.quoted]
    if len(quoted) >= 2:  # the remittance names them: they settle it alone, or not at all
        alone = _judge(amount, quoted[: rule.max_group_size], rule, tol)
        if alone is not None:
            return alone, False
    low = amount - tol - (_short_limit(amount) if rule.many_side == "source" else 0)
    high = amount + tol + (max(round(amount * SHORT_SHARE / (1 - SHORT_SHARE)), SHORT_ABSOLUTE))
    if rule.many_side == "source":
        high = amount + tol
    best: Group | None = None
    visited = 0
    by_key: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_key.setdefault(c.key, []).append(c)
    for key in sorted(by_key):
        items = sorted(by_key[key], key=lambda c: (-c.cents, c.row))
        if len(items) < 2:
            continue
        found, spent = _search(amount, items, rule, tol, (low, high), budget - visited)
        visited += spent
        if found is not None and (best is None or found.rank < best.rank):
            best = found
        if visited >= budget:
            break
    return best, visited >= budget


def _search(
    amount: int,
    items: list[Candidate],
    rule: AggregationRule,
    tol: int,
    bounds: tuple[int, int],
    budget: int,
) -> tuple[Group | None, int]:
    """Depth-first over combinations of `items` (largest first) whose total stays within
    `bounds`; returns the best group and the combinations visited (at most `budget`)."""
    low, high = bounds
    n = len(items)
    prefix = [0]  # sums of the largest amounts: items are sorted, largest first
    for c in items:
        prefix.append(prefix[-1] + c.cents)
    best: Group | None = None
    visited = 0
    chosen: list[Candidate] = []

    def walk(start: int, total: int) -> bool:
        """False once the budget is spent."""
        nonlocal best, visited
        if visited >= budget:
            return False
        visited += 1
        if len(chosen) >= 2 and low <= total <= high:
            group = _judge(amount, chosen, rule, tol)
            if group is not None and (best is None or group.rank < best.rank):
                best = group
        room = rule.max_group_size - len(chosen)
        for i in range(start, n) if room else ():
            # the largest `room` amounts from i cannot reach the lower bound: stop
            if total + prefix[min(n, i + room)] - prefix[i] < low:
                break
            if total + items[i].cents > high:
                continue
            chosen.append(items[i])
            going = walk(i + 1, total + items[i].cents)
            chosen.pop()
            if not going:
                return False
        return True

    walk(0, 0)
    return best, visited


class CandidatePool:
    """The candidates of every one-side record (`found`: one_row, many_row, cents, days, key,
    quoted, foreign_, same), as columns; `of(r)` builds record r's list, by many-side row."""

    def __init__(self, found: pl.DataFrame, gaps: dict[int, int]) -> None:
        found = found.sort("one_row", "many_row")
        ones = found["one_row"].to_numpy()
        records, starts = np.unique(ones, return_index=True)
        ends = [*starts[1:].tolist(), len(ones)]
        self.records: list[int] = records.tolist()
        self._bounds = dict(zip(self.records, zip(starts.tolist(), ends, strict=True), strict=True))
        self._keys: list[str] = found["key"].unique().sort().to_list()
        key_index = (found["key"].rank("dense").cast(pl.Int64) - 1).to_numpy()
        self._columns = (
            found["many_row"].cast(pl.Int64).to_numpy(),
            found["cents"].cast(pl.Int64).to_numpy(),
            found["days"].cast(pl.Int64).to_numpy(),
            key_index,
            found["quoted"].to_numpy(),
            found["foreign_"].to_numpy(),
            found["same"].to_numpy(),
        )
        self._gaps = gaps

    def of(self, record: int) -> list[Candidate]:
        start, end = self._bounds[record]
        rows, cents, days, keys, quoted, foreign, same = (
            c[start:end].tolist() for c in self._columns
        )
        names, gaps = self._keys, self._gaps
        return [
            Candidate(r, c, d, names[k], q, f, s, gaps.get(r, 0) if f else 0)
            for r, c, d, k, q, f, s in zip(
                rows, cents, days, keys, quoted, foreign, same, strict=True
            )
        ]
