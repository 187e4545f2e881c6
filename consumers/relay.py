"""The relay (outbox): follows the event store's notification log and publishes every event.

Commands only append events; the relay carries them to the broker afterwards, in
notification order, a window at a time, and records the last published notification id
in PostgreSQL only once the broker acknowledged the whole window. Killed at any moment it
resumes from that position: the broker's duplicate window (NATS) and the read models'
tracking absorb what is published twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import psycopg
import structlog
from eventsourcing.postgres import PostgresApplicationRecorder
from opentelemetry.trace import Span
from psycopg.sql import SQL, Identifier

from consumers import tracing
from consumers.event_messages import CAUSATION_ID, TYPE, EventMessage, encode
from consumers.store_identity import store_identity
from consumers.streams import EventsDestination, Publisher
from consumers.tracing import TraceContexts
from projections.base import DDL_XACT_LOCK

__all__ = ["Relay", "RelayPosition", "RelayStats"]

log = structlog.get_logger("jiuzhu.relay")

# An idle relay re-reads the log this often even without a NOTIFY (a missed one costs this).
IDLE_POLL_SECONDS = 1.0
# After a broker or database fault, wait this long before resuming from the recorded position.
RETRY_SECONDS = 1.0


class RelayPosition:
    """The last notification id the broker acknowledged, kept in the app's schema."""

    def __init__(self, recorder: PostgresApplicationRecorder, name: str) -> None:
        self.datastore = recorder.datastore
        self.name = name
        table = Identifier(self.datastore.schema, "relay_position")
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {0} (name text PRIMARY KEY, "
            "notification_id bigint NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(table)
        self._select = SQL("SELECT notification_id FROM {0} WHERE name = %s").format(table)
        self._upsert = SQL(
            "INSERT INTO {0} (name, notification_id) VALUES (%s, %s) ON CONFLICT (name) DO "
            "UPDATE SET notification_id = excluded.notification_id, recorded_at = now()"
        ).format(table)

    def create_table(self) -> None:
        """Create the position table if missing."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(DDL_XACT_LOCK, (self.datastore.schema,))  # one process at a time
            curs.execute(self._create)

    def get(self) -> int:
        """The recorded position (0 before the first window)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select, (self.name,))
            row = curs.fetchone()
        return int(row["notification_id"]) if row else 0

    def record(self, notification_id: int) -> None:
        """Record that everything up to a notification id is on the broker."""
        with self.datastore.transaction(commit=True) as curs:
            # Losing this commit in a crash only means re-publishing the window: duplicates
            # the broker and the read models absorb.
            curs.execute("SET LOCAL synchronous_commit = off")
            curs.execute(self._upsert, (self.name, notification_id), prepare=True)


@dataclass
class RelayStats:
    """What the relay has done, for health checks and benchmarks."""

    position: int = 0
    published: int = 0
    windows: int = 0
    window_seconds: float = 0.0  # time spent publishing windows until the broker acked
    faults: int = 0
    failing: bool = False  # the last turn met a fault: waiting for the broker or database
    caught_up: bool = False
    # monotonic time of the last loop turn: a stuck relay stops updating it.
    heartbeat: float = field(default_factory=time.monotonic)


class Relay:
    """Publishes the notification log to the broker, window by window, in order."""

    def __init__(
        self,
        recorder: PostgresApplicationRecorder,
        publisher: Publisher,
        *,
        database_url: str,
        destination: EventsDestination,
        window: int = 500,
    ) -> None:
        self.recorder = recorder
        self.publisher = publisher
        self.database_url = database_url
        self.destination = destination
        self.window = window
        self.positions = RelayPosition(recorder, f"{publisher.kind}:{destination.stream}")
        self.stats = RelayStats()
        self.store = ""  # the event store's id, read when the relay starts
        self.trace_contexts = TraceContexts(recorder.datastore)  # read only when tracing
        self._wakeup = asyncio.Event()

    def healthy(self, *, stale_after: float = 10.0) -> bool:
        """Relaying: the loop turned recently and its last window reached the broker."""
        return time.monotonic() - self.stats.heartbeat < stale_after and not self.stats.failing

    def degraded(self, *, stale_after: float = 10.0) -> bool:
        """Waiting out an outage: a fault met, or a turn waiting this long (a connection)."""
        return self.stats.failing or time.monotonic() - self.stats.heartbeat >= stale_after

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until stopping is set; the window in flight is finished and recorded."""
        listener = asyncio.create_task(self._listen(stopping))
        created = False
        try:
            while not stopping.is_set():
                try:
                    if not created:  # in the loop: the database may be away at the start too
                        await asyncio.to_thread(self.positions.create_table)
                        self.store = await asyncio.to_thread(
                            store_identity, self.recorder.datastore
                        )
                        created = True
                    await self._relay(stopping)
                except Exception as error:
                    # Whatever the broker or the database says (NATS down: NoStreamResponseError;
                    # PostgreSQL down: eventsourcing's OperationalError), the relay waits and
                    # resumes from the recorded position; the broker drops what it repeats.
                    self.stats.faults += 1
                    self.stats.failing = True
                    log.warning(
                        "relay fault, resuming from the recorded position", error=repr(error)
                    )
                    await _wait(stopping, RETRY_SECONDS)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        log.info("relay stopped", position=self.stats.position, published=self.stats.published)

    async def _relay(self, stopping: asyncio.Event) -> None:
        position = await asyncio.to_thread(self.positions.get)
        self.stats.position = position
        log.info("relay resumes", position=position, destination=self.destination.stream)
        reading = self._read(position)
        # Positions are recorded in order, each off the way of the next window's publishing.
        recording: asyncio.Task[None] | None = None
        try:
            while True:
                messages = await reading
                self.stats.heartbeat = time.monotonic()
                if not messages:
                    self.stats.caught_up = True
                    self.stats.failing = False
                    if stopping.is_set():
                        return
                    await _wait(stopping, IDLE_POLL_SECONDS, self._wakeup)
                    reading = self._read(position)
                    continue
                self.stats.caught_up = False
                last = messages[-1].notification_id
                # Read (and encode) the next window while this one is on the wire.
                reading = self._read(last)
                publishing = time.perf_counter()
                spans = await self._traced(messages) if tracing.enabled() else []
                await self.publisher.publish(messages)
                for span in spans:
                    span.end()
                self.stats.window_seconds += time.perf_counter() - publishing
                self.stats.failing = False
                if recording is not None:
                    await recording
                recording = asyncio.create_task(asyncio.to_thread(self.positions.record, last))
                position = last
                self.stats.position = last
                self.stats.published += len(messages)
                self.stats.windows += 1
                if stopping.is_set():
                    return
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            if recording is not None:
                await recording  # a stopping relay leaves its last position recorded

    async def _traced(self, messages: list[EventMessage]) -> list[Span]:
        """Spans continuing the traces of the upstream messages that caused these events."""
        try:
            found = await asyncio.to_thread(
                self.trace_contexts.find, [m.headers.get(CAUSATION_ID, "") for m in messages]
            )
        except Exception as error:  # traces are a help, never a reason to stop relaying
            log.warning("trace contexts not read", error=repr(error))
            return []
        spans = []
        for message in messages:
            parent = found.get(message.headers.get(CAUSATION_ID, ""))
            if parent is not None:
                span = tracing.start_span(
                    f"relay {message.headers.get(TYPE, '')}",
                    parent,
                    **{"jiuzhu.notification_id": message.notification_id},
                )
                message.headers[tracing.TRACEPARENT] = tracing.traceparent_of(span)
                spans.append(span)
        return spans

    def _read(self, after: int) -> asyncio.Task[list[EventMessage]]:
        # A NOTIFY arriving from now on means there may be more than this read sees.
        self._wakeup.clear()
        return asyncio.create_task(asyncio.to_thread(self._window, after))

    def _window(self, after: int) -> list[EventMessage]:
        """The next window of the log, encoded: off the event loop, while it publishes."""
        notifications = self.recorder.select_notifications(
            start=after, limit=self.window, inclusive_of_start=False
        )
        prefix = self.destination.prefix
        return [encode(n, prefix=prefix, store=self.store) for n in notifications]

    async def _listen(self, stopping: asyncio.Event) -> None:
        """Wake the relay on the event store's NOTIFY (sent when events commit)."""
        while not stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn:
                    await conn.execute(
                        SQL("LISTEN {0}").format(Identifier(self.recorder.channel_name))
                    )
                    self._wakeup.set()  # anything committed before LISTEN is read now
                    async for _ in conn.notifies():
                        self._wakeup.set()
            except psycopg.Error as error:
                log.warning("relay LISTEN connection lost", error=str(error))
                await _wait(stopping, RETRY_SECONDS)


async def _wait(stopping: asyncio.Event, timeout: float, *others: asyncio.Event) -> None:
    """Wait until stopping or another event is set, or the timeout passes."""
    waiters = [asyncio.create_task(e.wait()) for e in (stopping, *others)]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
