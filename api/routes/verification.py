"""Verification of a case: the visit assigned, the household's consent, the findings."""

from __future__ import annotations

from fastapi import APIRouter

from api.commands import add_command
from domain.commands import AssignVerification, GiveConsent, Verify, WithdrawConsent

__all__ = ["router"]

router = APIRouter(prefix="/cases/{case_id}", tags=["verification"])

add_command(
    router, "/verification-assignments", AssignVerification, summary="Assign the verification visit"
)
add_command(router, "/consent", GiveConsent, summary="Record the household's consent")
add_command(
    router, "/consent/withdrawal", WithdrawConsent, summary="Record the withdrawal of consent"
)
add_command(router, "/verifications", Verify, summary="Record the visit's findings and verdict")
