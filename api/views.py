"""What the API answers about cases: the CLI's views (jiuzhu.narrate) as documented models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from domain.case import Case
from jiuzhu.narrate import case_view, event_row

__all__ = [
    "CaseView",
    "EventRow",
    "FastJSON",
    "HouseholdChain",
    "case_answer",
    "event_answer",
]


class CaseView(BaseModel):
    """A case as it stands (or stood at a version): `jiuzhu case show --json`."""

    case_id: UUID
    version: int = Field(description="The case version; also the ETag")
    status: str
    household_id: str
    household_size: int
    personal: dict[str, str] = Field(
        description="Head of household; masked or [redacted] for roles that may not read it"
    )
    region: str
    channel: str
    signals: list[str]
    discovered_at: datetime
    assignee: str | None
    verification_due: date | None
    consent: bool
    verdict: str | None
    monthly_income_fen: int | None
    enrolments: dict[str, dict[str, Any]]
    payments: dict[str, int]
    paid_total_fen: int
    emergency_grants: dict[str, dict[str, Any]]
    referrals: dict[str, dict[str, Any]]
    services_delivered: int
    closed_at: datetime | None
    closed_reason: str | None
    last_changed_at: datetime
    replayed: bool | None = Field(
        default=None, description="On a command's answer: true when it answers a retry"
    )


class EventRow(BaseModel):
    """One event of a case's timeline: who, in what role, why, what caused it, when."""

    version: int
    type: str
    occurred_at: datetime = Field(description="When it happened (business time)")
    recorded_at: datetime = Field(description="When it was recorded")
    actor: str
    role: str
    reason: str
    causation_id: str
    correlation_id: str
    summary: str


class HouseholdChain(BaseModel):
    """A household's assistance chain: its cases, oldest first, and the open one."""

    household_id: str
    case_ids: list[UUID]
    open_case_id: UUID | None


def case_answer(case: Case, *, personal: bool) -> dict[str, Any]:
    """The view of a case for someone who may (or may not) read personal data."""
    return case_view(case, with_personal=personal)


def event_answer(event: Case.Event) -> dict[str, Any]:
    """One timeline row, as `jiuzhu case history --json` prints it."""
    return event_row(event)


class FastJSON(JSONResponse):
    """JSON by orjson: dates, times and UUIDs natively, several times faster than the default.

    Used for the views above, which hold only such values (no Decimal, no models).
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
