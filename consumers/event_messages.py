"""The relief.events message contract: a stored event out of the log, and back again.

Body: the stored event's `state` bytes exactly as in the events table. Headers carry the
rest of the stored event (originator id, version, topic) and what routing and tracing need,
so the projector gets back the notification log's row and decodes it as a rebuild does
(projections.decoding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

import orjson
from eventsourcing.persistence import Notification

from projections.decoding import LogRow

__all__ = [
    "CLAIM_CHECK",
    "EVENTS_PREFIX",
    "STORE_ID",
    "EventMessage",
    "UndecodableEventError",
    "claim_checked",
    "encode",
    "event_id",
    "log_row",
    "subject_for",
]

EVENTS_PREFIX = "relief.events"

# Headers every relief.events message carries (values are strings).
EVENT_ID = "event-id"
NOTIFICATION_ID = "notification-id"
CASE_ID = "case-id"
VERSION = "version"
TOPIC = "topic"
TYPE = "type"
CORRELATION_ID = "correlation-id"
CAUSATION_ID = "causation-id"
NATS_MSG_ID = "Nats-Msg-Id"
# The event store that recorded the event (consumers.store_identity); absent before 2026-12.
STORE_ID = "store-id"
# An event too big for a broker message travels without its body: the consumer reads the
# state from the event store at the notification id (a claim check; PostgreSQL has it).
CLAIM_CHECK = "claim-check"


def claim_checked(message: EventMessage) -> EventMessage:
    """The message without its body, marked to be read back from the event store."""
    headers = {**message.headers, CLAIM_CHECK: f"notification:{message.notification_id}"}
    return EventMessage(message.subject, b"", headers, message.notification_id, message.case_id)


_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One stored event ready for the broker: where it goes, its bytes and headers."""

    subject: str
    body: bytes
    headers: dict[str, str]
    notification_id: int
    case_id: str


class UndecodableEventError(ValueError):
    """A relief.events message that cannot be turned back into a domain event."""


def event_id(originator_id: UUID, version: int) -> UUID:
    """The event's stable id: the same stored event always gets the same id."""
    return uuid5(originator_id, str(version))


def _snake(name: str) -> str:
    return _WORD_BOUNDARY.sub("_", name).lower()


@lru_cache(maxsize=512)
def _routing(topic: str, prefix: str) -> tuple[str, str]:
    """(subject, type) for a topic like 'domain.case:Case.Paid'."""
    qualname = topic.rpartition(":")[2]
    aggregate, _, event = qualname.rpartition(".")
    subject = f"{prefix}.{_snake(aggregate or 'event')}.{_snake(event)}"
    return subject, qualname


def subject_for(topic: str, prefix: str = EVENTS_PREFIX) -> str:
    """The subject of an event topic, e.g. relief.events.case.verification_assigned."""
    return _routing(topic, prefix)[0]


def _provenance(state: bytes) -> tuple[str, str]:
    """(correlation, causation) read from the state; empty when it is not plain JSON."""
    try:
        fields: Any = orjson.loads(state)
    except orjson.JSONDecodeError:  # compressed or encrypted state: ids stay in the body
        return "", ""
    if not isinstance(fields, dict):
        return "", ""
    return str(fields.get("correlation_id") or ""), str(fields.get("causation_id") or "")


def encode(
    notification: Notification, *, prefix: str = EVENTS_PREFIX, store: str = ""
) -> EventMessage:
    """The relief.events message for a notification of the application's log.

    With a store id, the message says which store recorded it and its broker message id
    includes it: two stores' events with the same (case, version) are not duplicates.
    """
    subject, event_type = _routing(notification.topic, prefix)
    correlation, causation = _provenance(notification.state)
    version = notification.originator_version
    originator_id = notification.originator_id
    case_id = str(originator_id)
    the_id = str(
        event_id(UUID(case_id) if isinstance(originator_id, str) else originator_id, version)
    )
    headers = {
        EVENT_ID: the_id,
        NATS_MSG_ID: f"{store}:{the_id}" if store else the_id,
        NOTIFICATION_ID: str(notification.id),
        CASE_ID: case_id,
        VERSION: str(version),
        TOPIC: notification.topic,
        TYPE: event_type,
        CORRELATION_ID: correlation,
        CAUSATION_ID: causation,
    }
    if store:
        headers[STORE_ID] = store
    return EventMessage(subject, notification.state, headers, notification.id, case_id)


def log_row(headers: Mapping[str, Any], body: bytes) -> LogRow:
    """The notification-log row a message carries, or UndecodableEventError saying why."""
    try:
        return (
            int(headers[NOTIFICATION_ID]),
            UUID(str(headers[CASE_ID])),
            int(headers[VERSION]),
            str(headers[TOPIC]),
            bytes(body),
        )
    except KeyError:
        missing = [h for h in (NOTIFICATION_ID, CASE_ID, VERSION, TOPIC) if h not in headers]
        raise UndecodableEventError(f"headers missing: {', '.join(missing)}") from None
    except (TypeError, ValueError) as bad:
        raise UndecodableEventError(f"bad header: {bad}") from None
