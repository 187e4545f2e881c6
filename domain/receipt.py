"""Receipts of upstream messages: a message's effect is recorded once, with its events."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

__all__ = ["MessageReceipt", "RequestReceipt"]

_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/upstream-message")


class MessageReceipt(Aggregate):
    """Proof that an upstream message (CloudEvents source + id) has taken effect."""

    class Received(Aggregate.Created):
        """The message's effect was recorded in the same transaction as this receipt."""

        message_key: str

    @staticmethod
    def id_for(message_key: str) -> UUID:
        """The deterministic aggregate id of a message's receipt."""
        return uuid5(_NAMESPACE, message_key)

    @classmethod
    def receive(cls, message_key: str) -> MessageReceipt:
        """A receipt for a message; saving a second one for the same key conflicts."""
        return cls._create(
            MessageReceipt.Received, id=cls.id_for(message_key), message_key=message_key
        )


_REQUEST_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/client-request")


class RequestReceipt(Aggregate):
    """Proof that a client's request (who + Idempotency-Key) took effect, with its answer.

    Saved in the same save() as the events the request caused, like a MessageReceipt: a
    retry with the same key finds it and gets the first answer back, with no second effect.
    """

    class Received(Aggregate.Created):
        """The request's events were recorded with this receipt; the answer it was given."""

        request_key: str
        answer: dict[str, Any]

    @staticmethod
    def id_for(request_key: str) -> UUID:
        """The deterministic aggregate id of a request's receipt."""
        return uuid5(_REQUEST_NAMESPACE, request_key)

    @classmethod
    def receive(cls, request_key: str, answer: dict[str, Any]) -> RequestReceipt:
        """A receipt for a request; saving a second one for the same key conflicts."""
        return cls._create(
            RequestReceipt.Received,
            id=cls.id_for(request_key),
            request_key=request_key,
            answer=dict(answer),
        )
