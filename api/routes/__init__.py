"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import health

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [health.router]
