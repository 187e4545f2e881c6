"""Where upstream messages and their dead letters live on each broker; writing a dead letter.

NATS: stream RELIEF_UPSTREAM over `<prefix>.>` (one durable pull consumer) and stream
RELIEF_UPSTREAM_DEADLETTER over the dead-letter subject only (relief.events' dead letters
have their own). RabbitMQ: a durable topic exchange named after the prefix, a durable
queue bound to `<prefix>.#`, and a durable dead-letter queue on the default exchange.
Redis: one stream keyed by the prefix (the type is in the envelope), a consumer group
created at "0" so messages sent before the intake first ran are read, and a dead-letter
stream. Kafka: one topic named after the prefix and a dead-letter topic.

A dead letter is the original body, byte for byte, with the original headers that are
safe to copy (plain names, none of the broker's own `Nats-*` directives) plus
`x-deadletter-*` headers naming the reason, the error class, its detail and the origin.
A dead letter always fits the broker's message size: past it, the body is cut and
`x-deadletter-truncated` gives the original size and `x-deadletter-sha256` its digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.nats import NatsBroker
from faststream.rabbit import RabbitBroker
from faststream.redis import RedisBroker

from consumers.brokers import AnyBroker
from consumers.streams import Places, declare_places

__all__ = [
    "DETAIL",
    "ERROR",
    "MESSAGE_KEY",
    "ORIGIN",
    "REASON",
    "REASONS",
    "SHA256",
    "TRUNCATED",
    "IntakePlaces",
    "deadletter_headers",
    "declare_intake",
    "fitted",
    "origin_of",
    "publish_dead_letter",
    "safe_headers",
]

REASON = "x-deadletter-reason"
ERROR = "x-deadletter-error"
DETAIL = "x-deadletter-detail"
ORIGIN = "x-deadletter-origin"
MESSAGE_KEY = "x-deadletter-message-key"
AT = "x-deadletter-at"
TRUNCATED = "x-deadletter-truncated"
SHA256 = "x-deadletter-sha256"

# The reasons a message is dead-lettered, as written in the REASON header.
REASONS = {
    "not_json": "the body is not JSON",
    "invalid_schema": "the envelope or its data does not match the type's schema",
    "unknown_type": "the CloudEvents type is not one the intake knows",
    "type_mismatch": "the subject names another type than the envelope",
    "rule_violation": "a workflow rule refused it (e.g. paying an unenrolled programme)",
    "unexpected_error": "the intake failed on it in a way it does not expect (a bug)",
}
_DETAIL_LIMIT = 1000
# Original headers copied onto a dead letter: a plain token name, at most this many.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_COPIED_LIMIT = 32
# Room kept for the protocol's own framing when a dead letter must fit the broker's limit.
_FRAMING = 512


@dataclass(frozen=True)
class IntakePlaces(Places):
    """Names of the intake's places on a broker; tests use unique ones to stay apart."""

    prefix: str = "relief.upstream"
    stream: str = "RELIEF_UPSTREAM"
    deadletter: str = "relief.deadletter.upstream"
    durable: str = "jiuzhu-intake"

    def __post_init__(self) -> None:
        if self.deadletter.startswith(f"{self.prefix}."):
            msg = f"dead letters on {self.deadletter} would be read again under {self.prefix}.>"
            raise ValueError(msg)


async def declare_intake(broker: AnyBroker, places: IntakePlaces) -> None:
    """Declare the intake's durable places (idempotent); Kafka topics are auto-created."""
    await declare_places(broker, places)


def origin_of(raw_message: Any) -> str:
    """The subject, routing key, stream or topic a broker message came from."""
    if isinstance(raw_message, Mapping):
        return str(raw_message.get("channel", ""))
    for attribute in ("subject", "routing_key", "topic"):
        if value := getattr(raw_message, attribute, None):
            return str(value)
    return ""


def _header(text: str) -> str:
    # Header values must survive every broker: one line of ASCII, bounded.
    flat = " ".join(text.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:_DETAIL_LIMIT]


def deadletter_headers(
    original: Mapping[str, Any],
    *,
    reason: str,
    error: BaseException,
    origin: str,
    message_key: str = "",
) -> dict[str, str]:
    """The original headers plus the dead letter's own."""
    headers = safe_headers(original)
    headers.update(
        {
            REASON: reason,
            ERROR: type(error).__name__,
            DETAIL: _header(str(error)) or type(error).__name__,
            ORIGIN: _header(origin),
            AT: datetime.now(UTC).isoformat(),
        }
    )
    if message_key:
        headers[MESSAGE_KEY] = _header(message_key)
    return headers


def safe_headers(original: Mapping[str, Any]) -> dict[str, str]:
    """The original headers a dead letter may carry without being refused.

    Not `Nats-*` (a copied Nats-Expected-Stream made the broker refuse every dead letter,
    and the message was retried forever), not a name the protocol cannot carry
    (`x(fuzz)`), not our own `x-deadletter-*` (a redriven letter failing again gets fresh
    ones); values flattened to one bounded line of ASCII.
    """
    headers: dict[str, str] = {}
    for name, value in original.items():
        if len(headers) >= _COPIED_LIMIT:
            break
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        lowered = name.lower()
        if not _SAFE_NAME.fullmatch(name) or lowered.startswith(("nats-", "x-deadletter-")):
            continue
        headers[name] = _header(value)
    return headers


def fitted(body: bytes, headers: dict[str, str], limit: int) -> tuple[bytes, dict[str, str]]:
    """A dead letter cut to fit a broker's message size, saying so; as is when it fits."""
    size = len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + _FRAMING
    if size <= limit:
        return body, headers
    marked = {
        **headers,
        TRUNCATED: str(len(body)),
        SHA256: hashlib.sha256(body).hexdigest(),
    }
    room = limit - _FRAMING - sum(len(k) + len(v) + 4 for k, v in marked.items())
    if room < 0:  # the headers alone are too big: keep only the dead letter's own
        marked = {k: v for k, v in marked.items() if k.startswith(("x-deadletter-", "Nats-Msg"))}
        room = limit - _FRAMING - sum(len(k) + len(v) + 4 for k, v in marked.items())
    return body[: max(room, 0)], marked


def _nats_limit(broker: NatsBroker) -> int:
    connection = broker.config.connection_state.connection
    return int(getattr(connection, "max_payload", 0) or 1024 * 1024)


async def publish_dead_letter(
    broker: AnyBroker,
    places: IntakePlaces,
    body: bytes,
    headers: dict[str, str],
    *,
    dedup_id: str = "",
) -> None:
    """Put a dead letter in its place; returns once the broker has it, raises otherwise."""
    if isinstance(broker, NatsBroker):
        if dedup_id:
            # A redelivered message dead-lettered twice is kept once.
            headers = {**headers, "Nats-Msg-Id": dedup_id}
        # nats-py's JetStream publish waits for the stream's ack (a core publish would not).
        js = broker.config.connection_state.stream
        body, headers = fitted(body, headers, _nats_limit(broker))
        await js.publish(places.deadletter, body, headers=headers, timeout=10.0)
    elif isinstance(broker, RabbitBroker):
        # Declared again (idempotent, and dead letters are rare): unroutable would be lost.
        await broker.declare_queue(places.rabbit_deadletter_queue())
        await broker.publish(
            body, queue=places.rabbit_deadletter_queue(), headers=dict(headers), persist=True
        )
    elif isinstance(broker, RedisBroker):
        await broker.publish(body, stream=places.deadletter, headers=headers)
    elif isinstance(broker, KafkaBroker):
        await broker.publish(body, topic=places.deadletter, headers=headers)
