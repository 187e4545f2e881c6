"""Histories for auditors: a case, a household's whole chain, everything one message caused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.case import Case
from domain.errors import CaseNotFoundError
from domain.household import Household, HouseholdNotFoundError
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.privacy.mapper import FREE_TEXT

__all__ = [
    "REDACTED",
    "HistoryEntry",
    "case_history",
    "entries_where",
    "household_history",
    "jsonable",
    "trace",
]

# What analysts see in place of personal values: they work on statistics, not people.
REDACTED = "[redacted]"
_PROVENANCE = ("actor", "role", "reason", "occurred_at", "causation_id", "correlation_id")
_PLUMBING = ("originator_id", "originator_version", "timestamp", "originator_topic")


@dataclass(frozen=True)
class HistoryEntry:
    """One stored event as an auditor reads it, with its place in the chain."""

    notification_id: int
    aggregate_id: str
    version: int
    topic: str
    type: str
    occurred_at: datetime | None
    recorded_at: datetime
    actor: str
    role: str
    reason: str
    causation_id: str
    correlation_id: str
    data: dict[str, Any]
    hash: str
    prev_hash: str
    stored_state: bytes

    def as_json(self) -> dict[str, Any]:
        """The entry as plain JSON values (without the stored bytes)."""
        return {
            "notification_id": self.notification_id,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "type": self.type,
            "occurred_at": jsonable(self.occurred_at),
            "recorded_at": jsonable(self.recorded_at),
            "actor": self.actor,
            "role": self.role,
            "reason": self.reason,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "data": jsonable(self.data),
            "hash": self.hash,
            "prev_hash": self.prev_hash,
        }


def jsonable(value: Any) -> Any:
    """Event values as JSON values: dates ISO, UUIDs strings, enums their value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def entries_where(
    app: AuditedCaseWork, where: str, params: Sequence[Any], *, personal: bool
) -> list[HistoryEntry]:
    """Stored events matching a condition on `e` (events) and `c` (chain), in log order."""
    query = app.audit.sql(
        "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state,"
        " c.hash, c.prev_hash, c.recorded_at FROM {events} e"
        " LEFT JOIN {chain} c ON c.notification_id = e.notification_id"
        f" WHERE {where} ORDER BY e.notification_id"
    )
    with app.datastore.transaction(commit=False) as curs:
        curs.execute(query, params)
        rows = curs.fetchall()
    return [_entry(app, row, personal=personal) for row in rows]


def _entry(app: AuditedCaseWork, row: Any, *, personal: bool) -> HistoryEntry:
    stored = StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
    event = app.mapper.to_domain_event(stored)
    state = dict(vars(event))
    data = {k: v for k, v in state.items() if k not in _PROVENANCE and k not in _PLUMBING}
    if not personal and isinstance(data.get("personal"), dict):
        data["personal"] = dict.fromkeys(data["personal"], REDACTED)
    free_text = FREE_TEXT.get(type(event))
    if not personal and free_text is not None and data.get(free_text):
        value = data[free_text]
        data[free_text] = dict.fromkeys(value, REDACTED) if isinstance(value, dict) else REDACTED
    recorded: datetime = row["recorded_at"] or state["timestamp"]
    return HistoryEntry(
        notification_id=row["notification_id"],
        aggregate_id=str(row["originator_id"]),
        version=row["originator_version"],
        topic=row["topic"],
        type=row["topic"].rpartition(":")[2],
        occurred_at=state.get("occurred_at"),
        recorded_at=recorded,
        actor=str(state.get("actor", "")),
        role=str(state.get("role", "")),
        reason=str(state.get("reason", "")),
        causation_id=str(state.get("causation_id", "")),
        correlation_id=str(state.get("correlation_id", "")),
        data=data,
        hash=bytes(row["hash"]).hex() if row["hash"] is not None else "",
        prev_hash=bytes(row["prev_hash"]).hex() if row["prev_hash"] is not None else "",
        stored_state=stored.state,
    )


def case_history(
    app: AuditedCaseWork,
    case_id: UUID,
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    personal: bool,
) -> list[HistoryEntry]:
    """Every event of a case; with as_of only those that happened by then (occurred_at),
    with known_at only those recorded by then; with both, what was known at known_at
    of what had happened by as_of."""
    entries = entries_where(app, "e.originator_id = %s", (case_id,), personal=personal)
    if not entries or not entries[0].type.startswith("Case."):
        raise CaseNotFoundError(case_id)
    if known_at is not None:
        entries = [e for e in entries if e.recorded_at <= known_at]
    if as_of is not None:
        entries = [e for e in entries if e.occurred_at is not None and e.occurred_at <= as_of]
    if not entries:
        raise CaseNotFoundError(case_id)
    return entries


def household_history(
    app: AuditedCaseWork, household_id: str, *, personal: bool
) -> list[HistoryEntry]:
    """The household's whole assistance chain: its index and all its cases, in log order."""
    case_ids = app.household_chain(household_id)
    if not case_ids:
        raise HouseholdNotFoundError(household_id)
    ids = [Household.id_for(household_id), *case_ids]
    return entries_where(app, "e.originator_id = ANY(%s)", (ids,), personal=personal)


def trace(app: AuditedCaseWork, correlation_id: str, *, personal: bool) -> list[HistoryEntry]:
    """Everything one upstream message or one command caused, across cases."""
    return entries_where(
        app,
        "e.notification_id IN (SELECT notification_id FROM {chain}"
        " WHERE correlation_id = %s OR causation_id = %s)",
        (correlation_id, correlation_id),
        personal=personal,
    )


def is_case_event(entry: HistoryEntry) -> bool:
    """Whether the entry is an event of a Case (not the household index or a receipt)."""
    return entry.type.startswith(Case.__name__ + ".")
