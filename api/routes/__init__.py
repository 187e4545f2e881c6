"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    assessments,
    cases,
    enrolments,
    health,
    households,
    payments,
    referrals,
    verification,
)

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    health.router,
    cases.router,
    verification.router,
    assessments.router,
    enrolments.router,
    payments.router,
    referrals.router,
    households.router,
]
