"""The health endpoint over real HTTP; `jiuzhu serve` as a process that SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
import orjson
import pytest

from domain.application import CaseWork
from jiuzhu.serve import Service
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.test_intake_brokers import alert
from tests.test_pipeline_brokers import cleanup
from tests.test_pipeline_end_to_end import unique_options
from tests.test_pipeline_kill import ROOT, scalar, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"
JIUZHU = Path(sys.executable).with_name("jiuzhu")


def get_health(port: int) -> tuple[int, dict[str, Any]]:
    """GET /health: the status code and the JSON body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get_health_raw(port: int) -> bytes:
    """One GET /health on a plain socket (no HTTP client retries or wrapping)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        return conn.recv(65536)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_health_is_200_while_consuming_and_503_once_a_component_stopped(
    app: CaseWork, pg_schema: str
) -> None:
    options = unique_options()
    running = Service(
        {"relay", "projector"},
        database_url=DATABASE_URL,
        broker_url=NATS_URL,
        settings=Settings(database_url=DATABASE_URL, db_schema=pg_schema),
        options=options,
    )

    async def scenario() -> None:
        try:
            async with running:
                # The same handler `serve` puts on JIUZHU_HEALTH_PORT.
                server = await asyncio.start_server(running.health.answer, "127.0.0.1", 0)
                port = server.sockets[0].getsockname()[1]
                try:
                    status, body = await asyncio.to_thread(get_health, port)
                    assert status == 200, body
                    assert body["components"]["projector"]["healthy"]
                    assert body["components"]["relay"]["healthy"]
                    assert running.projector is not None
                    await running.projector.drain()  # the projector takes no more batches
                    status, body = await asyncio.to_thread(get_health, port)
                    assert status == 503
                    assert not body["healthy"]
                    assert not body["components"]["projector"]["healthy"]
                    assert body["components"]["relay"]["healthy"]
                finally:
                    server.close()
                    await server.wait_closed()
        finally:
            await cleanup(NATS_URL, options.destination())

    asyncio.run(scenario())


@pytest.mark.slow
def test_jiuzhu_serve_runs_the_pipeline_and_exits_0_on_sigterm(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    options = unique_options()
    port = free_port()
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": NATS_URL,
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_HEALTH_PORT": str(port),
        "JIUZHU_API_PORT": "0",  # `serve` (all) runs the API too: any free port
        **{
            f"JIUZHU_{name.upper()}": str(value)
            for name, value in options.model_dump().items()
            if name.startswith(("events_", "upstream_"))
        },
    }
    log = tmp_path / "serve.log"
    household = f"HH-{uuid4().hex[:8]}"
    projected = f'SELECT max(notification_id) FROM "{pg_schema}".case_status_tracking'
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(JIUZHU), "serve"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def healthy() -> bool:
            try:
                return get_health(port)[0] == 200
            except OSError:  # not listening yet
                return process.poll() is not None

        wait_for(healthy, timeout=30, explain=lambda: log.read_text()[-2000:])
        assert process.poll() is None, log.read_text()[-2000:]
        asyncio.run(publish_alert(options.upstream_prefix, household))
        wait_for(lambda: len(app.household_chain(household)) == 1, timeout=30)
        last = app.recorder.max_notification_id()
        wait_for(lambda: scalar(projected) == last, timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()[-3000:]
        with pytest.raises(ConnectionRefusedError):  # the endpoint went with the process
            get_health_raw(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        asyncio.run(remove(options))
    assert '"stopped"' in log.read_text()


async def publish_alert(prefix: str, household: str) -> None:
    """What an upstream monitoring platform does: one JetStream publish."""
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().publish(
            f"{prefix}.monitoring.alert", orjson.dumps(alert(household))
        )
    finally:
        await client.close()


async def remove(options: Any) -> None:
    await cleanup(NATS_URL, options.destination())
    client = await nats.connect(NATS_URL)
    js = client.jetstream()
    for name in (options.upstream_stream, f"{options.upstream_stream}_DEADLETTER"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await client.close()


def test_health_listens_on_loopback_when_embedded_unless_configured() -> None:
    from jiuzhu.cli_serve import with_health_host
    from jiuzhu.serve import ServeSettings

    options = ServeSettings(health_port=8081)
    assert with_health_host(options, embedded=True).health_host == "127.0.0.1"
    assert with_health_host(options, embedded=False).health_host == "0.0.0.0"
    chosen = ServeSettings(health_host="10.0.0.5")
    assert with_health_host(chosen, embedded=True).health_host == "10.0.0.5"
