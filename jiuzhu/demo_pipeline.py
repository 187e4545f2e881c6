"""The whole pipeline (intake, relay, projector) running beside the demo, in this process.

Against a deployment that already runs some roles (their leases are held elsewhere), the
demo runs only the roles nobody runs and uses the others: never a second instance of a
role, which would fight the first one over the broker's durable consumers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from consumers.lease import Lease
from domain.application import CaseWork
from jiuzhu.serve import ServeSettings, Service
from jiuzhu.settings import Settings

__all__ = ["Pipeline", "running_pipeline"]

T = TypeVar("T")


ROLES = ("intake", "relay", "projector")


class Pipeline:
    """The pipeline the demo runs on: its own Service's roles, and those running elsewhere."""

    def __init__(
        self,
        service: Service | None,
        loop: asyncio.AbstractEventLoop,
        *,
        elsewhere: set[str],
        database_url: str,
        schema: str,
    ) -> None:
        self.service, self.loop = service, loop
        self.elsewhere = elsewhere  # roles another process holds the lease of
        self.database_url, self.schema = database_url, schema

    def position(self) -> int:
        """case_status's tracked position, whoever projects it (0 before any)."""
        query = SQL("SELECT max(notification_id) FROM {0}.case_status_tracking").format(
            Identifier(self.schema)
        )
        try:
            with psycopg.connect(self.database_url) as conn:
                row = conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0] or 0) if row else 0

    def caught_up(self, app: CaseWork, timeout: float = 120.0) -> int:
        """Wait until case_status reflects every event in the store; its position."""
        target = app.recorder.max_notification_id() or 0
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        projector = self.service.projector if self.service is not None else None
        while (position := self.position()) < target:
            if (projector is not None and projector.stats.halted) or time.monotonic() > deadline:
                where = "elsewhere " if projector is None else ""
                raise RuntimeError(f"the projector {where}stopped at {position} of {target} events")
            pause.wait(0.05)
        return position

    def case_status_totals(self, case_ids: list[UUID]) -> dict[str, int]:
        """What the case_status read model says about some cases: rows, enrolled, paid."""
        query = SQL(
            "SELECT count(*) AS cases, count(first_enrolled_at) AS enrolled,"
            " coalesce(sum(paid_total_fen), 0) AS paid_total_fen"
            " FROM {0}.case_status WHERE case_id = ANY(%s)"
        ).format(Identifier(self.schema))
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            row = conn.execute(query, (case_ids,)).fetchone()
        assert row is not None
        return {key: int(value) for key, value in row.items()}


@contextmanager
def running_pipeline(
    *, database_url: str, broker_url: str, settings: Settings
) -> Iterator[Pipeline]:
    """Intake, relay and projector running until the block ends, then stopped cleanly."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pipeline", daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    leases: dict[str, Lease] = {}

    async def build() -> Service | None:
        # The service's asyncio objects must belong to the pipeline's loop.
        for role in ROLES:
            lease = Lease(database_url, scope=settings.db_schema, roles=[role])
            if await lease.try_acquire():
                leases[role] = lease  # held while the demo runs: the deployment waits
        if not leases:
            return None
        return Service(
            set(leases),
            database_url=database_url,
            broker_url=broker_url,
            settings=settings,
            options=ServeSettings(health_port=None),
        )

    async def release() -> None:
        for lease in leases.values():
            await lease.release()

    try:
        service = run(build())
        pipeline = Pipeline(
            service,
            loop,
            elsewhere=set(ROLES) - set(leases),
            database_url=database_url,
            schema=settings.db_schema,
        )
        if service is None:
            yield pipeline
            return
        run(service.__aenter__())
        try:
            yield pipeline
        finally:
            loop.call_soon_threadsafe(service.stopping.set)
            run(service.__aexit__(None, None, None))
    finally:
        run(release())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
