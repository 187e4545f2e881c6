"""Errors as application/problem+json (RFC 9457), with the words the CLI and dead letters use.

Every error the workflow raises on purpose keeps its message as `detail`; the rule's name, the
case and each bad field are members of their own so that clients need not parse the text.
Nothing a client sends yields a traceback: unexpected errors answer a bare 500 problem.
"""

from __future__ import annotations

import traceback
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.persistence import IntegrityError, PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import (
    CaseAlreadyOpenError,
    CaseNotFoundError,
    CaseWorkError,
    DuplicateMessageError,
    InvalidCommandError,
    PermissionDeniedError,
    RuleViolationError,
)
from domain.household import HouseholdNotFoundError

__all__ = [
    "PROBLEM_JSON",
    "FieldProblem",
    "ProblemBody",
    "ProblemError",
    "install",
    "problem_response",
]

log = structlog.get_logger("jiuzhu.api")

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://jiuzhu.example/problems/"

# The same words as the CLI (jiuzhu.cli_common) for the store's optimistic-concurrency conflict.
CONFLICT = "the case changed meanwhile; nothing was saved, try again"


class FieldProblem(BaseModel):
    """One bad field of a request: where it is and what is wrong with it."""

    field: str = Field(description="Dotted path of the field, e.g. by.occurred_at")
    message: str


class ProblemBody(BaseModel):
    """An RFC 9457 problem, with the workflow's rule, case and bad fields when there are."""

    type: str = Field(description="URI naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="The same words as the CLI's error line")
    instance: str | None = None
    rule: str | None = Field(default=None, description="The workflow rule that refused it")
    case_id: str | None = None
    household_id: str | None = None
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    """An error answered as a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers = headers or {}
        self.extra = {k: v for k, v in extra.items() if v is not None}


def problem_response(
    request: Request | None,
    status: int,
    kind: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + kind,
        "title": kind.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: (str(v) if isinstance(v, UUID) else v) for k, v in extra.items()})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def from_error(request: Request | None, error: Exception) -> JSONResponse:
    """The problem answering one of the workflow's own errors (or the store's)."""
    if isinstance(error, ProblemError):
        return problem_response(
            request, error.status, error.kind, error.detail, headers=error.headers, **error.extra
        )
    if isinstance(error, PermissionDeniedError):
        return problem_response(request, 403, "permission-denied", str(error))
    if isinstance(error, InvalidCommandError):
        fields = [{"field": f, "message": m} for f, m in error.problems]
        return problem_response(request, 422, "invalid-command", str(error), errors=fields)
    if isinstance(error, CaseNotFoundError):
        return problem_response(request, 404, "case-not-found", str(error), case_id=error.case_id)
    if isinstance(error, HouseholdNotFoundError):
        return problem_response(request, 404, "household-not-found", str(error))
    if isinstance(error, CaseAlreadyOpenError):
        return problem_response(
            request,
            409,
            error.rule,
            str(error),
            rule=error.rule,
            household_id=error.household_id,
            case_id=error.open_case_id,
        )
    if isinstance(error, RuleViolationError):
        return problem_response(
            request, 409, error.rule, str(error), rule=error.rule, case_id=error.case_id
        )
    if isinstance(error, DuplicateMessageError):
        return problem_response(request, 409, "duplicate-request", str(error))
    if isinstance(error, CaseWorkError):
        rule = getattr(error, "rule", None)
        return problem_response(request, 409, rule or "refused", str(error), rule=rule)
    if isinstance(error, IntegrityError):
        return problem_response(request, 409, "concurrent-change", CONFLICT)
    if isinstance(error, PersistenceError | psycopg.Error):
        log.warning("store unavailable", error=repr(error))
        return problem_response(
            request,
            503,
            "store-unavailable",
            "the event store cannot be reached just now; nothing was saved, try again",
            headers={"Retry-After": "5"},
        )
    # A plain traceback: a pretty console renderer takes seconds to draw one with locals.
    log.error(
        "unexpected error",
        error=repr(error),
        traceback="".join(traceback.format_exception(error)),
    )
    return problem_response(request, 500, "internal-error", "an unexpected error; it was logged")


def _validation_fields(error: RequestValidationError) -> list[dict[str, str]]:
    fields = []
    for e in error.errors():
        loc = [str(p) for p in e.get("loc", ())]
        # FastAPI prefixes body/query/path/header: keep the field path the CLI would name.
        where = loc[0] if loc else "input"
        path = ".".join(loc[1:]) if len(loc) > 1 else where
        fields.append(
            {"field": path if where == "body" else f"{where}.{path}", "message": e["msg"]}
        )
    return fields


def install(app: FastAPI) -> None:
    """Answer every error of the app as a problem document."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        return from_error(request, error)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        fields = _validation_fields(error)
        detail = "invalid request: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem_response(request, 422, "invalid-request", detail, errors=fields)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        return problem_response(
            request,
            error.status_code,
            kind,
            str(error.detail),
            headers=dict(error.headers or {}),
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(CaseWorkError, on_problem)
    app.add_exception_handler(PersistenceError, on_problem)
    app.add_exception_handler(psycopg.Error, on_problem)
    app.add_exception_handler(Exception, on_problem)
