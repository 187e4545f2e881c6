"""An event a read model cannot fold is parked with a finding, and the follower goes on
(issue 14 finding 2): the projector never halts on it, and a replay parks the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from consumers.event_messages import encode
from consumers.projector import Projector
from domain.application import CaseWork
from projections.base import parked_events, read_model_datastore
from projections.rebuild import read_model_classes, replay
from tests.conftest import DATABASE_URL
from tests.stories import by, verified
from tests.test_projector import Recorded

pytestmark = pytest.mark.postgres


def year_9999_alert(app: CaseWork) -> None:
    """A case discovered at 9999-12-31T23:59:59Z: stored before the contract bounded time."""
    app.open_case(
        {
            "case_id": uuid4(),
            "household_id": f"HH-{uuid4().hex[:8]}",
            "region": "610523",
            "channel": "monitoring_alert",
            "signals": ["spending jumped"],
            "by": by("upstream_system", occurred_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        }
    )


def test_an_event_no_read_model_can_place_in_a_month_is_parked_and_the_rest_applied(
    app: CaseWork, pg_schema: str
) -> None:
    verified(app)
    year_9999_alert(app)
    verified(app)
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    poison = next(n.id for n in notifications if n.topic.endswith("Case.Discovered") and n.id > 2)
    incoming = [(m.headers, m.body) for m in (encode(n) for n in notifications)]
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema, pool_size=3)
    models = [cls(datastore) for cls in read_model_classes()]
    for model in models:
        model.create_table()
    projector = Projector(app.mapper, models, application_name=app.name, deadletter=Recorded())
    try:
        # Before: OverflowError in business_month halted the projector, for good.
        asyncio.run(projector.project(incoming))
        assert projector.stats.halted is None
        assert projector.stats.parked >= 1
        assert {m.position(app.name) for m in models} == {notifications[-1].id}
        live = parked_events(datastore, app.name)
        assert live
        assert {p.notification_id for p in live} == {poison}
        assert all("OverflowError" in p.error or "out of range" in p.error for p in live)
        # A redelivery parks nothing twice and changes nothing.
        asyncio.run(projector.project(incoming))
        assert parked_events(datastore, app.name) == live

        result = replay(app, read_model_classes(), database_url=DATABASE_URL, schema=pg_schema)
        assert result.equal, result.differences
        assert result.parked == live
    finally:
        datastore.close()
