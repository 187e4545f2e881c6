"""/health: whether the API can reach its event store."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import CaseWorkDep

__all__ = ["router"]

router = APIRouter(tags=["service"])


class Health(BaseModel):
    """Whether the service is healthy, and what was checked."""

    healthy: bool
    database: bool


def _database_answers(casework: CaseWorkDep) -> bool:
    try:
        with casework.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT 1")
        return True
    except Exception:  # any failure to reach the store means unhealthy, nothing more to say
        return False


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The event store cannot be reached"}},
)
async def health(casework: CaseWorkDep) -> JSONResponse:
    """200 while the event store answers, 503 otherwise (no token needed)."""
    ok = await asyncio.to_thread(_database_answers, casework)
    body = Health(healthy=ok, database=ok)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
