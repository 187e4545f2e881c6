"""The app for an ASGI server of one's own, several workers for example:

    JIUZHU_DATABASE_URL=postgresql://... uvicorn --factory api.asgi:app_from_env --workers 4

Each worker process builds its own CaseWork from the JIUZHU_* settings.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from jiuzhu.settings import Settings

__all__ = ["app_from_env"]


def app_from_env() -> FastAPI:
    """The app on JIUZHU_DATABASE_URL (an embedded database is not shared across workers)."""
    settings = Settings()
    if settings.database_url is None:
        raise SystemExit("set JIUZHU_DATABASE_URL: workers share one PostgreSQL server")
    return create_app(settings)
