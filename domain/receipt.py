"""Receipts of upstream messages: a message's effect is recorded once, with its events."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

__all__ = ["MessageReceipt"]

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
