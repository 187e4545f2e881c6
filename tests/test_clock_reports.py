"""Escalations and deadlines in the reports: verification tasks, programme roll, deadlines."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.cli import app as cli
from processes.clock import ControlledClock
from projections import deadlines, programme_roll, verification_tasks
from projections.base import read_model_datastore
from projections.deadlines import Deadlines, approver_queue
from projections.feed import catch_up
from projections.programme_roll import ProgrammeRoll
from projections.regions import Criteria
from projections.verification_tasks import VerificationTasks
from tests.clock_stories import clock_on, moment
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, verified

pytestmark = pytest.mark.postgres


def test_reports_show_escalations_and_the_approvers_queue(app: CaseWork, pg_schema: str) -> None:
    missed = opened(app)  # the visit due 10 March is never made
    app.assign_verification(
        {"case_id": missed, "assignee": "anren-team", "due_on": date(2023, 3, 10), "by": by()}
    )
    enrolled(app)  # changing household: review due 1 Oct 2023, never done
    waiting = verified(app)  # notice from 5 March: ends on the 12th, no objection
    app.publish_notice({"case_id": waiting, "starts_on": date(2023, 3, 5), "by": by(days=4)})
    now = ControlledClock(moment("2023-03-02"))
    with clock_on(app, pg_schema, now) as clock:
        clock.tick()
        now.set(moment("2023-11-15"))
        clock.tick()
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema, pool_size=1)
    try:
        models = [VerificationTasks(datastore), ProgrammeRoll(datastore), Deadlines(datastore)]
        for model in models:
            model.create_table()
            catch_up(model, app, batch_size=5)
        criteria = Criteria(today=date(2023, 11, 15))
        with datastore.transaction(commit=False) as curs:
            tasks = verification_tasks.report(curs, pg_schema, criteria).rows
            roll = programme_roll.report(curs, pg_schema, criteria).rows
            counted = deadlines.report(curs, pg_schema, criteria).rows
            queue = approver_queue(curs, pg_schema, "6105")
    finally:
        datastore.close()
    assert sum(r["escalated"] for r in tasks) == 1
    assert [r["reviews_escalated"] for r in roll] == [1]
    by_kind = {r["kind"]: r for r in counted}
    assert by_kind["verification_overdue"]["escalated"] == 1
    assert by_kind["review_overdue"]["escalated"] == 1
    assert by_kind["review_due"]["passed"] == 1
    # The enrolled case was enrolled before the clock came by: only the waiting one passed.
    assert by_kind["notice_ended"]["passed"] == 1
    assert [row["case_id"] for row in queue] == [waiting]


def test_jiuzhu_report_deadlines_and_case_history_tell_what_the_clock_did(
    app: CaseWork, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missed = opened(app)
    app.assign_verification(
        {"case_id": missed, "assignee": "anren-team", "due_on": date(2023, 3, 10), "by": by()}
    )
    with clock_on(app, pg_schema, ControlledClock(moment("2023-03-12"))) as clock:
        clock.tick()
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema, pool_size=1)
    try:
        model = Deadlines(datastore)
        model.create_table()
        catch_up(model, app)
    finally:
        datastore.close()
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_ACTOR", "analyst-3")
    monkeypatch.setenv("JIUZHU_ROLE", "analyst")
    runner = CliRunner()
    analyst = ["--actor", "analyst-zhou", "--role", "analyst"]
    shown = runner.invoke(cli, ["report", "deadlines", "--format", "json", *analyst])
    assert shown.exit_code == 0, shown.output
    rows = {r["kind"]: r for r in json.loads(shown.stdout)["rows"]}
    assert rows["verification_overdue"]["escalated"] == 1
    history = runner.invoke(
        cli, ["case", "history", str(missed), "--actor", "a", "--role", "auditor"]
    )
    assert "Escalated" in history.stdout
    assert "clock (system)" in history.stdout
    assert "verification overdue (due 2023-03-11 00:00): escalated to county 610523" in (
        history.stdout
    )
