"""Broker selection: the URL's scheme chooses NATS JetStream, RabbitMQ, Redis Streams or Kafka."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from faststream.kafka import KafkaBroker
from faststream.nats import NatsBroker
from faststream.rabbit import RabbitBroker
from faststream.redis import RedisBroker

__all__ = [
    "AnyBroker",
    "BrokerKind",
    "broker_connected",
    "broker_kind",
    "make_broker",
    "nats_connection",
]

AnyBroker = NatsBroker | RabbitBroker | RedisBroker | KafkaBroker


class BrokerKind(StrEnum):
    """The brokers the service can run on."""

    NATS = "nats"
    RABBIT = "rabbit"
    REDIS = "redis"
    KAFKA = "kafka"


_SCHEMES = {
    "nats": BrokerKind.NATS,
    "tls": BrokerKind.NATS,
    "amqp": BrokerKind.RABBIT,
    "amqps": BrokerKind.RABBIT,
    "redis": BrokerKind.REDIS,
    "rediss": BrokerKind.REDIS,
    "kafka": BrokerKind.KAFKA,
}


def broker_kind(url: str) -> BrokerKind:
    """The kind of broker a URL names, or ValueError naming the scheme."""
    scheme = urlsplit(url).scheme
    try:
        return _SCHEMES[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(
            f"broker URL scheme {scheme or '(none)'!r} is not one of {known}"
        ) from None


def make_broker(url: str, **options: Any) -> AnyBroker:
    """A FastStream broker for a URL (not connected: connecting happens at start).

    FastStream's own access logger writes a line per message to stdout, which would mix
    with command output (`--json`): route its lines through our logging (stderr,
    structlog) and at DEBUG, so a busy pipeline logs what matters, not every message.
    """
    options.setdefault("logger", logging.getLogger("jiuzhu.broker"))
    options.setdefault("log_level", logging.DEBUG)
    kind = broker_kind(url)
    if kind is BrokerKind.NATS:
        # Reconnect for as long as it takes (nats-py gives up after 60 tries by default,
        # about two minutes, and the process would then never consume again).
        options.setdefault("max_reconnect_attempts", -1)
        return NatsBroker(url, **options)
    if kind is BrokerKind.RABBIT:
        return RabbitBroker(url, **options)
    if kind is BrokerKind.REDIS:
        return RedisBroker(url, **options)
    return KafkaBroker(urlsplit(url).netloc, **options)


def nats_connection(broker: AnyBroker) -> Any:
    """A NATS broker's client connection (None before it connected, or on other brokers)."""
    if isinstance(broker, NatsBroker):
        try:
            return broker.config.connection_state.connection
        except Exception:  # not connected yet
            return None
    return None


def broker_connected(broker: AnyBroker) -> bool:
    """Whether the broker's connection is up (NATS; the others are assumed up)."""
    connection = nats_connection(broker)
    return connection is None or bool(connection.is_connected)
