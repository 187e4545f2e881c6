"""The clock: a process manager that follows the event log and records deadlines that pass.

It folds the log into its own table (`clock_deadline`, with its tracking row in the same
transaction, like a read model) using the same DeadlineBook as the `deadlines` report, and
keeps nothing per case in memory: what is due is asked of PostgreSQL by due time, a page
at a time. Each round it reads the log up to the head, takes the pending deadlines whose
time has come by its (injected) clock, and records their events through
CaseWork.record_deadlines, many cases in one save, each at the case's next version.

Exactly once, whatever happens: a deadline's row turns "passed" only when the clock reads
its own event back from the log, so a crash after the save simply finds the event on
restart; a case with events the clock has not read yet is left for the next round; and a
case that moves between the version query and the save makes the save fail whole (its
version is taken), after which the clock reads the log again and decides afresh.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import structlog
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier
from pydantic import AwareDatetime, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.application import CaseWork
from domain.deadlines import DeadlineKind, Due
from projections.base import read_model_datastore
from projections.deadlines import Deadlines, deadline_ddl, deadline_table
from projections.log_reader import LogReader

__all__ = [
    "Clock",
    "ClockDeadlines",
    "ClockSettings",
    "ClockStats",
    "ControlledClock",
    "start_clock",
]

log = structlog.get_logger("jiuzhu.clock")

Now = Callable[[], datetime]


class ClockSettings(BaseSettings):
    """Settings of `jiuzhu serve clock` (JIUZHU_* variables, beside Settings)."""

    model_config = SettingsConfigDict(env_prefix="JIUZHU_", extra="ignore")

    clock_every: float = Field(default=5.0, gt=0, le=3600, description="Seconds between rounds")
    clock_fire_batch: int = Field(
        default=1000, ge=1, le=20000, description="Deadlines recorded per save"
    )
    clock_start: AwareDatetime | None = Field(
        default=None,
        description="Demos and tests: the clock starts at this moment and runs at real speed",
    )

    def now(self) -> Now:
        """The wall clock, or one shifted to start at clock_start."""
        if self.clock_start is None:
            return wall_clock
        offset = self.clock_start - datetime.now(UTC)
        return lambda: datetime.now(UTC) + offset


class ClockDeadlines(Deadlines):
    """The clock's own copy of the deadline rows, folded straight from the log."""

    name = "clock"
    TABLE = deadline_table("clock_deadline")
    tables: ClassVar = ("clock_deadline",)
    state_tables: ClassVar = (TABLE,)
    ddl: ClassVar = deadline_ddl("clock_deadline")


class ControlledClock:
    """A clock tests and demos move forward by hand (never sleep)."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def move(self, **delta: float) -> datetime:
        """Move forward, e.g. move(days=3); the new moment."""
        self.moment += timedelta(**delta)
        return self.moment

    def set(self, moment: datetime) -> None:
        """Jump to a moment (forward only: deadlines already recorded stay recorded)."""
        self.moment = max(self.moment, moment)


def wall_clock() -> datetime:
    """The real time."""
    return datetime.now(UTC)


@dataclass
class ClockStats:
    """What the clock did: for /health and the logs."""

    position: int = 0
    recorded: int = 0
    rounds: int = 0
    conflicts: int = 0
    deferred: int = 0
    failures: int = 0
    saving_seconds: float = 0.0  # inside CaseWork.record_deadlines (the audited save)
    last_round_at: datetime | None = None
    by_kind: dict[str, int] = field(default_factory=dict)


class Clock:
    """Follows the log into clock_deadline and records the deadlines that passed."""

    def __init__(
        self,
        app: CaseWork,
        datastore: PostgresDatastore,
        *,
        now: Now = wall_clock,
        fire_batch: int = 1000,
        log_batch: int = 5000,
    ) -> None:
        self.app = app
        self.now = now
        self.fire_batch = fire_batch
        self.log_batch = log_batch
        self.model = ClockDeadlines(datastore)
        self.model.create_table()
        self.reader = LogReader(app, [ClockDeadlines])
        self.stats = ClockStats()
        schema = datastore.schema
        self._due = SQL(
            "SELECT case_id, deadline, kind, region, due_at FROM {schema}.clock_deadline "
            "WHERE state = 'pending' AND due_at <= %s ORDER BY due_at LIMIT %s"
        ).format(schema=Identifier(schema))
        recorder: Any = app.recorder
        self._heads = SQL(
            "SELECT originator_id, max(originator_version) AS version, "
            "max(notification_id) AS last FROM {schema}.{events} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            events=Identifier(recorder.events_table_name),
        )

    # -- following the log --------------------------------------------------------------

    def catch_up(self) -> int:
        """Fold the log from the tracked position up to its head; how many events read."""
        read = 0
        after = self.model.position(self.app.name)
        head = self.app.recorder.max_notification_id() or 0
        while after < head:
            # One range of the log at a time, read whole before it is applied: a scan kept
            # open across slow applies outlives the pool's idle-in-transaction timeout.
            stop = after + self.log_batch
            ranges = self.reader.batches(after=after, stop=stop, batch_size=self.log_batch)
            for batch, _ in list(ranges):
                self.model.apply(batch, application_name=self.app.name)
                read += len(batch)
            after = stop
        self.stats.position = self.model.position(self.app.name)
        return read

    # -- firing -------------------------------------------------------------------------

    def tick(self, stop: Callable[[], bool] = lambda: False) -> int:
        """One round: read the log, record every deadline due by now; how many recorded.

        `stop` is asked between pages (SIGTERM ends a long round after the page in hand).
        """
        self.catch_up()
        recorded, limit = 0, self.fire_batch
        while not stop():
            done = self.fire_due(limit)
            if done < 0:  # a case moved under us: read the log, go on in smaller pages
                self.catch_up()
                limit = max(1, limit // 4)
                continue
            if done == 0:
                break
            recorded += done
            self.catch_up()  # our own events turn the rows "passed"
        self.stats.rounds += 1
        self.stats.last_round_at = self.now()
        return recorded

    def fire_due(self, limit: int) -> int:
        """Record up to `limit` due deadlines in one save: how many, or -1 on a conflict."""
        datastore = self.model.datastore
        with datastore.transaction(commit=False) as curs:
            curs.execute(self._due, (self.now(), limit), binary=True)
            due = [
                Due(r["case_id"], r["deadline"], DeadlineKind(r["kind"]), r["due_at"], r["region"])
                for r in curs.fetchall()
            ]
        if not due:
            return 0
        heads = self._heads_of({d.case_id for d in due})
        position = self.stats.position
        passing: list[tuple[Due, int]] = []
        next_version: dict[UUID, int] = {}
        for deadline in due:
            version, last = heads[deadline.case_id]
            if last > position:  # the case has events we have not read: next round
                self.stats.deferred += 1
                continue
            version = next_version.get(deadline.case_id, version) + 1
            next_version[deadline.case_id] = version
            passing.append((deadline, version))
        if not passing:
            return 0
        started = time.perf_counter()
        try:
            recordings = self.app.record_deadlines(passing)
        except IntegrityError:
            self.stats.conflicts += 1
            log.info("a case moved while deadlines were recorded; reading the log again")
            return -1
        self.stats.saving_seconds += time.perf_counter() - started
        ids = [r.notification.id for r in recordings]
        if ids[0] == position + 1 and ids[-1] - ids[0] == len(ids) - 1:
            # Nothing else was written since our position: fold the events just saved as
            # they are, instead of reading them back from the log (same rows, same tracking).
            self.model.apply(
                [(r.domain_event, r.notification.id) for r in recordings],
                application_name=self.app.name,
            )
            self.stats.position = ids[-1]
        self.stats.recorded += len(passing)
        for deadline, _ in passing:
            kind = deadline.kind.value
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        return len(passing)

    def _heads_of(self, case_ids: set[UUID]) -> dict[UUID, tuple[int, int]]:
        """Each case's last version and last notification id in the store."""
        recorder: Any = self.app.recorder
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(self._heads, (list(case_ids),), binary=True)
            return {r["originator_id"]: (r["version"], r["last"]) for r in curs.fetchall()}

    # -- running ------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, *, every: float = 5.0) -> None:
        """Tick until stopping is set (off the event loop: the library is synchronous)."""
        while not stopping.is_set():
            try:
                recorded = await asyncio.to_thread(self.tick, stopping.is_set)
            except Exception as error:  # the database away for a while: try again later
                # Nothing is lost: the rows and the tracking are in PostgreSQL. /health turns
                # unhealthy once no round has succeeded for a while.
                self.stats.failures += 1
                log.warning("clock round failed; retrying", error=repr(error))
                recorded = 0
            if recorded:
                log.info("deadlines recorded", recorded=recorded, position=self.stats.position)
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)


class Lease:
    """One active clock per database schema: a session advisory lock, held while running."""

    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.key = zlib.crc32(f"jiuzhu-clock:{schema}".encode())
        self.connection: psycopg.AsyncConnection[Any] | None = None

    async def acquire(self, stopping: asyncio.Event, every: float = 2.0) -> bool:
        """Wait hot until the lock is ours (True) or stopping is set (False)."""
        self.connection = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        while not stopping.is_set():
            cursor = await self.connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return True
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
        return False

    async def release(self) -> None:
        """Closing the session releases the lock (a killed process's lock goes with it)."""
        if self.connection is not None:
            await self.connection.close()


async def start_clock(
    service: Any, app: CaseWork, *, options: ClockSettings | None = None
) -> asyncio.Task[Any]:
    """`jiuzhu serve clock`: the clock of a jiuzhu.serve.Service, behind its lease."""
    stack: AsyncExitStack = service._stack
    database_url, schema = service.database_url, service.settings.db_schema
    health, stopping = service.health, service.stopping
    options = options if options is not None else ClockSettings()
    now, every = options.now(), options.clock_every
    datastore = read_model_datastore(database_url, schema=schema, pool_size=2)
    stack.callback(datastore.close)
    clock = Clock(app, datastore, now=now, fire_batch=options.clock_fire_batch)
    lease = Lease(database_url, schema)
    stack.push_async_callback(lease.release)
    state = {"active": False}

    async def run() -> None:
        if await lease.acquire(stopping):
            state["active"] = True
            log.info("clock active", schema=schema)
            await clock.run(stopping, every=every)

    def healthy() -> bool:
        # Waiting hot for the lease is healthy; an active clock must have ticked lately.
        last = clock.stats.last_round_at
        if not state["active"]:
            return True
        return last is not None and (now() - last).total_seconds() < every * 10 + 60

    health.checks["clock"] = healthy
    health.figures["clock"] = lambda: {
        "active": state["active"],
        "position": clock.stats.position,
        "recorded": clock.stats.recorded,
        "conflicts": clock.stats.conflicts,
        "failures": clock.stats.failures,
    }
    return asyncio.create_task(run())
