"""The staff workbench: server-rendered pages on the HTTP API's app (Jinja2 + htmx)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

__all__ = ["include"]

STATIC = Path(__file__).with_name("static")


def include(app: FastAPI) -> None:
    """Add the workbench's pages (/web/...) and static files (/static/...) to the app."""
    from api.web.pages import login_required, router
    from api.web.session import LoginRequiredError
    from api.web.settings import OidcSettings
    from api.web.timing import ServerTiming

    if not hasattr(app.state, "oidc"):
        app.state.oidc = OidcSettings()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.add_exception_handler(LoginRequiredError, login_required)
    app.add_middleware(ServerTiming)
    if not any(isinstance(r, Route) and r.path == "/" for r in app.router.routes):
        # The service's address (what `jiuzhu demo` prints) opens the workbench.
        app.add_api_route("/", _to_workbench, methods=["GET"], include_in_schema=False)


async def _to_workbench() -> RedirectResponse:
    return RedirectResponse("/web/", status_code=307)
