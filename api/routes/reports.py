"""/reports and /verification-tasks: the read models, as `jiuzhu report` shows them.

JSON by default; CSV when the client asks for it (`Accept: text/csv`).
"""

from __future__ import annotations

import io
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.commands import PROBLEMS
from api.deps import Acting, CaseWorkDep
from api.problems import ProblemError
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.cli_report import (
    REPORTS,
    ReportUnavailableError,
    criteria_for,
    read_report,
    report_json,
    write_csv,
)
from projections.regions import Level, normalise_region, today_in_china
from projections.verification_tasks import task_list

__all__ = ["router"]

router = APIRouter(tags=["reports"])
_PROBLEMS: dict[int | str, dict[str, Any]] = {code: PROBLEMS[code] for code in (401, 403, 422, 503)}
ReportName = StrEnum("ReportName", {name: name for name in REPORTS})  # type: ignore[misc]
Month = Annotated[str | None, Query(max_length=7, description="A business month, 2023-06")]


class ReportBody(BaseModel):
    """A report: its title and rows (columns as `jiuzhu report NAME --format json`)."""

    title: str
    rows: list[dict[str, Any]]


def _wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _read(
    casework: AuditedCaseWork, principal: Principal, name: str, criteria: Any, csv: bool
) -> Response:
    casework.authorise_read(principal.actor, principal.role, "read_history")
    schema = casework.datastore.schema
    try:
        result = read_report(casework.datastore, schema, name, criteria)
    except ReportUnavailableError as error:
        raise ProblemError(503, "report-unavailable", str(error)) from None
    if csv:
        out = io.StringIO()
        write_csv(result, out)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
    return JSONResponse(jsonable_encoder(report_json(result)))


@router.get(
    "/reports/{name}",
    response_model=ReportBody,
    responses={
        **_PROBLEMS,
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
async def get_report(
    request: Request,
    name: Annotated[ReportName, Path(description="Which report")],
    principal: Acting,
    casework: CaseWorkDep,
    region: Annotated[
        str | None, Query(max_length=6, description="County, city or province: 610523, 6105, 61")
    ] = None,
    first: Annotated[Month, Query(alias="from")] = None,
    last: Annotated[Month, Query(alias="to")] = None,
    by: Annotated[Level, Query(description="Roll regions up to this level")] = Level.COUNTY,
) -> Response:
    """A report of `jiuzhu report`: JSON, or CSV with `Accept: text/csv`."""
    try:
        criteria = criteria_for(region, first, last, by, names="")
    except ValueError as error:
        raise ProblemError(422, "invalid-request", str(error)) from None
    return await run_in_threadpool(
        _read, casework, principal, str(name.value), criteria, _wants_csv(request)
    )


class Task(BaseModel):
    """One verification visit to make: who, where, by when; overdue when past due."""

    case_id: UUID
    region: str
    assignee: str | None
    assigned_at: datetime | None
    due_on: date | None
    assignments: int
    verified_at: datetime | None
    verdict: str | None
    closed_at: datetime | None
    overdue: bool


def _tasks(casework: AuditedCaseWork, principal: Principal, **query: Any) -> list[dict[str, Any]]:
    casework.authorise_read(principal.actor, principal.role, "read_history")
    try:
        with casework.datastore.transaction(commit=False) as curs:
            return task_list(curs, casework.datastore.schema, **query)
    except Exception as error:  # the read model not built yet: say so, in one line
        raise ProblemError(
            503, "report-unavailable", f"cannot read the verification tasks: {error}"
        ) from None


@router.get("/verification-tasks", response_model=list[Task], responses=_PROBLEMS)
async def get_verification_tasks(
    principal: Acting,
    casework: CaseWorkDep,
    assignee: Annotated[str | None, Query(max_length=500, description="Whose tasks")] = None,
    region: Annotated[
        str | None, Query(max_length=6, description="County, city or province code")
    ] = None,
    overdue: Annotated[bool | None, Query(description="Only overdue (or not overdue)")] = None,
    on: Annotated[date | None, Query(description="The day overdue is read against")] = None,
    done: Annotated[bool, Query(description="Include visits done or cancelled")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """Verification tasks by assignee, region, overdue; overdue first, then by due date."""
    try:
        prefix = normalise_region(region) if region else None
    except ValueError as error:
        raise ProblemError(422, "invalid-request", str(error)) from None
    return await run_in_threadpool(
        _tasks,
        casework,
        principal,
        today=on or today_in_china(),
        assignee=assignee,
        region=prefix,
        overdue=overdue,
        include_done=done,
        limit=limit,
    )
