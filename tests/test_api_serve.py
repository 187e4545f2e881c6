"""`jiuzhu serve api` and `jiuzhu token`: the API in the service, tokens from the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
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
from tests.test_serve import free_port

JIUZHU = str(Path(sys.executable).with_name("jiuzhu"))

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


def demo_env(pg_schema: str, tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_DATA_DIR": str(tmp_path),
        "JIUZHU_API_PORT": str(port),
    }


@pytest.mark.slow
def test_demo_says_where_the_api_is_and_serve_keeps_it_running(
    pg_schema: str, tmp_path: Path
) -> None:
    port = free_port()
    env = demo_env(pg_schema, tmp_path, port)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [JIUZHU, "demo", "--direct", "--households", "3", "--serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "serving until Ctrl-C" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)  # a subprocess: no position to wait on but its output
        text = log.read_text()
        assert f"workbench: http://127.0.0.1:{port}/web/" in text
        token = re.search(r"token \(caseworker, 8 h\): (\S+)", text)
        assert token is not None, text
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                response = httpx.get(f"{url}/verification-tasks", headers=headers, timeout=10)
                break
            except httpx.ConnectError:  # the log line comes just before uvicorn listens
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code in (200, 503), response.text  # 503: no read model yet
        found = httpx.get(
            f"{url}/households", params={"household_id": "HH-610523-0001"}, headers=headers
        )
        assert found.status_code == 200, found.text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
