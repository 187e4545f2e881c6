"""The API app: health, tokens, 401 for requests without a valid one."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import TokenError, issue_token, principal_from_token
from domain.application import CaseWork
from domain.roles import Role
from tests.api_support import api_client, settings_in

pytestmark = pytest.mark.postgres


def test_token_round_trip(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    token = issue_token("wang", Role.CASEWORKER, settings)
    principal = principal_from_token(token, settings)
    assert (principal.actor, principal.role) == ("wang", Role.CASEWORKER)
    with pytest.raises(TokenError, match="not valid"):
        principal_from_token(token, settings_in(tmp_path / "other"))  # another key
    with pytest.raises(TokenError, match="expired"):
        principal_from_token(issue_token("wang", "approver", settings, ttl_seconds=-60), settings)
    with pytest.raises(TokenError, match="unknown role"):
        issue_token("wang", "mayor", settings)


def test_health_and_openapi(app: CaseWork, tmp_path: Path) -> None:
    with api_client(settings_in(tmp_path), app) as client:
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"healthy": True, "database": True}
        assert client.get("/openapi.json").json()["info"]["title"].startswith("jiuzhu")
