"""The staff workbench: server-rendered pages on the HTTP API's app (Jinja2 + htmx)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

__all__ = ["include"]

STATIC = Path(__file__).with_name("static")


def include(app: FastAPI) -> None:
    """Add the workbench's pages (/web/...) and static files (/static/...) to the app."""
    from api.web.pages import login_required, router
    from api.web.session import LoginRequiredError
    from api.web.settings import OidcSettings

    if not hasattr(app.state, "oidc"):
        app.state.oidc = OidcSettings()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.add_exception_handler(LoginRequiredError, login_required)
