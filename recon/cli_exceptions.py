"""`recon exceptions ...`: list, show, assign, unassign, resolve, ignore, reopen, export;
accept or dismiss a suggested match.

Every command acts in one organization (`--org`) as one user (`--as` / `RECON_USER`, see
`recon/cli_users.py`) inside `organization_transaction`; VIEWER may list, show and export,
EDITOR also decides, ADMIN also adds reason codes. A decision names exceptions by id, or takes
`--all-matching` with the list filters and prints how many it changed. The logic is in
`pipelines/work/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.work.exceptions_work import NOBODY, Decision, Filters
from recon.cli_users import AsOption, OrgOption, acting
from recon.scope import DEFAULT_ORGANIZATION
from resources.errors import ReconError

exceptions_app = typer.Typer(
    help="Work the exceptions: list, show, assign, resolve, ignore, reopen, export; accept or "
    "dismiss suggested matches.",
    no_args_is_help=True,
)

Rec = Annotated[int | None, typer.Option("--reconciliation", help="Only this reconciliation.")]
Type = Annotated[str | None, typer.Option("--type", help="Only this type, e.g. AMOUNT_MISMATCH.")]
Sev = Annotated[str | None, typer.Option("--severity", help="Only this severity, e.g. HIGH.")]
Status = Annotated[str | None, typer.Option("--status", help="Only OPEN, RESOLVED or IGNORED.")]
Assignee = Annotated[str | None, typer.Option("--assignee", help="Only those assigned to EMAIL.")]
Older = Annotated[
    int | None, typer.Option("--older-than", help="Only those older than DAYS.", min=0)
]
Ids = Annotated[list[int] | None, typer.Argument(help="Exception ids.", show_default=False)]
AllMatching = Annotated[
    bool, typer.Option("--all-matching", help="Every exception matching the filters instead.")
]


def _filters(
    rec: int | None,
    type_: str | None,
    severity: str | None,
    status: str | None,
    assignee: str | None,
    older: int | None,
) -> Filters:
    return Filters(rec, type_, severity, status, assignee, older)


@exceptions_app.command("list")
def exceptions_list(
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """The organization's exceptions with age in days and assignee, oldest id first."""
    from pipelines.work.exceptions_work import list_exceptions

    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    with acting(org, as_user) as (conn, _actor):
        rows = list_exceptions(conn, filters, limit)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        typer.echo(
            f"#{r['id']:<7} rec {r['reconciliation_id']:<5} {r['type']:<17} {r['severity']:<8} "
            f"{r['status']:<8} {r['age_days']:>4} d  {r['assignee'] or '-':<24} "
            f"{(r['description'] or '')[:60]}"
        )
    typer.echo(f"{len(rows)} exceptions", err=True)


def _value(value: Any) -> str:
    return "" if value is None else str(value)


def format_detail(d: dict[str, Any]) -> str:
    """`recon exceptions show` as text: records side by side, diff, suggestion, history."""
    lines = [
        f"exception #{d['id']} (reconciliation {d['reconciliation_id']}): {d['type']} "
        f"{d['severity']} {d['status']}, {d['age_days']} days old, assignee "
        f"{d['assignee'] or '-'}, reason {d['reason_code'] or '-'}",
        f"  {d['description'] or ''}",
    ]
    if d["resolution"]:
        lines.append(f"  resolution: {d['resolution']} (by {d['resolved_by']}, {d['resolved_at']})")
    source = sorted((d["source_data"] or {}).items())
    target = sorted((d["target_data"] or {}).items())
    lines.append(
        f"  {'source row ' + _value(d['source_row_number']):<40} "
        f"target row {_value(d['target_row_number'])}"
    )
    for i in range(max(len(source), len(target))):
        left = f"{source[i][0]}={_value(source[i][1])}" if i < len(source) else ""
        right = f"{target[i][0]}={_value(target[i][1])}" if i < len(target) else ""
        lines.append(f"    {left[:38]:<38} {right}")
    for item in d["diff"] or []:
        lines.append(
            f"  diff {item.get('field')}: source {item.get('source_value')}, target "
            f"{item.get('target_value')}"
            + (f", delta {item['delta']}" if item.get("delta") is not None else "")
        )
    suggestion = d.get("suggestion") or {}
    if suggestion.get("resolution"):
        lines.append(
            f"  suggested resolution: {suggestion['resolution']} (score {suggestion.get('score')})"
        )
    kept = d.get("suggested_match") or {}
    if kept:
        lines.append(
            f"  suggested match (kept by the run): source row {kept['source_row']} with target "
            f"row {kept['target_row']}, Splink probability {kept['score']:.3f} (threshold "
            f"{kept['threshold']:g})"
        )
        for item in kept.get("why") or []:
            delta = f", delta {item['delta']}" if item.get("delta") is not None else ""
            lines.append(
                f"    {item['field']}: source {item['source_value']}, target "
                f"{item['target_value']}{delta}"
            )
    lines.append("  history:" if d["history"] else "  history: none")
    for event in d["history"]:
        before, after = event["before"] or {}, event["after"] or {}
        changed = ", ".join(
            f"{k} {before.get(k)!s} -> {after.get(k)!s}"
            for k in after
            if before.get(k) != after.get(k)
        )
        reason = f" ({event['reason']})" if event["reason"] else ""
        lines.append(
            f"    {event['at']:%Y-%m-%d %H:%M} {event['actor']} {event['action']}: "
            f"{changed}{reason}"
        )
    return "\n".join(lines)


@exceptions_app.command("show")
def exceptions_show(
    exception_id: Annotated[int, typer.Argument(help="A reconciliation_exceptions.id.")],
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """One exception: both records side by side, the diff, the suggestion and its history."""
    from pipelines.work.exceptions_work import exception_detail

    with acting(org, as_user) as (conn, _actor):
        detail = exception_detail(conn, exception_id)
    typer.echo(json.dumps(detail, default=str) if as_json else format_detail(detail))


def _decide(
    decision: Decision,
    org: str,
    as_user: str | None,
    ids: list[int] | None,
    all_matching: bool,
    filters: Filters,
) -> None:
    from pipelines.work.exceptions_work import decide

    if all_matching == bool(ids):
        raise ReconError("name exceptions by id, or pass --all-matching with filters (not both)")
    if ids and not filters.empty():
        raise ReconError("the list filters go with --all-matching, not with ids")
    with acting(org, as_user) as (conn, actor):
        outcome = (
            decide(conn, actor, decision, filters=filters)
            if all_matching
            else decide(conn, actor, decision, ids=ids)
        )
    done = {
        "ASSIGN": "assigned",
        "UNASSIGN": "unassigned",
        "RESOLVE": "resolved",
        "IGNORE": "ignored",
        "REOPEN": "reopened",
    }
    typer.echo(
        f"{done[decision.action]} {outcome.changed} exceptions "
        f"({outcome.chosen} matched, {outcome.chosen - outcome.changed} already so)"
    )


@exceptions_app.command("assign")
def exceptions_assign(
    ids: Ids = None,
    to: Annotated[str, typer.Option("--to", help="The assignee's email.", show_default=False)] = "",
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    all_matching: AllMatching = False,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Assign exceptions to a user (EDITOR or ADMIN) of the organization; `--to none` unassigns."""
    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    action = "UNASSIGN" if to.strip().lower() == NOBODY else "ASSIGN"
    _decide(Decision(action, note=note, assignee=to), org, as_user, ids, all_matching, filters)


@exceptions_app.command("unassign")
def exceptions_unassign(
    ids: Ids = None,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    all_matching: AllMatching = False,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Take exceptions off their assignee (the same as `assign --to none`)."""
    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    _decide(Decision("UNASSIGN", note=note), org, as_user, ids, all_matching, filters)


@exceptions_app.command("resolve")
def exceptions_resolve(
    ids: Ids = None,
    note: Annotated[str, typer.Option(help="How it was resolved.", show_default=False)] = "",
    reason: Annotated[str | None, typer.Option(help="A reason code (`reasons`).")] = None,
    all_matching: AllMatching = False,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Resolve exceptions with a note and optionally a reason code."""
    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    decision = Decision("RESOLVE", note=note, reason_code=reason)
    _decide(decision, org, as_user, ids, all_matching, filters)


@exceptions_app.command("ignore")
def exceptions_ignore(
    ids: Ids = None,
    note: Annotated[str, typer.Option(help="Why it is ignored.", show_default=False)] = "",
    reason: Annotated[str | None, typer.Option(help="A reason code (`reasons`).")] = None,
    all_matching: AllMatching = False,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Ignore exceptions, with a note saying why."""
    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    decision = Decision("IGNORE", note=note, reason_code=reason)
    _decide(decision, org, as_user, ids, all_matching, filters)


@exceptions_app.command("reopen")
def exceptions_reopen(
    ids: Ids = None,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    all_matching: AllMatching = False,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Reopen resolved or ignored exceptions (their resolution and reason are cleared)."""
    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    _decide(Decision("REOPEN", note=note), org, as_user, ids, all_matching, filters)


@exceptions_app.command("export")
def exceptions_export(
    output: Annotated[Path, typer.Option("--output", help="The file to write.")],
    file_format: Annotated[str, typer.Option("--format", help="csv or xlsx.")] = "csv",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
    reconciliation: Rec = None,
    type_: Type = None,
    severity: Sev = None,
    status: Status = None,
    assignee: Assignee = None,
    older_than: Older = None,
) -> None:
    """Export the exceptions matching the list filters to CSV or XLSX."""
    from pipelines.work.exceptions_work import list_exceptions
    from pipelines.work.export import export_exceptions

    filters = _filters(reconciliation, type_, severity, status, assignee, older_than)
    with acting(org, as_user) as (conn, _actor):
        rows = list_exceptions(conn, filters)
    count = export_exceptions(rows, output, file_format)
    typer.echo(f"{count} exceptions written to {output}")


@exceptions_app.command("reasons")
def exceptions_reasons(
    add: Annotated[str | None, typer.Option(help="Add this reason code (ADMIN).")] = None,
    description: Annotated[str, typer.Option(help="What the added code means.")] = "",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """The organization's reason codes (built-in and its own); `--add CODE` adds one."""
    from pipelines.work.reasons import add_reason, reason_codes

    with acting(org, as_user) as (conn, actor):
        if add:
            add_reason(conn, actor, add, description)
        codes = reason_codes(conn)
    for code, text in codes.items():
        typer.echo(f"{code:<12} {text}")


@exceptions_app.command("suggest")
def exceptions_suggest(
    exception_id: Annotated[int, typer.Argument(help="A MISSING exception's id.")],
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """The suggested match of a MISSING exception: the closest unmatched record, and why."""
    from pipelines.work.suggestions import suggest

    with acting(org, as_user) as (conn, _actor):
        found = suggest(conn, exception_id)
    if found is None:
        typer.echo(f"exception {exception_id}: no suggested match")
        return
    typer.echo(
        f"exception {exception_id}: source row {found.source_row} with target row "
        f"{found.target_row} ({found.why})"
    )


@exceptions_app.command("accept")
def exceptions_accept(
    exception_id: Annotated[int, typer.Argument(help="A MISSING exception's id.")],
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Accept a MISSING exception's suggested match: it becomes a MANUAL match (`recon match`)."""
    from pipelines.work.suggestions import accept

    with acting(org, as_user) as (conn, actor):
        found, outcome = accept(conn, actor, exception_id, note)
    typer.echo(
        f"manual match #{outcome.match_id}: source row {found.source_row} with target row "
        f"{found.target_row}; resolved {len(outcome.settled)}, raised {len(outcome.raised)}"
    )


@exceptions_app.command("dismiss")
def exceptions_dismiss(
    exception_id: Annotated[int, typer.Argument(help="A MISSING exception's id.")],
    note: Annotated[str, typer.Option(help="Why it is not a match.", show_default=False)] = "",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Dismiss a MISSING exception's suggested match: never offered again for it."""
    from pipelines.work.suggestions import dismiss

    with acting(org, as_user) as (conn, actor):
        found = dismiss(conn, actor, exception_id, note)
    typer.echo(
        f"dismissed: source row {found.source_row} with target row {found.target_row} "
        f"for exception {exception_id}"
    )
