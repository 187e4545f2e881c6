"""The whole path: upstream message -> intake -> case -> relay -> projector -> case_status row.

Run through `jiuzhu.serve.Service` with intake, relay and projector in one process, on the
real NATS, RabbitMQ and Redis servers; upstream messages are published with plain clients
(nats-py, aio-pika, redis-py) as an upstream system would. Kafka: in memory only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import nats
import orjson
import pytest
import redis.asyncio as aioredis
from faststream.kafka import TestKafkaBroker

from consumers.brokers import make_broker
from consumers.intake import IntakeStats, build_intake
from consumers.projector import Projector, subscribe_projector
from consumers.relay import Relay
from consumers.streams import BrokerDeadLetterer, EventsDestination, make_publisher
from domain.application import CaseWork
from jiuzhu.serve import ServeSettings, Service
from jiuzhu.settings import Settings
from projections.base import read_model_datastore
from projections.case_status import CaseStatus
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows, table_rows
from tests.test_intake_brokers import BROKERS, Upstream, alert
from tests.test_pipeline_brokers import caught_up, cleanup, eventually, rows_of

pytestmark = pytest.mark.postgres

SOURCE = "/shaanxi/monitoring-platform"


def unique_options() -> ServeSettings:
    """Names no other test (or person) uses, for events and upstream messages alike."""
    tag = f"t{uuid4().hex[:10]}"
    return ServeSettings(
        events_prefix=f"{tag}.events",
        events_stream=tag.upper(),
        events_deadletter=f"{tag}.deadletter.events",
        upstream_prefix=f"{tag}.upstream",
        upstream_stream=f"{tag.upper()}_UP",
        upstream_deadletter=f"{tag}.deadletter.upstream",
        upstream_durable=f"{tag}-intake",
        intake_retry_delay=0.2,
        health_port=0,
        projector_consumer=f"projector-{tag}",
    )


def visit(household: str, message_id: str) -> dict[str, Any]:
    """A field team's visit report: consent given, the household needs support."""
    return {
        **alert(household, message_id),
        "type": "verification.reported",
        "source": "/weinan/dali/anren-town-team",
        "data": {
            "household_id": household,
            "team": "anren-town-team",
            "consent": {"given": True},
            "verdict": "needs_support",
            "household_size": 3,
            "monthly_income_fen": 30000,
        },
    }


async def plain_client(url: str) -> Any:
    """The upstream system's own client of the broker."""
    if url.startswith("nats"):
        return await nats.connect(url)
    if url.startswith("amqp"):
        return await aio_pika.connect_robust(url)
    return aioredis.from_url(url)


@asynccontextmanager
async def pipeline(url: str, app: CaseWork, schema: str) -> AsyncIterator[tuple[Service, Upstream]]:
    """intake + relay + projector in one Service, and an upstream client beside it."""
    options = unique_options()
    upstream = Upstream(
        url, options.upstream_prefix, options.upstream_deadletter, options.upstream_stream
    )
    running = Service(
        {"intake", "relay", "projector"},
        database_url=DATABASE_URL,
        broker_url=url,
        settings=Settings(database_url=DATABASE_URL, db_schema=schema),
        options=options,
    )
    upstream.client = await plain_client(url)
    try:
        async with running:
            yield running, upstream
    finally:
        await upstream.remove()
        await cleanup(url, options.destination())
        close = getattr(upstream.client, "aclose", None) or upstream.client.close
        await close()


def intake_figures(running: Service) -> dict[str, Any]:
    return running.health.figures["intake"]()


async def intake_settled(running: Service, messages: int) -> None:
    """Every published upstream message has an outcome: applied, duplicate or dead letter."""

    async def settled() -> bool:
        figures = intake_figures(running)
        outcomes = figures["applied"] + figures["no_effect"] + figures["duplicates"]
        return outcomes + sum(figures["dead_lettered"].values()) >= messages

    await eventually(settled)


@pytest.mark.parametrize("url", BROKERS)
def test_upstream_messages_reach_case_status_once_and_bad_ones_the_dead_letters(
    url: str, app: CaseWork, pg_schema: str
) -> None:
    first, second = f"HH-{uuid4().hex[:8]}", f"HH-{uuid4().hex[:8]}"
    opening = orjson.dumps(alert(first, "alert-1"))
    messages = [
        (opening, "monitoring.alert"),
        (orjson.dumps(visit(first, "visit-1")), "verification.reported"),
        (opening, "monitoring.alert"),  # the platform sent it twice
        (b"\xff not json {", "monitoring.alert"),
        (orjson.dumps(alert(second, "alert-2")), "monitoring.alert"),
    ]

    async def scenario() -> list[tuple[bytes, dict[str, str]]]:
        async with pipeline(url, app, pg_schema) as (running, upstream):
            # The visit follows the alert it answers (RabbitMQ's intake does not keep order).
            await upstream.publish(*messages[0])
            await intake_settled(running, 1)
            for body, kind in messages[1:]:
                await upstream.publish(body, kind)
            await intake_settled(running, len(messages))
            assert app.recorder.max_notification_id() > 0
            await eventually(lambda: caught_up(running, app))
            figures = intake_figures(running)
            assert (figures["applied"], figures["duplicates"]) == (3, 1)
            assert figures["dead_lettered"] == {"not_json": 1}
            healthy, report = running.health.report()
            assert healthy, report
            return await upstream.dead_letters()

    letters = asyncio.run(scenario())

    [(letter, headers)] = letters
    assert letter == b"\xff not json {"
    assert headers["x-deadletter-reason"] == "not_json"
    [case_id] = app.household_chain(first)
    [_] = app.household_chain(second)
    # One effect end to end: the duplicate added no event, and each row is the event store's.
    kinds = [type(e).__name__ for e in app.history(case_id)]
    assert kinds == ["Discovered", "ConsentGiven", "Verified"]
    rows = rows_of(pg_schema)
    assert rows == expected_rows(app)
    assert len(rows) == 2
    case = app.get_case(case_id)
    row = rows[case_id]
    assert (row["status"], row["verdict"], row["version"]) == ("verified", "needs_support", 3)
    assert (row["status"], row["household_id"], row["region"]) == (
        case.status,
        case.household_id,
        case.region,
    )
    discovered = app.history(case_id)[0]
    assert discovered.causation_id == f"upstream:{SOURCE}/alert-1"
    assert discovered.correlation_id == "batch-2023-06"


@pytest.mark.anyio
async def test_kafka_in_memory_carries_an_upstream_alert_into_case_status(
    app: CaseWork, pg_schema: str
) -> None:
    tag = f"t{uuid4().hex[:10]}"
    destination = EventsDestination(prefix=f"{tag}.events", stream=tag.upper())
    stats = IntakeStats()
    intake_broker, _ = build_intake(
        broker_url="kafka://127.0.0.1:9092",
        app=app,
        subject_prefix=f"{tag}.upstream",
        deadletter_subject=f"{tag}.deadletter.upstream",
        stats=stats,
    )
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema)
    case_status = CaseStatus(datastore)
    case_status.create_table()
    events_broker = make_broker("kafka://127.0.0.1:9092")
    projector = Projector(
        app.mapper,
        [case_status],
        application_name=app.name,
        deadletter=BrokerDeadLetterer(events_broker, destination),
    )
    subscribe_projector(events_broker, destination, projector, batch_size=50)
    household = f"HH-{uuid4().hex[:8]}"
    try:
        async with TestKafkaBroker(intake_broker) as upstream:
            await upstream.publish(orjson.dumps(alert(household, "k-1")), f"{tag}.upstream")
            await upstream.publish(orjson.dumps(alert(household, "k-1")), f"{tag}.upstream")
        assert (stats.applied, stats.duplicates) == (1, 1)
        async with TestKafkaBroker(events_broker):
            relay = Relay(
                app.recorder,  # type: ignore[arg-type]
                make_publisher(events_broker, destination),
                database_url=DATABASE_URL,
                destination=destination,
            )
            stopping = asyncio.Event()
            relaying = asyncio.create_task(relay.run(stopping))
            last = app.recorder.max_notification_id()

            async def projected() -> bool:
                return projector.stats.position == last

            await eventually(projected)
            stopping.set()
            await relaying
        rows = table_rows(case_status)
        [case_id] = app.household_chain(household)
        assert isinstance(case_id, UUID)
        assert rows == expected_rows(app)
        assert rows[case_id]["status"] == "discovered"
    finally:
        datastore.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
