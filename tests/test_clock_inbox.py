"""An escalation shows in the caseworker's inbox (the workbench reads the read models)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.application import CaseWork
from processes.clock import ControlledClock
from tests.clock_stories import clock_on, moment
from tests.stories import opened
from tests.web_support import feed_read_models, signed_in, workbench

pytestmark = pytest.mark.postgres


def test_an_overdue_visit_escalated_by_the_clock_shows_in_the_inbox(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    for household, due in (("HH-ESCALATED", date(2023, 3, 10)), ("HH-LATER", date(2099, 1, 1))):
        case_id = opened(app, household=household)
        app.assign_verification(
            {"case_id": case_id, "assignee": "wang.fang", "due_on": due,
             "by": {"actor": "wang.fang", "role": "caseworker", "reason": "visit",
                    "occurred_at": "2023-03-01T09:00:00+08:00"}},
        )  # fmt: skip
    with clock_on(app, pg_schema, ControlledClock(moment("2023-03-12"))) as clock:
        assert clock.tick() == 1
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        feed_read_models(app, pg_schema)
        inbox = client.get("/web/inbox").text
        visits = inbox[inbox.index('id="visits"') :].split("</section>")[0]
        assert visits.count("已上报县级") == 1
        escalated = visits[visits.index("HH-ESCALATED") :].split("</tr>")[0]
        assert "已上报县级" in escalated
