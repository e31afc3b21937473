"""Aggregate matching's search, compiled: every one-side record's best group in one call.

The rules are those of `pipelines.reconcile.aggregation` (read there): a record's candidates
come sorted by (`key`, cents descending, row), one run per `key`; if two or more are quoted,
the first `max_group_size` of them by row settle the record alone when they make a group;
otherwise a depth-first subset sum per key (when it quotes any, only groups holding one of
those it quotes), largest amounts first, pruned by the remaining sum
and bounded by `budget` combinations a record; the best group by rank (exact before short-paid,
more quoted members, members carrying the one side's own key, smaller difference, fewer
members, closer dates, lower rows). Written for Numba (`cache=True`: compiled once per
installation) because the same search in Python cost ~20 s at a million records: it is the
per-record loop, not the arithmetic, and nothing in NumPy or DuckDB expresses a bounded
subset sum per record.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

SHORT_SHARE = 0.002  # a short payment of up to 0.2 % of the group's total ...
SHORT_ABSOLUTE = 2_500  # ... or up to 25.00 (cents): a bank charge
NODE_BUDGET = 30_000  # combinations visited per one-side record


class Pool(NamedTuple):
    """Every record's candidates as columns, record i's at `offsets[i]:offsets[i + 1]`."""

    offsets: np.ndarray  # int64, one more than the records
    rows: np.ndarray  # int64 many-side row numbers
    cents: np.ndarray  # int64 absolute amounts
    days: np.ndarray  # int32 days from the one-side record
    keys: np.ndarray  # int32 group_by values (members of a group share one)
    quoted: np.ndarray  # bool: the one side's free text quotes it
    foreign: np.ndarray  # bool: paired one to one with another record (a break) ...
    gaps: np.ndarray  # int64 ... whose amounts are this far apart (cents)
    same: np.ndarray  # bool: its key is the one side's own, not merely similar


class Settings(NamedTuple):
    """An aggregation rule's numbers for the kernel."""

    max_size: int
    tolerance: int  # cents
    many_is_target: bool
    budget: int = NODE_BUDGET


class Found(NamedTuple):
    """Each searched record's best group (`found` false: none); members padded with -1."""

    found: np.ndarray
    members: np.ndarray  # (records, max_size) many-side rows, ascending
    size: np.ndarray
    total: np.ndarray
    diff: np.ndarray  # total - amount (absolute amounts)
    exact: np.ndarray
    quoted: np.ndarray  # members quoted
    similar: np.ndarray  # some member's key merely similar to the one side's
    days: np.ndarray
    exhausted: np.ndarray


@njit(cache=True)
def _limit(total: int) -> int:
    return max(int(np.rint(total * SHORT_SHARE)), SHORT_ABSOLUTE)


@njit(cache=True)
def _judge(amount, idx, count, cents, days, quoted, foreign, gaps, same, rows, tol, many_target):
    """(ok, total, diff, exact, quoted, similar, days, sorted rows) of the group `idx[:count]`."""
    total = 0
    for j in range(count):
        total += cents[idx[j]]
    diff = total - amount
    exact = abs(diff) <= tol
    members = np.empty(count, np.int64)
    if not exact:
        short = diff if many_target else -diff
        if not (tol < short <= _limit(total)):
            return False, total, diff, exact, 0, False, 0, members
        for j in range(count):
            if foreign[idx[j]] and abs(diff) >= gaps[idx[j]]:
                return False, total, diff, exact, 0, False, 0, members
    n_quoted, n_days, similar = 0, 0, False
    for j in range(count):
        n_quoted += quoted[idx[j]]
        n_days += days[idx[j]]
        similar = similar or not same[idx[j]]
        members[j] = rows[idx[j]]
    members.sort()
    return True, total, diff, exact, n_quoted, similar, n_days, members


@njit(cache=True)
def _better(exact, n_quoted, similar, diff, size, n_days, members, out, i):
    """Whether this group ranks before record i's best so far in `out`."""
    if not out[0][i]:
        return True
    a = (0 if exact else 1, -n_quoted, int(similar), abs(diff), size, n_days)
    b = (
        0 if out[5][i] else 1,
        -out[6][i],
        int(out[7][i]),
        abs(out[4][i]),
        out[2][i],
        out[8][i],
    )
    if a != b:
        return a < b
    for j in range(size):
        if members[j] != out[1][i, j]:
            return members[j] < out[1][i, j]
    return False


@njit(cache=True)
def _keep(i, members, size, total, diff, exact, n_quoted, similar, n_days, out):
    out[0][i] = True
    out[1][i, :] = -1
    out[1][i, :size] = members
    out[2][i] = size
    out[3][i] = total
    out[4][i] = diff
    out[5][i] = exact
    out[6][i] = n_quoted
    out[7][i] = similar
    out[8][i] = n_days


@njit(cache=True)
def _offer(i, amount, idx, count, p, settings, out, named=False):
    """Judge the group `idx[:count]` for record i; keep it when it is a group (`named`: with a
    quoted member) and ranks before the record's best so far. Whether it is a group."""
    cents, days, quoted, foreign, gaps, same, rows = p
    _, tol, many_target = settings
    ok, total, diff, exact, nq, similar, nd, members = _judge(
        amount, idx, count, cents, days, quoted, foreign, gaps, same, rows, tol, many_target
    )
    ok = ok and (nq > 0 or not named)
    if ok and _better(exact, nq, similar, diff, count, nd, members, out, i):
        _keep(i, members, count, total, diff, exact, nq, similar, nd, out)
    return ok


@njit(cache=True)
def _dfs(i, amount, items, n, low, high, budget, p, settings, out, named):
    """Depth-first over combinations of `items[:n]` (largest first; `named`: only those with a
    quoted member are groups); the combinations visited (at most `budget`)."""
    cents, max_size = p[0], settings[0]
    prefix = np.zeros(n + 1, np.int64)
    for j in range(n):
        prefix[j + 1] = prefix[j] + cents[items[j]]
    members = np.empty(max_size, np.int64)  # candidate indices
    following = np.zeros(max_size + 1, np.int64)
    totals = np.zeros(max_size + 1, np.int64)
    depth, visited = 0, 0
    if budget <= 0:
        return 0
    visited = 1  # the empty combination
    while True:
        room = max_size - depth
        step = False
        if room > 0:
            j = following[depth]
            while j < n:
                if totals[depth] + prefix[min(n, j + room)] - prefix[j] < low:
                    j = n
                    break
                if totals[depth] + cents[items[j]] > high:
                    j += 1
                    continue
                step = True
                break
            following[depth] = j + 1 if step else n
            if step:
                if visited >= budget:
                    return visited
                visited += 1
                members[depth] = items[j]
                totals[depth + 1] = totals[depth] + cents[items[j]]
                depth += 1
                following[depth] = j + 1
                if depth >= 2 and low <= totals[depth] <= high:
                    _offer(i, amount, members, depth, p, settings, out, named)
        if not step:
            if depth == 0:
                return visited
            depth -= 1


@njit(cache=True)
def _search(offsets, amounts, which, used, p, keys, settings, budget, out, exhausted):
    cents, days, quoted, foreign, gaps, same, rows = p
    max_size, tol, many_target = settings
    longest = 1
    for i in range(offsets.size - 1):
        longest = max(longest, offsets[i + 1] - offsets[i])
    items = np.empty(longest, np.int64)
    for i in which:
        start, end = offsets[i], offsets[i + 1]
        amount = amounts[i]
        # the remittance names two or more: they settle it alone, or not at all
        n = 0
        for c in range(start, end):
            if quoted[c] and not used[rows[c]]:
                items[n] = c
                n += 1
        if n >= 2:
            order = np.argsort(rows[items[:n]], kind="mergesort")
            take = items[:n][order][:max_size]
            if _offer(i, amount, take, take.size, p, settings, out):
                continue
        # it names one or more of them: only groups holding one of those (a customer of a
        # similar name, "Iron Ridge" for "Iron Field", or the same customer's other invoices
        # took the payment of the invoice it names)
        names = n >= 1
        if many_target:
            low = amount - tol
            high = (
                amount
                + tol
                + max(int(np.rint(amount * SHORT_SHARE / (1 - SHORT_SHARE))), SHORT_ABSOLUTE)
            )
        else:
            low = amount - tol - _limit(amount)
            high = amount + tol
        visited = 0
        c = start
        while c < end and visited < budget:
            run = c
            while run < end and keys[run] == keys[c]:
                run += 1
            n = 0
            named = False
            for k in range(c, run):
                if not used[rows[k]]:
                    items[n] = k
                    n += 1
                    named = named or quoted[k]
            c = run
            if n >= 2 and (named or not names):
                visited += _dfs(
                    i, amount, items, n, low, high, budget - visited, p, settings, out, names
                )
        exhausted[i] = visited >= budget


def search(
    pool: Pool,
    amounts: np.ndarray,
    which: np.ndarray,
    used: np.ndarray,
    settings: Settings,
) -> Found:
    """The best group of each record in `which` (indices into the pool's records), among its
    candidates whose row is not `used` (a boolean array indexed by many-side row)."""
    records = pool.offsets.size - 1
    size = max(settings.max_size, 1)
    out = (
        np.zeros(records, np.bool_),
        np.full((records, size), -1, np.int64),
        np.zeros(records, np.int64),
        np.zeros(records, np.int64),
        np.zeros(records, np.int64),
        np.zeros(records, np.bool_),
        np.zeros(records, np.int64),
        np.zeros(records, np.bool_),
        np.zeros(records, np.int64),
    )
    exhausted = np.zeros(records, np.bool_)
    columns = (pool.cents, pool.days, pool.quoted, pool.foreign, pool.gaps, pool.same, pool.rows)
    numbers = (settings.max_size, settings.tolerance, settings.many_is_target)
    if records:
        _search(
            pool.offsets,
            amounts,
            which,
            used,
            columns,
            pool.keys,
            numbers,
            settings.budget,
            out,
            exhausted,
        )
    return Found(*out, exhausted)
