"""The projector: a durable, ordered consumer of relief.events feeding every read model.

Each batch is decoded back into domain events as a rebuild decodes them and applied to
every read model of projections.registry (one transaction for all of them, each read
model's tracking inside it), then acknowledged. Redelivered events are at or below a read
model's tracked position and change nothing. A message that cannot be decoded is
dead-lettered with the reason, logged and counted, never dropped silently.

The broker is transport only; PostgreSQL is the record. Messages another event store
published (another deployment on the same broker) are refused and counted. Notification
ids the broker did not deliver (dropped as duplicates, lost, dead-lettered) are read from
the event store's log before the batch is applied, and counted; ids the log itself never
had (rolled-back sequence values) are fine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Protocol
from uuid import UUID

import structlog
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Mapper
from eventsourcing.postgres import PostgresDatastore
from faststream import AckPolicy, Context
from faststream.kafka import KafkaBroker
from faststream.nats import ConsumerConfig, NatsBroker
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.message import RabbitMessage
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser.binary import BinaryMessageFormatV1
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as NatsAckPolicy
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import Span

from consumers import tracing
from consumers.brokers import AnyBroker
from consumers.event_messages import (
    CLAIM_CHECK,
    NOTIFICATION_ID,
    STORE_ID,
    UndecodableEventError,
    log_row,
)
from consumers.nats_pull import ConsumerGoneError, Puller
from consumers.rabbit_order import DeliveryRuns
from consumers.streams import EventsDestination
from projections.base import LogBatch, Positioned, ReadModel, apply_together
from projections.decoding import EventDecoder, LogRow

__all__ = [
    "DeadLetterer",
    "Feed",
    "Incoming",
    "LogSource",
    "Projector",
    "ProjectorStats",
    "StoppingError",
    "log_source",
    "subscribe_projector",
]

log = structlog.get_logger("jiuzhu.projector")

# A message as the broker gave it: its headers and body bytes.
Incoming = tuple[Mapping[str, Any], bytes]

# A read model that cannot commit (database down) is retried this often, until it can.
RETRY_SECONDS = 0.5
# An idle NATS feed asks the broker again this often (a lingering pull request).
IDLE_FETCH_SECONDS = 1.0
# A NATS batch that starts short waits for more to join it while they keep coming: until
# none came for BATCH_QUIET_SECONDS (a relay window arrives within a few ms), at most
# BATCH_LINGER_SECONDS. Fewer, fuller batches mean fewer read-model transactions.
BATCH_LINGER_SECONDS = 0.05
BATCH_QUIET_SECONDS = 0.005
# At most this many missing notifications are read from the log for one batch; a larger
# gap is filled over the next batches (what the broker delivered past it waits for them).
GAP_READ_LIMIT = 20_000
# A batch whose tracking record collides with another writer's is tried again this often.
CONFLICT_RETRIES = 3


class DeadLetterer(Protocol):
    """Puts an undecodable message on the dead-letter destination with the reason."""

    async def __call__(self, headers: Mapping[str, Any], body: bytes, reason: str) -> None:
        """Return once the dead letter is stored."""


class LogSource(Protocol):
    """Rows of the event store's log between two notification ids (exclusive), in order."""

    def __call__(self, after: int, before: int, limit: int) -> list[LogRow]:
        """At most `limit` rows with after < notification id < before."""


def log_source(recorder: ApplicationRecorder) -> LogSource:
    """Gaps read from an application's notification log (the event store itself)."""

    def rows(after: int, before: int, limit: int) -> list[LogRow]:
        if before - after <= 1:
            return []
        found = recorder.select_notifications(after + 1, limit, stop=before - 1)
        return [
            (n.id, UUID(str(n.originator_id)), n.originator_version, n.topic, n.state)
            for n in found
        ]

    return rows


class StoppingError(Exception):
    """The projector is stopping: the batch stays unacknowledged and comes back later."""


@dataclass
class ProjectorStats:
    """What the projector has done, for health checks and benchmarks."""

    received: int = 0
    applied: int = 0
    batches: int = 0
    batch_seconds: float = 0.0  # time spent in batches, decoding to commit
    dead_lettered: int = 0
    foreign: int = 0  # refused: published by another event store
    recovered: int = 0  # read from the log: the broker did not deliver them
    position: int = 0
    failing: bool = False
    faults: int = 0
    parked: int = 0  # events a read model could not fold, parked with a finding
    halted: str | None = None
    heartbeat: float = field(default_factory=time.monotonic)


class Projector:
    """Applies batches of relief.events messages to read models, in order, exactly once."""

    def __init__(
        self,
        mapper: Mapper[UUID],
        read_models: Sequence[ReadModel],
        *,
        application_name: str,
        deadletter: DeadLetterer,
        store: str | None = None,
        log_source: LogSource | None = None,
    ) -> None:
        self.read_models = list(read_models)
        self.store = store  # None: take messages from any store (tests, benchmarks)
        # The event store's log: notifications the broker skipped (gaps) and the state of
        # claim-checked events (too big for the broker). None: neither is read.
        self.log_source = log_source
        self._known: int | None = None  # everything up to it applied (None: ask the models)
        self._by_datastore: dict[PostgresDatastore, list[ReadModel]] = {}
        # By name: the order `jiuzhu rebuild` locks live tables in when it swaps them.
        for model in sorted(self.read_models, key=lambda m: m.name):
            self._by_datastore.setdefault(model.datastore, []).append(model)
        # Decoded as a rebuild decodes: only what the read models use; personal data sealed.
        self.decoder = EventDecoder(mapper, [type(model) for model in self.read_models])
        self.application_name = application_name
        self.deadletter = deadletter
        self.stats = ProjectorStats()
        self.stopping = asyncio.Event()
        self._busy = asyncio.Lock()

    def position(self) -> int:
        """The lowest position among the read models: everything up to it is applied."""
        return min(m.position(self.application_name) for m in self.read_models)

    async def project(self, batch: Sequence[Incoming]) -> None:
        """Decode, dead-letter what cannot be decoded, apply the rest to every read model.

        Returns once every read model committed: the caller acknowledges the batch then.
        Raises StoppingError when asked to stop before that (nothing is acknowledged).
        """
        if self.stopping.is_set():
            raise StoppingError
        async with self._busy:
            started = time.perf_counter()
            self.stats.received += len(batch)
            rows: dict[int, tuple[LogRow, Incoming]] = {}
            foreign = 0
            for headers, body in batch:
                origin = headers.get(STORE_ID)
                if self.store is not None and origin is not None and origin != self.store:
                    foreign += 1
                    continue
                try:
                    row = log_row(headers, body)
                except UndecodableEventError as error:
                    await self._dead_letter(headers, body, str(error))
                    continue
                if self.store is not None and origin is None:
                    # Of unknown origin (an older relay, another publisher): refused, and
                    # if it was ours, the gap it leaves is read from the log.
                    foreign += 1
                    continue
                rows.setdefault(row[0], (row, (headers, body)))  # a repeat is the same event
            if foreign:
                self._refuse(foreign, batch)
            spans = _projector_spans(rows) if tracing.enabled() else []
            while rows:
                # A gap too large to fill at once leaves the rows past it for the next turn.
                later = await self._fill_gaps(rows) if self.log_source is not None else {}
                await self._apply_rows(rows)
                if later and self.stopping.is_set():
                    raise StoppingError
                rows = later
            for span in spans:
                span.end()
            self.stats.batches += 1
            self.stats.batch_seconds += time.perf_counter() - started
            self.stats.heartbeat = time.monotonic()

    async def _apply_rows(self, rows: dict[int, tuple[LogRow, Incoming]]) -> None:
        await self._redeem(rows)
        # Brokers deliver in order; sorting guards the skip-by-position within a batch.
        events = await self._decode([rows[position] for position in sorted(rows)])
        try:
            if events:
                await self._apply(events)
        except BaseException:
            self._known = None  # ask the read models again next time
            raise
        if rows and self._known is not None:
            self._known = max(self._known, max(rows))

    def _refuse(self, count: int, batch: Sequence[Incoming]) -> None:
        self.stats.foreign += count
        stores = sorted({str(h.get(STORE_ID, "")) for h, _ in batch} - {self.store or ""})
        log.warning(
            "relief.events from another event store refused",
            count=count,
            stores=stores[:3],
            refused=self.stats.foreign,
        )

    async def _fill_gaps(
        self, rows: dict[int, tuple[LogRow, Incoming]]
    ) -> dict[int, tuple[LogRow, Incoming]]:
        """Add from the log what the broker skipped between the position and the batch.

        Returns the rows to apply after these (past a gap larger than GAP_READ_LIMIT).
        """
        assert self.log_source is not None
        if self._known is None:
            self._known = await asyncio.to_thread(self.position)
        expected, gaps = self._known + 1, []
        for position in sorted(rows):
            if position > expected:
                gaps.append((expected - 1, position))
            expected = max(expected, position + 1)
        budget, later = GAP_READ_LIMIT, {}
        for after, before in gaps:
            if budget <= 0:
                later = {p: rows.pop(p) for p in [p for p in rows if p > after]}
                break
            found = await asyncio.to_thread(self.log_source, after, before, budget + 1)
            if len(found) > budget:
                found = found[:budget]
                later = {p: rows.pop(p) for p in [p for p in rows if p > found[-1][0]]}
            for row in found:
                rows[row[0]] = (row, ({NOTIFICATION_ID: str(row[0]), "read-from": "log"}, row[4]))
            budget -= len(found)
            self.stats.recovered += len(found)
            if found:
                log.warning(
                    "notifications the broker did not deliver read from the log",
                    after=after,
                    before=before,
                    read=len(found),
                    recovered=self.stats.recovered,
                )
            if later:
                break
        return later

    async def _redeem(self, rows: dict[int, tuple[LogRow, Incoming]]) -> None:
        """Read the state of claim-checked events back from the event store."""
        checked = [p for p, (_, (headers, _)) in rows.items() if CLAIM_CHECK in headers]
        if not checked:
            return
        states = await asyncio.to_thread(self._stored_states, checked) if self.log_source else {}
        for position in checked:
            row, (headers, body) = rows.pop(position)
            if position in states:
                rows[position] = ((*row[:4], states[position]), (headers, body))
            else:
                await self._dead_letter(headers, body, f"claim check {position}: not in the store")

    def _stored_states(self, positions: Sequence[int]) -> dict[int, bytes]:
        assert self.log_source is not None
        return {
            row[0]: row[4]
            for position in positions
            for row in self.log_source(position - 1, position + 1, 1)
        }

    async def _decode(self, rows: list[tuple[LogRow, Incoming]]) -> LogBatch:
        """The batch's events as a rebuild decodes them; a message that fails is dead-lettered."""
        if not rows:
            return LogBatch()
        try:
            return self.decoder.decode([row for row, _ in rows])
        except Exception:  # some message is bad: find it, one at a time
            pass
        events = LogBatch()
        for row, (headers, body) in rows:
            try:
                events += self.decoder.decode([row])
            except Exception as error:  # any failure to decode means the message is unusable
                reason = f"cannot rebuild {row[3]} v{row[2]}: {type(error).__name__}: {error}"
                await self._dead_letter(headers, body, reason)
        return events

    def halt(self, reason: str) -> None:
        """Take no more batches after one failed in an unexpected way (a bug, not a fault)."""
        self.stats.halted = reason
        self.stopping.set()

    async def drain(self) -> None:
        """Stop taking batches and wait for the one in progress to commit."""
        self.stopping.set()
        async with self._busy:
            pass

    async def _dead_letter(self, headers: Mapping[str, Any], body: bytes, reason: str) -> None:
        await self.deadletter(headers, body, reason)
        self.stats.dead_lettered += 1
        log.error(
            "relief.events message dead-lettered",
            reason=reason,
            event_id=str(headers.get("event-id", "")),
            notification_id=str(headers.get("notification-id", "")),
            dead_lettered=self.stats.dead_lettered,
        )

    async def _apply(self, events: list[Positioned]) -> None:
        conflicts = 0
        while True:
            parked = sum(model.parked for model in self.read_models)
            try:
                applied = await asyncio.to_thread(self._apply_together, events)
            except IntegrityError:
                self._known = None
                # Another projector committed these events meanwhile (two were active for
                # a moment while the lease changed hands): the retry reads the positions
                # again and skips what it applied. Over and over, it is a bug: halt.
                conflicts += 1
                if conflicts > CONFLICT_RETRIES:
                    raise
                log.warning("read models moved on meanwhile, applying again", tries=conflicts)
                continue
            except Exception as error:
                # The database is down (eventsourcing's OperationalError wrapping psycopg's,
                # or psycopg's own), or failing in a way no single event explains (those
                # are parked by apply_together): the transaction rolled back whole; wait,
                # and try again, degraded meanwhile, never halted.
                self.stats.failing = True
                self.stats.faults += 1
                log.warning("read models cannot commit, retrying", error=repr(error))
                try:
                    await asyncio.wait_for(self.stopping.wait(), RETRY_SECONDS)
                except TimeoutError:
                    continue
                raise StoppingError from error
            self.stats.failing = False
            self.stats.applied += applied
            self.stats.position = events[-1][1]
            if (now_parked := sum(model.parked for model in self.read_models)) > parked:
                self.stats.parked += now_parked - parked
                log.error(
                    "events parked: a read model could not fold them (see parked_events)",
                    parked=now_parked - parked,
                    up_to=events[-1][1],
                )
            return

    def _apply_together(self, events: list[Positioned]) -> int:
        """Every read model in one transaction per database: reports always agree on the
        event they reflect, and a small batch costs one commit, not one per read model
        (at 40 events a batch, 40% less CPU here than a thread and transaction each)."""
        applied = 0
        for datastore, models in self._by_datastore.items():
            done = apply_together(datastore, models, events, application_name=self.application_name)
            applied = max(applied, done)
        return applied


def _projector_spans(rows: Mapping[int, tuple[LogRow, Incoming]]) -> list[Span]:
    """Spans continuing the traces the relay passed on (a traceparent header)."""
    spans = []
    for row, (headers, _) in rows.values():
        parent = tracing.header(headers)
        if parent is not None:
            spans.append(
                tracing.start_span(
                    f"project {row[3].rpartition(':')[2]}",
                    parent,
                    **{"jiuzhu.notification_id": row[0]},
                )
            )
    return spans


class Feed:
    """How batches reach the projector on one broker: a subscriber and its acks."""

    def __init__(self, projector: Projector, subscriber: Any) -> None:
        self.projector = projector
        self.subscriber = subscriber
        self.failing = False  # waiting for the broker (NATS: its last turn failed)

    async def recover(self) -> None:
        """Before the broker starts: take back what a killed predecessor left unacknowledged."""

    async def start(self) -> None:
        """After the broker started."""

    async def stop(self) -> None:
        """Before the broker stops, after the projector drained."""

    def consuming(self) -> bool:
        """The subscriber runs and none of its background tasks died."""
        tasks = getattr(self.subscriber, "tasks", [])
        return bool(self.subscriber.running) and not any(t.done() for t in tasks)


async def _settle(projector: Projector, batch: Sequence[Incoming]) -> bool:
    """Project a batch; whether it may be acknowledged (False: leave it for redelivery)."""
    try:
        await projector.project(batch)
    except StoppingError:
        return False
    except Exception:
        # Events a read model cannot fold are parked, database faults retried inside: what
        # is left (a dead letter the broker would not take...) leaves the batch unacked,
        # to be taken again in order after a pause. Never a halt: the feed resumes.
        log.exception("batch failed; taken again after a pause", size=len(batch))
        projector.stats.failing = True
        return False
    return True


class NatsFeed(Feed):
    """A durable JetStream pull consumer, read in order and acked after the commit.

    Messages arrive through a Puller (consumers.nats_pull) while the previous batch is
    applied, and are applied one batch after another, never out of turn. A batch that
    starts short waits for company while messages keep coming (BATCH_QUIET_SECONDS, at
    most BATCH_LINGER_SECONDS), then is topped up with what arrived while the previous
    batch was applied. The consumer acks all up to a message (AckPolicy.ALL), so one ack
    per batch.

    Messages the broker handed out before a fault (or to a killed predecessor) come back
    only after ack_wait, while newer ones flow at once: applied first, those would make the
    late ones look already applied. So the feed checks that stream sequences follow on,
    and on a gap restarts the durable consumer at the first missing one.
    """

    def __init__(
        self,
        projector: Projector,
        broker: NatsBroker,
        destination: EventsDestination,
        config: ConsumerConfig,
        batch_size: int,
    ) -> None:
        super().__init__(projector, subscriber=None)
        self.broker = broker
        self.destination = destination
        self.config = config
        self.batch_size = batch_size
        self.expected: int | None = None  # stream sequence of the next message to take
        self.puller: Puller | None = None  # pulls the current incarnation of the consumer
        self.task: asyncio.Task[None] | None = None
        self.applying: asyncio.Task[bool] | None = None
        self.failing = False  # the last turn failed (broker unreachable, consumer gone)
        self.rewind_to: int | None = None  # first sequence of a batch that failed

    def _js(self) -> Any:
        return self.broker.config.connection_state.stream

    async def recover(self) -> None:
        js, stream, durable = self._js(), self.destination.stream, self.destination.durable
        try:
            floor = (await js.consumer_info(stream, durable)).ack_floor.stream_seq or 0
        except NotFoundError:
            floor = (await js.stream_info(stream)).state.first_seq - 1
        await self._restart_at(max(floor, 0) + 1)

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """After the projector drained: the batch in hand is acked, the pulling ends."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.applying is not None:
            await asyncio.gather(self.applying, return_exceptions=True)
        await self._close_puller()

    def consuming(self) -> bool:
        return self.task is not None and not self.task.done() and not self.failing

    async def _restart_at(self, sequence: int) -> None:
        """Recreate the durable consumer so that delivery resumes, in order, at a sequence."""
        js, stream, durable = self._js(), self.destination.stream, self.destination.durable
        await self._close_puller()  # what the old consumer still sends is not received
        with suppress(NotFoundError):
            await js.delete_consumer(stream, durable)
        config = replace(
            self.config,
            durable_name=durable,
            name=durable,
            filter_subject=self.destination.nats_subjects[0],
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=sequence,
            ack_policy=NatsAckPolicy.ALL,
        )
        await js.add_consumer(stream, config=config)
        log.info("durable consumer (re)started", stream_sequence=sequence)
        self.expected = sequence
        self.puller = await Puller.open(
            self.broker.config.connection_state.connection,
            stream,
            durable,
            batch=self.batch_size,
            expires=IDLE_FETCH_SECONDS,
        )

    async def _close_puller(self) -> None:
        puller, self.puller = self.puller, None
        if puller is not None:
            with suppress(Exception):  # the connection may be gone already
                await puller.close()

    async def _run(self) -> None:
        while not self.projector.stopping.is_set():
            try:
                await self._turn()
                self.failing = False
            except Exception as error:  # broker unreachable, consumer gone: start over
                self.failing = True
                log.warning("relief.events feed fault, resuming", error=repr(error))
                await self._resume_after_fault()

    async def _turn(self) -> None:
        """Take a batch and, once the previous one is applied, apply it."""
        if self.puller is None:
            raise ConsumerGoneError("no consumer to pull from")
        puller = self.puller
        batch = await puller.take(
            self.batch_size,
            wait=IDLE_FETCH_SECONDS,
            linger=BATCH_LINGER_SECONDS,
            quiet=BATCH_QUIET_SECONDS,
        )
        if not batch:
            # Idle, or the consumer is gone (lost with the server's state): the consumer's
            # info tells (NotFoundError).
            await self._js().consumer_info(self.destination.stream, self.destination.durable)
            return
        if not await self._applied():
            return
        if len(batch) < self.batch_size:
            # Top up with what arrived while the previous batch was applied: under load
            # batches grow with the apply time.
            batch += puller.take_ready(self.batch_size - len(batch))
        await self._take_in_turn(batch)

    async def _resume_after_fault(self) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.projector.stopping.wait(), RETRY_SECONDS)
        if self.projector.stopping.is_set() or not await self._applied():
            return
        with suppress(Exception):  # still failing: the next turn says so again
            if self.expected is None:
                await self.recover()
            else:
                await self._restart_at(self.expected)

    async def _take_in_turn(self, batch: list[Msg]) -> None:
        """Take a batch up to its first gap in stream sequences; at a gap, restart there.

        Every message is checked, not only the first: a batch can span a gap (messages
        lost with a connection while later ones kept coming), and acking its last message
        (AckPolicy.ALL) would ack the missing ones too.
        """
        while batch:
            following = self._following(batch)
            if following:
                await self._take(following)
                batch = batch[len(following) :]
                if not batch:
                    return
            if not await self._applied():  # stopping: what was taken is redelivered later
                return
            got = batch[0].metadata.sequence.stream
            oldest = (await self._js().stream_info(self.destination.stream)).state.first_seq
            if oldest > (self.expected or 0):
                # The stream's limits removed them: nothing to wait for; say so loudly.
                log.error("stream no longer holds events", missing_from=self.expected, got=got)
                self.expected = got
                continue
            log.warning("gap in delivery", expected=self.expected, got=got)
            await self._restart_at(self.expected or got)  # the old deliveries die with it
            return

    def _following(self, batch: list[Msg]) -> list[Msg]:
        """The batch's messages before the first that skips a stream sequence."""
        expected = self.expected
        for index, msg in enumerate(batch):
            sequence = msg.metadata.sequence.stream
            if expected is not None and sequence > expected:
                return batch[:index]
            expected = max(expected or 0, sequence + 1)
        return batch

    async def _take(self, batch: list[Msg]) -> None:
        """Apply a batch once the previous one is applied; meanwhile the loop fetches on."""
        if not await self._applied():
            return
        self.expected = max(self.expected or 0, batch[-1].metadata.sequence.stream + 1)
        self.applying = asyncio.create_task(self._apply(batch))

    async def _applied(self) -> bool:
        """Wait for the batch being applied; whether it committed and was acked.

        A batch that failed (not for stopping) raises ConsumerGoneError: the fault path
        restarts the consumer at that batch's first message, after a pause.
        """
        if self.applying is None:
            return True
        applied = await self.applying
        if not applied and self.rewind_to is not None and not self.projector.stopping.is_set():
            self.applying, self.expected, self.rewind_to = None, self.rewind_to, None
            raise ConsumerGoneError(f"batch from stream sequence {self.expected} failed")
        return applied

    async def _apply(self, batch: list[Msg]) -> bool:
        if not await _settle(self.projector, [(m.headers or {}, m.data) for m in batch]):
            if not self.projector.stopping.is_set():
                self.rewind_to = batch[0].metadata.sequence.stream
            return False  # left unacked: redelivered from the ack floor after a restart
        try:
            await batch[-1].ack()  # AckPolicy.ALL: acks the whole batch
        except Exception as error:  # committed anyway; a redelivery is skipped by tracking
            log.warning("batch ack failed", error=repr(error))
        return True


def _nats_feed(
    broker: NatsBroker, destination: EventsDestination, projector: Projector, batch_size: int
) -> Feed:
    config = ConsumerConfig(ack_wait=30, max_ack_pending=batch_size * 4)
    return NatsFeed(projector, broker, destination, config, batch_size)


def _redis_entry(entry: Mapping[bytes, bytes]) -> Incoming:
    body, headers = BinaryMessageFormatV1.parse(entry.get(b"__data__", b""))
    return headers, body


class RedisFeed(Feed):
    """Redis Streams consumer group; a killed consumer's pending entries are taken back."""

    def __init__(
        self, projector: Projector, subscriber: Any, broker: RedisBroker, stream: StreamSub
    ) -> None:
        super().__init__(projector, subscriber)
        self.broker = broker
        self.stream = stream

    async def recover(self) -> None:
        # XREADGROUP with "0" gives this consumer's delivered-but-unacked entries: read
        # with ">" they would never come back.
        client: Any = await self.broker.connect()
        name, group, consumer = self.stream.name, self.stream.group, self.stream.consumer
        while True:
            response = await client.xreadgroup(
                group, consumer, {name: "0"}, count=self.stream.max_records
            )
            entries = [e for _, stream_entries in response for e in stream_entries]
            if not entries:
                return
            if not await _settle(self.projector, [_redis_entry(data) for _, data in entries]):
                raise StoppingError
            await client.xack(name, group, *(entry_id for entry_id, _ in entries))


def _redis_feed(
    broker: RedisBroker,
    destination: EventsDestination,
    projector: Projector,
    batch_size: int,
    consumer: str,
) -> Feed:
    stream = StreamSub(
        destination.redis_stream,
        group=destination.durable,
        consumer=consumer,
        batch=True,
        max_records=batch_size,
        polling_interval=1000,
    )
    subscriber = broker.subscriber(stream=stream, ack_policy=AckPolicy.MANUAL)

    @subscriber
    async def relief_events(message: Annotated[Any, Context("message")]) -> None:
        """relief.events in order, a batch at a time, XACKed once the read models committed."""
        batch = [_redis_entry(data) for data in message.raw_message["data"]]
        if await _settle(projector, batch):
            await message.ack()  # else the entries stay pending and recover() takes them

    return RedisFeed(projector, subscriber, broker, stream)


class RabbitFeed(Feed):
    """One durable queue with prefetch; unbroken runs of deliveries, acked as one."""

    def __init__(self, projector: Projector, subscriber: Any, batch_size: int) -> None:
        super().__init__(projector, subscriber)
        # aio-pika IncomingMessages, in queue order though handled concurrently.
        self.deliveries: DeliveryRuns[Any] = DeliveryRuns(
            batch_size, _delivery_tag, channel_of=_delivery_channel
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def consuming(self) -> bool:
        return super().consuming() and self.task is not None and not self.task.done()

    async def _run(self) -> None:
        while not self.projector.stopping.is_set():
            run = await self.deliveries.next_run()
            if await _settle(self.projector, [(m.headers or {}, m.body) for m in run]):
                await run[-1].ack(multiple=True)
            else:
                await run[-1].nack(multiple=True, requeue=True)
                return


def _delivery_tag(message: Any) -> Any:
    return message.delivery_tag


def _delivery_channel(message: Any) -> object:
    return message.channel


def _rabbit_feed(
    broker: RabbitBroker, destination: EventsDestination, projector: Projector, batch_size: int
) -> Feed:
    subscriber = broker.subscriber(
        destination.rabbit_queue(),
        destination.rabbit_exchange(),
        channel=Channel(prefetch_count=batch_size * 2),
        ack_policy=AckPolicy.MANUAL,  # acked by RabbitFeed once the read models committed
    )
    feed = RabbitFeed(projector, subscriber, batch_size)

    @subscriber
    async def relief_events(message: Annotated[RabbitMessage, Context("message")]) -> None:
        """One relief.events delivery: collected into the next in-order batch."""
        feed.deliveries.add(message.raw_message)

    return feed


def _kafka_feed(
    broker: KafkaBroker, destination: EventsDestination, projector: Projector, batch_size: int
) -> Feed:
    subscriber = broker.subscriber(
        destination.redis_stream,
        group_id=destination.durable,
        batch=True,
        max_records=batch_size,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
    )

    @subscriber
    async def relief_events(message: Annotated[Any, Context("message")]) -> None:
        """relief.events of one partition in order, committed once the read models did."""
        records = message.raw_message
        batch = [({k: bytes(v).decode() for k, v in r.headers}, r.value) for r in records]
        if await _settle(projector, batch):
            await message.ack()

    return Feed(projector, subscriber)


def subscribe_projector(
    broker: AnyBroker,
    destination: EventsDestination,
    projector: Projector,
    *,
    batch_size: int = 500,
    consumer: str = "projector-1",
) -> Feed:
    """Register the projector's subscriber on a broker (before the broker starts)."""
    if isinstance(broker, NatsBroker):
        return _nats_feed(broker, destination, projector, batch_size)
    if isinstance(broker, RabbitBroker):
        return _rabbit_feed(broker, destination, projector, batch_size)
    if isinstance(broker, RedisBroker):
        return _redis_feed(broker, destination, projector, batch_size, consumer)
    return _kafka_feed(broker, destination, projector, batch_size)
