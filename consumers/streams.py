"""Where relief.events live on each broker (declared durable at start) and how they get there.

NATS: one JetStream stream over `<prefix>.>` with a duplicate window (Nats-Msg-Id dedup).
RabbitMQ: a durable topic exchange named after the prefix and one durable queue bound to it.
Redis: one stream keyed by the prefix and a consumer group created at its start ("0"), so
events relayed before the projector first ran are not skipped.
Kafka: one topic named after the prefix, keyed by case id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faststream.kafka import KafkaBroker
from faststream.nats import JStream, NatsBroker
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.redis import RedisBroker
from nats.js.errors import BadRequestError
from redis.exceptions import ResponseError

from consumers.brokers import AnyBroker
from consumers.event_messages import (
    EVENT_ID,
    EVENTS_PREFIX,
    NATS_MSG_ID,
    EventMessage,
    claim_checked,
)

__all__ = [
    "DEADLETTER_REASON",
    "BrokerDeadLetterer",
    "EventsDestination",
    "KafkaPublisher",
    "NatsPublisher",
    "Places",
    "Publisher",
    "RabbitPublisher",
    "RedisPublisher",
    "declare_events",
    "make_publisher",
]

# Header a dead letter carries: why the message could not be used.
DEADLETTER_REASON = "deadletter-reason"


@dataclass(frozen=True)
class Places:
    """Where a flow of messages lives on each broker: the events' and the intake's alike."""

    prefix: str
    stream: str
    deadletter: str
    durable: str
    # Seconds a message (a dead letter) is kept on NATS; None: as long as the stream's limits
    # allow. Upstream messages carry personal data in clear: they must not linger.
    max_age: float | None = None
    deadletter_max_age: float | None = None

    def jstream(self) -> JStream:
        """The JetStream stream over every subject under the prefix."""
        return JStream(
            self.stream, subjects=[f"{self.prefix}.>"], max_age=self.max_age, declare=False
        )

    def deadletter_jstream(self) -> JStream:
        """The JetStream stream keeping the dead letters."""
        return JStream(
            f"{self.stream}_DEADLETTER",
            subjects=[self.deadletter],
            max_age=self.deadletter_max_age,
            declare=False,
        )

    def rabbit_exchange(self) -> RabbitExchange:
        """The topic exchange publishers send to (routing key = subject)."""
        return RabbitExchange(self.prefix, type=ExchangeType.TOPIC, durable=True)

    def rabbit_queue(self) -> RabbitQueue:
        """The single durable queue, bound to every subject under the prefix."""
        return RabbitQueue(self.stream, durable=True, routing_key=f"{self.prefix}.#")

    def rabbit_deadletter_queue(self) -> RabbitQueue:
        """A durable queue keeping dead letters (default exchange, routing key = its name)."""
        return RabbitQueue(self.deadletter, durable=True)

    @property
    def redis_stream(self) -> str:
        """The Redis stream key (also the Kafka topic): one for the whole flow."""
        return self.prefix


@dataclass(frozen=True)
class EventsDestination(Places):
    """Names of the relief.events destination; tests use unique ones to stay apart."""

    prefix: str = EVENTS_PREFIX
    stream: str = "RELIEF_EVENTS"
    deadletter: str = "relief.deadletter.events"
    durable: str = "projector"
    # Redeliveries of the same event id within this window are dropped by NATS.
    duplicate_window: float = 120.0

    @property
    def nats_subjects(self) -> list[str]:
        """The stream's subjects: every aggregate and event under the prefix."""
        return [f"{self.prefix}.>"]

    def jstream(self) -> JStream:
        """The JetStream stream holding relief.events, with its duplicate window."""
        return JStream(
            self.stream,
            subjects=self.nats_subjects,
            duplicate_window=self.duplicate_window,
            declare=False,  # declared by declare_events, before publishing or consuming
        )


async def _declare_nats(broker: NatsBroker, places: Places) -> None:
    await broker.connect()
    js = broker.config.connection_state.stream
    for stream in (places.jstream(), places.deadletter_jstream()):
        try:
            await js.add_stream(config=stream.config, subjects=list(stream.subjects))
        except BadRequestError as error:
            if "already in use" in str(error.description):
                # Same name, other settings (a restart after a config change): merge subjects.
                info = await js.stream_info(stream.name)
                subjects = sorted({*(info.config.subjects or ()), *stream.subjects})
                await js.update_stream(config=stream.config, subjects=subjects)
            elif "overlap" in str(error.description):
                # Another stream (e.g. intake's dead letters) already captures these subjects.
                continue
            else:
                raise


async def _declare_rabbit(broker: RabbitBroker, places: Places) -> None:
    await broker.connect()
    exchange = await broker.declare_exchange(places.rabbit_exchange())
    queue = await broker.declare_queue(places.rabbit_queue())
    await queue.bind(exchange, routing_key=f"{places.prefix}.#")
    await broker.declare_queue(places.rabbit_deadletter_queue())


async def _declare_redis(broker: RedisBroker, places: Places) -> None:
    client: Any = await broker.connect()
    try:
        # Created at "0" here, not by FastStream: see the module's docstring.
        await client.xgroup_create(
            name=places.redis_stream, groupname=places.durable, id="0", mkstream=True
        )
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def declare_places(broker: AnyBroker, places: Places) -> None:
    """Declare durable places (idempotent); Kafka topics are auto-created."""
    if isinstance(broker, NatsBroker):
        await _declare_nats(broker, places)
    elif isinstance(broker, RabbitBroker):
        await _declare_rabbit(broker, places)
    elif isinstance(broker, RedisBroker):
        await _declare_redis(broker, places)


async def declare_events(broker: AnyBroker, destination: EventsDestination) -> None:
    """Declare where relief.events live (idempotent)."""
    await declare_places(broker, destination)


class Publisher(Protocol):
    """Puts a window of relief.events on a broker; returns once the broker acknowledged all."""

    kind: str

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        """Publish in order; raise if any message was not acknowledged."""


class NatsPublisher:
    """JetStream, pipelined: the whole window in flight, then every ack awaited.

    Uses nats-py's `publish_async` on FastStream's own JetStream context: FastStream's NATS
    publish awaits each ack in turn (~6k/s here) and has no batch publish; one connection
    and publish order keep notification order in the stream.
    """

    kind = "nats"

    def __init__(
        self, broker: NatsBroker, destination: EventsDestination, *, ack_timeout: float = 30.0
    ) -> None:
        self.broker = broker
        self.destination = destination
        self.ack_timeout = ack_timeout

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        js = self.broker.config.connection_state.stream
        limit = self._limit()
        pending = [
            await js.publish_async(m.subject, m.body, headers=m.headers)
            for m in (_fitting(m, limit) for m in messages)
        ]
        acks = await asyncio.wait_for(asyncio.gather(*pending), self.ack_timeout)
        if acks and acks[-1].stream != self.destination.stream:
            expected = self.destination.stream
            msg = f"{messages[-1].subject} went to stream {acks[-1].stream}, not {expected}"
            raise RuntimeError(msg)

    def _limit(self) -> int:
        connection = self.broker.config.connection_state.connection
        return int(getattr(connection, "max_payload", 0) or 1024 * 1024)


# Room for the protocol's framing beside a message's body and headers.
_FRAMING = 1024


def _fitting(message: EventMessage, limit: int) -> EventMessage:
    """The message, or its claim check when it would not fit the broker's limit.

    A 1.25 MB event made the relay fail with MaxPayloadError after every restart.
    """
    size = len(message.body) + sum(len(k) + len(v) + 4 for k, v in message.headers.items())
    return message if size + _FRAMING <= limit else claim_checked(message)


class RabbitPublisher:
    """RabbitMQ with publisher confirms, one message at a time.

    Concurrent publishes on one channel are not guaranteed to keep their order, and the
    projector relies on order: so each confirm is awaited before the next publish.
    """

    kind = "rabbit"

    def __init__(self, broker: RabbitBroker, destination: EventsDestination) -> None:
        self.broker = broker
        self.exchange = destination.rabbit_exchange()

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        for m in messages:
            await self.broker.publish(
                m.body,
                exchange=self.exchange,
                routing_key=m.subject,
                headers=dict[str, Any](m.headers),
                message_id=m.headers[EVENT_ID],
                persist=True,
                timeout=30.0,
            )


class RedisPublisher:
    """Redis Streams: one pipeline of XADDs per window (ordered; the replies are the acks)."""

    kind = "redis"

    def __init__(self, broker: RedisBroker, destination: EventsDestination) -> None:
        self.broker = broker
        self.stream = destination.redis_stream

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        client: Any = await self.broker.connect()
        async with client.pipeline(transaction=False) as pipe:
            for m in messages:
                await self.broker.publish(
                    m.body, stream=self.stream, headers=m.headers, pipeline=pipe
                )
            await pipe.execute()


class KafkaPublisher:
    """Kafka: one topic, keyed by case id so a case's events stay in one partition."""

    kind = "kafka"

    def __init__(self, broker: KafkaBroker, destination: EventsDestination) -> None:
        self.broker = broker
        self.topic = destination.redis_stream

    async def publish(self, messages: Sequence[EventMessage]) -> None:
        for m in messages:
            await self.broker.publish(
                m.body, topic=self.topic, key=m.case_id.encode(), headers=m.headers
            )


def make_publisher(broker: AnyBroker, destination: EventsDestination) -> Publisher:
    """The publisher for a broker's kind."""
    if isinstance(broker, NatsBroker):
        return NatsPublisher(broker, destination)
    if isinstance(broker, RabbitBroker):
        return RabbitPublisher(broker, destination)
    if isinstance(broker, RedisBroker):
        return RedisPublisher(broker, destination)
    return KafkaPublisher(broker, destination)


class BrokerDeadLetterer:
    """Publishes an undecodable relief.events message, as received, to the dead-letter place.

    The original headers are kept; `deadletter-reason` says why it could not be used.
    """

    def __init__(self, broker: AnyBroker, destination: EventsDestination) -> None:
        self.broker = broker
        self.destination = destination

    async def __call__(self, headers: Mapping[str, Any], body: bytes, reason: str) -> None:
        dead = {str(k): str(v) for k, v in headers.items() if k != NATS_MSG_ID}
        dead[DEADLETTER_REASON] = reason
        broker, where = self.broker, self.destination.deadletter
        if isinstance(broker, NatsBroker):
            # Through JetStream, so the dead letter is stored before the batch is acked.
            await broker.config.connection_state.stream.publish(where, body, headers=dead)
        elif isinstance(broker, RabbitBroker):
            await broker.publish(body, queue=where, headers=dict[str, Any](dead), persist=True)
        elif isinstance(broker, RedisBroker):
            await broker.publish(body, stream=where, headers=dead)
        else:
            await broker.publish(body, topic=where, headers=dead)
