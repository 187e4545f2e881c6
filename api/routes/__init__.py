"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    assessments,
    audit,
    cases,
    enrolments,
    health,
    households,
    payments,
    referrals,
    reports,
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
    reports.router,
    audit.router,
]
