"""Exports an auditor can take away: JSON Lines with a signed digest, checked offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.utils import get_topic

from domain.case import Case
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.chain import event_hash
from jiuzhu.audit.histories import HistoryEntry, case_history, entries_where
from jiuzhu.audit.signing import Signer, key_id, verify_signature

__all__ = [
    "EXPORT_FORMAT",
    "ExportCheck",
    "export_case",
    "export_region",
    "region_prefix",
    "verify_export",
    "write_export",
]

EXPORT_FORMAT = "jiuzhu-audit-export/v1"
_DISCOVERED = get_topic(Case.Discovered)


def region_prefix(code: str) -> str:
    """A GB/T 2260 code as a prefix: 610000 covers the province, 610500 the city."""
    prefix = code
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def export_case(app: AuditedCaseWork, case_id: UUID, *, personal: bool) -> list[HistoryEntry]:
    """Every event of one case."""
    return case_history(app, case_id, personal=personal)


def export_region(
    app: AuditedCaseWork, region: str, start: date, end: date, *, personal: bool
) -> list[HistoryEntry]:
    """Events of the region's cases that happened (business time) between two dates."""
    cases = (
        "e.originator_id IN (SELECT originator_id FROM {events} WHERE topic = %s"
        " AND convert_from(state, 'UTF8')::jsonb->>'region' LIKE %s)"
    )
    entries = entries_where(
        app, cases, (_DISCOVERED, region_prefix(region) + "%"), personal=personal
    )
    return [
        e for e in entries if e.occurred_at is not None and start <= e.occurred_at.date() <= end
    ]


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def write_export(
    out: TextIO,
    entries: Iterable[HistoryEntry],
    *,
    scope: dict[str, Any],
    store: str,
    signer: Signer | None,
) -> str:
    """Write the header, one line per event and the digest line; the digest (hex)."""
    digest = hashlib.sha256()
    count = 0

    def emit(record: dict[str, Any]) -> None:
        text = _line(record)
        digest.update(text.encode())
        out.write(text)

    emit(
        {
            "kind": "header",
            "format": EXPORT_FORMAT,
            "store": store,
            "scope": scope,
            "exported_at": datetime.now(UTC).isoformat(),
        }
    )
    for entry in entries:
        record = {"kind": "event", **entry.as_json()}
        # The bytes as stored (personal values sealed): each hash can be recomputed offline.
        record["stored"] = {"topic": entry.topic, "state": entry.stored_state.decode()}
        emit(record)
        count += 1
    hex_digest = digest.hexdigest()
    trailer: dict[str, Any] = {
        "kind": "digest",
        "algorithm": "sha256",
        "digest": hex_digest,
        "events": count,
    }
    if signer is not None:
        trailer["key_id"] = signer.key_id
        trailer["public_key"] = signer.public_pem().decode()
        trailer["signature"] = signer.sign(bytes.fromhex(hex_digest)).hex()
    out.write(_line(trailer))
    return hex_digest


@dataclass
class ExportCheck:
    """What verify_export found."""

    events: int = 0
    digest: str = ""
    key_id: str | None = None
    signed: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(path: Path, trusted: dict[str, Ed25519PublicKey] | None = None) -> ExportCheck:
    """Recompute the digest, check the signature, and each event's hash from its stored bytes."""
    check = ExportCheck()
    digest = hashlib.sha256()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        check.problems.append("the file is empty")
        return check
    *body, last = lines
    for number, text in enumerate(body, start=1):
        digest.update(text.encode())
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            check.problems.append(f"line {number} is not JSON")
            continue
        if record.get("kind") == "event":
            check.events += 1
            _check_event(record, number, check)
    try:
        trailer = json.loads(last)
    except json.JSONDecodeError:
        trailer = {}
    if trailer.get("kind") != "digest":
        check.problems.append("the digest line is missing (file truncated?)")
        return check
    check.digest = digest.hexdigest()
    if trailer.get("digest") != check.digest:
        check.problems.append("digest differs: the file was changed after export")
    if trailer.get("events") != check.events:
        check.problems.append(f"{trailer.get('events')} events declared, {check.events} found")
    _check_signature(trailer, check, trusted)
    return check


def _check_event(record: dict[str, Any], number: int, check: ExportCheck) -> None:
    stored = record.get("stored") or {}
    try:
        recomputed = event_hash(
            bytes.fromhex(record["prev_hash"]),
            record["aggregate_id"],
            record["version"],
            stored["topic"],
            stored["state"].encode(),
        ).hex()
    except (KeyError, ValueError, TypeError):
        check.problems.append(f"line {number}: event record is incomplete")
        return
    if recomputed != record.get("hash"):
        check.problems.append(
            f"line {number}: case {record.get('aggregate_id')} version "
            f"{record.get('version')}: stored bytes do not match the chain hash"
        )


def _check_signature(
    trailer: dict[str, Any], check: ExportCheck, trusted: dict[str, Ed25519PublicKey] | None
) -> None:
    if "signature" not in trailer:
        if trusted:
            check.problems.append("the export is not signed")
        return
    try:
        public = serialization.load_pem_public_key(trailer["public_key"].encode())
        signature = bytes.fromhex(trailer["signature"])
    except (KeyError, ValueError):
        check.problems.append("the signature block is malformed")
        return
    if not isinstance(public, Ed25519PublicKey):
        check.problems.append("the export's key is not Ed25519")
        return
    check.key_id = key_id(public)
    if trusted is not None and check.key_id not in trusted:
        check.problems.append(f"signed by key {check.key_id}, which is not a trusted key")
        return
    if not verify_signature(public, signature, bytes.fromhex(check.digest)):
        check.problems.append("bad signature over the digest")
        return
    check.signed = True
