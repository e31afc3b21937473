"""`recon match` and `recon unmatch`: pair two records by hand, or undo such a pair.

Both act in one organization (`--org`) as one user (`--as` / `RECON_USER`, EDITOR or ADMIN)
inside `organization_transaction`; the logic, the checks and the audit events are in
`pipelines/work/matching.py`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from recon.cli_users import AsOption, OrgOption, acting
from recon.scope import DEFAULT_ORGANIZATION

Note = Annotated[str, typer.Option("--note", help="Why (kept in the history).", show_default=False)]


def match_command(
    reconciliation: Annotated[int, typer.Option("--reconciliation", help="The reconciliation.")],
    source_row: Annotated[int, typer.Option("--source-row", help="Row number in the source.")],
    target_row: Annotated[int, typer.Option("--target-row", help="Row number in the target.")],
    note: Note = "",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Match a source row with a target row by hand (a MANUAL match, kept across re-runs)."""
    from pipelines.work.matching import match_rows

    with acting(org, as_user) as (conn, actor):
        outcome = match_rows(conn, actor, reconciliation, source_row, target_row, note)
    typer.echo(
        f"manual match #{outcome.match_id}: source row {source_row} with target row "
        f"{target_row}; resolved exceptions {_ids(outcome.settled)}, raised {_ids(outcome.raised)}"
    )


def unmatch_command(
    match: Annotated[int, typer.Option("--match", help="The MANUAL match's id.")],
    note: Note = "",
    org: OrgOption = DEFAULT_ORGANIZATION,
    as_user: AsOption = None,
) -> None:
    """Undo a MANUAL match: its mismatches withdrawn, the two MISSING exceptions open again."""
    from pipelines.work.matching import unmatch

    with acting(org, as_user) as (conn, actor):
        outcome = unmatch(conn, actor, match, note)
    typer.echo(
        f"manual match #{match} undone; reopened exceptions {_ids(outcome.settled)}, "
        f"withdrawn {_ids(outcome.raised)}"
    )


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids) or "none"
