"""Services and referrals of a case: services delivered, referrals made and answered."""

from __future__ import annotations

from fastapi import APIRouter

from api.commands import add_command
from domain.commands import AnswerReferral, DeliverService, Refer

__all__ = ["router"]

router = APIRouter(prefix="/cases/{case_id}", tags=["services and referrals"])

add_command(router, "/services", DeliverService, summary="Record a service delivered")
add_command(router, "/referrals", Refer, summary="Refer the household to a social organisation")
add_command(
    router,
    "/referrals/{referral_id}/answer",
    AnswerReferral,
    summary="Record a social organisation's answer",
)
