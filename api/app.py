"""The ASGI app: the HTTP API (api.routes) and, when present, the workbench (api.web)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.auth import TokenVerifier
from api.limits import BodyLimit
from api.routes import ROUTERS
from api.settings import ApiSettings
from domain.application import CaseWork
from jiuzhu.settings import Settings

__all__ = ["create_app"]

DESCRIPTION = """\
The one window (一门受理、协同办理): every step of a case of social assistance, every read of
its record, for caseworkers, approvers, auditors, analysts and partner systems.

Who acts comes from a bearer token (`jiuzhu token --actor A --role R` prints one for the
embedded default). Commands accept an `Idempotency-Key` (the same key twice has one effect
and returns the first answer) and `If-Match` with the case version of its `ETag`.
Errors are `application/problem+json` (RFC 9457) naming the rule, the case and each bad field.
"""


def create_app(
    settings: Settings,
    *,
    casework: CaseWork | None = None,
    database_url: str | None = None,
    api_settings: ApiSettings | None = None,
) -> FastAPI:
    """The app on a CaseWork (given, else built on database_url or settings.database_url).

    A CaseWork the app builds is closed when the app shuts down; a given one is left open.
    """
    api = api_settings if api_settings is not None else ApiSettings()
    owned = False
    if casework is None:
        from jiuzhu.bootstrap import casework as build

        url = database_url or settings.database_url
        if url is None:
            raise ValueError("create_app needs a CaseWork, a database URL or JIUZHU_DATABASE_URL")
        casework = build(
            url, schema=settings.db_schema, pool_size=settings.pool_size, settings=settings
        )
        owned = True
    app_casework = casework

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                app_casework.close()

    app = FastAPI(
        title="jiuzhu 救助",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_settings = api
    app.state.casework = casework
    app.state.tokens = TokenVerifier(settings, api)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    _include_web(app)
    return app


def _include_web(app: FastAPI) -> None:
    """The workbench pages, if the api.web package offers them (include(app))."""
    try:
        web = importlib.import_module("api.web")
    except ModuleNotFoundError as error:
        if error.name not in ("api.web",):
            raise
        return
    include = getattr(web, "include", None)
    if callable(include):
        include(app)
