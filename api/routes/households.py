"""/households: find one by registry number or a member's id-card number, its chain, erasure."""

from __future__ import annotations

from typing import Annotated, Any

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.commands import PROBLEMS, add_command
from api.deps import Acting, CaseWorkDep
from api.problems import ProblemError
from api.views import HouseholdChain
from domain.commands import ErasePersonalData
from domain.household import Household, HouseholdNotFoundError
from domain.roles import may_read
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.histories import household_history
from jiuzhu.cli_privacy import vacuum_data_keys

__all__ = ["router"]

router = APIRouter(prefix="/households", tags=["households"])
HouseholdId = Annotated[
    str, Path(min_length=1, max_length=500, description="Household registry number")
]
_READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: PROBLEMS[code] for code in (401, 403, 404, 422, 503)
}


class Found(BaseModel):
    """Households matching a search, each with its chain of cases."""

    households: list[HouseholdChain]


def _chain(casework: AuditedCaseWork, household_id: str) -> dict[str, Any] | None:
    try:
        household: Any = casework.repository.get(Household.id_for(household_id))
    except AggregateNotFoundError:
        return None
    return {
        "household_id": household_id,
        "case_ids": list(household.case_ids),
        "open_case_id": household.open_case_id,
    }


def _search(
    casework: AuditedCaseWork, principal: Any, household_id: str | None, id_card: str | None
) -> dict[str, Any]:
    casework.authorise_read(principal.actor, principal.role, "read_history")
    if id_card is not None:
        # Searching by a person's number is reading personal data: analysts may not.
        casework.authorise_read(principal.actor, principal.role, "read_personal_data")
    ids: list[str] = []
    if household_id is not None:
        ids.append(household_id)
    if id_card is not None:
        found = casework.blind_index.households(id_card)
        ids = [i for i in ids if i in found] if household_id is not None else found
    chains = [chain for i in ids if (chain := _chain(casework, i)) is not None]
    return {"households": chains}


@router.get("", response_model=Found, responses=_READ_PROBLEMS)
async def search_households(
    principal: Acting,
    casework: CaseWorkDep,
    household_id: Annotated[
        str | None, Query(min_length=1, max_length=500, description="Household registry number")
    ] = None,
    id_card: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            description="A member's id-card number: exact match through a keyed blind index",
        ),
    ] = None,
) -> dict[str, Any]:
    """Find households by registry number or by a member's id-card number (exact)."""
    if household_id is None and id_card is None:
        raise ProblemError(
            422,
            "invalid-request",
            "give household_id or id_card to search by",
            errors=[{"field": "query", "message": "household_id or id_card is required"}],
        )
    return await run_in_threadpool(_search, casework, principal, household_id, id_card)


def _get_chain(casework: AuditedCaseWork, principal: Any, household_id: str) -> dict[str, Any]:
    casework.authorise_read(principal.actor, principal.role, "read_history")
    chain = _chain(casework, household_id)
    if chain is None:
        raise HouseholdNotFoundError(household_id)
    return chain


@router.get("/{household_id}", response_model=HouseholdChain, responses=_READ_PROBLEMS)
async def get_household(
    household_id: HouseholdId, principal: Acting, casework: CaseWorkDep
) -> dict[str, Any]:
    """The household's assistance chain: its cases, oldest first, and the open one."""
    return await run_in_threadpool(_get_chain, casework, principal, household_id)


class HistoryEntryView(BaseModel):
    """One stored event as an auditor reads it (`jiuzhu audit household --format json`)."""

    notification_id: int
    aggregate_id: str
    version: int
    type: str
    occurred_at: str | None
    recorded_at: str
    actor: str
    role: str
    reason: str
    causation_id: str
    correlation_id: str
    data: dict[str, Any] = Field(description="The event's own fields")
    hash: str
    prev_hash: str


def _history(casework: AuditedCaseWork, principal: Any, household_id: str) -> list[dict[str, Any]]:
    role = casework.authorise_read(principal.actor, principal.role, "read_history")
    entries = household_history(
        casework, household_id, personal=may_read(role, "read_personal_data")
    )
    return [entry.as_json() for entry in entries]


@router.get(
    "/{household_id}/history", response_model=list[HistoryEntryView], responses=_READ_PROBLEMS
)
async def get_household_history(
    household_id: HouseholdId, principal: Acting, casework: CaseWorkDep
) -> list[dict[str, Any]]:
    """The household's whole assistance chain event by event, across its cases."""
    return await run_in_threadpool(_history, casework, principal, household_id)


add_command(
    router,
    "/{household_id}/erasure",
    ErasePersonalData,
    summary="Erase the household's personal data (crypto-shredding)",
    after=vacuum_data_keys,
)
