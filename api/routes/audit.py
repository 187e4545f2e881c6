"""/audit: verify the tamper-evident log, export a case or a region for auditors."""

from __future__ import annotations

import io
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.commands import PROBLEMS
from api.deps import Acting, CaseWorkDep, SettingsDep
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.verify import verify_log
from jiuzhu.cli_audit import export_to, trusted_keys, verify_json
from jiuzhu.cli_common import Who
from jiuzhu.settings import Settings
from projections.regions import normalise_region

__all__ = ["router", "verify_report"]

router = APIRouter(prefix="/audit", tags=["audit"])
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: PROBLEMS[code] for code in (401, 403, 404, 422, 503)
}


class Finding(BaseModel):
    """One row changed, deleted, inserted or moved, or a bad checkpoint or signature."""

    kind: str
    case_id: str | None
    version: int | None
    notification_id: int | None
    detail: str


class Verification(BaseModel):
    """`jiuzhu audit verify --json`: every hash and checkpoint recomputed."""

    ok: bool
    events: int
    checkpoints: int
    external_checkpoints: int
    unverified_signatures: int
    covered_up_to: int = Field(description="The last position a checkpoint vouches for")
    events_after_last_checkpoint: int
    findings: list[Finding]


def verify_report(
    casework: AuditedCaseWork, settings: Settings, principal: Principal, case_id: UUID | None
) -> dict[str, Any]:
    """`audit verify` for an auditor, as JSON (the API's answer and the workbench's page)."""
    casework.authorise_read(principal.actor, principal.role, "verify_audit_trail")
    keys = trusted_keys(settings)
    if casework.signer is not None:  # the key this very process signs checkpoints with
        keys[casework.signer.key_id] = casework.signer.public_key
    report = verify_log(casework.datastore, casework.audit, case_id=case_id, public_keys=keys)
    return verify_json(report)


@router.get("/verification", response_model=Verification, responses=_PROBLEMS)
async def verify(
    principal: Acting,
    casework: CaseWorkDep,
    settings: SettingsDep,
    case_id: Annotated[UUID | None, Query(description="Only this case's events")] = None,
) -> dict[str, Any]:
    """Recompute every hash and checkpoint; name each row changed, deleted, inserted or moved."""
    return await run_in_threadpool(verify_report, casework, settings, principal, case_id)


class ExportRequest(BaseModel):
    """What to export: a case, or a region's events in a period (business days)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    case_id: UUID | None = None
    region: str | None = Field(default=None, max_length=6, description="GB/T 2260 code")
    first: date | None = Field(default=None, alias="from", description="First day")
    last: date | None = Field(default=None, alias="to", description="Last day")

    @model_validator(mode="after")
    def _one_scope(self) -> ExportRequest:
        if (self.case_id is None) == (self.region is None):
            raise ValueError("give a case_id, or a region with from and to")
        if self.region is not None:
            if self.first is None or self.last is None:
                raise ValueError("a region export needs from and to (YYYY-MM-DD)")
            normalise_region(self.region)  # ValueError naming a bad code
        return self


def _export(
    casework: AuditedCaseWork, settings: Settings, principal: Principal, scope: ExportRequest
) -> tuple[str, int, str]:
    out = io.StringIO()
    count, digest = export_to(
        casework,
        settings,
        out,
        Who(principal.actor, principal.role.value),
        case_id=scope.case_id,
        region=scope.region,
        first=scope.first,
        last=scope.last,
    )
    return out.getvalue(), count, digest


@router.post(
    "/exports",
    responses={
        **_PROBLEMS,
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "JSON Lines: a header, one line per event, a signed digest line",
        },
    },
    response_class=Response,
)
async def export(
    scope: ExportRequest, principal: Acting, casework: CaseWorkDep, settings: SettingsDep
) -> Response:
    """Export a case, or a region's events in a period, as JSON Lines with a signed digest.

    Check it offline with `jiuzhu audit verify-export FILE`.
    """
    text, count, digest = await run_in_threadpool(_export, casework, settings, principal, scope)
    return Response(
        text,
        media_type="application/x-ndjson",
        headers={"X-Export-Digest": f"sha256={digest}", "X-Export-Events": str(count)},
    )
