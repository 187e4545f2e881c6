"""Upstream CloudEvents in binary content mode, built with the official `cloudevents` SDK.

The NATS and RabbitMQ bindings put the attributes in `ce-` headers, Kafka in `ce_` headers,
AMQP 1.0 in `cloudEvents_` properties; the body is the data alone. Structured mode (one
JSON envelope) keeps working beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import aio_pika
import orjson
import pytest
from cloudevents.core.bindings import amqp, http, kafka, rabbitmq
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from faststream.redis.parser import BinaryMessageFormatV1

from consumers.contracts import BadMessageError, parse_upstream
from domain.application import CaseWork
from tests.test_intake_brokers import alert, intake, on_every_broker, settled

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sdk_alert(household: str, message_id: str) -> SdkEvent:
    """The monitoring platform's alert, as the official SDK builds it."""
    envelope = alert(household, message_id)
    return SdkEvent(
        attributes={
            "type": "monitoring.alert",
            "source": envelope["source"],
            "id": message_id,
            "time": datetime(2023, 6, 5, 1, 30, tzinfo=UTC),
            "datacontenttype": "application/json",
            "correlationid": "batch-2023-06",
        },
        data=envelope["data"],
    )


async def publish_binary(upstream: Any, event: SdkEvent) -> None:
    """Publish in binary content mode with the binding each broker's producers use."""
    subject = f"{upstream.prefix}.monitoring.alert"
    if upstream.url.startswith("nats"):  # the NATS binding: ce- headers, as HTTP's
        message = http.to_binary_event(event)
        await upstream.client.jetstream().publish(subject, message.body, headers=message.headers)
    elif upstream.url.startswith("amqp"):
        binary = rabbitmq.to_binary_event(event)
        channel = await upstream.client.channel()
        exchange = await channel.get_exchange(upstream.prefix)
        await exchange.publish(
            aio_pika.Message(binary.body, headers=binary.headers, content_type=binary.content_type),
            routing_key=subject,
        )
        await channel.close()
    else:  # Redis Streams has no binding: ce- headers in FastStream's envelope
        message = http.to_binary_event(event)
        data = await BinaryMessageFormatV1.encode(
            message=message.body, reply_to=None, headers=message.headers, correlation_id="c"
        )
        await upstream.client.xadd(upstream.prefix, {"__data__": data})


@on_every_broker
async def test_a_binary_mode_cloudevent_from_the_official_sdk_opens_a_case(
    url: str, app: CaseWork
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    async with intake(url, app) as (upstream, stats):
        await publish_binary(upstream, sdk_alert(household, "alert-binary"))
        await settled(stats, lambda s: s.applied == 1)
        assert not stats.dead_lettered
    [case_id] = app.household_chain(household)
    [discovered] = app.history(case_id)
    assert discovered.actor == "/shaanxi/monitoring-platform"
    assert discovered.causation_id == "upstream:/shaanxi/monitoring-platform/alert-binary"
    assert discovered.correlation_id == "batch-2023-06"
    assert discovered.occurred_at == datetime(2023, 6, 5, 1, 30, tzinfo=UTC)


def test_every_bindings_binary_mode_parses_to_the_same_envelope() -> None:
    event = sdk_alert("HH-1", "alert-7")
    structured = http.to_structured_event(event)
    expected = parse_upstream(structured.body, structured.headers)
    kafka_message = kafka.to_binary_event(event)
    amqp_message = amqp.to_binary_event(event)
    for body, headers in (
        (http.to_binary_event(event).body, http.to_binary_event(event).headers),
        (rabbitmq.to_binary_event(event).body, rabbitmq.to_binary_event(event).headers),
        (kafka_message.value, kafka_message.headers),
        (amqp_message.application_data, amqp_message.application_properties),
    ):
        parsed = parse_upstream(body, headers)
        assert parsed == expected
        assert parsed.correlation_id == "batch-2023-06"


def test_binary_mode_errors_name_the_missing_attribute() -> None:
    message = http.to_binary_event(sdk_alert("HH-1", "alert-8"))
    headers = {k: v for k, v in message.headers.items() if k != "ce-type"}
    with pytest.raises(BadMessageError, match="missing CloudEvents attribute 'type'"):
        parse_upstream(message.body, headers)


def test_a_correlation_id_header_is_the_conversation_when_the_envelope_has_none() -> None:
    envelope = alert("HH-1", "alert-9")
    del envelope["correlationid"]
    body = orjson.dumps(envelope)
    assert parse_upstream(body).correlation_id == "/shaanxi/monitoring-platform/alert-9"
    assert parse_upstream(body, {"correlation_id": "conv-1"}).correlation_id == "conv-1"
    with_both = orjson.dumps({**envelope, "correlationid": "from-body"})
    assert parse_upstream(with_both, {"correlation_id": "conv-1"}).correlation_id == "from-body"
