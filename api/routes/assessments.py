"""Assessment of a case: the panel's measures, the public notice (公示), objections."""

from __future__ import annotations

from fastapi import APIRouter

from api.commands import add_command
from domain.commands import Assess, PublishNotice, RaiseObjection

__all__ = ["router"]

router = APIRouter(prefix="/cases/{case_id}", tags=["assessment"])

add_command(router, "/assessments", Assess, summary="Record the assessment panel's measures")
add_command(router, "/notices", PublishNotice, summary="Put a dibao decision on public notice")
add_command(router, "/objections", RaiseObjection, summary="Record an objection to the notice")
