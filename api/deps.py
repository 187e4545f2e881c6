"""Dependencies the routes share: the app's CaseWork, settings, and the acting principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import Principal, current_principal
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.settings import Settings

__all__ = ["Acting", "CaseWorkDep", "SettingsDep", "get_casework", "get_settings"]


async def get_casework(request: Request) -> AuditedCaseWork:
    """The app's audited CaseWork (app.state.casework)."""
    casework: AuditedCaseWork = request.app.state.casework
    return casework


async def get_settings(request: Request) -> Settings:
    """The service settings the app was made with."""
    settings: Settings = request.app.state.settings
    return settings


CaseWorkDep = Annotated[AuditedCaseWork, Depends(get_casework)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Acting = Annotated[Principal, Depends(current_principal)]
