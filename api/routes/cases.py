"""/cases: open a case, read it (now, at a version, as recorded at a moment), its timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from api.commands import PROBLEMS, add_command
from api.deps import Acting, CaseWorkDep
from api.problems import ProblemError
from api.views import CaseView, EventRow, FastJSON, case_answer, event_answer
from domain.application import CaseWork
from domain.commands import AttachSignal, CloseCase, OpenCase
from domain.roles import may_read
from jiuzhu.narrate import moment_from_text

__all__ = ["router"]

router = APIRouter(prefix="/cases", tags=["cases"])
CaseId = Annotated[UUID, Path(description="The case's id (a UUID)")]
_READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: PROBLEMS[code] for code in (401, 403, 404, 422, 503)
}

add_command(router, "", OpenCase, summary="Open a case for a household", created=True)
add_command(router, "/{case_id}/signals", AttachSignal, summary="Attach a risk signal")
add_command(router, "/{case_id}/close", CloseCase, summary="Close the case")


def _case(
    casework: CaseWork,
    principal: Any,
    case_id: UUID,
    version: int | None,
    as_of: str | None,
    known_at: str | None = None,
) -> dict[str, Any]:
    role = casework.authorise_read(principal.actor, principal.role, "read_history")
    if as_of is not None or known_at is not None:
        # The two clocks: as_of by when things happened, known_at by when they were recorded.
        happened, recorded = _moment("as_of", as_of), _moment("known_at", known_at)
        case = casework.case_at(case_id, as_of=happened, known_at=recorded)
    else:
        case = casework.get_case(case_id, version=version)
    return case_answer(case, personal=may_read(role, "read_personal_data"))


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return moment_from_text(text)
    except ValueError as error:
        raise ProblemError(
            422,
            "invalid-request",
            f"{name} {error}",
            errors=[{"field": f"query.{name}", "message": str(error)}],
        ) from None


@router.get("/{case_id}", name="get_case", response_model=CaseView, responses=_READ_PROBLEMS)
async def get_case(
    case_id: CaseId,
    principal: Acting,
    casework: CaseWorkDep,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="As it stood at this version")
    ] = None,
    as_of: Annotated[
        str | None,
        Query(
            max_length=40,
            description="As things stood on a date (YYYY-MM-DD) or date-time: by occurred_at",
        ),
    ] = None,
    known_at: Annotated[
        str | None,
        Query(max_length=40, description="As the record stood at a date-time: by recording time"),
    ] = None,
) -> FastJSON:
    """A case now, at a version, or by the two clocks (as_of, known_at); ETag: its version."""
    if version is not None and (as_of is not None or known_at is not None):
        raise ProblemError(422, "invalid-request", "give version or as_of/known_at, not both")
    view = await run_in_threadpool(_case, casework, principal, case_id, version, as_of, known_at)
    return FastJSON(view, headers={"ETag": f'"{view["version"]}"'})


def _history(casework: CaseWork, principal: Any, case_id: UUID) -> list[dict[str, Any]]:
    casework.authorise_read(principal.actor, principal.role, "read_history")
    return [event_answer(event) for event in casework.history(case_id)]


@router.get("/{case_id}/history", response_model=list[EventRow], responses=_READ_PROBLEMS)
async def get_history(case_id: CaseId, principal: Acting, casework: CaseWorkDep) -> FastJSON:
    """Every event of the case in order: who, in what role, why, what caused it, when."""
    return FastJSON(await run_in_threadpool(_history, casework, principal, case_id))
