"""Payments of a case: benefits paid or failed, emergency relief granted and regularised."""

from __future__ import annotations

from fastapi import APIRouter

from api.commands import add_command
from domain.commands import (
    GrantEmergencyRelief,
    Pay,
    RecordPaymentFailure,
    RegulariseEmergencyRelief,
)

__all__ = ["router"]

router = APIRouter(prefix="/cases/{case_id}", tags=["payments"])

add_command(router, "/payments", Pay, summary="Record a payment")
add_command(router, "/payment-failures", RecordPaymentFailure, summary="Record a failed payment")
add_command(
    router,
    "/emergency-grants",
    GrantEmergencyRelief,
    summary="Pay emergency relief before verification (先行救助)",
)
add_command(
    router,
    "/emergency-grants/{grant_id}/regularisation",
    RegulariseEmergencyRelief,
    summary="Complete an emergency grant's paperwork",
)
