"""`jiuzhu audit`: histories for auditors, exports, verification of the chain, checkpoints."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO
from uuid import UUID

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from domain.roles import Role, may_read
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import (
    list_checkpoints,
    make_checkpoint,
    mark_published,
    unpublished_checkpoints,
)
from jiuzhu.audit.export import export_case, export_region, verify_export, write_export
from jiuzhu.audit.histories import HistoryEntry, case_history, household_history, trace
from jiuzhu.audit.publish import CHECKPOINTS_STREAM, CHECKPOINTS_SUBJECT, publish_checkpoints
from jiuzhu.audit.signing import (
    Checkpoint,
    key_id,
    load_public_key,
    signer_from_settings,
    signing_key_path,
)
from jiuzhu.audit.verify import VerifyReport, count_rows, verify_log
from jiuzhu.audit.witness import WitnessError, append_witness, published_checkpoints, read_witness
from jiuzhu.cli_common import (
    ActorOpt,
    RoleOpt,
    Who,
    console,
    err_console,
    fail,
    load_settings,
    parse_case_id,
    parse_moment,
    print_json,
    user_errors,
    who,
)
from jiuzhu.runtime import endpoints, open_casework
from jiuzhu.settings import Settings

__all__ = [
    "app",
    "export_to",
    "open_audited",
    "reading_histories",
    "trusted_keys",
    "verify_json",
]

app = typer.Typer(
    help="Audit trail: histories, exports, tamper-evidence checks.", no_args_is_help=True
)


class Format(StrEnum):
    """Output formats of histories."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or csv")]
PublicKeysOpt = Annotated[
    list[Path] | None,
    typer.Option("--public-key", help="A trusted Ed25519 public key (PEM); repeatable"),
]


@contextmanager
def open_audited(settings: Settings) -> Iterator[AuditedCaseWork]:
    """The audited CaseWork on the configured (or embedded) database."""
    with endpoints(settings) as ends, open_casework(settings, ends.database_url) as casework:
        if not isinstance(casework, AuditedCaseWork):
            raise fail("the audit trail is not wired into this CaseWork")
        yield casework


@contextmanager
def reading_histories(
    actor: str | None, role: str | None
) -> Iterator[tuple[AuditedCaseWork, bool]]:
    """The audited CaseWork for someone allowed to read histories; may they see personal data."""
    settings = load_settings()
    person = who(settings, actor, role)
    with open_audited(settings) as casework:
        checked = casework.authorise_read(person.actor, person.role, "read_history")
        yield casework, may_read(checked, "read_personal_data")


def _trusted_keys(settings: Settings, extra: list[Path] | None) -> dict[str, Ed25519PublicKey]:
    keys = [load_public_key(path) for path in extra or ()]
    own = signing_key_path(settings)
    if own.exists():
        keys.append(load_public_key(own))
    return {key_id(k): k for k in keys}


def _show(entries: list[HistoryEntry], fmt: Format, title: str) -> None:
    if fmt is Format.JSON:
        print_json([e.as_json() for e in entries])
        return
    if fmt is Format.CSV:
        columns = [
            "notification_id", "aggregate_id", "version", "type", "occurred_at", "recorded_at",
            "actor", "role", "reason", "causation_id", "correlation_id", "data", "hash",
        ]  # fmt: skip
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for entry in entries:
            row = entry.as_json()
            row["data"] = json.dumps(row["data"], ensure_ascii=False, sort_keys=True)
            writer.writerow(row)
        return
    table = Table(title=title, show_lines=False)
    for column in (
        "#",
        "v",
        "type",
        "occurred",
        "recorded",
        "actor (role)",
        "reason",
        "correlation",
    ):
        table.add_column(column)
    for e in entries:
        table.add_row(
            str(e.notification_id),
            str(e.version),
            e.type,
            e.occurred_at.isoformat(timespec="minutes") if e.occurred_at else "",
            e.recorded_at.isoformat(timespec="seconds"),
            f"{e.actor} ({e.role})" if e.actor else "",
            e.reason,
            e.correlation_id,
        )
    console.print(table)


@app.command("history")
@user_errors
def history(
    case_id: Annotated[str, typer.Argument(metavar="CASE_ID", help="The case's id")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Only what had happened by a date (occurred_at)")
    ] = None,
    known_at: Annotated[
        str | None, typer.Option("--known-at", help="Only what was recorded by a date-time")
    ] = None,
    fmt: FormatOpt = Format.TABLE,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Every event of a case: version, type, business and recorded time, who, why, cause."""
    happened = parse_moment(as_of) if as_of else None
    recorded = parse_moment(known_at, "--known-at") if known_at else None
    with reading_histories(actor, role) as (casework, personal):
        entries = case_history(
            casework,
            parse_case_id(case_id),
            as_of=happened,
            known_at=recorded,
            personal=personal,
        )
    _show(entries, fmt, f"case {case_id}")


@app.command("household")
@user_errors
def household(
    household_id: Annotated[str, typer.Argument(metavar="HOUSEHOLD")],
    fmt: FormatOpt = Format.TABLE,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """The household's whole assistance chain across its cases."""
    with reading_histories(actor, role) as (casework, personal):
        entries = household_history(casework, household_id, personal=personal)
    _show(entries, fmt, f"household {household_id}")


@app.command("trace")
@user_errors
def trace_command(
    correlation_id: Annotated[str, typer.Argument(metavar="CORRELATION_ID")],
    fmt: FormatOpt = Format.TABLE,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Everything one upstream message or one command caused, across cases."""
    with reading_histories(actor, role) as (casework, personal):
        entries = trace(casework, correlation_id, personal=personal)
    if not entries:
        raise fail(f"nothing recorded under correlation or causation {correlation_id}")
    _show(entries, fmt, f"trace {correlation_id}")


@app.command("export")
@user_errors
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSON Lines file to write")],
    case_id: Annotated[str | None, typer.Argument(metavar="[CASE_ID]")] = None,
    region: Annotated[str | None, typer.Option("--region", help="GB/T 2260 code")] = None,
    start: Annotated[str | None, typer.Option("--from", help="First day (business time)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (business time)")] = None,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Export a case, or a region's events in a period, to JSON Lines with a signed digest."""
    if (case_id is None) == (region is None):
        raise fail("give a CASE_ID or --region CODE --from DATE --to DATE")
    settings = load_settings()
    person = who(settings, actor, role)
    case = parse_case_id(case_id) if case_id is not None else None
    if case is None and (not start or not end):
        raise fail("--region needs --from and --to (YYYY-MM-DD)")
    first = _day(start, "--from") if start else None
    last = _day(end, "--to") if end else None
    with open_audited(settings) as casework:
        # Refused before the file is created: no empty export left behind.
        casework.authorise_read(person.actor, person.role, "export_audit_trail")
        with out.open("w", encoding="utf-8") as file:
            count, digest = export_to(
                casework,
                settings,
                file,
                person,
                case_id=case,
                region=region,
                first=first,
                last=last,
            )
    console.print(f"exported {count} events to {out}  sha256 {digest}", highlight=False)


def export_to(
    casework: AuditedCaseWork,
    settings: Settings,
    file: TextIO,
    person: Who,
    *,
    case_id: UUID | None = None,
    region: str | None = None,
    first: date | None = None,
    last: date | None = None,
) -> tuple[int, str]:
    """Write a signed export of a case, or of a region's events in a period; (events, digest).

    Checks that the person may export (PermissionDeniedError); personal values only for
    roles that may read them. The CLI and the API both export through here.
    """
    checked = casework.authorise_read(person.actor, person.role, "export_audit_trail")
    personal = may_read(checked, "read_personal_data")
    if case_id is not None:
        entries = export_case(casework, case_id, personal=personal)
        scope: dict[str, object] = {"case_id": str(case_id)}
    else:
        if region is None or first is None or last is None:
            raise ValueError("a region export needs a region, a first and a last day")
        entries = export_region(casework, region, first, last, personal=personal)
        scope = {"region": region, "from": first.isoformat(), "to": last.isoformat()}
    scope["exported_by"] = {"actor": person.actor, "role": Role(checked).value}
    digest = write_export(
        file,
        entries,
        scope=scope,
        store=casework.audit.store,
        signer=signer_from_settings(settings),
    )
    return len(entries), digest


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


@app.command("verify-export")
def verify_export_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    public_keys: PublicKeysOpt = None,
    trust_file_key: Annotated[
        bool,
        typer.Option(
            "--trust-file-key",
            help="Without --public-key: check with the key inside the file (integrity only)",
        ),
    ] = False,
) -> None:
    """Check an export offline: digest, signature by a key you hold, each event's chain hash."""
    trusted = {key_id(k): k for k in (load_public_key(p) for p in public_keys or ())}
    if not trusted and not trust_file_key:
        raise fail(
            "no --public-key given: the key inside the file proves nothing, whoever changed "
            "the file can sign it again with a key of their own. Pass the service's public "
            "key you hold (--public-key audit-signing.pem.pub), or --trust-file-key to check "
            "only that the file is internally consistent"
        )
    if not trusted:
        err_console.print(
            "[bold yellow]![/] NOT AUTHENTICATED: checked with the key inside the file "
            "(--trust-file-key); anyone who altered the file could have re-signed it",
            highlight=False,
            soft_wrap=True,
        )
    check = verify_export(file, trusted or None)
    for problem in check.problems:
        err_console.print(f"[bold red]✗[/] {problem}", highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)
    if check.signed and trusted:
        signed = f", signed by trusted key {check.key_id}"
    elif check.signed:
        signed = f", signed by key {check.key_id} taken from the file itself (not authenticated)"
    else:
        signed = ", not signed"
    console.print(
        f"ok: {check.events} events, sha256 {check.digest}{signed}",
        highlight=False,
        soft_wrap=True,
    )


AgainstOpt = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="Also check against the checkpoints kept outside the database: 'nats' (published "
        "on relief.audit.checkpoints) or a witness FILE (jiuzhu audit witness)",
    ),
]
StreamOpt = Annotated[
    str, typer.Option("--stream", help="JetStream stream of the published checkpoints")
]
SubjectOpt = Annotated[str, typer.Option("--subject", help="Subject of the checkpoints")]


def _external_copy(settings: Settings, against: str, stream: str, subject: str) -> list[Checkpoint]:
    """The checkpoints of the copy outside the database: the broker's, or a witness file's."""
    try:
        if against != "nats":
            return read_witness(Path(against))
        with endpoints(settings, broker=True) as ends:
            assert ends.broker_url is not None
            return asyncio.run(
                published_checkpoints(ends.broker_url, subject=subject, stream=stream)
            )
    except WitnessError as error:
        raise fail(str(error)) from None


@app.command("verify")
@user_errors
def verify(
    case_id: Annotated[
        str | None, typer.Option("--case", help="Only this case's events (and rows moved)")
    ] = None,
    public_keys: PublicKeysOpt = None,
    against: AgainstOpt = None,
    stream: StreamOpt = CHECKPOINTS_STREAM,
    subject: SubjectOpt = CHECKPOINTS_SUBJECT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Recompute every hash and checkpoint; name each row changed, deleted, inserted or moved."""
    settings = load_settings()
    person = who(settings, actor, role)
    case = parse_case_id(case_id) if case_id else None
    if against is not None and case is not None:
        raise fail("--against checks the whole log: leave out --case")
    external = _external_copy(settings, against, stream, subject) if against else None
    with open_audited(settings) as casework:
        casework.authorise_read(person.actor, person.role, "verify_audit_trail")
        trusted = _trusted_keys(settings, public_keys)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        with progress:
            total = count_rows(casework.datastore, casework.audit) if case is None else None
            task = progress.add_task("verifying", total=total)
            report = verify_log(
                casework.datastore,
                casework.audit,
                case_id=case,
                public_keys=trusted,
                progress=lambda n: progress.advance(task, n),
                external=external,
            )
    if as_json:
        print_json(verify_json(report))
    else:
        for finding in report.findings[:200]:
            err_console.print(f"[bold red]✗[/] {finding}", highlight=False, soft_wrap=True)
        if len(report.findings) > 200:
            err_console.print(f"... and {len(report.findings) - 200} more findings")
        verdict = "ok" if report.ok else f"{len(report.findings)} findings"
        compared = (
            f", {report.external_checkpoints} in the external copy ({against})"
            if against
            else ", no external copy compared (--against nats|FILE)"
        )
        tail = (
            f"; {report.uncovered} events after the last checkpoint (notification "
            f"{report.covered}): not yet vouched for outside the database"
            if case is None
            else ""
        )
        console.print(
            f"{verdict}: {report.events} events, {report.checkpoints} checkpoints{compared}{tail}",
            highlight=False,
            soft_wrap=True,
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("witness")
@user_errors
def witness(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="The auditor's JSON Lines file")],
    public_keys: PublicKeysOpt = None,
    source: Annotated[
        str,
        typer.Option(
            "--source", help="nats: the published checkpoints; db: the database's (first use)"
        ),
    ] = "nats",
    stream: StreamOpt = CHECKPOINTS_STREAM,
    subject: SubjectOpt = CHECKPOINTS_SUBJECT,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Append the checkpoints signed since the last run to a witness file kept off the server."""
    settings = load_settings()
    person = who(settings, actor, role)
    if source not in ("nats", "db"):
        raise fail(f"--source must be nats or db, not {source!r}")
    with open_audited(settings) as casework:
        casework.authorise_read(person.actor, person.role, "verify_audit_trail")
        store = casework.audit.store
        found = (
            list_checkpoints(casework.datastore, casework.audit)
            if source == "db"
            else _external_copy(settings, "nats", stream, subject)
        )
    try:
        added = append_witness(file, store, found, _trusted_keys(settings, public_keys))
    except WitnessError as error:
        raise fail(str(error)) from None
    console.print(
        f"witnessed {added} new checkpoints of {store} in {file}", highlight=False, soft_wrap=True
    )


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """A verify report as JSON values (`jiuzhu audit verify --json`, the API)."""
    return {
        "ok": report.ok,
        "events": report.events,
        "checkpoints": report.checkpoints,
        "external_checkpoints": report.external_checkpoints,
        "unverified_signatures": report.unverified_signatures,
        "covered_up_to": report.covered,
        "events_after_last_checkpoint": report.uncovered,
        "findings": [f.__dict__ for f in report.findings],
    }


def trusted_keys(
    settings: Settings, extra: list[Path] | None = None
) -> dict[str, Ed25519PublicKey]:
    """The public keys checkpoints are checked against: given ones and our own."""
    return _trusted_keys(settings, extra)


@app.command("checkpoint")
@user_errors
def checkpoint(
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Publish on JIUZHU_BROKER_URL if set")
    ] = True,
    actor: ActorOpt = None,
    role: RoleOpt = None,
) -> None:
    """Sign the log as it stands; publish unpublished checkpoints on relief.audit.checkpoints."""
    settings = load_settings()
    person = who(settings, actor, role)
    signer = signer_from_settings(settings)
    with open_audited(settings) as casework:
        casework.authorise_read(person.actor, person.role, "checkpoint_audit_trail")
        made = make_checkpoint(casework.datastore, casework.audit, signer)
        if made is None:
            console.print("the log is already covered by the last checkpoint (or empty)")
        else:
            console.print(
                f"checkpoint {made.number}: up to notification "
                f"{made.last_notification_id}, running hash {made.running_hash.hex()}, "
                f"key {made.key_id}",
                highlight=False,
            )
        if publish and settings.broker_url:
            pending = unpublished_checkpoints(casework.datastore, casework.audit)
            asyncio.run(publish_checkpoints(settings.broker_url, pending))
            mark_published(casework.datastore, casework.audit, [c.checkpoint_id for c in pending])
            console.print(f"published {len(pending)} checkpoints on relief.audit.checkpoints")
