"""The whole pipeline (intake, relay, projector) running beside the demo, in this process."""

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

from domain.application import CaseWork
from jiuzhu.serve import ServeSettings, Service
from jiuzhu.settings import Settings

__all__ = ["Pipeline", "running_pipeline"]

T = TypeVar("T")


class Pipeline:
    """A running Service on an event loop in its own thread, seen from synchronous code."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.service, self.loop = service, loop

    def caught_up(self, app: CaseWork, timeout: float = 120.0) -> int:
        """Wait until the projector has applied every event in the store; its position."""
        target = app.recorder.max_notification_id() or 0
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        projector = self.service.projector
        assert projector is not None
        while projector.stats.position < target:
            if projector.stats.halted or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the projector stopped at {projector.stats.position} of {target} events"
                )
            pause.wait(0.05)
        return projector.stats.position

    def case_status_totals(self, case_ids: list[UUID]) -> dict[str, int]:
        """What the case_status read model says about some cases: rows, enrolled, paid."""
        query = SQL(
            "SELECT count(*) AS cases, count(first_enrolled_at) AS enrolled,"
            " coalesce(sum(paid_total_fen), 0) AS paid_total_fen"
            " FROM {0}.case_status WHERE case_id = ANY(%s)"
        ).format(Identifier(self.service.settings.db_schema))
        with psycopg.connect(self.service.database_url, row_factory=dict_row) as conn:
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

    async def build() -> Service:
        # The service's asyncio objects must belong to the pipeline's loop.
        return Service(
            {"intake", "relay", "projector"},
            database_url=database_url,
            broker_url=broker_url,
            settings=settings,
            options=ServeSettings(health_port=None),
        )

    service = run(build())
    try:
        run(service.__aenter__())
        try:
            yield Pipeline(service, loop)
        finally:
            loop.call_soon_threadsafe(service.stopping.set)
            run(service.__aexit__(None, None, None))
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
