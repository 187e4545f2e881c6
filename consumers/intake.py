"""The upstream intake: CloudEvents from upstream systems become CaseWork commands.

    build_intake(
        *,
        broker_url: str,                     # nats:// (default), amqp://, redis://, kafka://
        app: CaseWork,
        subject_prefix: str = "relief.upstream",
        deadletter_subject: str = "relief.deadletter.upstream",
        stream: str = "RELIEF_UPSTREAM",     # JetStream stream / RabbitMQ queue name
        durable: str = "jiuzhu-intake",      # durable consumer / consumer group
        retry_delay: float = 5.0,            # seconds before a transient fault is retried
        stats: IntakeStats | None = None,    # counters to share (e.g. with a health endpoint)
    ) -> tuple[AnyBroker, FastStream]

Run the returned FastStream app (`await faststream_app.run()`, or `start()` / `stop()`):
its on_startup hook declares the durable places (`deadletter.declare_intake`) before the
subscriber starts. Starting the broker alone skips that; then call `declare_intake` first.

Each message: parsed (bad → dead letter), skipped if its receipt exists (duplicate), else
translated on the current state and run off the event loop. Rule violations are
dead-lettered; database faults are retried after `retry_delay` (NATS `nack(delay=)`,
Redis: left pending for a reclaiming reader, RabbitMQ/Kafka: nack after the delay).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from faststream import AckPolicy, BaseMiddleware, FastStream, StreamMessage
from faststream.kafka import KafkaRouter
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.nats.message import NatsMessage
from faststream.rabbit import RabbitBroker, RabbitRouter
from faststream.redis import RedisBroker, RedisRouter, StreamSub
from faststream.specification import AsyncAPI
from nats.js.api import ConsumerConfig
from pydantic import ValidationError

from consumers.brokers import AnyBroker, make_broker
from consumers.contracts import BadMessageError, CloudEvent, UpstreamEvent, parse_upstream
from consumers.deadletter import (
    REASONS,
    IntakePlaces,
    deadletter_headers,
    declare_intake,
    origin_of,
    publish_dead_letter,
)
from consumers.translate import CaseFacts, Situation, acts_on_case, translate
from domain.application import CaseWork
from domain.commands import OpenCase
from domain.errors import CaseAlreadyOpenError, CaseWorkError, DuplicateMessageError
from domain.household import Household

__all__ = ["TRANSIENT", "IntakeStats", "apply_upstream", "build_intake", "read_situation"]

log = structlog.get_logger("jiuzhu.intake")

AnyRouter = NatsRouter | RabbitRouter | RedisRouter | KafkaRouter

# Faults that pass: the database is down or busy, or another writer won a race.
TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,  # eventsourcing's, wrapping psycopg's (pool timeouts included)
    InterfaceError,
    IntegrityError,  # a concurrent save of the same aggregate; the retry sees it
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


@dataclass
class IntakeStats:
    """What the intake did with the messages it received."""

    received: int = 0
    applied: int = 0
    no_effect: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    _changed: asyncio.Condition = field(
        default_factory=asyncio.Condition, repr=False, compare=False
    )

    async def count(self, outcome: str, reason: str = "") -> None:
        """Count an outcome: received, applied, no_effect, duplicate, retried, dead_letter."""
        async with self._changed:
            if outcome == "dead_letter":
                self.dead_lettered[reason] += 1
            elif outcome == "duplicate":
                self.duplicates += 1
            else:
                setattr(self, outcome, getattr(self, outcome) + 1)
            self._changed.notify_all()

    async def wait_until(self, done: Callable[[IntakeStats], bool], timeout: float) -> None:
        """Wait until the counters satisfy a condition; TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: done(self))

    def as_dict(self) -> dict[str, Any]:
        """The counters, for logs and health endpoints."""
        return {
            "received": self.received,
            "applied": self.applied,
            "no_effect": self.no_effect,
            "duplicates": self.duplicates,
            "retried": self.retried,
            "dead_lettered": dict(self.dead_lettered),
        }


# -- the synchronous part, run off the event loop ------------------------------------------


def read_situation(app: CaseWork, event: CloudEvent) -> Situation:
    """The household's open case (and its facts, if the message acts on a case)."""
    case_id = getattr(event.data, "case_id", None)
    if case_id is None:
        household_id = str(getattr(event.data, "household_id", ""))
        try:
            household: Household = app.repository.get(Household.id_for(household_id))
        except AggregateNotFoundError:
            return Situation()
        case_id = household.open_case_id
    if case_id is None or not acts_on_case(event):
        return Situation(open_case_id=case_id)
    return Situation(open_case_id=case_id, case=CaseFacts.of(app.get_case(case_id)))


def apply_upstream(app: CaseWork, event: CloudEvent) -> str:
    """Run a message's commands: 'applied', 'no_effect' or 'duplicate'."""
    key = event.message_key
    if app.has_received(key):
        return "duplicate"
    for attempt in range(3):
        commands = translate(event, read_situation(app, event))
        if not commands:
            return "no_effect"
        # The receipt rides with the LAST command (handling_message puts it on the first
        # save inside it), so a receipt means the whole message took effect. Earlier steps
        # run unreceipted: after a crash between steps the redelivery finds no receipt,
        # translates again on the new state (consent given, programmes exited) and runs
        # only what is left; a concurrent duplicate loses the aggregate's version race.
        try:
            for command in commands[:-1]:
                getattr(app, command.name)(command)
            with app.handling_message(key):
                getattr(app, commands[-1].name)(commands[-1])
        except DuplicateMessageError:
            return "duplicate"
        except CaseAlreadyOpenError:
            # Another writer opened the household's case since we looked: attach instead.
            if not isinstance(commands[-1], OpenCase) or attempt == 2:
                raise
            continue
        return "applied"
    raise AssertionError("unreachable")  # pragma: no cover


# -- the asynchronous part: guard, retry, dead letter --------------------------------------


@dataclass
class _Intake:
    broker: AnyBroker
    places: IntakePlaces
    stats: IntakeStats
    retry_delay: float

    async def guard(self, call_next: Callable[[Any], Any], message: StreamMessage[Any]) -> None:
        """Every message ends acked (applied, duplicate, dead-lettered) or retried later."""
        await self.stats.count("received")
        origin = origin_of(message.raw_message)
        try:
            event = parse_upstream(message.body)
            self._check_subject(origin, event)
        except BadMessageError as error:
            await self.dead_letter(message, origin, error.reason, error)
            return
        with structlog.contextvars.bound_contextvars(
            correlation_id=event.correlation_id, message_key=event.message_key, type=event.type
        ):
            try:
                await call_next(message)
            except TRANSIENT as error:
                await self.retry_later(message, error)
            except CaseWorkError as error:
                await self.dead_letter(message, origin, "rule_violation", error, event)
            except ValidationError as error:
                await self.dead_letter(message, origin, "invalid_schema", error, event)
            except Exception as error:
                log.exception("upstream message failed unexpectedly", origin=origin)
                await self.dead_letter(message, origin, "unexpected_error", error, event)
            else:
                await message.ack()

    def _check_subject(self, origin: str, event: CloudEvent) -> None:
        # Subjects name the type (NATS, RabbitMQ); a single stream (Redis, Kafka) does not.
        if origin.startswith(f"{self.places.prefix}.") and not origin.endswith(f".{event.type}"):
            detail = f"subject {origin} does not end with the envelope's type {event.type}"
            raise BadMessageError("type_mismatch", detail)

    async def dead_letter(
        self,
        message: StreamMessage[Any],
        origin: str,
        reason: str,
        error: Exception,
        event: CloudEvent | None = None,
    ) -> None:
        """Publish the original bytes with the reason, then ack; if that fails, retry."""
        key = event.message_key if event else ""
        headers = deadletter_headers(
            message.headers, reason=reason, error=error, origin=origin, message_key=key
        )
        try:
            await publish_dead_letter(
                self.broker, self.places, message.body, headers, dedup_id=_dedup_id(message)
            )
        except Exception as failure:
            log.exception("dead letter not published", reason=reason, origin=origin)
            await self.retry_later(message, failure)
            return
        await message.ack()
        await self.stats.count("dead_letter", reason)
        log.warning(
            "upstream message dead-lettered",
            reason=reason,
            error=type(error).__name__,
            detail=str(error)[:500],
            origin=origin,
            deadletter=self.places.deadletter,
        )

    async def retry_later(self, message: StreamMessage[Any], error: BaseException) -> None:
        """Leave a message for another try after the delay: nothing is lost."""
        await self.stats.count("retried")
        log.warning("transient fault, retrying later", error=repr(error), delay=self.retry_delay)
        if isinstance(message, NatsMessage):
            await message.nack(delay=self.retry_delay)
        elif isinstance(self.broker, RedisBroker):
            await message.nack()  # stays pending; the reclaiming reader takes it after the delay
        else:
            await asyncio.sleep(self.retry_delay)
            await message.nack()


def _dedup_id(message: StreamMessage[Any]) -> str:
    """A NATS message's stream position: dead-lettering it twice keeps one copy."""
    metadata = getattr(message.raw_message, "metadata", None)
    if metadata is None:
        return ""
    return f"deadletter:{metadata.stream}:{metadata.sequence.stream}"


class _Guard(BaseMiddleware):
    """Runs every intake message through `_Intake.guard`."""

    intake: _Intake

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        return await self.intake.guard(call_next, msg)


async def _decode_json(message: StreamMessage[Any]) -> Any:
    # Whatever the content-type says: the guard has already checked it is CloudEvents JSON.
    return orjson.loads(message.body)


def _subscribe(
    broker: AnyBroker,
    places: IntakePlaces,
    handler: Callable[..., Any],
    guard: Callable[..., BaseMiddleware],
    retry_delay: float,
) -> None:
    """Register the intake on a router of its own: the guard wraps the intake alone."""
    options: dict[str, Any] = {
        "ack_policy": AckPolicy.MANUAL,  # the guard acks or retries every message itself
        "decoder": _decode_json,
        "no_reply": True,
    }
    notice = (
        "Dead letters: the original bytes, byte for byte, with the original headers and "
        "x-deadletter-reason (" + " | ".join(REASONS) + "), x-deadletter-error (the error "
        "class), x-deadletter-detail, x-deadletter-origin (the subject it came on), "
        "x-deadletter-message-key (source/id, when parsed) and x-deadletter-at."
    )
    router: AnyRouter
    if isinstance(broker, NatsBroker):
        router = NatsRouter(middlewares=(guard,))
        router.subscriber(
            f"{places.prefix}.>",
            stream=places.jstream(),
            durable=places.durable,
            pull_sub=PullSub(batch_size=1, timeout=5.0),  # one at a time: order kept
            config=ConsumerConfig(max_deliver=-1, ack_wait=max(30.0, 2 * retry_delay)),
            **options,
        )(handler)
        router.publisher(
            places.deadletter, title=places.deadletter, description=notice, schema=bytes
        )
    elif isinstance(broker, RabbitBroker):
        router = RabbitRouter(middlewares=(guard,))
        router.subscriber(places.rabbit_queue(), places.rabbit_exchange(), **options)(handler)
        router.publisher(queue=places.rabbit_deadletter_queue(), description=notice, schema=bytes)
    elif isinstance(broker, RedisBroker):
        router = RedisRouter(middlewares=(guard,))
        consumer = f"{places.durable}-{socket.gethostname()}"
        main = StreamSub(places.prefix, group=places.durable, consumer=consumer)
        router.subscriber(stream=main, **options)(handler)
        # Pending entries idle this long (a retry, or a reader that died) are claimed again.
        # One still in progress may be claimed too: its receipt makes the second a duplicate.
        reclaim = StreamSub(
            places.prefix,
            group=places.durable,
            consumer=f"{consumer}-reclaim",
            min_idle_time=int(max(retry_delay, 1.0) * 1000),
        )
        router.subscriber(stream=reclaim, include_in_schema=False, **options)(handler)
        router.publisher(stream=places.deadletter, description=notice, schema=bytes)
    else:
        router = KafkaRouter(middlewares=(guard,))
        router.subscriber(
            places.prefix, group_id=places.durable, auto_offset_reset="earliest", **options
        )(handler)
        router.publisher(places.deadletter, description=notice, schema=bytes)
    broker.include_router(router)  # type: ignore[arg-type]


def build_intake(
    *,
    broker_url: str,
    app: CaseWork,
    subject_prefix: str = "relief.upstream",
    deadletter_subject: str = "relief.deadletter.upstream",
    stream: str = "RELIEF_UPSTREAM",
    durable: str = "jiuzhu-intake",
    retry_delay: float = 5.0,
    stats: IntakeStats | None = None,
) -> tuple[AnyBroker, FastStream]:
    """The intake's broker and FastStream app (nothing connects until it starts)."""
    places = IntakePlaces(
        prefix=subject_prefix, deadletter=deadletter_subject, stream=stream, durable=durable
    )
    counters = stats if stats is not None else IntakeStats()
    broker = make_broker(broker_url)
    intake = _Intake(broker=broker, places=places, stats=counters, retry_delay=retry_delay)

    def guard(msg: Any, /, *, context: Any) -> _Guard:
        middleware = _Guard(msg, context=context)
        middleware.intake = intake
        return middleware

    async def receive_upstream(event: UpstreamEvent) -> None:
        """An upstream system's CloudEvent: opens, attaches to, verifies, pays or ends a case."""
        outcome = await asyncio.to_thread(apply_upstream, app, event)
        await counters.count(outcome)
        log.info(f"upstream message {outcome.replace('_', ' ')}")

    _subscribe(broker, places, receive_upstream, guard, retry_delay)

    async def declare() -> None:
        await declare_intake(broker, places)

    faststream_app = FastStream(
        broker,
        on_startup=[declare],
        specification=AsyncAPI(
            title="jiuzhu upstream intake",
            version="1.0.0",
            description=(
                "Upstream systems publish CloudEvents 1.0 (structured JSON) on "
                f"{subject_prefix}.<type>; bad messages go to {deadletter_subject}."
            ),
        ),
    )
    return broker, faststream_app
