"""Every CaseWork command as an endpoint: the body is the command less who acts.

Who acts comes from the token; why, when and what caused it from the body (`reason`,
`occurred_at`, defaulting to now, `causation_id`, `correlation_id`). A command runs in one
CaseWork unit of work, so that `If-Match` is checked against the case the command changes
and an `Idempotency-Key`'s receipt (with the answer given) is saved in the same save() as
the events: a retry gets the first answer back and nothing is appended twice.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import Acting, CaseWorkDep
from api.problems import ProblemBody, ProblemError
from api.views import CaseView, FastJSON, case_answer
from domain.application import CaseWork
from domain.commands import Command, OpenCase
from domain.errors import InvalidCommandError
from domain.household import Household
from domain.receipt import RequestReceipt
from domain.roles import may_read
from domain.values import Programme
from jiuzhu.narrate import CHINA_TIME

__all__ = [
    "PROBLEMS",
    "PROVENANCE_FIELDS",
    "CommandRequest",
    "add_command",
    "body_model",
    "parse_if_match",
    "run_command",
]

PROVENANCE_FIELDS = ("reason", "occurred_at", "causation_id", "correlation_id")
_CASE_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/api/open-case")

# Path parameters a command may take from its URL, with how they are typed and told.
_PATH_TYPES: dict[str, Any] = {
    "case_id": Annotated[UUID, Path(description="The case's id (a UUID)")],
    "referral_id": Annotated[str, Path(min_length=1, max_length=500, description="Referral id")],
    "grant_id": Annotated[str, Path(min_length=1, max_length=500, description="Grant id")],
    "programme": Annotated[Programme, Path(description="The programme enrolled in")],
    "household_id": Annotated[
        str, Path(min_length=1, max_length=500, description="Household registry number")
    ],
}

PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {
        "model": ProblemBody,
        "description": text,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}
        },
    }
    for code, text in (
        (401, "No valid bearer token"),
        (403, "The role may not run this command (nothing was appended)"),
        (404, "No such case or household"),
        (409, "A workflow rule refused the command, or the case changed meanwhile"),
        (412, "If-Match: the case has moved on since that version"),
        (422, "A bad field (each is named), or an Idempotency-Key reused for another request"),
        (503, "The event store cannot be reached; nothing was saved"),
    )
}


class _Provenance(BaseModel):
    """Why the step is taken, when it happened, and what caused it (who: the token)."""

    reason: str = Field(
        min_length=1, max_length=2000, description="Why: the reason or legal basis for the step"
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened in the world (business time); default now"
    )
    causation_id: str = Field(
        default="", max_length=500, description="What caused it (an upstream message, a command)"
    )
    correlation_id: str = Field(
        default="", max_length=500, description="The conversation it belongs to"
    )


# Checked by validators in domain.values; told to clients (and fuzzers) as patterns too.
_PATTERNS = {
    "region": r"^[1-8][0-9]{5}$",
    "period": r"^([0-9]{4}-(0[1-9]|1[0-2])|one-off)$",
}


def _documented(name: str, info: FieldInfo) -> FieldInfo:
    if name not in _PATTERNS:
        return info
    return FieldInfo.merge_field_infos(info, json_schema_extra={"pattern": _PATTERNS[name]})


def body_model(kind: type[Command], path_fields: tuple[str, ...]) -> type[BaseModel]:
    """The request body of a command: its fields less `by` and the path's, plus provenance."""
    fields: dict[str, Any] = {
        name: (info.annotation, _documented(name, info))
        for name, info in kind.model_fields.items()
        if name != "by" and name not in path_fields
    }
    fields.update(
        {name: (info.annotation, info) for name, info in _Provenance.model_fields.items()}
    )
    title = "".join(part.title() for part in kind.name.split("_"))
    model: type[BaseModel] = create_model(
        f"{title}Body",
        __config__=ConfigDict(extra="forbid"),
        __doc__=kind.__doc__,
        **fields,
    )
    return model


def parse_if_match(value: str | None) -> int | None:
    """The case version an If-Match names; None for none or `*` (412 if not a version)."""
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ProblemError(
            412, "precondition-failed", f'If-Match {value!r} is not a case version such as "3"'
        )
    return int(tag)


@dataclass(frozen=True)
class CommandRequest:
    """One command request: the command's input and how it must be run."""

    kind: type[Command]
    given: dict[str, Any]
    principal: Principal
    request_key: str | None
    fingerprint: str
    if_match: int | None


def _given(
    kind: type[Command], body: BaseModel, path: dict[str, Any], principal: Principal
) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=True)
    by = {name: data.pop(name) for name in PROVENANCE_FIELDS if name in data}
    if by.get("occurred_at") is None:
        by["occurred_at"] = datetime.now(CHINA_TIME)
    by.update(actor=principal.actor, role=principal.role.value)
    return {**data, **path, "by": by}


def _fingerprint(kind: type[Command], body: BaseModel, path: dict[str, Any]) -> str:
    text = json.dumps(
        [kind.name, jsonable_encoder(path), body.model_dump(mode="json", exclude_unset=True)],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _stored_answer(casework: CaseWork, request_key: str) -> dict[str, Any] | None:
    try:
        events = list(casework.events.get(RequestReceipt.id_for(request_key)))
    except AggregateNotFoundError:
        return None
    for event in events:
        if isinstance(event, RequestReceipt.Received):
            return dict(event.answer)
    return None


def _replay(answer: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    if answer.get("fingerprint") != fingerprint:
        raise ProblemError(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was already used for a different request; "
            "use a new key for a new request",
        )
    return {**answer, "replayed": True}


def _target(casework: CaseWork, request: CommandRequest) -> tuple[str, Any]:
    """What the command changes: ("case", id) or ("household", registry number)."""
    if "case_id" in request.given:
        return "case", request.given["case_id"]
    return "household", request.given.get("household_id")


def run_command(casework: CaseWork, request: CommandRequest) -> dict[str, Any]:
    """Run the command in a unit of work; the answer (the stored one on a retry)."""
    key = request.request_key
    if key is not None and (stored := _stored_answer(casework, key)) is not None:
        return _replay(stored, request.fingerprint)
    kind, target = _target(casework, request)
    try:
        with casework.batch() as unit:
            if request.if_match is not None and kind == "case":
                current = casework.get_case(UUID(str(target))).version
                if current != request.if_match:
                    raise _moved_on(request.if_match, current)
            getattr(casework, request.kind.name)(request.given)
            if kind == "case":
                case = casework.get_case(UUID(str(target)))
                answer: dict[str, Any] = {"case_id": str(case.id), "version": case.version}
                # The first answer's view from the case in hand: no second read of the store.
                view = case_answer(
                    case, personal=may_read(request.principal.role, "read_personal_data")
                )
            else:
                household = unit.get(Household.id_for(str(target)))
                answer = {"household_id": str(target), "version": household.version}
            answer["fingerprint"] = request.fingerprint
            if key is not None:
                unit.record((RequestReceipt.receive(key, answer),), None)
    except IntegrityError:
        # Something was saved meanwhile: the same request (its receipt), or another change.
        if key is not None and (stored := _stored_answer(casework, key)) is not None:
            return _replay(stored, request.fingerprint)
        if request.if_match is not None:
            raise ProblemError(
                412, "precondition-failed", "the case changed meanwhile; nothing was saved"
            ) from None
        raise
    if kind == "case":
        return {**answer, "replayed": False, "view": view}
    return {**answer, "replayed": False}


def _moved_on(expected: int, current: int) -> ProblemError:
    return ProblemError(
        412,
        "precondition-failed",
        f"the case is at version {current}, not {expected} (If-Match); nothing was saved",
    )


def _renamed(error: InvalidCommandError) -> InvalidCommandError:
    """The command's bad fields named as the body names them (`reason`, not `by.reason`)."""
    problems = [(field.removeprefix("by."), message) for field, message in error.problems]
    return InvalidCommandError(error.command, problems)


def add_command(
    router: APIRouter,
    path: str,
    kind: type[Command],
    *,
    summary: str,
    created: bool = False,
    after: Callable[[Any], None] | None = None,
) -> None:
    """Register POST path running the command `kind`; path parameters fill its fields.

    `after(casework)` runs once the command took effect (not on a retry's replay).
    """
    path_fields = tuple(name for name in _PATH_TYPES if "{" + name + "}" in router.prefix + path)
    model = body_model(kind, path_fields)

    async def endpoint(**params: Any) -> Response:
        request: Request = params["request"]
        principal: Principal = params["principal"]
        casework: CaseWork = params["casework"]
        body: BaseModel = params["body"]
        path_values = {name: params[name] for name in path_fields}
        given = _given(kind, body, path_values, principal)
        key = params["idempotency_key"]
        request_key = f"{principal.actor}\n{key}" if key else None
        if kind is OpenCase and "case_id" not in given:
            # A retry must name the same case: derive it from the key when there is one.
            given["case_id"] = uuid5(_CASE_NAMESPACE, request_key) if request_key else uuid4()
        command = CommandRequest(
            kind=kind,
            given=given,
            principal=principal,
            request_key=request_key,
            fingerprint=_fingerprint(kind, body, path_values),
            if_match=parse_if_match(params["if_match"]),
        )
        # One hop to a worker thread for the whole step: the command, then its answer.
        return await run_in_threadpool(
            _execute, request, casework, principal, command, created, after
        )

    parameters = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter("principal", inspect.Parameter.KEYWORD_ONLY, annotation=Acting),
        inspect.Parameter("casework", inspect.Parameter.KEYWORD_ONLY, annotation=CaseWorkDep),
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_PATH_TYPES[name])
            for name in path_fields
        ),
        inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=model),
        inspect.Parameter(
            "idempotency_key",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str | None,
                Header(
                    alias="Idempotency-Key",
                    min_length=1,
                    max_length=200,
                    description="The same key twice: one effect, and the first answer",
                ),
            ],
            default=None,
        ),
        inspect.Parameter(
            "if_match",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str | None,
                Header(
                    alias="If-Match",
                    max_length=100,
                    pattern=r'^(\*|(W/)?"?[0-9]+"?)$',
                    description="The case version (ETag) the step was decided on",
                ),
            ],
            default=None,
        ),
    ]
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = kind.name
    answer_model: type[BaseModel] = CaseView if path_fields != ("household_id",) else Erased
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=kind.name,
        summary=summary,
        description=(kind.__doc__ or "") + f"\n\nThe CaseWork command `{kind.name}`.",
        status_code=201 if created else 200,
        response_model=answer_model,
        responses=PROBLEMS,
        operation_id=kind.name,
    )


class Erased(BaseModel):
    """A household's personal data erased: its chain's version after the erasure."""

    household_id: str
    version: int
    replayed: bool = Field(description="True when this answers a retry (Idempotency-Key)")


def _execute(
    request: Request,
    casework: CaseWork,
    principal: Principal,
    command: CommandRequest,
    created: bool,
    after: Callable[[Any], None] | None,
) -> Response:
    try:
        answer = run_command(casework, command)
    except InvalidCommandError as error:
        raise _renamed(error) from None
    if after is not None and not answer["replayed"]:
        after(casework)
    return _respond(request, casework, principal, answer, created)


def _respond(
    request: Request,
    casework: CaseWork,
    principal: Principal,
    answer: dict[str, Any],
    created: bool,
) -> Response:
    headers = {"ETag": f'"{answer["version"]}"'}
    if answer.get("replayed"):
        headers["Idempotent-Replayed"] = "true"
    if "case_id" not in answer:
        body: dict[str, Any] = {
            "household_id": answer["household_id"],
            "version": answer["version"],
            "replayed": answer["replayed"],
        }
        return JSONResponse(body, headers=headers)
    view = answer.get("view")
    if view is None:  # a retry's answer: the case as the first request left it
        case = casework.get_case(UUID(answer["case_id"]), version=answer["version"])
        view = case_answer(case, personal=may_read(principal.role, "read_personal_data"))
    view["replayed"] = answer["replayed"]
    if created:
        headers["Location"] = str(request.url_for("get_case", case_id=answer["case_id"]))
    return FastJSON(view, status_code=201 if created else 200, headers=headers)
