"""Personal data on the broker does not linger, and erasure says what it could not reach."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import nats
import pytest
from typer.testing import CliRunner

from consumers.brokers import make_broker
from consumers.deadletter import IntakePlaces, declare_intake
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.cli import app as cli
from jiuzhu.serve import ServeSettings
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import opened
from tests.test_audit_support import audited, server_time_zone, settings  # noqa: F401

NATS_URL = "nats://127.0.0.1:4222"


@pytest.mark.nats
def test_upstream_messages_and_dead_letters_expire_on_nats() -> None:
    tag = uuid4().hex[:8]
    plain = IntakePlaces(
        prefix=f"relief.upstream.t{tag}",
        stream=f"UPSTREAM_T{tag}",
        deadletter=f"relief.deadletter.t{tag}",
        durable=f"intake-{tag}",
    )
    options = ServeSettings()
    retained = IntakePlaces(
        prefix=plain.prefix,
        stream=plain.stream,
        deadletter=plain.deadletter,
        durable=plain.durable,
        max_age=options.upstream_retention_seconds(),
        deadletter_max_age=options.deadletter_retention_seconds(),
    )

    async def declare_twice() -> tuple[float | None, float | None]:
        broker = make_broker(NATS_URL)
        try:
            await declare_intake(broker, plain)  # as an older version left it: no limit
            await declare_intake(broker, retained)  # the next start sets the retention
        finally:
            await broker.stop()
        connection = await nats.connect(NATS_URL)
        try:
            js = connection.jetstream()
            upstream = (await js.stream_info(plain.stream)).config.max_age
            dead = (await js.stream_info(f"{plain.stream}_DEADLETTER")).config.max_age
            for name in (plain.stream, f"{plain.stream}_DEADLETTER"):
                await js.delete_stream(name)
            return upstream, dead
        finally:
            await connection.close()

    assert asyncio.run(declare_twice()) == (7 * 86_400, 30 * 86_400)


@pytest.mark.postgres
def test_erase_names_what_it_could_not_reach(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened(audited, household="HH-REACH")
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("JIUZHU_UPSTREAM_RETENTION_DAYS", "3")

    result = CliRunner().invoke(
        cli,
        ["privacy", "erase", "HH-REACH", "--reason", "PIPL art. 47",
         "--actor", "approver-2", "--role", "approver"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "erased personal data of household HH-REACH" in result.output
    assert "not reached by this erasure" in result.output
    assert "RELIEF_UPSTREAM: kept 3 days (JIUZHU_UPSTREAM_RETENTION_DAYS)" in result.output
    assert "kept 30 days (JIUZHU_DEADLETTER_RETENTION_DAYS)" in result.output
    assert "backups" in result.output
