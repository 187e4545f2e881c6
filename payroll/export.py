"""`payroll export`: the disbursement instructions of an approved cycle, signed.

Two renderings of the same instructions, CSV and JSON lines: payee reference (the
household), account reference (its bank account: personal data, sealed per household
in the event store; written only for roles that may export it, `[withheld]` otherwise,
`[erased]` once the household's data is erased), amount in fen, purpose, cycle and
instruction id. Each file ends with a digest line: SHA-256 of the bytes above it,
signed with the audit signing key (jiuzhu/audit/signing.py), so finance can check that
nothing was changed on the way. The cycle records the export with the JSON digest.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from domain.payroll import Instruction, PayrollCycle
from domain.provenance import Provenance
from domain.roles import may_read
from jiuzhu.audit.signing import Signer, verify_signature
from payroll.decide import load_cycle
from payroll.follow import authorise

__all__ = ["COLUMNS", "Exported", "export_cycle", "signed_message", "verify_file"]

COLUMNS = ("payee_ref", "account_ref", "amount_fen", "purpose", "cycle", "instruction_id")
WITHHELD = "[withheld]"


@dataclass(frozen=True)
class Exported:
    """The files written and what they hold."""

    csv_path: Path
    jsonl_path: Path
    instructions: int
    amount_fen: int
    digest: str


def signed_message(cycle_id: UUID | str, digest: str) -> bytes:
    """The exact bytes an export's signature covers."""
    return f"jiuzhu-payroll-export/v1\n{cycle_id}\n{digest}".encode()


def accounts_of(app: Application[UUID], case_ids: list[UUID]) -> dict[str, str]:
    """Bank accounts from the cases' first events, unsealed with the households' keys."""
    recorder: Any = app.recorder
    statement = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE originator_id = ANY(%s) AND originator_version = 1"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    found: dict[str, str] = {}
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(statement, (case_ids,))
        for row in curs.fetchall():
            event = app.mapper.to_domain_event(
                StoredEvent(row["originator_id"], 1, row["topic"], bytes(row["state"]))
            )
            personal = getattr(event, "personal", {})
            found[str(row["originator_id"])] = str(personal.get("bank_account", ""))
    return found


def _rows(cycle: PayrollCycle, accounts: dict[str, str] | None) -> list[dict[str, Any]]:
    items: list[Instruction] = sorted(cycle.outstanding, key=lambda i: i.instruction_id)
    return [
        {
            "payee_ref": item.household_id,
            "account_ref": WITHHELD if accounts is None else accounts.get(item.case_id, ""),
            "amount_fen": item.amount_fen,
            "purpose": f"{cycle.programme} {item.period}"
            + (" arrears" if item.kind == "arrears" else ""),
            "cycle": cycle.key,
            "instruction_id": item.instruction_id,
        }
        for item in items
    ]


def _digest_line(cycle_id: UUID, body: bytes, signer: Signer) -> dict[str, str]:
    digest = hashlib.sha256(body).hexdigest()
    signature = signer.sign(signed_message(cycle_id, digest)).hex()
    return {"digest": f"sha256:{digest}", "key_id": signer.key_id, "signature": signature}


def export_cycle(
    app: Application[UUID],
    cycle_ref: UUID | str,
    *,
    out_dir: Path,
    signer: Signer,
    by: Provenance,
) -> Exported:
    """Write the cycle's outstanding instructions (CSV and JSON lines) and record it."""
    authorise(by, "export_payroll")
    cycle = load_cycle(app, cycle_ref)
    cycle.check_approved("export")
    accounts = None
    if may_read(by.role, "export_payment_accounts"):
        accounts = accounts_of(app, sorted({UUID(i.case_id) for i in cycle.outstanding}))
    rows = _rows(cycle, accounts)
    stem = f"payroll-{cycle.month}-{cycle.programme}-{cycle.region}"
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    json_digest = _digest_line(cycle.id, jsonl, signer)
    jsonl_path = out_dir / f"{stem}.jsonl"
    jsonl_path.write_bytes(jsonl + orjson.dumps(json_digest) + b"\n")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([row[c] for c in COLUMNS] for row in rows)
    body = text.getvalue().encode()
    csv_digest = _digest_line(cycle.id, body, signer)
    csv_path = out_dir / f"{stem}.csv"
    trailer = f"#digest,{csv_digest['digest']},{csv_digest['key_id']},{csv_digest['signature']}\n"
    csv_path.write_bytes(body + trailer.encode())
    amount = sum(int(row["amount_fen"]) for row in rows)
    cycle.record_export(len(rows), amount, json_digest["digest"], by=by)
    app.save(cycle)
    return Exported(csv_path, jsonl_path, len(rows), amount, json_digest["digest"])


def verify_file(path: Path, cycle_id: UUID, public_key: Any) -> bool:
    """Whether an exported file's digest line matches its bytes and the key's signature."""
    data = path.read_bytes()
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    if path.suffix == ".jsonl":
        trailer = orjson.loads(last)
        digest, signature = trailer["digest"], trailer["signature"]
    else:
        _tag, digest, _key, signature = last.decode().split(",")
    if digest != f"sha256:{hashlib.sha256(body).hexdigest()}":
        return False
    return verify_signature(
        public_key, bytes.fromhex(signature), signed_message(cycle_id, digest[7:])
    )
