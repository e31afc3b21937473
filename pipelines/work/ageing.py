"""How old the open breaks are: counts per organization x type x severity in age buckets.

An exception's age is the days since it was first raised (`created_at`, carried across re-runs
by its fingerprint: `pipelines.reconcile.commit`). Only OPEN exceptions age; resolved and
ignored ones are done. Buckets: 0-7, 8-30, 31-90 and over 90 days. Read as the database owner:
this is the data engineer's maintenance view across organizations, shown in the Dagster UI.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

BUCKETS = ("0-7", "8-30", "31-90", ">90")
# CRITICAL breaks open longer than this warn (the exception_ageing asset check)
CRITICAL_DAYS = 7

AGEING_SQL = """
SELECT o.name AS organization, e.type, e.severity,
       count(*) FILTER (WHERE e.age <= 7) AS "0-7",
       count(*) FILTER (WHERE e.age BETWEEN 8 AND 30) AS "8-30",
       count(*) FILTER (WHERE e.age BETWEEN 31 AND 90) AS "31-90",
       count(*) FILTER (WHERE e.age > 90) AS ">90",
       max(e.age) AS oldest_days
FROM (SELECT organization_id, type, severity,
             floor(extract(epoch FROM (:now - created_at)) / 86400)::int AS age
      FROM reconciliation_exceptions WHERE status = 'OPEN') e
JOIN organizations o ON o.id = e.organization_id
GROUP BY o.name, e.type, e.severity
ORDER BY o.name, e.type, e.severity
"""


@dataclass(frozen=True)
class AgeingRow:
    """Open exceptions of one organization, type and severity, by age bucket."""

    organization: str
    type: str
    severity: str
    buckets: tuple[int, int, int, int]
    oldest_days: int

    @property
    def total(self) -> int:
        return sum(self.buckets)


def exception_ageing(engine: sa.Engine, now: object | None = None) -> list[AgeingRow]:
    """Every organization's open exceptions by type, severity and age bucket."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(AGEING_SQL).bindparams(sa.bindparam("now", type_=sa.DateTime)),
            {"now": now or conn.execute(sa.text("SELECT LOCALTIMESTAMP")).scalar_one()},
        ).all()
    return [
        AgeingRow(
            r.organization,
            r.type,
            r.severity,
            (int(r[3]), int(r[4]), int(r[5]), int(r[6])),
            int(r.oldest_days or 0),
        )
        for r in rows
    ]


def stale_critical(rows: list[AgeingRow]) -> int:
    """CRITICAL open exceptions older than CRITICAL_DAYS."""
    return sum(sum(r.buckets[1:]) for r in rows if r.severity == "CRITICAL")


def bucket_chart(rows: list[AgeingRow], width: int = 30) -> str:
    """Open exceptions per age bucket across organizations, as a Markdown bar chart."""
    totals = [sum(r.buckets[i] for r in rows) for i in range(len(BUCKETS))]
    top = max(totals) or 1
    lines = ["| age (days) | open | |", "| --- | ---: | --- |"]
    for name, count in zip(BUCKETS, totals, strict=True):
        lines.append(f"| {name} | {count} | `{'#' * round(width * count / top)}` |")
    return "\n".join(lines)
