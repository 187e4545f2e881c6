"""Enrolments of a case: enrol, review, adjust the benefit, exit the programme."""

from __future__ import annotations

from fastapi import APIRouter

from api.commands import add_command
from domain.commands import AdjustBenefit, Enrol, ExitProgramme, Review

__all__ = ["router"]

router = APIRouter(prefix="/cases/{case_id}/enrolments", tags=["enrolments"])

add_command(router, "", Enrol, summary="Enrol the household in a programme")
add_command(router, "/{programme}/reviews", Review, summary="Record a periodic review")
add_command(router, "/{programme}/adjustments", AdjustBenefit, summary="Change a benefit's amount")
add_command(router, "/{programme}/exit", ExitProgramme, summary="End an enrolment")
