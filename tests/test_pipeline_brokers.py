"""Event store -> relay -> broker -> projector -> case_status, on the real NATS, RabbitMQ, Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import pytest

from consumers.brokers import AnyBroker, make_broker
from consumers.event_messages import encode
from consumers.store_identity import store_identity
from consumers.streams import DEADLETTER_REASON, EventsDestination, make_publisher
from domain.application import CaseWork
from jiuzhu.serve import ServeSettings, Service
from jiuzhu.settings import Settings
from projections.case_status import CaseStatus
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows, table_rows, varied_cases

BROKERS = [
    pytest.param("nats://127.0.0.1:4222", marks=pytest.mark.nats, id="nats"),
    pytest.param("amqp://guest:guest@127.0.0.1:5672/", marks=pytest.mark.rabbit, id="rabbit"),
    pytest.param("redis://127.0.0.1:6379", marks=pytest.mark.redis, id="redis"),
]

pytestmark = pytest.mark.postgres


def unique_options() -> ServeSettings:
    """Names no other test (or person) uses: streams, queues, subjects."""
    tag = uuid4().hex[:10]
    return ServeSettings(
        events_prefix=f"t{tag}.events",
        events_stream=f"T{tag}",
        events_deadletter=f"t{tag}.deadletter.events",
        health_port=0,
        projector_consumer=f"projector-{tag}",
    )


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait until a condition holds, polling briefly; fail after the timeout."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        # A short pause off the event loop: the pipeline keeps running meanwhile.
        await asyncio.to_thread(threading.Event().wait, 0.02)


def service(app: CaseWork, schema: str, broker_url: str, options: ServeSettings) -> Service:
    return Service(
        {"relay", "projector"},
        database_url=DATABASE_URL,
        broker_url=broker_url,
        settings=Settings(database_url=DATABASE_URL, db_schema=schema),
        options=options,
    )


async def caught_up(running: Service, app: CaseWork) -> bool:
    assert running.projector is not None
    position = await asyncio.to_thread(running.projector.position)
    return position == app.recorder.max_notification_id()


async def cleanup(broker_url: str, destination: EventsDestination) -> None:
    broker: AnyBroker = make_broker(broker_url)
    client: Any = await broker.connect()
    if broker_url.startswith("nats"):
        js = broker.config.connection_state.stream  # type: ignore[union-attr]
        for name in (destination.stream, f"{destination.stream}_DEADLETTER"):
            await js.delete_stream(name)
    elif broker_url.startswith("amqp"):
        channel = await client.channel()
        for queue in (destination.stream, destination.deadletter):
            await channel.queue_delete(queue)
        await channel.exchange_delete(destination.prefix)
    else:
        await client.delete(destination.redis_stream, destination.deadletter)
    await broker.stop()


def rows_of(schema: str) -> dict[Any, dict[str, Any]]:
    from projections.base import read_model_datastore

    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=schema))
    try:
        return table_rows(model)
    finally:
        model.datastore.close()


@pytest.mark.parametrize("broker_url", BROKERS)
def test_case_status_through_the_broker_equals_the_event_store(
    app: CaseWork, pg_schema: str, broker_url: str
) -> None:
    options = unique_options()
    varied_cases(app, rounds=3)  # recorded before the pipeline starts: the relay catches up

    async def scenario() -> None:
        try:
            async with service(app, pg_schema, broker_url, options) as running:
                await eventually(lambda: caught_up(running, app))
                varied_cases(app, rounds=2)  # recorded while it runs: LISTEN/NOTIFY path
                await eventually(lambda: caught_up(running, app))
                assert running.projector is not None
                assert running.projector.stats.dead_lettered == 0
                healthy, report = running.health.report()
                assert healthy, report
        finally:
            await cleanup(broker_url, options.destination())

    asyncio.run(scenario())
    assert rows_of(pg_schema) == expected_rows(app)


async def publish_raw(
    broker_url: str, destination: EventsDestination, body: bytes, headers: dict[str, str]
) -> None:
    """Put a message on the events destination as any upstream client could."""
    broker: Any = make_broker(broker_url)
    await broker.connect()
    subject = f"{destination.prefix}.case.paid"
    if broker_url.startswith("nats"):
        await broker.config.connection_state.stream.publish(subject, body, headers=headers)
    elif broker_url.startswith("amqp"):
        exchange = destination.rabbit_exchange()
        await broker.publish(body, exchange=exchange, routing_key=subject, headers=headers)
    else:
        await broker.publish(body, stream=destination.redis_stream, headers=headers)
    await broker.stop()


async def dead_letters(broker_url: str, destination: EventsDestination) -> list[Any]:
    """(headers, body) of what reached the dead-letter place."""
    broker: Any = make_broker(broker_url)
    client = await broker.connect()
    try:
        if broker_url.startswith("nats"):
            js = broker.config.connection_state.stream
            msg = await js.get_last_msg(f"{destination.stream}_DEADLETTER", destination.deadletter)
            return [(msg.headers, msg.data)]
        if broker_url.startswith("amqp"):
            channel = await client.channel()
            queue = await channel.get_queue(destination.deadletter)
            message = await queue.get(no_ack=True)
            return [(message.headers, message.body)]
        from faststream.redis.parser.binary import BinaryMessageFormatV1

        entries = await client.xrange(destination.deadletter)
        return [BinaryMessageFormatV1.parse(e[b"__data__"])[::-1] for _, e in entries]
    finally:
        await broker.stop()


@pytest.mark.parametrize("broker_url", BROKERS)
def test_an_undecodable_event_is_dead_lettered_with_its_reason(
    app: CaseWork, pg_schema: str, broker_url: str
) -> None:
    options = unique_options()
    destination = options.destination()
    varied_cases(app)

    async def scenario() -> list[Any]:
        try:
            async with service(app, pg_schema, broker_url, options) as running:
                await eventually(lambda: caught_up(running, app))
                await publish_raw(broker_url, destination, b"not an event", {"type": "Case.Paid"})
                varied_cases(app)  # the pipeline goes on after the bad message
                await eventually(lambda: caught_up(running, app))
                assert running.projector is not None
                assert running.projector.stats.dead_lettered == 1
                assert running.health.report()[0]
            return await dead_letters(broker_url, destination)
        finally:
            await cleanup(broker_url, destination)

    ((headers, body),) = asyncio.run(scenario())
    assert body == b"not an event"
    assert "case-id" in headers[DEADLETTER_REASON]
    assert rows_of(pg_schema) == expected_rows(app)


@pytest.mark.parametrize("broker_url", BROKERS)
def test_duplicate_delivery_changes_nothing(app: CaseWork, pg_schema: str, broker_url: str) -> None:
    options = unique_options()
    destination = options.destination()
    varied_cases(app, rounds=2)
    notifications = app.recorder.select_notifications(start=0, limit=10_000)
    again = [encode(n, prefix=destination.prefix) for n in notifications]
    if broker_url.startswith("nats"):
        # Outside NATS's duplicate window (a relay restarted much later): new message ids.
        for message in again:
            message.headers["Nats-Msg-Id"] += "-later"

    async def scenario() -> None:
        try:
            async with service(app, pg_schema, broker_url, options) as running:
                await eventually(lambda: caught_up(running, app))
                projector = running.projector
                assert projector is not None
                applied, received = projector.stats.applied, projector.stats.received
                broker: Any = make_broker(broker_url)
                await broker.connect()
                await make_publisher(broker, destination).publish(again)
                await broker.stop()

                async def redelivered() -> bool:
                    return projector.stats.received == received + len(again)

                await eventually(redelivered)
                assert projector.stats.applied == applied
        finally:
            await cleanup(broker_url, destination)

    before = expected_rows(app)
    asyncio.run(scenario())
    assert rows_of(pg_schema) == before


@pytest.mark.nats
def test_nats_drops_a_republished_window_by_event_id(app: CaseWork, pg_schema: str) -> None:
    options = unique_options()
    destination = options.destination()
    varied_cases(app)
    url = "nats://127.0.0.1:4222"

    async def scenario() -> None:
        try:
            async with service(app, pg_schema, url, options) as running:
                await eventually(lambda: caught_up(running, app))
            broker: Any = make_broker(url)
            await broker.connect()
            js = broker.config.connection_state.stream
            count = (await js.stream_info(destination.stream)).state.messages
            notifications = app.recorder.select_notifications(start=0, limit=1000)
            store = store_identity(app.recorder.datastore)  # type: ignore[attr-defined]
            for n in notifications:  # what a relay killed before recording its position resends
                m = encode(n, prefix=destination.prefix, store=store)
                ack = await js.publish(m.subject, m.body, headers=m.headers)
                assert ack.duplicate
            assert (await js.stream_info(destination.stream)).state.messages == count
            await broker.stop()
        finally:
            await cleanup(url, destination)

    asyncio.run(scenario())


@pytest.mark.nats
def test_nats_projector_recreates_its_deleted_consumer_and_goes_on_exactly(
    app: CaseWork, pg_schema: str
) -> None:
    options = unique_options()
    destination = options.destination()
    varied_cases(app)
    url = "nats://127.0.0.1:4222"

    async def scenario() -> None:
        try:
            async with service(app, pg_schema, url, options) as running:
                await eventually(lambda: caught_up(running, app))
                broker: Any = make_broker(url)
                await broker.connect()
                js = broker.config.connection_state.stream
                # An operator's mistake, or the server losing its state: the durable is gone.
                await js.delete_consumer(destination.stream, destination.durable)
                varied_cases(app, rounds=2)
                await eventually(lambda: caught_up(running, app))
                info = await js.consumer_info(destination.stream, destination.durable)
                assert info.ack_floor.stream_seq == app.recorder.max_notification_id()
                await broker.stop()
                assert running.health.report()[0]
        finally:
            await cleanup(url, destination)

    asyncio.run(scenario())
    assert rows_of(pg_schema) == expected_rows(app)
