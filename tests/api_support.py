"""Helpers of the API tests: the real app on a test schema, tokens for each role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.app import create_app
from api.auth import issue_token
from api.server import running_in_thread
from domain.application import CaseWork
from domain.roles import Role
from jiuzhu.settings import Settings

__all__ = ["api_client", "bearer", "settings_in"]


def settings_in(data_dir: Path) -> Settings:
    """Settings whose keys live in a test's own directory."""
    return Settings(data_dir=data_dir)


def bearer(settings: Settings, actor: str, role: Role | str) -> dict[str, str]:
    """The Authorization header of a token for an actor in a role."""
    return {"Authorization": f"Bearer {issue_token(actor, role, settings)}"}


@contextmanager
def api_client(settings: Settings, casework: CaseWork) -> Iterator[httpx.Client]:
    """An httpx client on the real app served by uvicorn, on the test's CaseWork."""
    app = create_app(settings, casework=casework)
    with running_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client
