"""Hits handed to the intake as `screening.hit` upstream messages, exactly once.

Each hit becomes a CloudEvent whose id is `batch/rule/household` (so its message key, and
its receipt, are the same on every run) and whose correlation id is the batch. Directly:
the intake's own batched path (consumers.intake.apply_batch: one save per chunk, receipts
in the same save, duplicates found by one query); a run stopped at any point and run again
finds the hits already taken as duplicates and takes the rest. Through the broker: the
messages are published on `relief.upstream.screening.hit` with `Nats-Msg-Id` = message
key, and the intake service takes them as any upstream message.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from consumers.contracts import ScreeningHitEvent
from consumers.intake import BATCH_SIZE, TRANSIENT, apply_batch
from domain.application import CaseWork
from domain.screening import HIT_SOURCE, hit_id
from projections.regions import CHINA_TIME
from screening.policy import ScreeningPolicy
from screening.rules import Rule

__all__ = ["BrokerError", "HandOver", "hand_over", "hit_events", "publish_hits"]

Progress = Callable[[int, int], None]  # (hits handed so far, hits in all)
RETRIES = 5


class BrokerError(RuntimeError):
    """The hits could not be published; the message says where and why."""


class HandOver(Counter[str]):
    """What the intake did with the hits: applied, duplicate, no_effect, or an error's name."""

    errors: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.errors = []


def hit_events(
    rows: Sequence[tuple[Any, ...]],
    *,
    batch: str,
    as_of: date,
    rules: Sequence[Rule],
    policy: ScreeningPolicy,
    rejected: list[str],
) -> list[ScreeningHitEvent]:
    """The hits table's rows (rule, household, region, size, status, finding, indicators)."""
    basis = {rule.name: rule.legal_basis for rule in rules}
    moment = datetime(as_of.year, as_of.month, as_of.day, 9, tzinfo=CHINA_TIME)
    verify_by = as_of + timedelta(days=policy.verification_days)
    events: list[ScreeningHitEvent] = []
    for rule, household_id, region, size, _status, finding, indicators in rows:
        body = {
            "specversion": "1.0",
            "id": hit_id(batch, rule, household_id),
            "source": HIT_SOURCE,
            "type": "screening.hit",
            "time": moment.isoformat(),
            "subject": household_id,
            "correlationid": batch,
            "data": {
                "household_id": household_id,
                "region": region,
                "batch": batch,
                "rule": rule,
                "finding": finding[:500],
                "legal_basis": basis[rule][:500],
                "indicators": _measured(indicators),
                "household_size": min(max(int(size), 1), 30),
                "verify_by": verify_by.isoformat(),
                "assignee": policy.assignee_for(region),
            },
        }
        try:
            events.append(ScreeningHitEvent.model_validate(body))
        except ValidationError as error:
            rejected.append(f"{hit_id(batch, rule, household_id)}: {error.errors()[0]['msg']}")
    return events


def _measured(indicators: str | None) -> dict[str, Any]:
    """The rule's indicators, less those it could not measure (null)."""
    values = orjson.loads(indicators) if indicators else {}
    return {name: value for name, value in values.items() if value is not None}


def hand_over(
    app: CaseWork,
    events: Sequence[ScreeningHitEvent],
    *,
    chunk: int = BATCH_SIZE,
    retry_delay: float = 1.0,
    progress: Progress | None = None,
) -> HandOver:
    """Give the hits to the intake's batched path, in order; what became of them."""
    result = HandOver()
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        for attempt in range(RETRIES):
            outcomes = apply_batch(app, part)
            if not any(isinstance(o, TRANSIENT) for o in outcomes) or attempt == RETRIES - 1:
                break
            time.sleep(retry_delay)  # the database is down or busy: try the chunk again
        for event, outcome in zip(part, outcomes, strict=True):
            if isinstance(outcome, str):
                result[outcome] += 1
            else:
                result["failed"] += 1
                result.errors.append(f"{event.id}: {type(outcome).__name__}: {outcome}")
        if progress is not None:
            progress(min(start + chunk, len(events)), len(events))
    return result


def publish_hits(
    broker_url: str,
    events: Sequence[ScreeningHitEvent],
    *,
    prefix: str = "relief.upstream",
    window: int = 500,
    progress: Progress | None = None,
) -> HandOver:
    """Publish the hits on NATS JetStream (deduplicated by message key); what the broker said."""
    return asyncio.run(_publish(broker_url, events, prefix, window, progress))


async def _publish(
    broker_url: str,
    events: Sequence[ScreeningHitEvent],
    prefix: str,
    window: int,
    progress: Progress | None,
) -> HandOver:
    import nats
    import nats.errors
    import nats.js.errors

    result = HandOver()
    try:
        client = await nats.connect(
            broker_url, max_reconnect_attempts=2, connect_timeout=5, error_cb=_quiet
        )
    except (OSError, nats.errors.Error) as error:
        raise BrokerError(f"cannot reach the broker {broker_url}: {error}") from None
    try:
        stream = client.jetstream()
        subject = f"{prefix}.screening.hit"
        for start in range(0, len(events), window):
            part = events[start : start + window]
            try:
                acks = await _published(stream, subject, part)
            except nats.js.errors.NoStreamResponseError:
                raise BrokerError(
                    f"no JetStream stream takes {subject} on {broker_url}: start the intake "
                    "(jiuzhu serve intake) on this broker first; the hits not yet published "
                    "are published when the batch runs again"
                ) from None
            for ack in acks:
                result["duplicate" if ack.duplicate else "published"] += 1
            if progress is not None:
                progress(min(start + window, len(events)), len(events))
    finally:
        await client.drain()
    return result


async def _quiet(error: Exception) -> None:
    """nats-py prints each failed attempt with its traceback; the one-line error says it."""


async def _published(stream: Any, subject: str, events: Sequence[ScreeningHitEvent]) -> list[Any]:
    return list(
        await asyncio.gather(
            *(
                stream.publish(
                    subject,
                    event.model_dump_json(exclude_none=True).encode(),
                    headers={"Nats-Msg-Id": event.message_key},
                )
                for event in events
            )
        )
    )
