"""`jiuzhu privacy`: erase a household's personal data (crypto-shredding) and show key status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from psycopg.sql import SQL

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.cli_audit import open_audited
from jiuzhu.cli_common import (
    ActorOpt,
    RoleOpt,
    console,
    load_settings,
    print_json,
    user_errors,
    who,
)
from jiuzhu.narrate import CHINA_TIME

__all__ = ["app", "vacuum_data_keys"]

app = typer.Typer(
    help="Personal data: erasure by key destruction, key status.", no_args_is_help=True
)


@app.command("erase")
@user_errors
def erase(
    household_id: Annotated[str, typer.Argument(metavar="HOUSEHOLD")],
    reason: Annotated[str, typer.Option("--reason", help="Legal basis, e.g. PIPL art. 47")],
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Destroy the household's data keys and record the erasure as an audited event."""
    settings = load_settings()
    person = who(settings, actor, role)
    with open_audited(settings) as casework:
        position = casework.erase_personal_data(
            {
                "household_id": household_id,
                "by": {
                    "actor": person.actor,
                    "role": person.role,
                    "reason": reason,
                    "occurred_at": datetime.now(CHINA_TIME),
                },
            }
        )
        vacuum_data_keys(casework)
    console.print(
        f"erased personal data of household {household_id} (notification {position})",
        highlight=False,
    )


def vacuum_data_keys(casework: AuditedCaseWork) -> None:
    """Dead row versions still hold the wrapped keys until vacuumed: vacuum now."""
    with casework.datastore.get_connection() as conn:
        conn.execute(SQL("VACUUM {0}").format(casework.data_keys.table))


@app.command("status")
@user_errors
def status(
    household_id: Annotated[str, typer.Argument(metavar="HOUSEHOLD")],
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """The household's data key generations: created, erased (no key material)."""
    settings = load_settings()
    person = who(settings, actor, role)
    with open_audited(settings) as casework:
        casework.authorise_read(person.actor, person.role, "read_history")
        generations = casework.data_keys.generations(household_id)
    print_json([g.__dict__ for g in generations])
