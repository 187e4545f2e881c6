"""Auditors see a case as it stood at a version or at a moment; long cases use snapshots."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from domain.errors import CaseNotFoundError
from domain.roles import Role
from jiuzhu.cli import app as cli
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, pay

pytestmark = pytest.mark.postgres


def test_a_case_as_it_stood_at_a_version(app: CaseWork) -> None:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    pay(app, case_id, "2023-05")
    now = app.get_case(case_id)
    before_payments = app.get_case(case_id, version=now.version - 2)
    assert now.paid_total_fen == 100000
    assert before_payments.paid_total_fen == 0
    assert before_payments.status == "enrolled"
    assert app.get_case(case_id, version=1).status == "discovered"


def test_a_case_as_it_stood_at_a_moment(app: CaseWork) -> None:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    events = app.history(case_id)
    moment = events[-2].timestamp  # recorded time of the enrolment, before the payment
    past = app.case_as_of(case_id, moment)
    assert past.version == len(events) - 1
    assert past.paid_total_fen == 0
    assert app.case_as_of(case_id, datetime.now(UTC)).paid_total_fen == 50000


def test_long_cases_are_snapshotted_and_rebuild_identically(app: CaseWork) -> None:
    case_id = enrolled(app)
    periods = [f"{2023 + m // 12}-{m % 12 + 1:02d}" for m in range(3, 3 + 60)]
    for period in periods:
        pay(app, case_id, period)
    snapshots = list(app.snapshots.get(case_id)) if app.snapshots else []
    assert snapshots, "a case of more than 50 events has a snapshot"
    fresh = app.get_case(case_id)
    replayed = app.get_case(case_id, version=fresh.version)
    assert fresh.paid_total_fen == 60 * 50000
    assert replayed.payments == fresh.payments
    at_40 = app.get_case(case_id, version=40)
    assert at_40.paid_total_fen == (40 - 6) * 50000


def late_signal_story(app: CaseWork) -> tuple[UUID, datetime]:
    """A case whose second alert (3 March) was recorded after the visit was assigned (5 March).

    Returns the case and the moment between the two recordings.
    """
    case_id = opened(app)  # happened 1 March 2023
    app.assign_verification(
        {
            "case_id": case_id,
            "assignee": "anren-team",
            "due_on": date(2023, 3, 10),
            "by": by(days=4),
        }
    )
    between = datetime.now(UTC)  # after the assignment was recorded, before the signal
    app.attach_signal({"case_id": case_id, "signal": "hospital stay", "by": by(days=2)})
    return case_id, between


def test_as_of_goes_by_when_things_happened_and_known_at_by_when_they_were_recorded(
    app: CaseWork,
) -> None:
    case_id, between = late_signal_story(app)
    third_of_march = datetime(2023, 3, 3, 23, 59, tzinfo=timezone(timedelta(hours=8)))
    happened = app.case_at(case_id, as_of=third_of_march)
    assert happened.signals == ["medical spending jumped", "hospital stay"]
    assert happened.assignee is None  # assigned on the 5th
    known = app.case_at(case_id, known_at=between)
    assert (known.signals, known.assignee) == (["medical spending jumped"], "anren-team")
    both = app.case_at(case_id, as_of=third_of_march, known_at=between)
    assert (both.signals, both.assignee) == (["medical spending jumped"], None)
    with pytest.raises(CaseNotFoundError, match="nothing happened by 2023-02-28"):
        app.case_at(case_id, as_of=datetime(2023, 2, 28, tzinfo=UTC))


def test_case_show_and_audit_history_answer_by_both_clocks(
    app: CaseWork, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id, between = late_signal_story(app)
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    runner = CliRunner()
    who = ["--actor", "auditor-7", "--role", "auditor"]
    show = ["case", "show", str(case_id), "--as-of", "2023-03-03", "--json", *who]
    assert json.loads(runner.invoke(cli, show).stdout)["signals"] == [
        "medical spending jumped", "hospital stay",
    ]  # fmt: skip
    known = runner.invoke(cli, [*show, "--known-at", between.isoformat()])
    assert json.loads(known.stdout)["signals"] == ["medical spending jumped"]
    history = ["audit", "history", str(case_id), "--format", "json", *who]
    listed = runner.invoke(cli, [*history, "--as-of", "2023-03-03"])
    assert [e["type"] for e in json.loads(listed.stdout)] == [
        "Case.Discovered",
        "Case.SignalAttached",
    ]
    listed = runner.invoke(cli, [*history, "--known-at", between.isoformat()])
    assert [e["type"] for e in json.loads(listed.stdout)] == [
        "Case.Discovered", "Case.VerificationAssigned",
    ]  # fmt: skip


def test_the_api_answers_by_both_clocks(app: CaseWork, tmp_path: Path) -> None:
    from tests.api_support import api_client, bearer, settings_in

    case_id, between = late_signal_story(app)
    settings = settings_in(tmp_path)
    with api_client(settings, app) as client:
        headers = bearer(settings, "auditor-7", Role.AUDITOR)
        url = f"/cases/{case_id}"
        happened = client.get(url, params={"as_of": "2023-03-03"}, headers=headers)
        assert happened.status_code == 200, happened.text
        assert happened.json()["signals"] == ["medical spending jumped", "hospital stay"]
        both = {"as_of": "2023-03-03", "known_at": between.isoformat()}
        known = client.get(url, params=both, headers=headers)
        assert known.json()["signals"] == ["medical spending jumped"]
        bad = client.get(url, params={"known_at": "soon"}, headers=headers)
        assert bad.status_code == 422
        assert "known_at" in bad.text
