"""An event too big for a broker message still reaches the read models (issue 14 finding 3):
the relay sends a claim check, the projector reads the state back from the event store."""

from __future__ import annotations

import asyncio
import os
from uuid import uuid4

import pytest

from domain.application import CaseWork
from tests.stories import by
from tests.test_case_status import expected_rows
from tests.test_pipeline_brokers import caught_up, cleanup, eventually, rows_of, service
from tests.test_pipeline_end_to_end import unique_options

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"


def test_an_event_over_the_broker_limit_is_relayed_by_claim_check(
    app: CaseWork, pg_schema: str
) -> None:
    # Stored before the contract bounded sizes (or by a command with no such bound): random
    # text, so that compression cannot bring it under NATS's 1 MB.
    signals = [os.urandom(250).hex() for _ in range(6000)]
    case_id = uuid4()
    app.open_case(
        {
            "case_id": case_id,
            "household_id": f"HH-{uuid4().hex[:8]}",
            "region": "610523",
            "channel": "monitoring_alert",
            "signals": signals,
            "by": by("upstream_system"),
        }
    )
    [notification] = app.recorder.select_notifications(start=1, limit=1)
    assert len(notification.state) > 1024 * 1024
    options = unique_options()

    async def scenario() -> None:
        running = service(app, pg_schema, NATS_URL, options)
        try:
            async with running:
                # Before: MaxPayloadError, the relay exited 1, and again after each restart.
                await eventually(lambda: caught_up(running, app))
                assert running.relay is not None
                assert running.relay.stats.faults == 0
        finally:
            await cleanup(NATS_URL, options.destination())

    asyncio.run(scenario())
    assert rows_of(pg_schema) == expected_rows(app)
