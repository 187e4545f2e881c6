"""Checkpoints published on the broker (relief.audit.checkpoints): a copy outside PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import nats
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.redis import RedisBroker
from nats.js.errors import BadRequestError

from consumers.brokers import BrokerKind, broker_kind, make_broker
from jiuzhu.audit.signing import Checkpoint

__all__ = ["CHECKPOINTS_STREAM", "CHECKPOINTS_SUBJECT", "publish_checkpoints"]

CHECKPOINTS_SUBJECT = "relief.audit.checkpoints"
CHECKPOINTS_STREAM = "RELIEF_AUDIT"


def _body(checkpoint: Checkpoint) -> bytes:
    return json.dumps(checkpoint.as_json(), sort_keys=True).encode()


def _message_id(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.store}/checkpoint/{checkpoint.checkpoint_id}"


async def publish_checkpoints(
    url: str,
    checkpoints: Sequence[Checkpoint],
    *,
    subject: str = CHECKPOINTS_SUBJECT,
    stream: str = CHECKPOINTS_STREAM,
) -> None:
    """Publish checkpoints durably (JetStream stream, durable queue, stream or topic)."""
    if not checkpoints:
        return
    if broker_kind(url) is BrokerKind.NATS:
        await _publish_nats(url, checkpoints, subject, stream)
        return
    broker = make_broker(url)
    await broker.connect()
    try:
        for checkpoint in checkpoints:
            headers: dict[str, Any] = {"message-id": _message_id(checkpoint)}
            if isinstance(broker, RabbitBroker):
                queue = RabbitQueue(subject, durable=True)
                await broker.declare_queue(queue)
                await broker.publish(_body(checkpoint), queue, headers=headers, persist=True)
            elif isinstance(broker, RedisBroker):
                await broker.publish(_body(checkpoint), stream=subject, headers=headers)
            else:
                await broker.publish(_body(checkpoint), subject, headers=headers)
    finally:
        await broker.stop()


async def _publish_nats(
    url: str, checkpoints: Sequence[Checkpoint], subject: str, stream: str
) -> None:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        try:
            await js.add_stream(name=stream, subjects=[subject])
        except BadRequestError as error:
            # Already there, or another stream captures the subject: publishing still lands.
            if "already in use" not in str(error.description) and "overlap" not in str(
                error.description
            ):
                raise
        for checkpoint in checkpoints:
            # The message id makes a re-publish after a crash a no-op inside the window.
            await js.publish(
                subject, _body(checkpoint), headers={"Nats-Msg-Id": _message_id(checkpoint)}
            )
    finally:
        await connection.close()
