"""An `aggregation:` proposed from the data: does one side's record settle several of the other's?

After the one-to-one rules are proposed, `propose_aggregation` needs a RANGE rule (amounts), a
DATE_RANGE rule (dates) and a FUZZY rule (a customer-like name, the grouping key). For each
direction (many side target, then source) it samples up to `AGG_SAMPLE` one-side records and,
for each one no single many-side record of its key explains (an amount equal within the rule's
tolerance, within `AGG_SEARCH_DAYS`), looks for 2..`AGG_MAX_SIZE` many-side records of the same
key (names FUZZY-normalised as the engine compares them; a one-side name is paired with the
many side's equal name, else its closest at Jaro-Winkler `FUZZY_THRESHOLD`), the same sign,
within `AGG_SEARCH_DAYS`, whose amounts sum to it exactly (to the tolerance). A depth-first
subset sum in integer cents over the `AGG_CANDIDATES` nearest-dated candidates, pruned by the
remaining sum and stopped after `AGG_BUDGET` nodes a record, is enough: only whether some
exact group exists matters here, not which (the engine's `aggregation.py` ranks groups).
Exact cent sums of unrelated records are rare, so a share of `AGG_SHARE` (and at least
`AGG_MIN_GROUPS` groups) explained is a clear signal; otherwise nothing is proposed.

The proposal: `group_by` the FUZZY field, `amount_field` / `date_field` the RANGE and
DATE_RANGE fields, `date_window_days` the widest member-to-record gap seen plus one day,
`max_group_size` the largest group seen, `tolerance` the RANGE rule's; and a
`reference_field` when a one-side text column quotes the many side's identifiers (an EXACT
identifier rule's field) in `AGG_REFERENCE_SHARE` of its sampled values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.reconcile.normalize import TextNormalization, normalize_text
from pipelines.reconcile.proposal.columns import _as_text
from pipelines.reconcile.proposal.constants import FUZZY_THRESHOLD, SEED
from pipelines.reconcile.proposal.evidence import _days
from pipelines.reconcile.proposal.mappings import _Mapping, _transform
from pipelines.reconcile.proposal.matching import _Rule

AGG_SAMPLE = 400
"""One-side records sampled per direction."""
AGG_SEARCH_DAYS = 31
AGG_CANDIDATES = 20
AGG_MAX_SIZE = 5
AGG_BUDGET = 20_000
AGG_SHARE = 0.05
"""Share of sampled one-side records explained by a group from which one is proposed."""
AGG_MIN_GROUPS = 5
AGG_REFERENCE_SHARE = 0.1
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class _Item:
    row: int
    key: str
    cents: int  # absolute
    negative: bool
    days: int


@dataclass
class _Finding:
    many_side: str
    sampled: int
    singles: int
    groups: int
    sizes: list[int]
    gaps: list[int]

    @property
    def share(self) -> float:
        return self.groups / self.sampled if self.sampled else 0.0


def _side(frame: pl.DataFrame, amount: str, day: str, norm: pl.Series) -> list[_Item]:
    cents = (frame.get_column(amount).cast(pl.Float64) * 100).round(0)
    days = _days(frame.get_column(day))
    out = []
    for row, k, c, d in zip(
        range(frame.height), norm.to_list(), cents.to_list(), days.to_list(), strict=True
    ):
        if k and c is not None and d is not None and c != 0:
            out.append(_Item(row, k, abs(int(c)), c < 0, int(d)))
    return out


def _exact_subset(amount: int, items: list[_Item], tol: int) -> list[_Item] | None:
    """Some 2..AGG_MAX_SIZE of `items` (sorted by cents, largest first) summing to `amount`
    within `tol`, or None (also when the node budget runs out)."""
    chosen: list[_Item] = []
    spent = 0
    # suffix sums: what the remaining items can still add
    suffix = [0] * (len(items) + 1)
    for i in range(len(items) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + items[i].cents

    def walk(start: int, remaining: int) -> bool:
        nonlocal spent
        if abs(remaining) <= tol and len(chosen) >= 2:
            return True
        if len(chosen) == AGG_MAX_SIZE or remaining < -tol or suffix[start] < remaining - tol:
            return False
        for i in range(start, len(items)):
            spent += 1
            if spent > AGG_BUDGET:
                return False
            if items[i].cents > remaining + tol:
                continue
            chosen.append(items[i])
            if walk(i + 1, remaining - items[i].cents):
                return True
            chosen.pop()
        return False

    return list(chosen) if walk(0, amount) else None


def _key_map(one_keys: set[str], many_keys: list[str]) -> dict[str, str]:
    """Each one-side name -> the many side's equal name, else its closest within the FUZZY
    threshold (Jaro-Winkler, as the FUZZY rule compares)."""
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler

    known = set(many_keys)
    out = {k: k for k in one_keys if k in known}
    pending = sorted(k for k in one_keys if k not in known)
    if pending and many_keys:
        for k in pending:
            best = process.extractOne(
                k, many_keys, scorer=JaroWinkler.normalized_similarity, score_cutoff=FUZZY_THRESHOLD
            )
            if best is not None:
                out[k] = best[0]
    return out


def _explore(one: list[_Item], many: list[_Item], many_side: str, tol: int) -> _Finding:
    import random

    picked = sorted(random.Random(SEED).sample(one, min(AGG_SAMPLE, len(one))), key=lambda i: i.row)
    by_key: dict[str, list[_Item]] = {}
    for item in many:
        by_key.setdefault(item.key, []).append(item)
    keys = _key_map({i.key for i in picked}, sorted(by_key))
    found = _Finding(many_side, len(picked), 0, 0, [], [])
    for rec in picked:
        pool = [
            c
            for c in by_key.get(keys.get(rec.key, ""), [])
            if c.negative == rec.negative and abs(c.days - rec.days) <= AGG_SEARCH_DAYS
        ]
        if any(abs(c.cents - rec.cents) <= tol for c in pool):
            found.singles += 1
            continue
        pool = sorted(pool, key=lambda c: (abs(c.days - rec.days), c.row))[:AGG_CANDIDATES]
        group = _exact_subset(rec.cents, sorted(pool, key=lambda c: (-c.cents, c.row)), tol)
        if group is not None:
            found.groups += 1
            found.sizes.append(len(group))
            found.gaps.append(max(abs(c.days - rec.days) for c in group))
    return found


def _quoting_column(
    one: pl.DataFrame, exclude: set[str], identifiers: pl.Series
) -> tuple[str, float] | None:
    """The one-side text column quoting most of the many side's identifiers (runs of one to
    three words with a digit, normalised as EXACT identifiers), when enough of it does."""
    ids = set(normalize_text(_as_text(identifiers), "EXACT", TextNormalization()).drop_nulls())
    best: tuple[str, float] | None = None
    for name, dtype in one.schema.items():
        if name.startswith("_") or name in exclude or dtype != pl.String:
            continue
        values = one.get_column(name).drop_nulls()
        if values.len() == 0:
            continue
        values = values.sample(min(AGG_SAMPLE, values.len()), seed=SEED)
        owners, runs = [], []
        for at, text in enumerate(values.to_list()):
            words = _WORD.findall(text)
            for n in (1, 2, 3):
                for i in range(len(words) - n + 1):
                    run = "".join(words[i : i + n])
                    if any(ch.isdigit() for ch in run):
                        owners.append(at)
                        runs.append(run)
        if not runs:
            continue
        normal = normalize_text(pl.Series(runs, dtype=pl.String), "EXACT", TextNormalization())
        quoting = len({o for o, r in zip(owners, normal.to_list(), strict=True) if r in ids})
        share = quoting / values.len()
        if share >= AGG_REFERENCE_SHARE and (best is None or share > best[1]):
            best = (name, share)
    return best


def _unruled_amount(mappings: list[_Mapping], rules: list[_Rule]) -> _Rule | None:
    """A RANGE rule for the first mapped pair of numbers, one of them DECIMAL, without a rule."""
    ruled = {r.mapping.target.name for r in rules}
    for m in mappings:
        s, t = m.source, m.target
        if t.name in ruled or not s.family == t.family == "number":
            continue
        if "DECIMAL" not in (s.data_type, t.data_type):
            continue
        scales = [c.scale for c in (s, t) if c.scale is not None]
        tolerance = round(min(max(10.0 ** -min(scales) if scales else 0.01, 0.0001), 1.0), 4)
        why = "amounts, several records' sums equal the other side's amounts"
        return _Rule(m, "RANGE", 0.8, tolerance=tolerance, order=1, why=why)
    return None


def propose_aggregation(
    source: pl.DataFrame, target: pl.DataFrame, mappings: list[_Mapping], rules: list[_Rule]
) -> tuple[dict[str, Any] | None, list[str]]:
    """An `aggregation:` entry for the proposed rules and the description's lines about it.

    Where sums of several records make the amounts' distributions differ, the one-to-one
    evidence can fall short of a RANGE rule for a mapped pair of decimal columns: that pair is
    tried as the amount, and its RANGE rule added to `rules` when an aggregation is proposed.
    """
    amount = next((r for r in rules if r.match_type == "RANGE"), None)
    added = amount is None
    if amount is None:
        amount = _unruled_amount(mappings, rules)
    date = next((r for r in rules if r.match_type == "DATE_RANGE"), None)
    name = next((r for r in rules if r.match_type == "FUZZY"), None)
    if amount is None or date is None or name is None:
        return None, ["Aggregation: none (needs an amount, a date and a name rule)."]
    tol = round((amount.tolerance or 0.0) * 100)
    policy = TextNormalization()

    def items(frame: pl.DataFrame, side: str) -> list[_Item]:
        key, money, day = (
            (r.mapping.source if side == "source" else r.mapping.target).name
            for r in (name, amount, date)
        )
        text = frame.get_column(key)
        if side == "source":
            text = _transform(text, name.mapping.transformation)
        norm = normalize_text(_as_text(text), "FUZZY", policy)
        return _side(frame, money, day, norm)

    s_items, t_items = items(source, "source"), items(target, "target")
    findings = [
        _explore(s_items, t_items, "target", tol),
        _explore(t_items, s_items, "source", tol),
    ]
    best = max(findings, key=lambda f: f.share)
    facts = "; ".join(
        f"many side {f.many_side}: {f.groups} of {f.sampled} sampled records are exact sums of "
        f"2-{AGG_MAX_SIZE} same-name records ({f.share:.2f}), {f.singles} have one equal record"
        for f in findings
    )
    if best.share < AGG_SHARE or best.groups < AGG_MIN_GROUPS:
        return None, [f"Aggregation: none ({facts}; needs {AGG_SHARE:.2f})."]
    one_side = "source" if best.many_side == "target" else "target"
    entry: dict[str, Any] = {
        "name": f"one {one_side} record settles several {best.many_side} records",
        "many_side": best.many_side,
        "group_by": [name.mapping.target.name],
        "amount_field": amount.mapping.target.name,
        "date_field": date.mapping.target.name,
        "date_window_days": float(max(best.gaps) + 1),
        "max_group_size": max(best.sizes),
        "tolerance": amount.tolerance or 0.0,
    }
    why = f"Aggregation: {facts}."
    if added:
        rules.append(amount)
        rules.sort(key=lambda r: r.order)
        why += f" {amount.mapping.target.name!r} RANGE added: {amount.why}."
    identifier = next(
        (
            r
            for r in rules
            if r.match_type == "EXACT" and r.weight >= 1.0 and r.mapping.target.family == "text"
        ),
        None,
    )
    if identifier is not None:
        one_frame, many_frame = (source, target) if best.many_side == "target" else (target, source)
        many_col = (
            identifier.mapping.target if best.many_side == "target" else identifier.mapping.source
        ).name
        mapped = {m.source.name if best.many_side == "target" else m.target.name for m in mappings}
        quoting = _quoting_column(one_frame, mapped, many_frame.get_column(many_col))
        if quoting is not None:
            entry["reference_field"] = quoting[0]
            entry["reference_target_field"] = identifier.mapping.target.name
            why += f" {quoting[0]!r} quotes {identifier.mapping.target.name!r} in {quoting[1]:.2f}."
    return entry, [why]
