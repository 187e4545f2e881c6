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
        ack_wait: float = 30.0,              # NATS: an unacked delivery comes back after it
        stats: IntakeStats | None = None,    # counters to share (e.g. with a health endpoint)
    ) -> tuple[AnyBroker, FastStream]

Run the returned FastStream app (`await faststream_app.run()`, or `start()` / `stop()`):
its on_startup hook declares the durable places (`deadletter.declare_intake`) before the
subscriber starts. Starting the broker alone skips that; then call `declare_intake` first.

Messages come in batches (NATS: a pull of up to BATCH_SIZE handled whole, in stream
order; RabbitMQ: the unbroken run of deliveries at hand, put back in queue order as
FastStream handles each delivery concurrently (consumers.rabbit_order); Redis and Kafka:
one at a time). Each message is parsed (bad → dead letter);
the good ones of a batch go to `apply_batch` off the event loop: one query finds those
already received (duplicates), then each is translated on the state the ones before it
left and its commands run in a `CaseWork.batch()` unit inside a savepoint (a rule
violation undoes that message alone and dead-letters it); the unit is stored in ONE
save with every applied message's receipt. If that save fails (another writer, a
receipt stored meanwhile, the database down), the batch runs again one message at a time
(`apply_upstream`, the path of a lone message). Database faults are retried after
`retry_delay` (NATS `nack(delay=)`, Redis: left pending for a reclaiming reader,
Kafka: nack after the delay, RabbitMQ: taken again here after the delay, before any later
delivery), and so is every later message of the batch, which may concern the same
household.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
import orjson
import psycopg
import structlog
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from faststream import AckPolicy, BaseMiddleware, FastStream, StreamMessage
from faststream.kafka import KafkaRouter
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.nats.message import NatsMessage
from faststream.rabbit import Channel, RabbitBroker, RabbitRouter
from faststream.rabbit.message import RabbitMessage
from faststream.redis import RedisBroker, RedisRouter, StreamSub
from faststream.specification import AsyncAPI
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from opentelemetry.trace import Span
from pydantic import ValidationError

from consumers import tracing
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
from consumers.preload import preload
from consumers.rabbit_order import DeliveryRuns
from consumers.translate import CaseFacts, NoOpenCaseError, Situation, acts_on_case, translate
from domain.application import CaseWork, Unit
from domain.commands import OpenCase
from domain.errors import (
    CaseAlreadyOpenError,
    CaseWorkError,
    DuplicateMessageError,
    NotEnrolledError,
)

__all__ = [
    "BATCH_SIZE",
    "TRANSIENT",
    "IntakeStats",
    "Outcome",
    "apply_batch",
    "apply_upstream",
    "build_intake",
    "read_situation",
]

log = structlog.get_logger("jiuzhu.intake")
_stdlib_log = logging.getLogger("jiuzhu.intake")  # where structlog's lines go (its level)

AnyRouter = NatsRouter | RabbitRouter | RedisRouter | KafkaRouter

# Faults that pass: the database is down or busy, or another writer won a race.
TRANSIENT: tuple[type[Exception], ...] = (
    OperationalError,  # eventsourcing's, wrapping psycopg's (pool timeouts included)
    InterfaceError,
    IntegrityError,  # a concurrent save of the same aggregate; the retry sees it
    psycopg.OperationalError,
    psycopg.InterfaceError,
)

# NATS: messages fetched and handled together (one save); how long a pull waits for the
# first message, and then for company (what is already there is taken without waiting).
BATCH_SIZE = 200
BATCH_WAIT = 0.005
FIRST_MESSAGE_WAIT = 1.0
# NATS: a fetch that fails (connection closed, reconnecting) is retried after this pause.
FETCH_FAULT_PAUSE = 0.5
# RabbitMQ: a delivery tag that never reaches the intake holds up those after it this long.
MISSING_TAG_SECONDS = 2.0

# Refusals that only say a message came before another (the alert opening the case, the
# enrolment a payment needs): held while an earlier message of the household is on its way.
ORDER_ONLY: tuple[type[Exception], ...] = (NoOpenCaseError, NotEnrolledError)
# Held without looking when more unacknowledged messages than this come before it.
HOLD_SCAN_LIMIT = 2000

# A batch with the store longer than this (waiting for a connection) means an outage.
STALLED_SECONDS = 5.0

# What became of a message: 'applied', 'no_effect', 'duplicate', or the error that stopped it.
Outcome = str | Exception


@dataclass
class IntakeStats:
    """What the intake did with the messages it received."""

    received: int = 0
    applied: int = 0
    no_effect: int = 0
    duplicates: int = 0
    retried: int = 0
    held: int = 0  # refused for order alone while an earlier message was on its way
    dead_lettered: Counter[str] = field(default_factory=Counter)
    # The last batch met a fault of the store or broker and waits for a retry.
    failing: bool = False
    # monotonic time a batch went to the store, while it is there (None otherwise).
    storing_since: float | None = None
    _changed: asyncio.Condition = field(
        default_factory=asyncio.Condition, repr=False, compare=False
    )

    async def count(self, outcome: str, reason: str = "", times: int = 1) -> None:
        """Count an outcome: received, applied, no_effect, duplicate, retried, dead_letter."""
        async with self._changed:
            if outcome == "dead_letter":
                self.dead_lettered[reason] += times
            elif outcome == "duplicate":
                self.duplicates += times
            else:
                setattr(self, outcome, getattr(self, outcome) + times)
            self._changed.notify_all()

    def stalled(self, after: float = STALLED_SECONDS) -> bool:
        """A fault waits for a retry, or a batch has been with the store too long."""
        since = self.storing_since
        return self.failing or (since is not None and time.monotonic() - since > after)

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
            "held": self.held,
            "dead_lettered": dict(self.dead_lettered),
            "failing": self.failing,
        }


# -- the synchronous part, run off the event loop ------------------------------------------


def read_situation(app: CaseWork, event: CloudEvent) -> Situation:
    """The household's open case (and its facts, if the message acts on a case)."""
    case_id = getattr(event.data, "case_id", None)
    if case_id is None:
        household_id = str(getattr(event.data, "household_id", ""))
        case_id = app.open_case_of(household_id)  # in a batch: as the batch left it
        if case_id is None:
            return Situation()
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


def apply_batch(app: CaseWork, events: Sequence[CloudEvent]) -> list[Outcome]:
    """Run many messages' commands in one save, in order; an outcome per message.

    Each message is translated on the state the messages before it left (same household:
    arrival order) and runs in a savepoint: one that fails is undone alone and its error
    is its outcome. Receipts ride in the same save. If the batch cannot be stored (a
    concurrent writer, a receipt stored meanwhile, a database fault), nothing of it is,
    and the messages run again one at a time as a lone message would. A batch of one
    takes this path too: its reads are one query (receipt, household, case) instead of
    a query each, and all of its commands are stored with its receipt in one save.
    """
    if not events:
        return []
    try:
        with app.batch() as unit:
            done = preload(app, unit, events)  # the receipts already stored, same query
            outcomes = [_in_unit(app, unit, event, done) for event in events]
    except Exception as error:
        log.warning("batch not saved, one message at a time", error=repr(error))
    else:
        return outcomes
    return _one_by_one(app, events)


def _in_unit(app: CaseWork, unit: Unit, event: CloudEvent, done: set[str]) -> Outcome:
    key = event.message_key
    if key in done or unit.has_received(key):
        return "duplicate"
    try:
        with unit.savepoint():
            commands = translate(event, read_situation(app, event))
            if not commands:
                return "no_effect"
            # All of a message's commands are stored together here: its receipt with them.
            with app.handling_message(key):
                for command in commands:
                    getattr(app, command.name)(command)
    except TRANSIENT:
        raise  # the store, not the message: the whole batch goes one at a time
    except Exception as error:
        return error
    return "applied"


def _one_by_one(app: CaseWork, events: Sequence[CloudEvent]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for index, event in enumerate(events):
        try:
            outcomes.append(apply_upstream(app, event))
        except TRANSIENT as error:
            # The later messages wait for this one: they may concern the same household.
            outcomes.extend([error] * (len(events) - index))
            break
        except Exception as error:
            outcomes.append(error)
    return outcomes


# -- the asynchronous part: guard, retry, dead letter --------------------------------------


@dataclass
class _Delivery:
    """One broker message as the intake handles it, whatever the broker."""

    body: bytes
    headers: Mapping[str, Any]
    origin: str
    dedup_id: str  # NATS: its stream position, so a dead letter is kept once
    ack: Callable[[], Awaitable[Any]]
    nack: Callable[[], Awaitable[Any]]  # leave it for another try
    nack_delays: bool  # whether nack itself delays the next try (NATS)
    sequence: int = 0  # NATS: its stream sequence (0 elsewhere)
    # NATS: delivered for the first time. An order-only refusal on a first delivery is
    # always held once: the earlier message may have taken effect (and left the ack floor)
    # after this batch read the household, so only a later try, on fresh state, may call
    # the refusal final.
    first_delivery: bool = False


@dataclass
class _Intake:
    app: CaseWork
    broker: AnyBroker
    places: IntakePlaces
    stats: IntakeStats
    retry_delay: float
    rabbit_runs: DeliveryRuns[RabbitMessage] | None = None
    rabbit_taking: asyncio.Task[None] | None = None
    # Made on the first traced batch and kept: it creates its table once, not per batch.
    trace_contexts: tracing.TraceContexts | None = None

    async def guard(self, call_next: Callable[[Any], Any], message: StreamMessage[Any]) -> None:
        """Every message ends acked (applied, duplicate, dead-lettered) or retried later."""
        raw = message.raw_message
        if isinstance(raw, list):  # a NATS pull batch, in stream order
            await self.take([self._nats_delivery(m) for m in raw])
        elif isinstance(message, RabbitMessage):  # handled concurrently: put back in order
            self._in_order(message)
        else:
            await self.take([self._delivery(message)])

    def _in_order(self, message: RabbitMessage) -> None:
        if self.rabbit_runs is None:
            self.rabbit_runs = DeliveryRuns(
                BATCH_SIZE,
                _rabbit_tag,
                skip_missing_after=MISSING_TAG_SECONDS,
                channel_of=_rabbit_channel,
            )
        if self.rabbit_taking is None or self.rabbit_taking.done():
            self.rabbit_taking = asyncio.create_task(self._take_rabbit_runs(self.rabbit_runs))
        self.rabbit_runs.add(message)

    async def _take_rabbit_runs(self, runs: DeliveryRuns[RabbitMessage]) -> None:
        """RabbitMQ deliveries in queue order, a run at a time (each acked on its own)."""
        while True:
            run = await runs.next_run()
            try:
                await self._take_in_turn([self._delivery_in_turn(m) for m in run])
            except Exception:
                # Acking on a channel that went away: RabbitMQ gives back what is unacked
                # when it notices; what is held here came on that channel too.
                log.exception("RabbitMQ run not settled; its deliveries come back", size=len(run))
                runs.drain()

    async def _take_in_turn(self, deliveries: Sequence[_Delivery]) -> None:
        """Take deliveries; retry those a transient fault stopped here, after the delay.

        Not nacked back to the queue: RabbitMQ would redeliver them behind deliveries
        already handed out, and those would be taken first (a visit report before its
        alert). The runs behind wait meanwhile.
        """
        while deliveries:
            deliveries = await self.take(deliveries)
            if deliveries:
                await asyncio.sleep(self.retry_delay)

    def _delivery_in_turn(self, message: RabbitMessage) -> _Delivery:
        """A RabbitMQ delivery whose retry is _take_in_turn's, not the queue's."""
        delivery = self._delivery(message)
        delivery.nack, delivery.nack_delays = _not_given_back, True
        return delivery

    async def stop(self) -> None:
        """Stop taking RabbitMQ runs (what is not acked is redelivered later)."""
        if self.rabbit_taking is not None:
            self.rabbit_taking.cancel()
            await asyncio.gather(self.rabbit_taking, return_exceptions=True)

    def _delivery(self, message: StreamMessage[Any]) -> _Delivery:
        delay = self.retry_delay
        if isinstance(message, NatsMessage):
            nack, delays = (lambda: message.nack(delay=delay)), True
        else:
            # Redis: stays pending, the reclaiming reader takes it after the delay;
            # RabbitMQ/Kafka: nacked after the delay (see retry_later).
            nack, delays = message.nack, isinstance(self.broker, RedisBroker)
        return _Delivery(
            body=message.body,
            headers=message.headers,
            origin=origin_of(message.raw_message),
            dedup_id=_dedup_id(message.raw_message),
            ack=message.ack,
            nack=nack,
            nack_delays=delays,
        )

    def _nats_delivery(self, msg: Msg) -> _Delivery:
        delay = self.retry_delay
        return _Delivery(
            body=msg.data,
            headers=msg.headers or {},
            origin=msg.subject,
            dedup_id=_dedup_id(msg),
            ack=msg.ack,
            nack=lambda: msg.nak(delay=delay),
            nack_delays=True,
            sequence=_stream_sequence(msg),
            first_delivery=_num_delivered(msg) == 1,
        )

    async def take(self, deliveries: Sequence[_Delivery]) -> list[_Delivery]:
        """Parse, apply the good ones together, then ack, dead-letter or retry each.

        Returns those left for another try (a transient fault), already nacked.
        """
        good: list[tuple[_Delivery, CloudEvent]] = []
        await self.stats.count("received", times=len(deliveries))
        for delivery in deliveries:
            try:
                event = parse_upstream(delivery.body, delivery.headers)
            except BadMessageError as error:
                await self.dead_letter(delivery, error.reason, error)
                continue
            try:
                self._check_subject(delivery.origin, event)
            except BadMessageError as error:
                await self.dead_letter(delivery, error.reason, error, event)
                continue
            good.append((delivery, event))
        if not good:
            return []
        spans = [_intake_span(d, e) for d, e in good] if tracing.enabled() else []
        if spans:
            await self._keep_traces(good, spans)
        self.stats.storing_since = time.monotonic()
        try:
            outcomes = await asyncio.to_thread(apply_batch, self.app, [e for _, e in good])
        except Exception as error:  # apply_batch keeps errors per message: a bug
            outcomes = [error] * len(good)
        finally:
            self.stats.storing_since = None
        for span, outcome in zip(spans, outcomes, strict=False):  # no spans: tracing off
            span.set_attribute("jiuzhu.outcome", outcome if isinstance(outcome, str) else "error")
            span.end()
        retries: list[tuple[_Delivery, BaseException]] = []
        taken: Counter[str] = Counter()  # applied, no_effect, duplicate
        # Stream sequences of this batch settled so far (acked or dead-lettered).
        settled = {d.sequence for d in deliveries} - {d.sequence for d, _ in good}
        debug_each = _stdlib_log.isEnabledFor(logging.DEBUG)
        for (delivery, event), outcome in zip(good, outcomes, strict=True):
            if isinstance(outcome, str):
                settled.add(delivery.sequence)
                # The common case stays lean: at hundreds a second, a log line per message
                # (INFO before) was ~8% of the intake's samples at 500/s; one line per batch.
                await delivery.ack()
                taken[outcome] += 1
                if debug_each:
                    log.debug(
                        f"upstream message {outcome.replace('_', ' ')}",
                        correlation_id=event.correlation_id,
                        message_key=event.message_key,
                        type=event.type,
                    )
                continue
            with structlog.contextvars.bound_contextvars(
                correlation_id=event.correlation_id, message_key=event.message_key, type=event.type
            ):
                if isinstance(outcome, TRANSIENT):
                    retries.append((delivery, outcome))
                elif isinstance(outcome, ORDER_ONLY) and (
                    delivery.first_delivery
                    or await self._earlier_on_its_way(delivery, event, settled)
                ):
                    # Refused only for coming before an earlier message of its household
                    # that is still on its way (handed to a killed or another intake):
                    # taken again after the delay, once the earlier one took effect.
                    await self.stats.count("held")
                    retries.append((delivery, outcome))
                elif isinstance(outcome, CaseWorkError):
                    settled.add(delivery.sequence)
                    await self.dead_letter(delivery, "rule_violation", outcome, event)
                elif isinstance(outcome, ValidationError):
                    await self.dead_letter(delivery, "invalid_schema", outcome, event)
                else:
                    log.error(
                        "upstream message failed unexpectedly",
                        origin=delivery.origin,
                        exc_info=outcome,
                    )
                    await self.dead_letter(delivery, "unexpected_error", outcome, event)
        for outcome, times in taken.items():
            await self.stats.count(outcome, times=times)
        if taken:
            self.stats.failing = False
        if taken:
            log.info("upstream messages taken", **taken)
        await self.retry_later(retries)
        return [delivery for delivery, _ in retries]

    async def _keep_traces(
        self, good: Sequence[tuple[_Delivery, CloudEvent]], spans: Sequence[Span]
    ) -> None:
        """Keep each message's trace before its events are appended (the relay may publish
        them at once) for the relay to continue."""
        links = [
            (event.causation_id, tracing.traceparent_of(span))
            for (_, event), span in zip(good, spans, strict=True)
        ]
        if self.trace_contexts is None:
            datastore = self.app.recorder.datastore  # type: ignore[attr-defined]
            self.trace_contexts = tracing.TraceContexts(datastore)
        contexts = self.trace_contexts
        try:
            await asyncio.to_thread(contexts.record, links)
        except Exception as error:  # traces are a help, never a reason to stop taking
            log.warning("trace contexts not kept", error=repr(error))

    async def _earlier_on_its_way(
        self, delivery: _Delivery, event: CloudEvent, settled: set[int]
    ) -> bool:
        """Whether an earlier message about the same household is not yet acknowledged.

        NATS only (elsewhere one intake takes the queue in order). Every stream message
        above the consumer's ack floor and before this one, not settled in this batch,
        is looked at; one about the same household is on its way (or took effect after
        this one's state was read: the refusal may be stale, so it is tried again). When
        that cannot be told (the broker did not answer, too many to look at), it holds:
        the floor moves on as the earliest messages settle, so a hold always ends.
        """
        if not delivery.sequence or not isinstance(self.broker, NatsBroker):
            return False
        household = getattr(event.data, "household_id", None)
        js = self.broker.config.connection_state.stream
        try:
            info = await js.consumer_info(self.places.stream, self.places.durable)
            floor = int(info.ack_floor.stream_seq or 0)
            earlier = [s for s in range(floor + 1, delivery.sequence) if s not in settled]
            if len(earlier) > HOLD_SCAN_LIMIT:
                return True
            for sequence in earlier:
                try:
                    stored = await js.get_msg(self.places.stream, sequence)
                    other = parse_upstream(stored.data or b"", stored.headers or {})
                except (BadMessageError, nats.js.errors.NotFoundError):
                    continue  # never about a household, or gone from the stream
                if getattr(other.data, "household_id", None) == household:
                    # Not yet applied, or applied by another intake since this one read
                    # the household's state: either way, try again.
                    return True
        except Exception as error:
            log.warning("cannot tell whether an earlier message is on its way", error=repr(error))
            return True
        return False

    def _check_subject(self, origin: str, event: CloudEvent) -> None:
        # Subjects name the type (NATS, RabbitMQ); a single stream (Redis, Kafka) does not.
        expected = f"{self.places.prefix}.{event.type}"
        if origin.startswith(f"{self.places.prefix}.") and origin != expected:
            detail = f"subject {origin} is not {expected}, the envelope's type's subject"
            raise BadMessageError("type_mismatch", detail)

    async def dead_letter(
        self,
        delivery: _Delivery,
        reason: str,
        error: Exception,
        event: CloudEvent | None = None,
    ) -> None:
        """Publish the original bytes with the reason, then ack; if that fails, retry."""
        origin = delivery.origin
        key = event.message_key if event else ""
        headers = deadletter_headers(
            delivery.headers, reason=reason, error=error, origin=origin, message_key=key
        )
        try:
            try:
                await publish_dead_letter(
                    self.broker, self.places, delivery.body, headers, dedup_id=delivery.dedup_id
                )
            except Exception as refused:
                # Something in the letter itself (a header, its size)? Once more with only
                # the dead letter's own headers; an outage fails this too, and is retried.
                log.warning("dead letter refused, sent bare", error=repr(refused))
                bare = {k: v for k, v in headers.items() if k.startswith("x-deadletter-")}
                await publish_dead_letter(
                    self.broker, self.places, delivery.body, bare, dedup_id=delivery.dedup_id
                )
        except Exception as failure:
            log.warning("dead letter not published", reason=reason, error=repr(failure))
            await self.retry_later([(delivery, failure)])
            return
        await delivery.ack()
        await self.stats.count("dead_letter", reason)
        log.warning(
            "upstream message dead-lettered",
            reason=reason,
            error=type(error).__name__,
            detail=str(error)[:500],
            origin=origin,
            deadletter=self.places.deadletter,
        )

    async def retry_later(self, retries: Sequence[tuple[_Delivery, BaseException]]) -> None:
        """Leave messages for another try after the delay: nothing is lost."""
        if any(not isinstance(error, ORDER_ONLY) for _, error in retries):
            self.stats.failing = True  # a fault, not a message waiting for its turn
        for _, error in retries:
            await self.stats.count("retried")
            log.warning(
                "transient fault, retrying later", error=repr(error), delay=self.retry_delay
            )
        if any(not delivery.nack_delays for delivery, _ in retries):
            await asyncio.sleep(self.retry_delay)  # once for the batch
        for delivery, _ in retries:
            await delivery.nack()


def _intake_span(delivery: _Delivery, event: CloudEvent) -> Span:
    """The message's span, continuing the producer's trace (CloudEvents' or W3C's)."""
    extra = event.model_extra or {}
    parent = extra.get(tracing.TRACEPARENT) or tracing.header(delivery.headers)
    return tracing.start_span(
        f"intake {event.type}", parent, **{"messaging.message.id": event.message_key}
    )


def _rabbit_tag(message: RabbitMessage) -> int:
    return int(message.raw_message.delivery_tag or 0)


def _rabbit_channel(message: RabbitMessage) -> object:
    return message.raw_message.channel


async def _not_given_back() -> None:
    """A delivery retried in turn by the intake stays unacknowledged meanwhile."""


def _stream_sequence(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream message (in-memory test brokers)
        return 0


def _num_delivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (in-memory test brokers)
        return 0


def _dedup_id(raw_message: Any) -> str:
    """A NATS message's stream position: dead-lettering it twice keeps one copy."""
    try:
        metadata = getattr(raw_message, "metadata", None)
    except nats.errors.NotJSMessageError:  # in-memory test brokers
        return ""
    if metadata is None:
        return ""
    return f"deadletter:{metadata.stream}:{metadata.sequence.stream}"


class _Guard(BaseMiddleware):
    """Runs every intake message (or NATS batch) through `_Intake.guard`."""

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
    ack_wait: float = 30.0,
) -> Any:
    """Register the intake on a router of its own: the guard wraps the intake alone.

    Returns the NATS pull subscriber (None on other brokers), to mend its fetch once started.
    """
    subscriber: Any = None
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
        subscriber = router.subscriber(
            f"{places.prefix}.>",
            stream=places.jstream(),
            durable=places.durable,
            # A whole pull in one call, in stream order (batch=False would run it concurrently).
            pull_sub=PullSub(batch_size=BATCH_SIZE, timeout=BATCH_WAIT, batch=True),
            config=ConsumerConfig(max_deliver=-1, ack_wait=max(ack_wait, 2 * retry_delay)),
            **options,
        )
        subscriber(handler)
        router.publisher(
            places.deadletter, title=places.deadletter, description=notice, schema=bytes
        )
    elif isinstance(broker, RabbitBroker):
        router = RabbitRouter(middlewares=(guard,))
        router.subscriber(
            places.rabbit_queue(),
            places.rabbit_exchange(),
            # A channel of its own: delivery tags consecutive, so queue order can be kept.
            channel=Channel(prefetch_count=BATCH_SIZE * 2),
            **options,
        )(handler)
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
    return subscriber


def _fetch_times_out_as_nats(subscriber: Any) -> None:
    """Make the pull subscription wait for one message, then take what is ready.

    FastStream's batch loop calls fetch(n, timeout=BATCH_WAIT) over and over: at a low
    rate that is a stream of short pull requests expiring on the server, and a message
    could wait behind them (seen as 300-600 ms lag at 20 msg/s). Instead one long pull
    waits for the first message, then a short one takes what else is there.

    Also: nats-py 2.16 raises a plain asyncio.TimeoutError when a fetch's deadline passes
    during its first probe; FastStream 0.7.8's batch pull loop catches only nats' and its
    task would die (the projector met the same, consumers/projector.py).
    """
    subscription = getattr(subscriber, "subscription", None)
    if subscription is None or getattr(subscription, "_jiuzhu_mended", False):
        return
    fetch = subscription.fetch

    async def fetch_or_nats_timeout(
        batch: int = 1, timeout: float | None = 5, **kwargs: Any
    ) -> Any:
        try:
            first = await fetch(1, timeout=FIRST_MESSAGE_WAIT, **kwargs)
            if batch <= 1:
                return first
            try:
                return first + await fetch(batch - 1, timeout=BATCH_WAIT, **kwargs)
            except TimeoutError:  # nats' TimeoutError is one too: nothing else was ready
                return first
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as error:
            raise nats.errors.TimeoutError from error
        except Exception:
            # A closed connection fails every fetch at once, and FastStream's loop fetches
            # again at once: 100% CPU, and nothing else on the event loop ran (health,
            # SIGTERM, the runner that starts the intake again). Pause before failing.
            await asyncio.sleep(FETCH_FAULT_PAUSE)
            raise

    subscription.fetch = fetch_or_nats_timeout
    subscription._jiuzhu_mended = True


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
    ack_wait: float = 30.0,
    max_age: float | None = None,
    deadletter_max_age: float | None = None,
) -> tuple[AnyBroker, FastStream]:
    """The intake's broker and FastStream app (nothing connects until it starts).

    `max_age`, `deadletter_max_age`: seconds NATS keeps upstream messages and dead letters.
    """
    places = IntakePlaces(
        prefix=subject_prefix,
        deadletter=deadletter_subject,
        stream=stream,
        durable=durable,
        max_age=max_age,
        deadletter_max_age=deadletter_max_age,
    )
    counters = stats if stats is not None else IntakeStats()
    broker = make_broker(broker_url)
    intake = _Intake(app=app, broker=broker, places=places, stats=counters, retry_delay=retry_delay)

    def guard(msg: Any, /, *, context: Any) -> _Guard:
        middleware = _Guard(msg, context=context)
        middleware.intake = intake
        return middleware

    async def receive_upstream(event: UpstreamEvent) -> None:
        """An upstream system's CloudEvent: opens, attaches to, verifies, pays or ends a case."""
        # The contract as documented; the guard middleware handles every message (or NATS
        # batch) itself, in `_Intake.take`, and never passes one on to here.

    subscriber = _subscribe(broker, places, receive_upstream, guard, retry_delay, ack_wait)

    async def declare() -> None:
        await declare_intake(broker, places)

    async def mend_fetch() -> None:
        _fetch_times_out_as_nats(subscriber)

    faststream_app = FastStream(
        broker,
        on_startup=[declare],
        after_startup=[mend_fetch],
        on_shutdown=[intake.stop],
        specification=AsyncAPI(
            title="jiuzhu upstream intake",
            version="1.0.0",
            description=(
                "Upstream systems publish CloudEvents 1.0 on "
                f"{subject_prefix}.<type>, in structured mode (one JSON envelope) or binary "
                "mode (attributes in ce- headers, ce_ on Kafka, cloudEvents: or "
                "cloudEvents_ from AMQP 1.0; the body is the data). The correlation id is "
                "the envelope's correlationid extension attribute; without it, the "
                "correlation_id header; without either, the message itself (source/id). "
                f"Bad messages go to {deadletter_subject}."
            ),
        ),
    )
    return broker, faststream_app
