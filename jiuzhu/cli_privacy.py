"""`jiuzhu privacy`: erase a household's personal data (crypto-shredding) and show key status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from psycopg.sql import SQL

from consumers.brokers import BrokerKind, broker_kind
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
from jiuzhu.serve import ServeSettings
from jiuzhu.settings import Settings

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
    console.print("not reached by this erasure, left to expire or to you:", highlight=False)
    for place in unreached(settings, ServeSettings()):
        console.print(f"  - {place}", highlight=False, soft_wrap=True)


def unreached(settings: Settings, options: ServeSettings) -> list[str]:
    """Where the household's personal data may still be in clear after its key is destroyed."""

    def kept(days: float, setting: str) -> str:
        return f"kept {days:g} days ({setting})" if days else f"kept without limit ({setting}=0)"

    nats = settings.broker_url is None or broker_kind(settings.broker_url) is BrokerKind.NATS
    upstream = (
        f"upstream messages on NATS stream {options.upstream_stream}: "
        + kept(options.upstream_retention_days, "JIUZHU_UPSTREAM_RETENTION_DAYS")
        if nats
        else f"upstream messages on {settings.broker_url}: until the intake consumed them "
        "(RabbitMQ) or the broker trims them (Redis, Kafka: the broker's own retention)"
    )
    dead = (
        f"dead letters on {options.upstream_deadletter} and {options.events_deadletter}: "
        + kept(options.deadletter_retention_days, "JIUZHU_DEADLETTER_RETENTION_DAYS")
        if nats
        else f"dead letters on {options.upstream_deadletter}: until someone deletes them"
    )
    return [
        upstream,
        dead,
        "exports already written (jiuzhu audit export) and copies handed out",
        "database backups, dumps and WAL archives taken before now: until they are rotated",
        "the upstream systems' own records",
    ]


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


@app.command("reindex")
@user_errors
def reindex() -> None:
    """Add cases recorded before the id-card search index existed to it (safe to rerun)."""
    from jiuzhu.privacy.blind_index import rebuild_blind_index

    settings = load_settings()
    with open_audited(settings) as casework:
        added = rebuild_blind_index(casework)
    console.print(f"search index: {added} id-card entries added", highlight=False)
