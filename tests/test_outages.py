"""Outages make no process exit (issue 14 finding 6): with its broker stopped, or its database
cut off or its connections killed, every role waits, says "degraded", and resumes.

The broker is a private nats-server and the database is reached through a proxy of the
test's own (tests/outage.py); the shared servers are never touched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
import orjson
import psycopg
import pytest

from domain.application import CaseWork
from jiuzhu.serve import Service
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.outage import CuttableProxy, PrivateNats
from tests.stories import opened
from tests.test_case_status import expected_rows
from tests.test_intake_brokers import alert
from tests.test_pipeline_brokers import caught_up, eventually, rows_of
from tests.test_pipeline_end_to_end import unique_options

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]


@asynccontextmanager
async def pipeline(
    app: CaseWork, schema: str, broker_url: str, database_url: str = DATABASE_URL
) -> AsyncIterator[tuple[Service, Callable[[str], Any]]]:
    """intake, relay and projector in one Service; a publish function of an upstream system."""
    options = unique_options()
    running = Service(
        {"intake", "relay", "projector"},
        database_url=database_url,
        broker_url=broker_url,
        settings=Settings(database_url=database_url, db_schema=schema),
        options=options,
    )
    client = await nats.connect(broker_url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)

    async def publish(household: str) -> None:
        subject = f"{options.upstream_prefix}.monitoring.alert"
        body = orjson.dumps(alert(household))
        for _ in range(100):  # an upstream system retries while its broker is away
            try:
                await client.jetstream().publish(subject, body, timeout=1.0)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise AssertionError("could not publish")

    try:
        async with running:
            yield running, publish
            # No role exited, whatever happened.
            assert not [t for t in running.running if t.done()]
    finally:
        await client.close()


def status(running: Service) -> str:
    return str(running.health.report()[1]["status"])


async def taken(app: CaseWork, running: Service, household: str) -> bool:
    try:  # the projector's own pool may be the one cut off: not yet, then
        chain = await asyncio.to_thread(app.household_chain, household)
        return len(chain) == 1 and await caught_up(running, app)
    except Exception:
        return False


async def is_status(running: Service, wanted: str) -> bool:
    return status(running) == wanted


def test_nats_stopped_and_started_again_loses_nothing(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()

    async def scenario() -> None:
        async with pipeline(app, pg_schema, server.url) as (running, publish):
            before, during = f"HH-{uuid4().hex[:8]}", f"HH-{uuid4().hex[:8]}"
            await publish(before)
            await eventually(lambda: taken(app, running, before))
            assert status(running) == "ok"
            server.stop()
            # Before: the relay exited 1 on NoStreamResponseError.
            await asyncio.to_thread(opened, app)  # written while the broker is away
            await eventually(lambda: is_status(running, "degraded"), timeout=15)
            server.start()
            await publish(during)
            await eventually(lambda: taken(app, running, during), timeout=40)
            await eventually(lambda: is_status(running, "ok"), timeout=15)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert rows_of(pg_schema) == expected_rows(app)


@pytest.mark.soak  # ~20 s (the pool's reconnect backoff): CI runs the killed-connections one
def test_postgresql_cut_off_then_back_loses_nothing(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()
    proxy = CuttableProxy(5432)
    proxy.start()
    through_proxy = DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert through_proxy != DATABASE_URL

    async def scenario() -> None:
        async with pipeline(app, pg_schema, server.url, through_proxy) as (running, publish):
            before, during = f"HH-{uuid4().hex[:8]}", f"HH-{uuid4().hex[:8]}"
            await publish(before)
            await eventually(lambda: taken(app, running, before))
            proxy.cut()  # every connection dropped, new ones refused
            await publish(during)
            await asyncio.to_thread(opened, app)  # another writer, not cut off
            await eventually(lambda: is_status(running, "degraded"), timeout=15)
            await asyncio.to_thread(threading.Event().wait, 2.0)  # unreachable a while
            proxy.start()
            await eventually(lambda: taken(app, running, during), timeout=60)
            await eventually(lambda: is_status(running, "ok"), timeout=15)

    try:
        asyncio.run(scenario())
    finally:
        proxy.cut()
        server.stop()
    assert rows_of(pg_schema) == expected_rows(app)


def test_postgresql_connections_killed_lose_nothing(
    app: CaseWork, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = PrivateNats(tmp_path / "nats")
    server.start()
    name = f"jiuzhu-outage-{uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)  # every connection the pipeline opens from now

    def kill_ours() -> int:
        with psycopg.connect(DATABASE_URL, autocommit=True, application_name="killer") as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchall()
        return len(rows)

    async def scenario() -> None:
        async with pipeline(app, pg_schema, server.url) as (running, publish):
            households = [f"HH-{uuid4().hex[:8]}" for _ in range(6)]
            killed = 0
            for household in households:
                await publish(household)
                killed += await asyncio.to_thread(kill_ours)
                await asyncio.to_thread(opened, app)
            assert killed > 0
            for household in households:
                try:
                    await eventually(lambda h=household: taken(app, running, h), timeout=60)  # type: ignore[misc]
                except AssertionError:
                    health = running.health.report()
                    raise AssertionError(f"{household} not taken: {health}") from None
            await eventually(lambda: is_status(running, "ok"), timeout=15)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert rows_of(pg_schema) == expected_rows(app)


def test_an_intake_whose_connection_closed_for_good_is_started_again(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    # nats-py closes for good on any -ERR of the server (a message over its limit...): the
    # intake spun on the closed connection, /health timed out and SIGTERM went unheeded.
    server = PrivateNats(tmp_path / "nats")
    server.start()

    async def scenario() -> None:
        async with pipeline(app, pg_schema, server.url) as (running, publish):
            before, after = f"HH-{uuid4().hex[:8]}", f"HH-{uuid4().hex[:8]}"
            await publish(before)
            await eventually(lambda: taken(app, running, before))
            runner: Any = running.health.checks["intake"].__self__  # type: ignore[attr-defined]
            await runner.broker.config.connection_state.connection.close()
            assert running.health.report()[1]["components"]["intake"]["status"] != "ok"
            await eventually(lambda: is_status(running, "ok"), timeout=15)
            assert running.health.report()[1]["components"]["intake"]["restarts"] == 1
            await publish(after)
            await eventually(lambda: taken(app, running, after))

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
