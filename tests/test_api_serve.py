"""`jiuzhu serve api` and `jiuzhu token`: the API in the service, tokens from the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.auth import principal_from_token
from domain.roles import Role
from jiuzhu.cli import app as cli
from jiuzhu.serve import ServeSettings, Service
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.postgres


def test_jiuzhu_token_prints_a_token_the_api_trusts(tmp_path: Path) -> None:
    env = {"JIUZHU_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["token", "--actor", "li", "--role", "approver"], env=env)
    assert result.exit_code == 0, result.output
    principal = principal_from_token(result.output.strip(), Settings(data_dir=tmp_path))
    assert (principal.actor, principal.role) == ("li", Role.APPROVER)
    bad = CliRunner().invoke(cli, ["token", "--actor", "li", "--role", "mayor"], env=env)
    assert bad.exit_code == 1
    assert "unknown role 'mayor'" in bad.output


def test_serve_api_answers_health_until_the_service_stops(
    pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIUZHU_API_PORT", "0")
    settings = Settings(database_url=DATABASE_URL, db_schema=pg_schema, data_dir=tmp_path)

    async def scenario() -> None:
        service = Service(
            {"api"},
            database_url=DATABASE_URL,
            broker_url="nats://127.0.0.1:4222",  # not used by the API alone
            settings=settings,
            options=ServeSettings(health_port=None),
        )
        async with service:
            healthy, report = service.health.report()
            assert healthy
            url = report["components"]["api"]["url"]
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get("/health")
                assert response.json() == {"healthy": True, "database": True}
                assert (await client.get("/openapi.json")).status_code == 200
            service.stopping.set()
            assert await service.wait() == 0
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=url) as client:
                await client.get("/health")

    asyncio.run(scenario())
